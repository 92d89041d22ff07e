-- The admin dashboard's per-admin state: the open tab, the trace on show, the logs filter.
-- Server-side, so a reload (or another browser of the same admin) opens where they left off.
CREATE TABLE dashboard_state (
    user_id    TEXT NOT NULL,
    key        TEXT NOT NULL CHECK (key IN ('tab', 'trace', 'logs')),
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (user_id, key)
);
