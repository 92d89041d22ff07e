"""The events orion sent in a benchmark round, as the load client's viewer 0 decoded them.

``bench.client --capture PATH`` writes every HTTP chunk of one connection, decoded, with the
marker of each update (a todo title in workload T, a board's ``data-frame`` in B); the floor
replays them and ``bench.encoder`` re-compresses them.
This module imports no gevent, so the runner can use it too.
"""

from __future__ import annotations

import json


def window(first_frame: list[bytes]) -> int:
    """brotli's lgwin for a stream opening with ``first_frame``: orion's rule (``lane.window`` in
    app/belt/lane.py), a window that fits the page's regions twice over, 16 to 24: a 28 KB todo
    list keeps 64 KiB, a 100 KB board gets 256 KiB (and can still see its previous frame)."""
    size = sum(len(raw) for raw in first_frame)
    return max(16, min(24, (2 * size + 1024).bit_length()))


def load_events(path: str) -> tuple[list[bytes], dict[str, bytes]]:
    """The first frame's chunks and, per update title, the event orion sent for it.

    A chunk belongs to the newest marker it contains: a renamed row keeps its title, so later
    events also carry the markers of earlier updates.
    """
    with open(path, encoding="utf-8") as f:
        captured = json.load(f)
    markers: dict[str, int] = captured["markers"]
    initial: list[bytes] = []
    updates: dict[str, bytes] = {}
    for chunk in captured["chunks"]:
        present = [(k, title) for title, k in markers.items() if title in chunk]
        if present:
            _, title = max(present)
            updates.setdefault(title, chunk.encode())
        elif not updates and not chunk.startswith(": hb"):  # heartbeats are not part of it
            initial.append(chunk.encode())
    missing = sorted(set(markers) - set(updates))
    if missing or not initial:
        raise SystemExit(f"{path}: the capture lacks the first frame or the events of {missing[:3]}")
    return initial, updates
