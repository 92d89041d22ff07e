"""Product analytics: ``track()`` what people do, read funnels and retention in plain SQL.

    analytics.track("todo_added", {"length": len(title)}, subject=user.id)

``track`` only appends to an in-memory buffer: it never touches the store, so it costs a
command a few microseconds (bench/analytics.py). A flusher greenlet, armed by the first event
after a quiet spell, writes the buffer ``interval`` seconds later into ``_orion_events`` (an
append-only table in the same SQLite file, migration 0009) as multi-row INSERTs of up to 500
events, at most ``_ROWS_PER_TX`` per transaction.

**The writes run on a thread, not on the hub** (DESIGN.md §5: writes that can wait belong on
a real thread). Measured first on the hub: a burst of ~35,000 events/s grew the WAL fast
enough that the flush's COMMIT ran SQLite's automatic checkpoint, and its fsync blocked the
hub for 0.3-0.4 s (the stall watchdog named ``store.py ... in tx``, outside any request). So
the flusher hands each batch to gevent's thread pool, which writes through a connection of
its own to the same file; the hub only waits cooperatively for the result. A command that
commits meanwhile finds SQLite's write lock taken for a few milliseconds and waits for it on
the pool too (Store._begin), never on the hub. The store closing (shutdown) flushes what is
left, then closes that connection.

**The subject is the app's opaque user id** (``user.id``), never an IP address, an email or a
device fingerprint: a subject that looks like one is refused (raised in development, dropped
and logged in production). Props are small JSON objects (up to ``MAX_PROPS`` bytes).

Reading is plain SQL a reader can follow: ``funnel()`` (who did step 1, then step 2 within N
days of step 1, then step 3...) and ``retention()`` (weekly cohorts by first event: of those
who started in a week, how many came back 1, 2, ... weeks later). ``counts()`` and ``recent()``
feed the dashboard's Analytics panel, which repaints after every flush (``ANALYTICS`` is
Watchable).

**The next rungs, not built:** when these queries get slow (millions of events), keep rollup
tables (events per name per day; first-seen per subject) updated by a periodic job, and read
those; for ad-hoc analysis, point DuckDB at the file (``ATTACH 'data/app.sqlite' AS app (TYPE
sqlite, READ_ONLY)``), a column engine reading the same rows without an export. Erasure: a
person's events are ``DELETE FROM _orion_events WHERE subject = ?`` (updates are refused).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from gevent.monkey import get_original

if TYPE_CHECKING:
    from .store import Row, Store

log = logging.getLogger("orion.analytics")

MAX_PROPS = 2048  # bytes of JSON per event
MAX_BUFFER = 100_000  # events waiting for a flush; past it new events are dropped (and counted)
_ROWS_PER_INSERT = 500  # 5 parameters each: well under SQLite's 32,766 variables
_ROWS_PER_TX = 500  # bounds how long one flush holds SQLite's write lock (a few ms)
_NAME = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_IPV6 = re.compile(r"^[0-9a-f:]{2,39}$", re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
DAY = 86400


class Analytics:
    """The buffer, the flusher, and the Watchable the Analytics panel repaints on."""

    def __init__(
        self, store: Store | None = None, *, interval: float = 0.5, enabled: bool = True, development: bool = False
    ) -> None:
        self.store = store
        self.interval = interval
        self.enabled = enabled
        self.development = development
        self.buffer: list[tuple[float, str, str | None, str | None, str]] = []
        self.tracked = 0
        self.flushed = 0
        self.dropped = 0
        self.flushes = 0
        self._flusher: gevent.Greenlet | None = None
        self._watchers: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._conn: sqlite3.Connection | None = None
        # An OS lock (gevent's patched one would not hold across threads): one writer at a time.
        self._writing = get_original("_thread", "allocate_lock")()

    def bind(self, store: Store) -> None:
        """Write to ``store`` from now on; its closing flushes what is buffered."""
        self.store = store

        def closing() -> None:
            if self.store is store:  # not an older store this process was bound to before
                self.close()
                self.store = None

        store.on_close(closing)

    def track(
        self, name: str, props: Mapping[str, Any] | None = None, *, subject: Any = None, tenant: str | None = None
    ) -> None:
        """Record that ``subject`` did ``name`` (buffered; written within ``interval`` seconds)."""
        if not self.enabled:
            return
        try:
            row = self._row(name, props, subject, tenant)
        except (ValueError, TypeError) as exc:
            if self.development:
                raise
            self.dropped += 1
            log.warning("analytics: event %r dropped: %s", name, exc)
            return
        if len(self.buffer) >= MAX_BUFFER:
            self.dropped += 1
            return
        self.buffer.append(row)
        self.tracked += 1
        if self._flusher is None and self.store is not None:
            # Armed by the first event after a quiet spell: a burst shares one flush.
            self._flusher = gevent.spawn_later(self.interval, self._flush_later)

    def _row(
        self, name: str, props: Mapping[str, Any] | None, subject: Any, tenant: str | None
    ) -> tuple[float, str, str | None, str | None, str]:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"event name {name!r}: lower-case letters, digits, '_' and '.', e.g. 'todo_added'.")
        if subject is not None:
            if not isinstance(subject, (str, int)) or isinstance(subject, bool):
                raise TypeError(f"subject={subject!r}: pass the app's user id (a str or an int).")
            subject = str(subject)
            if _IPV4.match(subject) or (":" in subject and _IPV6.match(subject)) or _EMAIL.match(subject):
                raise ValueError(
                    f"subject={subject!r} looks like an IP address or an email. The subject is the app's "
                    "opaque user id (user.id), never an address or a fingerprint."
                )
        text = json.dumps(dict(props or {}), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if len(text.encode()) > MAX_PROPS:
            raise ValueError(
                f"event {name!r}: props are {len(text.encode())} bytes of JSON; keep them under {MAX_PROPS}."
            )
        return (time.time(), name, subject, tenant, text)

    def _flush_later(self) -> None:
        try:
            while self.buffer:
                self.flush(limit=_ROWS_PER_TX, on_thread=True)
        finally:
            self._flusher = None

    def flush(self, limit: int | None = None, *, on_thread: bool = False) -> int:
        """Write the buffered events now (up to ``limit``; all by default); returns how many.

        ``on_thread``: write on gevent's thread pool while this greenlet waits (the flusher);
        otherwise on the calling thread (shutdown, tests).
        """
        cut = len(self.buffer) if limit is None else min(limit, len(self.buffer))
        batch, self.buffer = self.buffer[:cut], self.buffer[cut:]
        store = self.store
        if not batch or store is None:
            return 0
        if store.closed:
            self.dropped += len(batch)
            log.error("analytics: %d events lost: the store closed before they were written", len(batch))
            return 0
        try:
            if on_thread:
                gevent.get_hub().threadpool.spawn(self._write, store.path, batch).get()
            else:
                self._write(store.path, batch)
        except Exception:
            self.dropped += len(batch)
            log.exception("analytics: a flush of %d events failed; they are lost", len(batch))
            return 0
        self.flushed += len(batch)
        self.flushes += 1
        for callback in tuple(self._watchers.values()):
            try:
                callback()
            except Exception:
                log.exception("analytics watcher %r raised", callback)
        return len(batch)

    def _write(self, path: str, batch: list[tuple[float, str, str | None, str | None, str]]) -> None:
        """One transaction of multi-row INSERTs, through this object's own connection."""
        with self._writing:
            conn = self._conn
            if conn is None:
                # isolation_level=None: our own BEGIN IMMEDIATE; the busy timeout waits (here, on
                # this thread) for the store's writer to finish its transaction.
                conn = self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for i in range(0, len(batch), _ROWS_PER_INSERT):
                    chunk = batch[i : i + _ROWS_PER_INSERT]
                    conn.execute(
                        "INSERT INTO _orion_events (at, name, subject, tenant, props) VALUES "
                        + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)),
                        [value for row in chunk for value in row],
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Watchable: ``callback()`` after every flush that wrote events."""
        self._next += 1
        key = self._next
        self._watchers[key] = callback
        return lambda: self._watchers.pop(key, None) and None

    def close(self) -> None:
        """Flush and stop: the pending flusher is cancelled, the rest written here, and the
        connection closed (a write still running on the pool finishes first)."""
        if self._flusher is not None:
            self._flusher.kill(block=False)
            self._flusher = None
        self.flush()
        with self._writing:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


#: The process's analytics (bound to the main store by observe.install).
ANALYTICS = Analytics()


def track(name: str, props: Mapping[str, Any] | None = None, *, subject: Any = None, tenant: str | None = None) -> None:
    """Record that ``subject`` (the app's user id) did ``name``; never blocks, never writes inline."""
    ANALYTICS.track(name, props, subject=subject, tenant=tenant)


# -- reading: plain SQL ----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    subjects: int

    def share_of(self, first: int) -> float:
        return self.subjects / first if first else 0.0


def funnel(store: Store, steps: Sequence[str], *, within_days: float = 7, since: float = 0) -> tuple[Step, ...]:
    """How many subjects did ``steps[0]``, then ``steps[1]``, ... each within ``within_days`` of
    their first ``steps[0]`` (at or after ``since``), each step at or after the previous one.

    For three steps the query reads::

        WITH s1 AS (SELECT subject, min(at) AS t1 FROM _orion_events
                    WHERE name = 'signed_up' AND at >= :since GROUP BY subject),
             s2 AS (SELECT s1.subject, s1.t1, min(e.at) AS t FROM s1 JOIN _orion_events e
                    ON e.subject = s1.subject AND e.name = 'todo_added'
                   AND e.at >= s1.t1 AND e.at <= s1.t1 + :window GROUP BY s1.subject),
             s3 AS (SELECT s2.subject, s2.t1, min(e.at) AS t FROM s2 JOIN _orion_events e
                    ON e.subject = s2.subject AND e.name = 'todo_completed'
                   AND e.at >= s2.t AND e.at <= s2.t1 + :window GROUP BY s2.subject)
        SELECT (SELECT count(*) FROM s1), (SELECT count(*) FROM s2), (SELECT count(*) FROM s3)
    """
    if not steps:
        raise ValueError("funnel(): name at least one step, e.g. ['signed_up', 'todo_added'].")
    params: list[Any] = [steps[0], since]
    ctes = [
        "s1 AS (SELECT subject, min(at) AS t1, min(at) AS t FROM _orion_events"
        " WHERE name = ? AND at >= ? AND subject IS NOT NULL GROUP BY subject)"
    ]
    # Step n joins step n-1's subjects to their first step-n event after it, inside the window.
    following = (
        "s{n} AS (SELECT p.subject, p.t1, min(e.at) AS t FROM s{prev} p JOIN _orion_events e"
        " ON e.subject = p.subject AND e.name = ? AND e.at >= p.t AND e.at <= p.t1 + ?"
        " GROUP BY p.subject)"
    )
    for n, step in enumerate(steps[1:], start=2):
        ctes.append(following.format(n=n, prev=n - 1))
        params += [step, within_days * DAY]
    counts = ", ".join(f"(SELECT count(*) FROM s{n})" for n in range(1, len(steps) + 1))
    row = store.query(f"WITH {', '.join(ctes)} SELECT {counts}", params)[0]
    return tuple(Step(name, int(row[i])) for i, name in enumerate(steps))


@dataclass(frozen=True)
class Cohort:
    week: str  # the Monday the cohort's first events fell in, "2026-11-16"
    size: int
    returned: tuple[int, ...]  # subjects active in week 0, 1, 2, ... after their first event

    def share(self, week: int) -> float:
        return self.returned[week] / self.size if self.size and week < len(self.returned) else 0.0


def retention(
    store: Store, *, start: str = "signed_up", active: str | None = None, weeks: int = 8, since: float = 0
) -> tuple[Cohort, ...]:
    """Weekly retention cohorts: subjects grouped by the week of their first ``start`` event;
    for each, how many did ``active`` (any event, if None) 0, 1, 2, ... weeks after it."""
    rows = store.query(
        """
        WITH firsts AS (
            SELECT subject, min(at) AS first_at FROM _orion_events
            WHERE name = :start AND subject IS NOT NULL AND at >= :since GROUP BY subject
        ),
        activity AS (
            SELECT DISTINCT f.subject, CAST((e.at - f.first_at) / 604800 AS INTEGER) AS week
            FROM firsts f JOIN _orion_events e ON e.subject = f.subject AND e.at >= f.first_at
            WHERE :active IS NULL OR e.name = :active
        )
        SELECT date(f.first_at, 'unixepoch', '-6 days', 'weekday 1') AS cohort,
               a.week, count(DISTINCT a.subject) AS subjects,
               (SELECT count(*) FROM firsts g
                WHERE date(g.first_at, 'unixepoch', '-6 days', 'weekday 1')
                    = date(f.first_at, 'unixepoch', '-6 days', 'weekday 1')) AS size
        FROM firsts f LEFT JOIN activity a ON a.subject = f.subject AND a.week < :weeks
        GROUP BY cohort, a.week ORDER BY cohort, a.week
        """,
        {"start": start, "active": active, "weeks": weeks, "since": since},
    )
    cohorts: dict[str, tuple[int, list[int]]] = {}
    for row in rows:
        _size, returned = cohorts.setdefault(row["cohort"], (int(row["size"]), [0] * weeks))
        if row["week"] is not None:
            returned[int(row["week"])] = int(row["subjects"])
    return tuple(Cohort(week, size, tuple(returned)) for week, (size, returned) in cohorts.items())


def counts(store: Store, *, since: float = 0) -> tuple[tuple[str, int, int], ...]:
    """(event name, events, distinct subjects) since ``since``, most frequent first."""
    return tuple(
        (row["name"], int(row["n"]), int(row["subjects"]))
        for row in store.query(
            "SELECT name, count(*) AS n, count(DISTINCT subject) AS subjects FROM _orion_events"
            " WHERE at >= ? GROUP BY name ORDER BY n DESC, name",
            (since,),
        )
    )


def recent(store: Store, limit: int = 20) -> tuple[Row, ...]:
    """The newest events."""
    return store.query(
        "SELECT id, at, name, subject, tenant, props FROM _orion_events ORDER BY id DESC LIMIT ?", (limit,)
    )
