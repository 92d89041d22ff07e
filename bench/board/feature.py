"""board: workload B as an orion feature slice, so the benchmark runs the belt end to end.

A 2,500-cell board lives in SQLite (``cells``, plus the one ``frame`` row naming the step and
its marker). ``POST /board/step`` is a command like any in ``app/features/``: validated
signals (the marker), one transaction that writes the step's 250 changed cells and the frame,
a publish of "board" after the commit. ``GET /board/live`` streams one live region whose
model is one memoized read of the board and whose view is the shared ``board_html``
(``bench/workloads.py``), so orion, the peers and the floor send the same bytes per state.

It is laid out as the four files of a slice would be (sql, view, commands, routes), kept in
one module because it is the bench's, not the app's: ``app/features/`` stays the example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Flask
from markupsafe import Markup

from app.belt import (
    Ctx,
    Respond,
    Row,
    Store,
    command,
    document,
    html,
    live_attrs,
    region,
    request_ctx,
    require,
    resource,
    shape,
)
from bench.workloads import BOARD_SIZE, INITIAL_MARKER, board_cells, board_changes, board_html

MIGRATIONS = Path(__file__).parent / "migrations"
TOPIC = "board"


# -- sql: named queries over the store ------------------------------------------------------

# One read gives the model everything: every cell in board order, each row also carrying the
# frame's marker (a join with the one frame row), so a fan-out runs one query, not two.
BOARD_SQL = "SELECT cells.value AS value, frame.marker AS marker FROM cells JOIN frame ORDER BY cells.id"


def board(store: Store) -> tuple[Row, ...]:
    """The board now: one row per cell in order, each with the frame's marker."""
    return store.query(BOARD_SQL)


def step_number(store: Store) -> int:
    row = store.one("SELECT step FROM frame WHERE id = 1")
    return int(row["step"]) if row is not None else 0


def write_cells(store: Store, changes: list[tuple[int, str]]) -> None:
    """Set each (index, value); one statement per cell inside the caller's transaction."""
    for index, value in changes:
        store.exec("UPDATE cells SET value = ? WHERE id = ?", (value, index))


def write_frame(store: Store, step: int, marker: str) -> None:
    store.exec("UPDATE frame SET step = ?, marker = ? WHERE id = 1", (step, marker))


def seed(store: Store) -> bool:
    """Fill an empty board with step 0 (``board_cells(0)``); False if it already holds one."""
    with store.tx():
        if store.one("SELECT count(*) AS n FROM cells")["n"]:  # type: ignore[index]
            return False
        for index, value in enumerate(board_cells(0)):
            store.exec("INSERT INTO cells (id, value) VALUES (?, ?)", (index, value))
        store.exec("INSERT INTO frame (id, step, marker) VALUES (1, 0, ?)", (INITIAL_MARKER,))
    return True


# -- view: model -> HTML, pure ----------------------------------------------------------------


def board_view(rows: tuple[Row, ...]) -> Markup:
    """The live region: ``board_html`` of the cells, ``data-frame`` set to the marker.

    ``board_html`` builds its markup from cell states that only ever come from
    ``bench/workloads.py`` (a letter and digits) and escapes the marker, so it is safe as is.
    """
    marker = rows[0]["marker"] if rows else INITIAL_MARKER
    return Markup(board_html([r["value"] for r in rows], marker))


def page_body(board_html_now: Markup, live: Markup) -> Markup:
    return html('<main class="app"{}><h1>Board</h1>{}</main>', live, board_html_now)


# -- commands: validate -> write -> publish -------------------------------------------------

# The marker is echoed into an attribute: letters, digits, '-' and '_' only.
STEP = shape.obj(
    marker=shape.text(
        min=1,
        max=64,
        pattern=r"[A-Za-z0-9_-]+",
        label="Marker",
        pattern_message="A marker is letters, digits, '-' and '_'.",
    )
)


def step(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    """Advance the board one step: its 250 changed cells and the frame, in one transaction."""
    require(ctx, "edit", "board:*")
    with ctx.store.tx():
        k = step_number(ctx.store) + 1
        write_cells(ctx.store, board_changes(k))
        write_frame(ctx.store, k, data["marker"])
        ctx.bus.publish(TOPIC)


# -- routes: the blueprint --------------------------------------------------------------------

bp = Blueprint("board", __name__)

# The model is the memoized read itself: every viewer of one publish gets the very same tuple,
# so the belt's shared render (and its identity fast path) serves them all from one render.
BOARD = region("board", topics=[TOPIC], model=lambda ctx: board(ctx.store), view=board_view)


def index() -> Any:
    ctx = request_ctx()
    return document("Board", page_body(BOARD.render(ctx), live_attrs("/board/live")))


resource(
    bp,
    "board",
    pages={"/board": index},
    live=[BOARD],
    live_url="/board/live",
    commands={"POST /board/step": command(step, shape=STEP, action="board.step")},
)


def install(app: Flask) -> None:
    """Add the board to an app made by ``create_app()``: its table, step 0, its blueprint.

    The board lives in the main store, so the app must run with ``ORION_TENANCY=off`` (what
    the benchmark's servers use); a store per workspace would need the gate's URL prefix.
    """
    if app.config.get("ORION_TENANCY") == "db":
        raise SystemExit(
            "bench.board: the board lives in the main store; run the bench app with ORION_TENANCY=off "
            f"(got ORION_TENANCY={app.config['ORION_TENANCY']!r})."
        )
    store = app.extensions["orion"].store
    store.migrate("board", MIGRATIONS)
    seed(store)
    assert len(board(store)) == BOARD_SIZE, "the board's cells and its frame row must both be there"
    app.register_blueprint(bp)


__all__ = ["BOARD", "BOARD_SQL", "MIGRATIONS", "bp", "install"]
