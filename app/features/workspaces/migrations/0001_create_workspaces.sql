-- The directory's data plane map: workspaces and who belongs to each, with which role.
-- Each workspace's own data lives in its own SQLite file (app/belt/tenancy.py).
CREATE TABLE workspaces (
    key        TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 63),
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE memberships (
    workspace TEXT    NOT NULL REFERENCES workspaces (key) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    PRIMARY KEY (workspace, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);
