-- Product analytics (app/belt/analytics.py): what people did, appended in batches.
-- subject is the app's opaque user id, never an IP address, an email or a fingerprint.
-- at is epoch seconds (REAL); props is a small JSON object.
CREATE TABLE _orion_events (
    id      INTEGER PRIMARY KEY,
    at      REAL    NOT NULL,
    name    TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    subject TEXT,
    tenant  TEXT,
    props   TEXT    NOT NULL DEFAULT '{}'
);
-- Funnels and cohorts look up one subject's events by name and time.
CREATE INDEX _orion_events_subject ON _orion_events (subject, name, at);
CREATE INDEX _orion_events_name ON _orion_events (name, at);
-- Append-only: an event is never edited. Deleting a person's events (erasure) stays possible.
CREATE TRIGGER _orion_events_no_update BEFORE UPDATE ON _orion_events
BEGIN
    SELECT RAISE(ABORT, 'analytics events are append-only');
END;
