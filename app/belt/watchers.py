"""Watchers: the callbacks behind a Watchable capability (flags, breakers, entitlements).

A capability answers a cheap synchronous question ("is this flag on for ann?") and, when the
answer may have changed, calls its watchers, each of which only sets a flag (a live stream's
wake). Watchers are keyed by subject (a flag name, an account) so a change wakes only the
streams that asked about it; ``None`` is "any change".

``on_first`` / ``on_last`` run when the first watcher arrives and the last one leaves. The
capabilities use them to hold a bus subscription (for changes made by other processes) only
while someone in this process is watching, so an idle process holds none.

>>> seen = []
>>> watchers = Watchers("demo")
>>> stop = watchers.watch("ann").subscribe(lambda: seen.append("ann"))
>>> watchers.notify(["bob"]); watchers.notify(["ann"]); seen
['ann']
>>> stop(); len(watchers)
0
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .bus import Callback, Unsubscribe

log = logging.getLogger("orion.watchers")


class Watchers:
    """Callbacks by subject (``None``: any change), with first/last hooks."""

    def __init__(
        self,
        name: str,
        *,
        on_first: Callable[[], None] | None = None,
        on_last: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.on_first = on_first
        self.on_last = on_last
        self._by_subject: dict[str | None, dict[int, Callback]] = {}
        self._next = 0
        self._count = 0

    def subscribe(self, subject: str | None, callback: Callback) -> Unsubscribe:
        """Call ``callback()`` whenever ``subject`` changes (any subject, for ``None``)."""
        self._next += 1
        key = self._next
        self._by_subject.setdefault(subject, {})[key] = callback
        self._count += 1
        if self._count == 1 and self.on_first is not None:
            self.on_first()
        done = False

        def unsubscribe() -> None:
            nonlocal done
            if done:
                return
            done = True
            callbacks = self._by_subject.get(subject)
            if callbacks is not None and callbacks.pop(key, None) is not None:
                self._count -= 1
                if not callbacks:
                    del self._by_subject[subject]
                if self._count == 0 and self.on_last is not None:
                    self.on_last()

        return unsubscribe

    def watch(self, subject: str | None) -> Watch:
        """A Watchable for one subject, for a region's ``watch=[...]``."""
        return Watch(self, subject)

    def notify(self, subjects: Iterable[str] | None = None) -> None:
        """Wake the watchers of ``subjects`` and of "any change" (everyone, for ``None``)."""
        if subjects is None:
            targets: list[dict[int, Callback]] = list(self._by_subject.values())
        else:
            keys = dict.fromkeys([*subjects, None])
            targets = [self._by_subject[k] for k in keys if k in self._by_subject]
        for callbacks in targets:
            for callback in tuple(callbacks.values()):
                try:
                    callback()
                except Exception:
                    log.exception("%s watcher %r raised; the others still ran", self.name, callback)

    def __len__(self) -> int:
        return self._count


class Watch:
    """One subject of a ``Watchers``, as a Watchable."""

    __slots__ = ("subject", "watchers")

    def __init__(self, watchers: Watchers, subject: str | None) -> None:
        self.watchers = watchers
        self.subject = subject

    def subscribe(self, callback: Callback) -> Unsubscribe:
        return self.watchers.subscribe(self.subject, callback)

    def __repr__(self) -> str:
        return f"<Watch {self.watchers.name}:{self.subject!r}>"
