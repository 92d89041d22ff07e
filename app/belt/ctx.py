"""ctx: everything a handler, a model or a job may touch, built fresh and passed explicitly.

There is no ambient "current store" or "current tenant": a greenlet, a job or a test that
wants the store asks its ctx. ``ctx.bus`` is bound to ``ctx.store``, so a publish made inside
a transaction is delivered only after that transaction commits, and dropped if it rolls back
(otherwise viewers would re-read before the write is visible).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .bus import Bus, Callback, Topic, Unsubscribe

if TYPE_CHECKING:
    from flask import Request

    from .store import Store


class BoundBus:
    """A bus whose publishes wait for the store's transaction to commit."""

    __slots__ = ("bus", "prefix", "store")

    def __init__(self, bus: Bus, store: Store, prefix: str = "") -> None:
        self.bus = bus
        self.store = store
        self.prefix = prefix

    def publish(self, topic: str) -> None:
        """Publish ``topic`` once the current transaction commits (now, outside one)."""
        full = self.prefix + topic
        self.store.after_commit(lambda: self.bus.publish(full))

    def subscribe(self, topic: str, callback: Callback) -> Unsubscribe:
        return self.bus.subscribe(self.prefix + topic, callback)

    def topic(self, name: str) -> Topic:
        return self.bus.topic(self.prefix + name)


@dataclass
class Ctx:
    """One request's (or job's) view of the world."""

    store: Store
    bus: BoundBus
    signals: dict[str, Any] = field(default_factory=dict)
    request: Request | None = None
    user: Any = None
    tenant: str | None = None
    request_id: str = field(default_factory=lambda: secrets.token_hex(8))
    #: Free-form values a feature attaches for its own views (never read by the belt).
    extra: dict[str, Any] = field(default_factory=dict)
    #: The process runtime (auth, authz, journal): streams run outside Flask's app context,
    #: so whatever a model needs travels with the ctx, not through a global.
    runtime: Any = None
