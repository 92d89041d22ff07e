-- Outbound webhook endpoints (app/belt/webhooks.py), registered per account. Each delivery is a
-- job (kind "_orion.webhook"): its attempts, backoff and dead letter live in _orion_jobs.
CREATE TABLE _orion_webhook_endpoints (
    id         INTEGER PRIMARY KEY,
    account    TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,           -- signs every delivery (HMAC-SHA256)
    events     TEXT    NOT NULL DEFAULT '*',  -- comma-separated event names, or * for all
    active     INTEGER NOT NULL DEFAULT 1,
    created_at REAL    NOT NULL,
    UNIQUE (account, url)
);
