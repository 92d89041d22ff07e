-- Workload B of the benchmark: a 2,500-cell board and the frame it shows.
CREATE TABLE cells (
    id    INTEGER PRIMARY KEY,          -- 0 .. BOARD_SIZE - 1, the cell's place on the board
    value TEXT    NOT NULL
);

-- One row: how many steps the board has taken, and the marker the last step was asked for
-- (shown as data-frame="..." so that a viewer can tell which frame it is looking at).
CREATE TABLE frame (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    step   INTEGER NOT NULL DEFAULT 0,
    marker TEXT    NOT NULL DEFAULT ''
);
