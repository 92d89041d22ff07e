"""The bus: ``publish(topic)`` says "something here changed"; ``subscribe`` hears it.

Events carry no state. A topic only means "re-read the store", so a dropped, coalesced or
reordered wake can never leave a screen wrong: the next render is the whole truth. That is
what lets the Redis adapter (rung 2) answer a lost connection with "wake everyone".

Subscriber callbacks run synchronously inside ``publish`` and must only set a flag or an
event: never block, never raise. One that raises is logged and the others still run.
Publish from the gevent hub's thread (any greenlet), not from a pool thread.

Anything with ``subscribe(callback) -> unsubscribe`` is a **Watchable**; ``bus.topic(name)``
turns a topic into one, so regions can watch topics, flags and grants alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

log = logging.getLogger("orion.bus")

Callback = Callable[[], None]
Unsubscribe = Callable[[], None]

#: Subscribing to this topic hears every publish (the dashboard's feed, a bridge to Redis).
EVERYTHING = "*"


@runtime_checkable
class Watchable(Protocol):
    """Anything a live region can watch: a topic, a flag set, the grants of a user."""

    def subscribe(self, callback: Callback) -> Unsubscribe: ...


class Bus:
    """The in-process bus: one per process, fanning out to this process's subscribers.

    >>> bus = Bus()
    >>> heard = []
    >>> stop = bus.subscribe("todos", lambda: heard.append("todos"))
    >>> bus.publish("todos"); bus.publish("users")
    >>> heard
    ['todos']
    >>> stop(); bus.publish("todos"); heard
    ['todos']
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, dict[int, Callback]] = {}
        self._next_id = 0
        self.published = 0

    def publish(self, topic: str) -> None:
        """Wake every subscriber of ``topic`` (and of ``EVERYTHING``)."""
        _check_topic(topic)  # a misspelt publish (None, b"x") would otherwise wake no one, silently
        self.published += 1
        self._deliver(topic)

    def _deliver(self, topic: str) -> None:
        """Run this process's callbacks for ``topic`` (the Redis bus calls it from its listener)."""
        for name in (topic, EVERYTHING) if topic != EVERYTHING else (EVERYTHING,):
            subscribers = self._subscribers.get(name)
            if not subscribers:
                continue
            # A callback may unsubscribe itself (or others) while we iterate: copy first.
            for callback in tuple(subscribers.values()):
                try:
                    callback()
                except Exception:
                    log.exception("subscriber %r of topic %r raised; the others still ran", callback, topic)

    def subscribe(self, topic: str, callback: Callback) -> Unsubscribe:
        """Call ``callback()`` on every publish of ``topic``; returns the unsubscribe call."""
        _check_topic(topic)
        self._next_id += 1
        key = self._next_id
        self._subscribers.setdefault(topic, {})[key] = callback

        def unsubscribe() -> None:
            subscribers = self._subscribers.get(topic)
            if subscribers is not None:
                subscribers.pop(key, None)
                if not subscribers:
                    del self._subscribers[topic]

        return unsubscribe

    def topic(self, name: str) -> Topic:
        """``name`` as a Watchable, for a region's ``watch=[...]`` list."""
        return Topic(self, name)

    def wake_all(self) -> None:
        """Wake every subscriber of every topic once (after a reconnect, a restore, a deploy)."""
        for topic in list(self._subscribers):
            for callback in tuple(self._subscribers.get(topic, {}).values()):
                try:
                    callback()
                except Exception:
                    log.exception("subscriber %r of topic %r raised during wake_all", callback, topic)

    def subscriber_count(self, topic: str | None = None) -> int:
        """How many subscriptions are open (for one topic, or in all)."""
        if topic is not None:
            return len(self._subscribers.get(topic, ()))
        return sum(len(s) for s in self._subscribers.values())

    def topics(self) -> list[str]:
        return sorted(self._subscribers)

    def close(self) -> None:
        """Release what the bus holds (nothing in process; the Redis bus flushes and disconnects)."""


class Topic:
    """One topic of a bus, as a Watchable."""

    __slots__ = ("bus", "name")

    def __init__(self, bus: Bus, name: str) -> None:
        self.bus = bus
        self.name = name

    def subscribe(self, callback: Callback) -> Unsubscribe:
        return self.bus.subscribe(self.name, callback)

    def __repr__(self) -> str:
        return f"<Topic {self.name!r}>"


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"A topic is a non-empty string (got {topic!r}).")


def subscribe_all(watchables: Iterable[Watchable], callback: Callback) -> Unsubscribe:
    """Subscribe ``callback`` to each watchable; the returned call undoes all of them."""
    stops: list[Unsubscribe] = []
    try:
        for watchable in watchables:
            stops.append(watchable.subscribe(callback))
    except BaseException:
        for stop in stops:
            stop()
        raise

    def unsubscribe() -> None:
        while stops:
            try:
                stops.pop()()
            except Exception:
                log.exception("unsubscribe failed")

    return unsubscribe
