-- The belt's own key/value facts about this database (format version, created time).
CREATE TABLE _orion_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO _orion_meta (key, value) VALUES ('format', '1');
