"""Health: the figures an operator reads first, and the query log behind two of them.

``figures(rt)`` is one immutable snapshot (a live region's model): event-loop lag and stalls
(app/belt/stalls.py), open streams and regions, bus subscribers, requests, renders, events,
bytes and store queries per second, the slowest and the costliest queries, the job queue
(when the jobs table exists) and every circuit breaker's state.

The **query log** is fed by ``Store.on_timed`` (app/belt/observe.py hangs ``observe`` there):
each query costs a ``deque.append``, so it stays on in production. It keeps the last
``size`` queries (for "the slowest recently") and, per SQL text, a count, the total and the
worst time (for "which query costs the most overall"; named queries make that a short list).

Rates are differences between counter samples taken at most once a second, whenever the figures
are read (the Health panel reads them every second while it is open).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent

from . import canon, stalls, trace
from .breaker import BREAKERS

if TYPE_CHECKING:
    from .runtime import Runtime
    from .store import Store

log = logging.getLogger("orion.health")


@dataclass(frozen=True, slots=True)
class Query:
    at: float
    ms: float
    kind: str  # "query" or "exec"
    sql: str
    db: str  # which store: "main", or the tenant's key
    trace_id: str | None


class QueryLog:
    """Recent store calls with their times, and totals per SQL text."""

    def __init__(self, size: int = 500, statements: int = 300) -> None:
        self.recent: deque[Query] = deque(maxlen=size)
        self.statements = statements
        self.by_sql: dict[str, list[float]] = {}  # sql -> [count, total ms, worst ms]
        self.total = 0

    def observe(self, store: Store, kind: str, sql: str, seconds: float) -> None:
        """``Store.on_timed``: runs inside every query, so it only appends and adds."""
        ms = seconds * 1000
        self.total += 1
        span = trace.current()
        self.recent.append(Query(time.time(), ms, kind, sql, store.tenant or "main", span.trace_id if span else None))
        totals = self.by_sql.get(sql)
        if totals is None:
            if len(self.by_sql) >= self.statements:
                return  # a flood of distinct SQL (built from data?) is not worth remembering
            totals = self.by_sql[sql] = [0, 0.0, 0.0]
        totals[0] += 1
        totals[1] += ms
        if ms > totals[2]:
            totals[2] = ms
        canon.query(seconds)
        trace.record("sql " + kind, seconds, sql=sql[:300])

    def slowest(self, limit: int = 10) -> tuple[Query, ...]:
        """The slowest of the recent calls, slowest first."""
        return tuple(sorted(self.recent, key=lambda q: q.ms, reverse=True)[:limit])

    def costliest(self, limit: int = 10) -> tuple[tuple[str, int, float, float], ...]:
        """(sql, calls, total ms, worst ms) of the statements that took the most time in all."""
        rows = sorted(self.by_sql.items(), key=lambda kv: kv[1][1], reverse=True)[:limit]
        return tuple((sql, int(c), round(t, 2), round(w, 2)) for sql, (c, t, w) in rows)


QUERIES = QueryLog()


class Ticker:
    """A Watchable that fires every ``interval`` seconds while anyone watches it."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._watchers: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._timer: Any = None

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._next += 1
        key = self._next
        self._watchers[key] = callback
        if self._timer is None:
            self._timer = gevent.get_hub().loop.timer(self.interval, self.interval, ref=False)
            self._timer.start(self._fire)

        def unsubscribe() -> None:
            self._watchers.pop(key, None)
            if not self._watchers and self._timer is not None:
                self._timer.close()
                self._timer = None

        return unsubscribe

    def _fire(self) -> None:
        for callback in tuple(self._watchers.values()):
            try:
                callback()
            except Exception:
                log.exception("ticker watcher %r raised", callback)


#: Wakes the health panels once a second (only while one is open).
TICK = Ticker(1.0)


