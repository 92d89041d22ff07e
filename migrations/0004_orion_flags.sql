-- Feature flags (app/belt/flags.py): one row per flag, cached in memory by every process.
-- on_for / off_for are JSON arrays of "attr:value" tokens; off_for beats everything.
CREATE TABLE _orion_flags (
    name        TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    description TEXT    NOT NULL DEFAULT '',
    enabled     INTEGER NOT NULL DEFAULT 0 CHECK (enabled IN (0, 1)),
    percent     REAL    NOT NULL DEFAULT 100 CHECK (percent BETWEEN 0 AND 100),
    on_for      TEXT    NOT NULL DEFAULT '[]',
    off_for     TEXT    NOT NULL DEFAULT '[]',
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_by  TEXT
);
