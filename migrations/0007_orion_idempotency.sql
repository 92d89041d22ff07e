-- The idempotency kernel (app/belt/idempotency.py): one table for "exactly once even though it
-- arrived three times". A request's Idempotency-Key (scope "request:<who>") stores the response
-- to replay; an inbound event's id (scope "event:<source>", no response) is recorded in the same
-- transaction as the event's effect.
CREATE TABLE _orion_idempotency (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT,                 -- SHA-256 of method, path and body (requests only)
    state        TEXT NOT NULL CHECK (state IN ('running', 'done')),
    status       INTEGER,              -- the stored response (requests only)
    headers      TEXT,                 -- JSON [[name, value], ...]
    body         BLOB,
    locked_until REAL,                 -- a running request's lease: a crashed one frees its key then
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX _orion_idempotency_expiry ON _orion_idempotency (expires_at);
