-- Sessions (app/belt/sessions.py): only SHA-256 of the secret half of a token is stored.
CREATE TABLE _orion_sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    secret_hash         BLOB NOT NULL,
    created_at          REAL NOT NULL,
    last_used_at        REAL NOT NULL,
    expires_at          REAL NOT NULL,
    absolute_expires_at REAL NOT NULL,
    masquerade_as       TEXT,
    ip                  TEXT,
    user_agent          TEXT
);
CREATE INDEX _orion_sessions_user ON _orion_sessions (user_id);

-- Sign-in throttling (app/belt/throttle.py): failures per key (an account, an address).
CREATE TABLE _orion_throttle (
    key        TEXT PRIMARY KEY,
    failures   INTEGER NOT NULL,
    last_at    REAL    NOT NULL
);
