"""The two benchmark workloads, as data and HTML every system under test shares.

- **T** (todos): orion's real ``#todo-list`` region, 50 rows; an update renames one row.
- **B** (board): a 50 × 50 board of 2,500 cells, about 90-100 KB of HTML in one
  ``<div id="board" data-frame="<marker>">``; an update (a *step*) changes 250 cells (10 %)
  and sets ``data-frame`` to the update's marker.

orion's board app (``bench/board/``), the peers (``bench/peers/``) and the floor all render from
here, so every system writes the same bytes for the same state: the figures then compare
the servers, not the markup. The board is deterministic: step ``k``'s changes come from
``random.Random(k)``, so a server only needs the step number to compute the next frame.

>>> len(board_cells(0)) == BOARD_SIZE
True
>>> sum(a != b for a, b in zip(board_cells(0), board_cells(1))) <= CHANGED_PER_STEP
True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from markupsafe import escape

SIDE = 50
BOARD_SIZE = SIDE * SIDE
CHANGED_PER_STEP = BOARD_SIZE // 10
#: The ``data-frame`` of a board nobody has stepped yet.
INITIAL_MARKER = "initial"
#: The cell kinds: one letter each, rendered as the cell's class.
KINDS = "abcdefgh"

# Step k's state is built from step k-1's: keep the last few so a server stepping forward
# (k, k+1, ...) pays for one step, not for a replay from 0.
_cache: dict[int, tuple[str, ...]] = {}
_CACHE_KEEP = 4


def _cell(rng: random.Random) -> str:
    """One cell's state: its kind (a letter) then a value of 1 to 3 digits, e.g. ``"c417"``."""
    return rng.choice(KINDS) + str(rng.randrange(1000))


def board_changes(k: int) -> list[tuple[int, str]]:
    """The ``CHANGED_PER_STEP`` (index, new state) pairs of step ``k`` (``k`` ≥ 1).

    The indices are distinct; a new state may equal the old one (rarely), which still counts
    as written.
    """
    if k < 1:
        raise ValueError(f"board_changes() takes a step number >= 1, got {k!r}: step 0 is the initial board.")
    rng = random.Random(k)
    indices = rng.sample(range(BOARD_SIZE), CHANGED_PER_STEP)
    return [(i, _cell(rng)) for i in indices]


def _state(k: int) -> tuple[str, ...]:
    if k in _cache:
        return _cache[k]
    if k == 0:
        rng = random.Random(0)
        state = tuple(_cell(rng) for _ in range(BOARD_SIZE))
    else:
        # Walk back to the nearest cached state (or 0) iteratively, then forward.
        base = max((c for c in _cache if c < k), default=0)
        cells = list(_state(base))
        for step in range(base + 1, k + 1):
            for i, value in board_changes(step):
                cells[i] = value
        state = tuple(cells)
    _cache[k] = state
    for old in sorted(_cache)[:-_CACHE_KEEP]:
        del _cache[old]
    return state


def board_cells(k: int) -> list[str]:
    """The board's 2,500 cell states after step ``k`` (0: the initial board); a new list."""
    if k < 0:
        raise ValueError(f"board_cells() takes a step number >= 0, got {k!r}.")
    return list(_state(k))


def _cell_html(index: int, state: str) -> str:
    # ~36 bytes a cell: <span id="c0123" class="kc">417</span>. States come from _cell()
    # (a letter and digits), never from a request, so formatting them needs no escaping.
    return f'<span id="c{index:04d}" class="k{state[0]}">{state[1:]}</span>'


def board_html(cells: Sequence[str], marker: str) -> str:
    """The whole board region for ``cells``, its ``data-frame`` set to ``marker`` (escaped).

    One line, no newline: a Datastar event carries it as one ``data: elements`` line.
    """
    if len(cells) != BOARD_SIZE:
        raise ValueError(f"board_html() needs {BOARD_SIZE} cells, got {len(cells)}.")
    rows = []
    for r in range(SIDE):
        start = r * SIDE
        row = "".join(_cell_html(start + c, cells[start + c]) for c in range(SIDE))
        rows.append(f'<div class="row">{row}</div>')
    return f'<div id="board" class="board" data-frame="{escape(marker)}">{"".join(rows)}</div>'


def board_marker(k: int) -> str:
    """The marker of board update ``k`` (unique, attribute-safe; the load client looks for
    ``data-frame="<marker>"``)."""
    return f"frame-u{k:05d}x"


def todos_marker(k: int) -> str:
    """The unique title of todos update ``k`` (the load client renames a row to it)."""
    return f"Water the plants u{k:04d}x"


def todos_html(rows: Sequence[Any]) -> str:
    """orion's ``#todo-list`` region for ``rows`` (mappings or ``sqlite3.Row``: ``id``, ``title``,
    ``done``), byte for byte.

    Rendered by orion's own view with every permission granted, as the bench's owner sees it
    (``ORION_AUTH=local``): so a peer streaming this string sends what orion sends for that list.
    """
    # Imported here: the board needs none of orion, and this pulls in the belt (Flask, ...).
    from app.features.todos.view import Perms, todo_list

    return str(todo_list((rows, Perms())))


def todos_seed(rows: int = 50) -> list[str]:
    """The titles the bench seeds the todos with (what ``bench/run.py`` posts to ``/todos``)."""
    return [f"Buy milk and bread {i + 1}" for i in range(rows)]


__all__ = [
    "BOARD_SIZE",
    "CHANGED_PER_STEP",
    "INITIAL_MARKER",
    "board_cells",
    "board_changes",
    "board_html",
    "board_marker",
    "todos_html",
    "todos_marker",
    "todos_seed",
]