@dataclass(frozen=True)
class Figures:
    """Health at one moment (hashable: a live region's model)."""

    lag_ms: float
    lag_max_ms: float
    stall_count: int
    stall_worst_ms: float
    last_stalls: tuple[stalls.Stall, ...]
    streams: int
    regions: int
    streams_by_route: tuple[tuple[str, int], ...]
    subscribers: int
    rates: tuple[tuple[str, float], ...]  # (what, per second)
    slowest: tuple[Query, ...]
    costliest: tuple[tuple[str, int, float, float], ...]
    jobs: tuple[tuple[str, int], ...] | None  # None: this app has no jobs table
    breakers: tuple[tuple[str, str, int], ...]  # (name, state, failures)
    requests: int
    errors: int
    uptime: float

    def rate(self, what: str) -> float:
        return dict(self.rates).get(what, 0.0)

    def as_dict(self) -> dict[str, Any]:
        """For /_orion/stats (JSON)."""
        return {
            "lag_ms": round(self.lag_ms, 2),
            "lag_max_ms": round(self.lag_max_ms, 2),
            "stalls": self.stall_count,
            "stall_worst_ms": self.stall_worst_ms,
            "last_stall": _stall_dict(self.last_stalls[0]) if self.last_stalls else None,
            "regions": self.regions,
            "streams_by_route": dict(self.streams_by_route),
            "rates": dict(self.rates),
            "slowest": [{"ms": round(q.ms, 3), "sql": q.sql[:200], "trace_id": q.trace_id} for q in self.slowest[:5]],
            "costliest": [
                {"sql": s[:200], "calls": c, "total_ms": t, "worst_ms": w} for s, c, t, w in self.costliest[:5]
            ],
            "jobs": dict(self.jobs) if self.jobs is not None else None,
            "breakers": {name: state for name, state, _ in self.breakers},
            "requests": self.requests,
            "errors": self.errors,
        }


def _stall_dict(s: stalls.Stall) -> dict[str, Any]:
    return {
        "duration_ms": s.duration_ms,
        "detected_ms": s.detected_ms,
        "route": s.route,
        "trace_id": s.trace_id,
        "greenlet": s.greenlet,
        "culprit": s.culprit,
        "stack": list(s.stack),
    }


class Rates:
    """Per-second rates from counter samples taken at most once a second."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=64)

    def update(self, counters: dict[str, float], now: float | None = None) -> tuple[tuple[str, float], ...]:
        now = time.monotonic() if now is None else now
        if not self._samples or now - self._samples[-1][0] >= 1.0:
            self._samples.append((now, counters))
        base_t, base = self._samples[0]
        for t, sample in self._samples:
            if now - t <= self.window:
                base_t, base = t, sample
                break
        dt = now - base_t
        if dt < 0.5:
            return tuple((k, 0.0) for k in counters)
        return tuple((k, round((v - base.get(k, 0)) / dt, 1)) for k, v in counters.items())


_RATES: dict[int, Rates] = {}


def counters(rt: Runtime) -> dict[str, float]:
    live = rt.live
    queries = memo = 0
    for _, store in rt.all_stores():
        queries += store.stats.queries
        memo += store.stats.memo_hits
    return {
        "requests": canon.STATS.lines,
        "renders": live.renders,
        "events": live.events,
        "wire_bytes": live.wire_bytes,
        "queries": queries,
        "memo_hits": memo,
    }


def figures(rt: Runtime, watchdog: stalls.Watchdog | None = None) -> Figures:
    """Health now. Reads only memory, except the job counts (one grouped query)."""
    rates = _RATES.setdefault(id(rt), Rates()).update(counters(rt))
    by_route: dict[str, int] = {}
    regions = 0
    for s in list(rt.streams):
        regions += len(s.regions)
        request = s.ctx.request
        rule = getattr(request, "url_rule", None) if request is not None else None
        route = rule.rule if rule is not None else getattr(request, "path", "?")
        by_route[route] = by_route.get(route, 0) + 1
    return Figures(
        lag_ms=watchdog.lag_ms if watchdog else 0.0,
        lag_max_ms=watchdog.lag_max_ms() if watchdog else 0.0,
        stall_count=stalls.STATS.count,
        stall_worst_ms=stalls.STATS.worst_ms,
        last_stalls=stalls.RING.recent(5),
        streams=len(rt.streams),
        regions=regions,
        streams_by_route=tuple(sorted(by_route.items())),
        subscribers=rt.bus.subscriber_count(),
        rates=rates,
        slowest=QUERIES.slowest(10),
        costliest=QUERIES.costliest(10),
        jobs=jobs_counts(rt.store),
        breakers=tuple((s.name, s.state, s.failures) for s in BREAKERS.snapshots()),
        requests=canon.STATS.lines,
        errors=canon.STATS.errors,
        uptime=round(time.time() - rt.started),
    )


def jobs_counts(store: Store) -> tuple[tuple[str, int], ...] | None:
    """(state, jobs) of ``store``'s job queue; None when the app has no jobs table."""
    try:
        from . import jobs
    except ImportError:  # an app without the jobs seam
        return None
    try:
        return tuple(jobs.counts(store).items())
    except sqlite3.Error:  # no jobs table in this database
        return None
