-- The patterns demo: the cities the combobox searches, and the one profile the inline editor renames.
CREATE TABLE patterns_demo_cities (
    name TEXT PRIMARY KEY
);
INSERT INTO patterns_demo_cities (name) VALUES
    ('Accra'), ('Amsterdam'), ('Athens'), ('Auckland'), ('Bangkok'), ('Barcelona'), ('Berlin'),
    ('Bogotá'), ('Brussels'), ('Budapest'), ('Buenos Aires'), ('Cairo'), ('Cape Town'),
    ('Copenhagen'), ('Dakar'), ('Dublin'), ('Edinburgh'), ('Helsinki'), ('Istanbul'), ('Jakarta'),
    ('Kyoto'), ('Lagos'), ('Lima'), ('Lisbon'), ('London'), ('Madrid'), ('Marseille'),
    ('Melbourne'), ('Mexico City'), ('Montreal'), ('Mumbai'), ('Nairobi'), ('Oslo'), ('Paris'),
    ('Porto'), ('Prague'), ('Reykjavík'), ('Rome'), ('Santiago'), ('São Paulo'), ('Seoul'),
    ('Singapore'), ('Stockholm'), ('Sydney'), ('Taipei'), ('Tokyo'), ('Toronto'), ('Vienna'),
    ('Warsaw'), ('Wellington'), ('Zürich');

CREATE TABLE patterns_demo_profile (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 40)
);
INSERT INTO patterns_demo_profile (id, name) VALUES (1, 'Ada Lovelace');
