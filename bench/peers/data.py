"""The peers' store: one SQLite file (stdlib ``sqlite3``) with orion's data, and the counters.

Both peers keep the same tables as orion (``todos``, as in ``app/features/todos/migrations``;
``cells`` and ``frame`` for the board) and read and write them with plain SQL, the way each
framework's tutorial does. Every statement goes through `Db`, which counts it, and every
render through `render_todos` / `render_board`, which count themselves: ``GET /_peer/stats``
reports both, so "renders per update" and "queries per update" mean the same for a peer as
for orion (orion's ``/_orion/stats``).

Nothing here is async or gevent-aware: a statement on a local file takes microseconds, and
both peers call it inline, as their docs' examples do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.workloads import INITIAL_MARKER, board_cells, board_changes, board_html, todos_html, todos_seed

SCHEMA = """
CREATE TABLE IF NOT EXISTS todos (
    id         INTEGER PRIMARY KEY,
    title      TEXT    NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    done       INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS cells (id INTEGER PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS frame (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    step   INTEGER NOT NULL,
    marker TEXT    NOT NULL
);
"""


class Counters:
    """Cumulative counts for ``/_peer/stats`` (one process serves, so plain ints suffice)."""

    renders = 0
    queries = 0
    #: The statements the update commands ran themselves (existence check, writes): the rest
    #: of ``queries`` is what rendering for the viewers cost.
    command_queries = 0

    @classmethod
    def as_dict(cls) -> dict[str, int]:
        return {"renders": cls.renders, "queries": cls.queries, "command_queries": cls.command_queries}


class Db:
    """A sqlite3 connection that counts the statements it runs."""

    def __init__(self, path: str | Path) -> None:
        # isolation_level=None: explicit BEGIN/COMMIT, so a command's writes are one transaction.
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 5000")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        Counters.queries += 1
        return self.conn.execute(sql, params).fetchall()

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        Counters.queries += 1
        Counters.command_queries += 1
        return self.conn.execute(sql, params).rowcount

    def write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        Counters.queries += 1
        Counters.command_queries += 1
        self.conn.executemany(sql, rows)

    def check(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read the command runs for itself (counted as the command's)."""
        Counters.command_queries += 1
        return self.query(sql, params)

    @contextmanager
    def tx(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def seed(path: Path, rows: int = 50) -> None:
    """Create the tables and fill them as the bench fills orion: ``rows`` todos, the board at step 0."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
        conn.executemany("INSERT INTO todos (title) VALUES (?)", [(t,) for t in todos_seed(rows)])
        conn.executemany("INSERT INTO cells (id, state) VALUES (?, ?)", enumerate(board_cells(0)))
        conn.execute("INSERT INTO frame (id, step, marker) VALUES (1, 0, ?)", (INITIAL_MARKER,))
        conn.commit()
    finally:
        conn.close()


# -- the two regions: one read, one render each ----------------------------------------------


def render_todos(db: Db) -> str:
    """``#todo-list`` as orion renders it, from one read of the table."""
    rows = db.query("SELECT id, title, done FROM todos ORDER BY id")
    Counters.renders += 1
    return todos_html([{"id": r[0], "title": r[1], "done": r[2]} for r in rows])


def render_board(db: Db) -> str:
    """``#board`` from one read of the cells and the frame (a join, so one statement)."""
    rows = db.query("SELECT c.state, f.marker FROM cells c, frame f WHERE f.id = 1 ORDER BY c.id")
    Counters.renders += 1
    return board_html([r[0] for r in rows], rows[0][1] if rows else INITIAL_MARKER)


# -- the two update commands ------------------------------------------------------------------


def rename(db: Db, todo_id: int, title: str) -> bool:
    """Rename a todo; False when it does not exist (existence check first, as orion's command)."""
    with db.tx():
        if not db.check("SELECT 1 FROM todos WHERE id = ?", (todo_id,)):
            return False
        db.write("UPDATE todos SET title = ? WHERE id = ?", (title, todo_id))
    return True


def step(db: Db, marker: str) -> int:
    """Advance the board one step (250 cells, from `board_changes`) under ``marker``; the new step."""
    with db.tx():
        k = db.check("SELECT step FROM frame WHERE id = 1")[0][0] + 1
        db.write_many("UPDATE cells SET state = ? WHERE id = ?", [(s, i) for i, s in board_changes(k)])
        db.write("UPDATE frame SET step = ?, marker = ? WHERE id = 1", (k, marker))
    return int(k)


def valid_title(value: Any) -> str | None:
    """The title, trimmed, if it is one orion would accept (1 to 200 characters)."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if 1 <= len(value) <= 200 else None


def valid_marker(value: Any) -> str | None:
    """A board marker: a short printable string."""
    if not isinstance(value, str) or not 1 <= len(value) <= 100 or not value.isprintable():
        return None
    return value
