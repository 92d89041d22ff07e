"""Throttling: an increasing delay after repeated failures, per key (an account, an address).

After ``free`` failures, each further attempt must wait ``2 ** (failures - free)`` seconds
since the last failure (1 s, 2 s, 4 s, ... capped at 15 minutes). A success resets the key.
Attempts refused by the throttle do not count as failures, so waiting it out always works.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from .store import Store

MAX_DELAY = 15 * 60.0
#: Failures older than this no longer count: a forgotten password last month is not an attack.
FORGET_AFTER = 24 * 3600.0


class Throttle:
    def __init__(self, store: Store, *, free: int, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.free = free
        self.clock = clock

    def delay(self, failures: int) -> float:
        """Seconds an attempt must wait after the last of ``failures`` failures."""
        if failures < self.free:
            return 0.0
        # Cap the exponent before raising 2.0 to it: past ~1024 failures (about ten days of
        # one try per 15 minutes) 2.0 ** n overflows and every attempt would raise instead.
        return min(2.0 ** min(failures - self.free, 32), MAX_DELAY)

    def retry_after(self, keys: Iterable[str]) -> float:
        """0 when an attempt may go ahead now; otherwise the seconds left to wait."""
        now = self.clock()
        wait = 0.0
        for key in keys:
            row = self.store.one("SELECT failures, last_at FROM _orion_throttle WHERE key = ?", (key,))
            if row is not None and now - row["last_at"] < FORGET_AFTER:
                wait = max(wait, row["last_at"] + self.delay(row["failures"]) - now)
        return max(wait, 0.0)

    def fail(self, keys: Iterable[str]) -> None:
        now = self.clock()
        with self.store.tx():
            for key in keys:
                self.store.exec(
                    "INSERT INTO _orion_throttle (key, failures, last_at) VALUES (?, 1, ?)"
                    " ON CONFLICT (key) DO UPDATE SET last_at = excluded.last_at,"
                    " failures = CASE WHEN excluded.last_at - last_at >= ? THEN 1 ELSE failures + 1 END",
                    (key, now, FORGET_AFTER),
                )

    def reset(self, keys: Iterable[str]) -> None:
        with self.store.tx():
            for key in keys:
                self.store.exec("DELETE FROM _orion_throttle WHERE key = ?", (key,))
