"""Rings: bounded, in-memory, Watchable buffers of recent things (traces, canonical lines, stalls).

A ring keeps the last ``size`` items and forgets the rest, so memory stays flat however busy
the process is. It is a **Watchable** (``subscribe(callback) -> unsubscribe``), which is how the
admin dashboard's live panels repaint as things land. Appends can come a thousand times a
second, so watchers are never woken from inside ``append``: the first append after a quiet
spell arms one timer on the gevent loop, and the timer wakes every watcher once, at most every
``interval`` seconds (a dirty flag, not a queue). With nobody watching, an append is a
``deque.append`` and a counter.

Append from the gevent hub's thread only (any greenlet): the timer belongs to its loop.

>>> ring = Ring(2)
>>> for n in (1, 2, 3): ring.append(n)
>>> ring.recent(), ring.total
((3, 2), 3)
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import gevent

log = logging.getLogger("orion.ring")

T = TypeVar("T")


class Ring(Generic[T]):
    """The last ``size`` items, newest first on the way out; Watchable, with coalesced wakes."""

    def __init__(self, size: int, *, interval: float = 0.25, name: str = "ring") -> None:
        if size < 1:
            raise ValueError(f"Ring({size!r}): a ring holds at least one item.")
        self.name = name
        self.interval = interval
        #: Items ever appended (a version number: it moves whenever the ring changes).
        self.total = 0
        self._items: deque[T] = deque(maxlen=size)
        self._watchers: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._timer: Any = None

    def append(self, item: T) -> None:
        self._items.append(item)
        self.total += 1
        if self._watchers and self._timer is None:
            self._arm()

    def recent(self, limit: int | None = None) -> tuple[T, ...]:
        """The newest ``limit`` items (all, by default), newest first."""
        items = reversed(self._items)
        if limit is None:
            return tuple(items)
        return tuple(item for _, item in zip(range(limit), items, strict=False))

    def __iter__(self) -> Iterator[T]:
        """Oldest first."""
        return iter(tuple(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.total += 1
        if self._watchers and self._timer is None:
            self._arm()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (at most every ``interval``) after items land."""
        self._next += 1
        key = self._next
        self._watchers[key] = callback

        def unsubscribe() -> None:
            self._watchers.pop(key, None)

        return unsubscribe

    def _arm(self) -> None:
        # A loop timer, not a greenlet: nothing to leak, nothing to kill at shutdown.
        timer = gevent.get_hub().loop.timer(self.interval)
        self._timer = timer
        timer.start(self._wake)

    def _wake(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
        for callback in tuple(self._watchers.values()):
            try:
                callback()
            except Exception:
                log.exception("%s watcher %r raised; the others still ran", self.name, callback)

    def __repr__(self) -> str:
        return f"<Ring {self.name} {len(self._items)}/{self._items.maxlen}>"
