"""console: what the console keeps per app: the store-call feed, the gate, the grants table.

The **feed** is a bounded ring of the most recent store calls in this process, fed by each
store's ``on_call`` hook (``Store.on_call(kind, sql)``). The hook runs inside every
``query``/``exec`` of every store, fan-outs included, so it does the least it can: append a
tuple to a deque. It never publishes: the first call after a quiet spell arms one timer,
and the timer wakes the ring's watchers (the console's live region) at most every
``interval`` seconds, however many calls landed meanwhile (a dirty flag, not a queue).

The console's own reads are **muted** (``with feed.muted(): ...``): its regions re-read every
store on each wake, and a feed that recorded them would wake itself forever.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import gevent
from flask import current_app
from greenlet import getcurrent

from app.belt import Gate

log = logging.getLogger("orion.console")

#: How many recent calls the ring keeps, and how many the console shows.
RING = 200
#: The shortest time between two wakes of the feed's watchers, in seconds.
INTERVAL = 0.1


class Call(NamedTuple):
    """One store call as the console shows it."""

    seq: int
    at: float
    db: str  # "main" or the tenant's key
    kind: str  # "query" or "exec"
    sql: str  # the first 80 characters, whitespace collapsed


class Feed:
    """The ring of recent store calls; Watchable (``subscribe(callback) -> unsubscribe``).

    >>> feed = Feed()
    >>> feed.record("home", "query", "SELECT id, title,\\n  done FROM todos")
    >>> [(c.db, c.kind, c.sql) for c in feed.snapshot()]
    [('home', 'query', 'SELECT id, title, done FROM todos')]
    """

    def __init__(self, size: int = RING, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.total = 0
        self._ring: deque[tuple[int, float, str, str, str]] = deque(maxlen=size)
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._armed = False
        self._muted: set[Any] = set()
        self._snapshot: tuple[Call, ...] = ()
        self._snapshot_at = (0, 0)

    def record(self, store: str, kind: str, sql: str) -> None:
        """The hook: called inside a store call, so only an append (and, rarely, a timer)."""
        if self._muted and getcurrent() in self._muted:
            return
        self.total += 1
        self._ring.append((self.total, time.time(), store, kind, sql))
        if not self._armed and self._subscribers:
            # Never wake anyone from inside a store call: a timer does it, once per interval.
            self._armed = True
            gevent.spawn_later(self.interval, self._wake)

    def hook(self, store: str) -> Callable[[str, str], None]:
        """The ``on_call`` of the store named ``store`` ("main" or a tenant key)."""
        return partial(self.record, store)

    def _wake(self) -> None:
        self._armed = False
        for callback in tuple(self._subscribers.values()):
            try:
                callback()
            except Exception:
                log.exception("feed watcher %r raised; the others still ran", callback)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._next += 1
        key = self._next
        self._subscribers[key] = callback

        def unsubscribe() -> None:
            self._subscribers.pop(key, None)

        return unsubscribe

    @contextmanager
    def muted(self) -> Iterator[None]:
        """Calls made by this greenlet inside the block are not recorded."""
        me = getcurrent()
        if me in self._muted:
            yield
            return
        self._muted.add(me)
        try:
            yield
        finally:
            self._muted.discard(me)

    def snapshot(self, limit: int = 30) -> tuple[Call, ...]:
        """The newest ``limit`` calls, newest first; the same tuple until another call lands
        (so every console viewer of one wake shares one model and one render)."""
        if self._snapshot_at != (self.total, limit):
            newest = list(self._ring)[-limit:]
            newest.reverse()
            self._snapshot = tuple(
                Call(seq, at, db, kind, " ".join(sql.split())[:80]) for seq, at, db, kind, sql in newest
            )
            self._snapshot_at = (self.total, limit)
        return self._snapshot


@dataclass
class Console:
    """The console's wiring in one app (``app.extensions["console"]``)."""

    feed: Feed
    gate: Gate | None = None
    demo: bool = False
    #: The role → grants table as the console shows it (routes.grants_model).
    grants_model: Any = None


def state() -> Console:
    """The console of the current app (inside a request)."""
    console: Console = current_app.extensions["console"]
    return console
