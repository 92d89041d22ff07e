-- The audit journal: append-only, hash-chained (app/belt/audit.py).
CREATE TABLE _orion_audit (
    seq         INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,
    tenant      TEXT,
    actor       TEXT,
    real_actor  TEXT,
    action      TEXT    NOT NULL,
    target      TEXT,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('started', 'succeeded', 'failed', 'denied')),
    reason      TEXT,
    started_seq INTEGER REFERENCES _orion_audit (seq),
    request_id  TEXT,
    client      TEXT,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE
);
CREATE INDEX _orion_audit_started ON _orion_audit (started_seq) WHERE started_seq IS NOT NULL;
-- Append-only: the journal is never edited in place by the app.
CREATE TRIGGER _orion_audit_no_update BEFORE UPDATE ON _orion_audit
BEGIN
    SELECT RAISE(ABORT, 'the audit journal is append-only');
END;
CREATE TRIGGER _orion_audit_no_delete BEFORE DELETE ON _orion_audit
BEGIN
    SELECT RAISE(ABORT, 'the audit journal is append-only');
END;
