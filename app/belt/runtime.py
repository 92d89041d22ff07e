"""The runtime: the one object per process that owns the store, the bus and open streams.

``create_app()`` builds it and hangs it on ``app.extensions["orion"]``; ``runtime()`` finds it
from inside a request. Shutdown lives here because it must touch all three in order: stop the
streams (clients reconnect elsewhere), then close the store.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent
from flask import Flask, current_app, request

from .bus import Bus
from .ctx import BoundBus, Ctx
from .store import Store

if TYPE_CHECKING:
    from .audit import Journal
    from .auth import Auth
    from .authz import Authz
    from .entitlements import Billing, Entitlements
    from .flags import Flags
    from .lane import Lane
    from .live import Stream

log = logging.getLogger("orion")


@dataclass
class LiveStats:
    """What the fan-out did; read by the benchmarks and the health endpoint."""

    streams_opened: int = 0
    wakes: int = 0
    renders: int = 0
    render_hits: int = 0
    unchanged: int = 0
    #: SQL statements the lanes' models ran (memo misses): one per change however many watch.
    queries: int = 0
    events: int = 0
    raw_bytes: int = 0
    wire_bytes: int = 0


@dataclass
class Runtime:
    store: Store
    bus: Bus
    development: bool = False
    heartbeat: float = 15.0
    #: Seconds a write to a viewer may stay blocked before the viewer is dropped.
    send_timeout: float = 10.0
    streams: set[Stream] = field(default_factory=set)
    #: The lane taking newcomers, per lane key (``lane.key``).
    lanes: dict[Hashable, Lane] = field(default_factory=dict)
    live: LiveStats = field(default_factory=LiveStats)
    started: float = field(default_factory=time.time)
    stopping: bool = False
    datastar_url: str = "/static/datastar.js"
    #: Identity (None: the app has no notion of users), grants, the audit journal.
    auth: Auth | None = None
    authz: Authz | None = None
    journal: Journal | None = None
    #: Tenancy (db-per-tenant): open a tenant's store; list the open ones. None: single-tenant.
    tenants: Any = None  # app.belt.tenancy.Tenants when db-per-tenant is on
    tenant_store: Callable[[str], Store] | None = None
    tenant_stores: Callable[[], list[tuple[str | None, Store]]] | None = None
    #: The entitlement check of step 3 of every command; None when billing is off.
    entitlement: Callable[[Ctx, str], None] | None = None
    #: Capabilities (DESIGN.md §7): feature flags; entitlements and the billing provider's
    #: adapter (both None when billing is off). Breakers are process-wide (belt.breaker).
    flags: Flags | None = None
    entitlements: Entitlements | None = None
    billing: Billing | None = None
    on_shutdown: list[Callable[[], None]] = field(default_factory=list)

    def ctx(self, signals: dict[str, Any] | None = None, **kwargs: Any) -> Ctx:
        """A fresh ctx bound to this runtime's store and bus."""
        return Ctx(store=self.store, bus=BoundBus(self.bus, self.store), signals=signals or {}, runtime=self, **kwargs)

    def ctx_for(self, tenant: str | None = None, **kwargs: Any) -> Ctx:
        """A ctx bound to ``tenant``'s store and topics (None: the main store), for work that
        runs outside a request: jobs, the CLI, a webhook. Tenancy fills this in."""
        if tenant is None:
            return self.ctx(**kwargs)
        if self.tenant_store is None:
            raise RuntimeError(f"tenant {tenant!r} asked for, but this app has no tenancy configured.")
        store = self.tenant_store(tenant)
        return Ctx(store=store, bus=BoundBus(self.bus, store, prefix=f"{tenant}:"), tenant=tenant,
                   runtime=self, **kwargs)

    def all_stores(self) -> list[tuple[str | None, Store]]:
        """Every store this process serves: (None, the main store) and each open tenant's."""
        stores: list[tuple[str | None, Store]] = [(None, self.store)]
        if self.tenant_stores is not None:
            stores.extend(self.tenant_stores())
        return stores

    def stats(self) -> dict[str, Any]:
        s = self.store.stats
        return {
            "pid": os.getpid(),
            "streams": len(self.streams),
            "subscribers": self.bus.subscriber_count(),
            "published": self.bus.published,
            "store": {
                "queries": s.queries,
                "memo_hits": s.memo_hits,
                "writes": s.writes,
                "commits": s.commits,
                "rollbacks": s.rollbacks,
                "lock_waits": s.lock_waits,
                "checkpoints": s.checkpoints,
                "checkpoint_catch_ups": s.checkpoint_catch_ups,
                "checkpoint_errors": s.checkpoint_errors,
            },
            "lanes": len(self.lanes),
            "live": dict(self.live.__dict__),
            "uptime": round(time.time() - self.started, 3),
            "observe": _observe_stats(self),
            # db-per-tenant: how many workspace files are open now, and how many were ever
            # opened or created (the gate's tests read these: a refused probe moves none).
            "tenants": None if self.tenants is None else {
                "open": len(self.tenants.open_stores()),
                "opens": self.tenants.stats.opens,
                "creates": self.tenants.stats.creates,
                "closes": self.tenants.stats.closes,
            },
        }

    def shutdown(self, *, close_store: bool = True, timeout: float = 5.0) -> None:
        """End every stream with a final event; then (``close_store``) run the hooks and close.

        Called twice under gunicorn: on SIGTERM with ``close_store=False`` (streams end at once,
        so the drain does not wait for them; in-flight commands still finish), and again when
        the worker exits, to close the store after the last request.
        """
        if not self.stopping:
            self.stopping = True
            for stream in list(self.streams):
                stream.end()
            deadline = time.monotonic() + timeout
            while self.streams and time.monotonic() < deadline:
                gevent.sleep(0.02)
        if close_store and not self.store.closed:
            for hook in self.on_shutdown:
                try:
                    hook()
                except Exception:
                    log.exception("shutdown hook %r failed", hook)
            self.store.close()


def _observe_stats(rt: Runtime) -> dict[str, Any]:
    """Health figures, canonical-line and analytics counters (app/belt/observe.py)."""
    from . import observe

    return observe.stats(rt)


def runtime(app: Flask | None = None) -> Runtime:
    """The runtime of ``app`` (default: the current Flask app)."""
    target = app if app is not None else current_app
    try:
        rt: Runtime = target.extensions["orion"]
    except KeyError:
        raise RuntimeError(
            f"{target.name!r} has no orion runtime: build the app with create_app(), which "
            "calls belt.install(app, ...)."
        ) from None
    return rt


def request_ctx(signals: dict[str, Any] | None = None) -> Ctx:
    """A fresh ctx for the current request: its store, bus, signals and request.

    Under ``/w/<workspace>/`` the gate has already said yes (tenancy.install_gate), and the
    ctx is bound to that workspace: its store, its topics, and the member's role there.
    """
    rt = runtime()
    req = request._get_current_object()  # type: ignore[attr-defined]
    verdict = req.environ.get("orion.verdict")
    # The request span's id is the ctx's request_id, so an audit record names its request's
    # trace (app/belt/observe.py); the canonical line reads who acted from the ctxs built.
    span_id = req.environ.get("orion.request_id")
    ids = {"request_id": span_id} if span_id else {}
    if verdict is None:
        ctx = rt.ctx(signals=signals, request=req, **ids)
    else:
        ctx = rt.ctx_for(verdict.tenant, signals=signals or {}, request=req, **ids)
        ctx.user = req.environ["orion.user"]
        ctx.extra["auth_resolved"] = True
    req.environ.setdefault("orion.ctxs", []).append(ctx)
    return ctx
