"""Jobs: work that outlives the request, kept in the same SQLite file as the write that asked.

    @jobs.handler("todos.export")
    def export(ctx, job):                       # ctx is bound to the tenant that enqueued it
        rows = sql.all(ctx.store)
        for i, row in enumerate(rows, 1):
            ...
            jobs.progress(ctx, job.id, i / len(rows))   # a live <progress> bar moves
        return {"rows": len(rows)}              # kept as the job's result (JSON)

    def export_command(ctx, data, respond):
        with ctx.store.tx():
            sql.mark_exporting(ctx.store)
            jobs.enqueue(ctx, "todos.export", {"format": "csv"})   # commits or rolls back with it

What the belt promises:

* ``enqueue`` is a plain INSERT into ``ctx.store``: inside a command's transaction it commits or
  rolls back with the domain write (a transactional outbox, no dual write). A ``unique_key``
  collapses concurrent duplicates: one queued-or-running job per key.
* A worker claims with one ``UPDATE ... RETURNING`` under SQLite's write lock, so two processes
  sharing the file never claim the same attempt. It holds a **lease** (renewed while the handler
  runs); a job whose worker died becomes claimable again when the lease runs out.
* At least once: a handler may run again after a crash, so make its effects idempotent (record
  what you did in the same transaction, or use ``idempotency.first``). A failure retries with
  exponential backoff and jitter; after the last attempt the job is **dead**, with its last
  error, until a person retries or discards it (the Jobs admin panel, ``flask orion jobs``).
* Handlers run in-process (``ORION_JOB_WORKERS`` greenlets in the web worker) or in
  ``flask orion worker`` (its own process, e.g. a systemd unit). They run on the gevent hub:
  network waits are fine, but CPU-heavy work must go to ``gevent.get_hub().threadpool`` and
  SQLite writes go through the store, in short transactions.
* ``schedule(kind, cron="*/5 * * * *")`` or ``every=seconds`` enqueues a periodic job; the
  schedule's row makes two processes fire it once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import sqlite3
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from difflib import get_close_matches
from typing import Any

import gevent
import gevent.event

from .cron import Cron
from .ctx import BoundBus, Ctx
from .store import Row, Store

log = logging.getLogger("orion.jobs")

#: The topic every job change publishes (plus ``jobs:<id>`` for one job's progress).
TOPIC = "jobs"
STATES = ("queued", "running", "done", "dead")
DEFAULT_MAX_ATTEMPTS = 5
#: Done jobs are kept this long (seconds) for the panel, then pruned. Dead ones are never pruned.
KEEP_DONE = 7 * 86400

Handle = Callable[[Ctx, "Job"], Any]
OnDead = Callable[[Ctx, "Job", str], None]


@dataclass(frozen=True)
class Job:
    """One attempt of a job, as its handler sees it."""

    id: int
    kind: str
    payload: Any
    tenant: str | None
    attempt: int
    max_attempts: int
    unique_key: str | None = None

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


@dataclass(frozen=True)
class Handler:
    kind: str
    fn: Handle
    backoff: float = 2.0
    max_backoff: float = 3600.0
    timeout: float | None = None
    on_dead: OnDead | None = None


_HANDLERS: dict[str, Handler] = {}


def handler(
    kind: str,
    *,
    backoff: float = 2.0,
    max_backoff: float = 3600.0,
    timeout: float | None = None,
    on_dead: OnDead | None = None,
) -> Callable[[Handle], Handle]:
    """Register ``fn(ctx, job)`` as the handler of ``kind`` (one per kind).

    A failed attempt waits about ``backoff * 2**(attempt-1)`` seconds (at most ``max_backoff``,
    with jitter) before the next. ``timeout`` ends an attempt that runs longer (a failure).
    ``on_dead(ctx, job, error)`` runs in the transaction that moves the job to the dead letter
    (database writes only: it must not yield).
    """

    def register(fn: Handle) -> Handle:
        existing = _HANDLERS.get(kind)
        if existing is not None and _qualname(existing.fn) != _qualname(fn):
            raise ValueError(
                f"The job kind {kind!r} already has a handler, {_qualname(existing.fn)}; "
                f"a kind has one handler: rename one of them (e.g. {kind + '.v2'!r})."
            )
        _HANDLERS[kind] = Handler(kind, fn, backoff, max_backoff, timeout, on_dead)
        return fn

    return register


def handlers() -> dict[str, Handler]:
    """The registered handlers, by kind."""
    return dict(_HANDLERS)


# -- enqueue -------------------------------------------------------------------------------


def enqueue(
    ctx: Ctx,
    kind: str,
    payload: Any = None,
    *,
    run_at: float | datetime | None = None,
    delay: float = 0.0,
    unique_key: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> int:
    """Queue a job in ``ctx.store``; its id (the live job's id when ``unique_key`` collapses it).

    Inside ``ctx.store.tx()`` the job commits or rolls back with the rest of the transaction.
    ``payload`` is stored as JSON. ``run_at`` (epoch seconds or an aware datetime) or ``delay``
    (seconds) postpones it. The job records ``ctx.tenant``: its handler gets a ctx bound to it.
    """
    if kind not in _HANDLERS:
        close = get_close_matches(kind, list(_HANDLERS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"No job handler is registered for {kind!r}.{hint} Register one with "
            f"@jobs.handler({kind!r}) in a module the app imports."
        )
    if max_attempts < 1:
        raise ValueError(f"max_attempts={max_attempts!r}: a job gets at least one attempt.")
    body = _dumps(payload, f"the payload of a {kind!r} job")
    now = time.time()
    when = run_at.timestamp() if isinstance(run_at, datetime) else run_at
    when = now + delay if when is None else when
    store = ctx.store
    with store.tx():
        count, rowid = store.exec(
            "INSERT INTO _orion_jobs (kind, payload, tenant, run_at, max_attempts, unique_key, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (kind, body, ctx.tenant, when, max_attempts, unique_key, now, now),
        )
        if count == 0:
            row = store.one(
                "SELECT id FROM _orion_jobs WHERE unique_key = ? AND state IN ('queued', 'running')", (unique_key,)
            )
            assert row is not None
            return int(row["id"])
        ctx.bus.publish(TOPIC)
        store.after_commit(_wake_runners)
    assert rowid is not None
    return rowid


def progress(ctx: Ctx, job_id: int, fraction: float) -> None:
    """Record how far a running job is (0..1) and publish ``jobs`` and ``jobs:<id>``."""
    value = min(1.0, max(0.0, float(fraction)))
    ctx.store.exec(
        "UPDATE _orion_jobs SET progress = ?, updated_at = ? WHERE id = ? AND state = 'running'",
        (value, time.time(), job_id),
    )
    ctx.bus.publish(TOPIC)
    ctx.bus.publish(f"{TOPIC}:{job_id}")


def backoff_delay(
    attempt: int, base: float = 2.0, cap: float = 3600.0, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed ``attempt``: exponential, capped, with "equal jitter".

    Half the delay is fixed and half random, so retries of many jobs that failed together
    spread out instead of stampeding the dependency that failed them.

    >>> [backoff_delay(n, 2.0, 60.0, rand=lambda: 1.0) for n in (1, 2, 3, 6, 7)]
    [2.0, 4.0, 8.0, 60.0, 60.0]
    >>> backoff_delay(3, 2.0, 60.0, rand=lambda: 0.0)
    4.0
    """
    delay: float = min(cap, base * 2 ** (attempt - 1))
    return delay / 2 + rand() * delay / 2


# -- reading and operating (the admin panel, the CLI) -------------------------------------------


def get(store: Store, job_id: int) -> Row | None:
    return store.one("SELECT * FROM _orion_jobs WHERE id = ?", (job_id,))


def counts(store: Store) -> dict[str, int]:
    """How many jobs are queued, retrying (queued after a failure), running, done and dead."""
    result = dict.fromkeys(("queued", "retrying", "running", "done", "dead"), 0)
    for row in store.query(
        "SELECT state, attempts > 0 AND state = 'queued' AS retrying, count(*) AS n FROM _orion_jobs GROUP BY 1, 2"
    ):
        result["retrying" if row["retrying"] else row["state"]] += row["n"]
    return result


def listing(store: Store, state: str, limit: int = 50) -> tuple[Row, ...]:
    """The jobs in ``state`` ("retrying": queued after a failure), most recently changed first."""
    if state == "retrying":
        where = "state = 'queued' AND attempts > 0"
    elif state == "queued":
        where = "state = 'queued' AND attempts = 0"
    elif state in STATES:
        where = f"state = '{state}'"
    else:
        raise ValueError(f"{state!r} is not a job state; use one of {(*STATES, 'retrying')}.")
    return store.query(
        "SELECT id, kind, tenant, state, attempts, max_attempts, run_at, progress, last_error, updated_at"
        f" FROM _orion_jobs WHERE {where} ORDER BY updated_at DESC, id DESC LIMIT ?",
        (limit,),
    )


def retry(ctx: Ctx, job_id: int) -> bool:
    """Give a dead job a fresh set of attempts, due now. False if it is not dead (any more)."""
    now = time.time()
    with ctx.store.tx():
        try:
            count, _ = ctx.store.exec(
                "UPDATE _orion_jobs SET state = 'queued', attempts = 0, run_at = ?, progress = NULL,"
                " finished_at = NULL, updated_at = ? WHERE id = ? AND state = 'dead'",
                (now, now, job_id),
            )
        except sqlite3.IntegrityError:
            raise ValueError(
                f"Job #{job_id} cannot be retried: another job with its unique key is queued or running."
            ) from None
        if count:
            ctx.bus.publish(TOPIC)
            ctx.store.after_commit(_wake_runners)
    return bool(count)


def discard(ctx: Ctx, job_id: int) -> bool:
    """Delete a dead job. False if it is not dead (any more)."""
    with ctx.store.tx():
        count, _ = ctx.store.exec("DELETE FROM _orion_jobs WHERE id = ? AND state = 'dead'", (job_id,))
        if count:
            ctx.bus.publish(TOPIC)
    return bool(count)


def prune(store: Store, keep: float = KEEP_DONE) -> int:
    """Delete done jobs finished more than ``keep`` seconds ago; how many went."""
    count, _ = store.exec("DELETE FROM _orion_jobs WHERE state = 'done' AND finished_at < ?", (time.time() - keep,))
    return count


# -- periodic jobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A job enqueued on a cron expression or every N seconds (in every store a runner serves)."""

    name: str
    kind: str
    spec: str
    payload: Any = None
    cron: Cron | None = None
    every: float | None = None

    def next_after(self, ts: float) -> float:
        if self.cron is not None:
            return self.cron.next_after(ts)
        assert self.every is not None
        return ts + self.every


_SCHEDULES: dict[str, Schedule] = {}


def schedule(
    kind: str, *, cron: str | None = None, every: float | None = None, payload: Any = None, name: str | None = None
) -> Schedule:
    """Enqueue ``kind`` periodically: ``cron="*/5 * * * *"`` (UTC) or ``every=300`` (seconds).

    A run that is still queued or running when the next is due absorbs it (its unique key is
    ``schedule:<name>``), and runs missed while no runner was up are not caught up: the next
    one is simply the next due time.
    """
    if (cron is None) == (every is None):
        raise ValueError(f"schedule({kind!r}): give cron='*/5 * * * *' or every=300 (seconds), exactly one.")
    if every is not None and every <= 0:
        raise ValueError(f"schedule({kind!r}, every={every!r}): the interval is a positive number of seconds.")
    _dumps(payload, f"the payload of schedule {kind!r}")
    spec = cron if cron is not None else f"every {every:g}"
    entry = Schedule(name or kind, kind, spec, payload, Cron(cron) if cron is not None else None, every)
    _SCHEDULES[entry.name] = entry
    return entry


def fire_due(ctx: Ctx, now: float | None = None) -> list[str]:
    """Enqueue every schedule due in ``ctx.store``; the names fired. A runner calls it."""
    now = time.time() if now is None else now
    store = ctx.store
    rows = {r["name"]: r for r in store.query("SELECT name, spec, next_at FROM _orion_schedules")}
    fired = []
    for entry in list(_SCHEDULES.values()):
        row = rows.get(entry.name)
        if row is None or row["spec"] != entry.spec:
            store.exec(
                "INSERT INTO _orion_schedules (name, spec, next_at) VALUES (?, ?, ?) ON CONFLICT (name)"
                " DO UPDATE SET spec = excluded.spec, next_at = excluded.next_at WHERE spec != excluded.spec",
                (entry.name, entry.spec, entry.next_after(now)),
            )
            continue
        if row["next_at"] > now:
            continue
        with store.tx():
            # Compare-and-set: of two processes that saw it due, one moves it on and fires.
            moved, _ = store.exec(
                "UPDATE _orion_schedules SET next_at = ?, last_at = ? WHERE name = ? AND next_at = ?",
                (entry.next_after(now), now, entry.name, row["next_at"]),
            )
            if moved:
                enqueue(ctx, entry.kind, entry.payload, unique_key=f"schedule:{entry.name}")
                fired.append(entry.name)
    return fired


# -- running ------------------------------------------------------------------------------------

_CLAIM = """
UPDATE _orion_jobs
   SET state = 'running', attempts = attempts + 1, worker = :worker, run_at = :lease_end,
       started_at = :now, updated_at = :now, last_error = last_error
 WHERE id = (SELECT id FROM _orion_jobs
              WHERE state IN ('queued', 'running') AND run_at <= :now
              ORDER BY run_at, id LIMIT 1)
RETURNING id, kind, payload, tenant, attempts, max_attempts, unique_key
"""
# One attempt is (id, attempts, worker): every later write about it names all three, so a
# worker whose lease expired (and whose job another worker took) cannot overwrite anything.
_MINE = "id = :id AND attempts = :attempt AND worker = :worker AND state = 'running'"

_RUNNERS: weakref.WeakSet[Runner] = weakref.WeakSet()


def _wake_runners() -> None:
    for runner in list(_RUNNERS):
        runner.wake()


@dataclass
class RunnerStats:
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    lost_leases: int = 0


@dataclass(eq=False)
class Runner:
    """Claims and runs jobs from every store of a runtime (``rt.all_stores()``).

    ``start()`` spawns ``concurrency`` greenlets, each running one job at a time, plus one that
    fires schedules and notices changes other processes make. ``run_pending()`` runs what is
    due in the calling greenlet and returns (tests, ``flask orion worker --burst``).
    """

    rt: Any
    concurrency: int = 2
    poll: float = 1.0
    lease: float = 30.0
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")
    stats: RunnerStats = field(default_factory=RunnerStats)
    #: Also find due jobs of tenants whose store is not open in this process (a worker process
    #: opens none by itself): each tenant file is peeked at read-only, once per ``poll``.
    all_tenants: bool = False

    def __post_init__(self) -> None:
        self.stopping = False
        self._greenlets: list[gevent.Greenlet] = []
        self._events: list[gevent.event.Event] = []
        self._turn = 0
        self._seen: dict[int, tuple[int, Any]] = {}
        self._pruned = 0.0
        self._due_tenants: list[str] = []
        self._scanned = 0.0
        self._maintenance = gevent.event.Event()

    # lifecycle

    def start(self) -> Runner:
        _RUNNERS.add(self)
        self.stopping = False
        for _ in range(self.concurrency):
            event = gevent.event.Event()
            self._events.append(event)
            self._greenlets.append(gevent.spawn(self._loop, event))
        self._maintenance = gevent.event.Event()
        self._greenlets.append(gevent.spawn(self._maintain_loop, self._maintenance))
        log.info("jobs: runner %s started, %d worker greenlet(s)", self.name, self.concurrency)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; give running jobs ``timeout`` seconds, then interrupt them (their
        jobs go back to the queue at once, the attempt not counted)."""
        self.stopping = True
        self.wake()
        self._maintenance.set()
        gevent.joinall(self._greenlets, timeout=timeout)
        gevent.killall([g for g in self._greenlets if not g.dead], timeout=timeout)
        self._greenlets.clear()
        self._events.clear()
        _RUNNERS.discard(self)

    def wake(self) -> None:
        """A job was committed in this process: the idle worker greenlets look at once."""
        for event in self._events:
            event.set()

    def _loop(self, event: gevent.event.Event) -> None:
        while not self.stopping and not getattr(self.rt, "stopping", False):
            event.clear()
            try:
                ran = self.run_one()
            except Exception:
                log.exception("jobs: runner %s failed to claim; retrying in %.1fs", self.name, self.poll)
                ran = False
            if not ran:
                event.wait(self.poll)
            else:
                gevent.sleep(0)  # let requests in between jobs

    def _maintain_loop(self, event: gevent.event.Event) -> None:
        while not self.stopping and not getattr(self.rt, "stopping", False):
            try:
                self.maintain()
            except Exception:
                log.exception("jobs: maintenance failed")
            event.clear()
            event.wait(self.poll)

    # the work

    def run_pending(self, limit: int | None = None) -> int:
        """Run due jobs in this greenlet until none is due (or ``limit`` ran); how many ran."""
        ran = 0
        while (limit is None or ran < limit) and self.run_one():
            ran += 1
        return ran

    def run_one(self) -> bool:
        """Claim one due job from any store and run it; False when none is due."""
        stores = self._stores()
        for i in range(len(stores)):
            _, store = stores[(self._turn + i) % len(stores)]
            claimed = self._claim(store)
            if claimed is not None:
                self._turn += i + 1
                self._execute(store, claimed)
                return True
        return False

    def maintain(self, now: float | None = None) -> None:
        """Fire due schedules, publish changes other processes made, prune old done jobs."""
        now = time.time() if now is None else now
        prune_now = now - self._pruned > 3600
        for tenant, store in self._stores():
            ctx = self._ctx_for(tenant, store)
            if _SCHEDULES:
                fire_due(ctx, now)
            seen = self._seen.get(id(store))
            generation = store.generation
            if seen is None or seen[0] != generation:
                row = store.one("SELECT max(updated_at) AS at FROM _orion_jobs")
                mark = row["at"] if row is not None else None
                if seen is not None and seen[1] != mark:
                    ctx.bus.publish(TOPIC)  # a worker process changed jobs: repaint the panels here
                self._seen[id(store)] = (generation, mark)
            if prune_now:
                prune(store)
        if prune_now:
            self._pruned = now

    def _stores(self) -> list[tuple[str | None, Store]]:
        stores = [(t, s) for t, s in self.rt.all_stores() if not s.closed]
        tenants = getattr(self.rt, "tenants", None)
        if self.all_tenants and tenants is not None:
            now = time.time()
            if now - self._scanned >= self.poll:
                self._scanned = now
                shown = {t for t, _ in stores}
                self._due_tenants = [k for k in tenants.keys() if k not in shown and _has_due(tenants.path(k), now)]
            for key in self._due_tenants:
                if key not in {t for t, _ in stores}:
                    try:
                        stores.append((key, self.rt.tenant_store(key)))
                    except Exception:
                        log.exception("jobs: cannot open tenant %r", key)
        return stores

    def _claim(self, store: Store) -> Row | None:
        now = time.time()
        # A cheap read first: polling every store every second must not take the write lock.
        if (
            store.one("SELECT 1 FROM _orion_jobs WHERE state IN ('queued', 'running') AND run_at <= ? LIMIT 1", (now,))
            is None
        ):
            return None
        with store.tx():
            row = store.one(_CLAIM, {"worker": self.name, "lease_end": now + self.lease, "now": now})
        if row is not None:
            self.stats.claimed += 1
        return row

    def _execute(self, store: Store, row: Row) -> None:
        job = Job(
            id=row["id"],
            kind=row["kind"],
            payload=json.loads(row["payload"]),
            tenant=row["tenant"],
            attempt=row["attempts"],
            max_attempts=row["max_attempts"],
            unique_key=row["unique_key"],
        )
        h = _HANDLERS.get(job.kind)
        if job.attempt > job.max_attempts:
            self._dead(
                store,
                job,
                h,
                f"The worker running attempt {job.attempt - 1} stopped before it finished "
                "(its lease expired), and no attempts are left.",
            )
            return
        if h is None:
            self._dead(
                store,
                job,
                None,
                f"No handler for job kind {job.kind!r} in worker {self.name} "
                f"(it knows {sorted(_HANDLERS)}). Deploy the handler, then retry the job.",
            )
            return
        renew = gevent.spawn(self._renew, store, job)
        store.leases += 1  # tenancy never closes a store a job is using
        try:
            ctx = self._ctx_for(job.tenant, store)
            with _timeout(h.timeout) as timer:
                try:
                    result = h.fn(ctx, job)
                except gevent.Timeout as exc:
                    if exc is not timer:
                        raise
                    raise TimeoutError(f"the attempt ran longer than the handler's timeout of {h.timeout}s") from None
        except Exception as exc:
            self._failed(store, job, h, exc)
        except BaseException:
            # Interrupted (the runner stopping, a kill): not the job's fault. Back to the queue.
            self._release(store, job)
            raise
        else:
            self._succeeded(store, job, result)
        finally:
            store.leases -= 1
            renew.kill(block=False)

    def _ctx_for(self, tenant: str | None, store: Store) -> Ctx:
        ctx: Ctx = self.rt.ctx_for(tenant)
        return ctx

    def _params(self, job: Job, **more: Any) -> dict[str, Any]:
        return {"id": job.id, "attempt": job.attempt, "worker": self.name, "now": time.time(), **more}

    def _renew(self, store: Store, job: Job) -> None:
        while True:
            gevent.sleep(self.lease / 3)
            if store.closed:
                return
            count, _ = store.exec(
                f"UPDATE _orion_jobs SET run_at = :now + :lease WHERE {_MINE}", self._params(job, lease=self.lease)
            )
            if not count:
                self.stats.lost_leases += 1
                log.warning("jobs: %s lost the lease of job #%s attempt %s", self.name, job.id, job.attempt)
                return

    def _succeeded(self, store: Store, job: Job, result: Any) -> None:
        body = _dumps(result, f"the result of job #{job.id} ({job.kind})", lenient=True)
        with store.tx():
            count, _ = store.exec(
                "UPDATE _orion_jobs SET state = 'done', result = :result, progress = 1, finished_at = :now,"
                f" updated_at = :now WHERE {_MINE}",
                self._params(job, result=body),
            )
            self._publish(store, job)
        if count:
            self.stats.succeeded += 1
        else:
            self.stats.lost_leases += 1
            log.warning("jobs: job #%s attempt %s finished after its lease was lost", job.id, job.attempt)

    def _failed(self, store: Store, job: Job, h: Handler, exc: BaseException) -> None:
        error = _describe(exc)
        if job.last_attempt:
            self._dead(store, job, h, error)
            return
        delay = backoff_delay(job.attempt, h.backoff, h.max_backoff)
        log.warning(
            "jobs: #%s %s attempt %d/%d failed, retrying in %.1fs: %s",
            job.id,
            job.kind,
            job.attempt,
            job.max_attempts,
            delay,
            error.splitlines()[0],
        )
        with store.tx():
            store.exec(
                "UPDATE _orion_jobs SET state = 'queued', run_at = :now + :delay, last_error = :error,"
                f" updated_at = :now WHERE {_MINE}",
                self._params(job, delay=delay, error=error),
            )
            self._publish(store, job)
        self.stats.retried += 1

    def _dead(self, store: Store, job: Job, h: Handler | None, error: str) -> None:
        log.error("jobs: #%s %s is dead after %d attempt(s): %s", job.id, job.kind, job.attempt, error.splitlines()[0])
        with store.tx():
            count, _ = store.exec(
                "UPDATE _orion_jobs SET state = 'dead', last_error = :error, finished_at = :now,"
                f" updated_at = :now WHERE {_MINE}",
                self._params(job, error=error),
            )
            if count and h is not None and h.on_dead is not None:
                try:
                    with store.tx():  # a savepoint: a failing hook never undoes the dead letter
                        h.on_dead(self._ctx_for(job.tenant, store), job, error)
                except Exception:
                    log.exception("jobs: the on_dead hook of %s failed for job #%s", job.kind, job.id)
            self._publish(store, job)
        self.stats.dead += 1

    def _release(self, store: Store, job: Job) -> None:
        if store.closed:
            return
        try:
            with store.tx():
                store.exec(
                    f"UPDATE _orion_jobs SET state = 'queued', attempts = attempts - 1, run_at = :now,"
                    f" updated_at = :now WHERE {_MINE}",
                    self._params(job),
                )
                self._publish(store, job)
            self.stats.released += 1
        except Exception:
            log.exception("jobs: could not release job #%s; its lease will expire", job.id)

    def _publish(self, store: Store, job: Job) -> None:
        try:
            ctx = self._ctx_for(job.tenant, store)
        except Exception:  # its tenant cannot be opened here: still say that jobs changed
            ctx = Ctx(store=store, bus=BoundBus(self.rt.bus, store))
        ctx.bus.publish(TOPIC)
        ctx.bus.publish(f"{TOPIC}:{job.id}")


def install(app: Any, rt: Any, *, workers: int = 2, poll: float = 1.0, grace: float = 3.0) -> Runner:
    """The web process's runner (``ORION_JOB_WORKERS`` greenlets), started by the gunicorn
    worker once it serves (``start_in_process``), stopped first at shutdown. With 0 workers it
    still fires schedules and repaints job panels when a worker process changes jobs.

    At SIGTERM it stops claiming at once; when the worker exits, jobs still running get
    ``grace`` seconds, then go back to the queue (a worker process picks them up)."""
    runner = Runner(rt, concurrency=workers, poll=poll)
    app.extensions["orion.jobs"] = runner
    rt.on_shutdown.insert(0, lambda: runner.stop(timeout=grace))  # before the stores close
    return runner


def start_in_process(app: Any) -> None:
    """Start the runner ``install`` made (the gunicorn worker's post-init hook calls this)."""
    runner = app.extensions.get("orion.jobs")
    if runner is not None:
        runner.start()


def work(rt: Any, *, concurrency: int = 4, poll: float = 1.0, lease: float = 30.0, burst: bool = False) -> Runner:
    """Run jobs in this process until ``rt.stopping`` (``flask orion worker``); ``burst``: until
    nothing is due, then return."""
    runner = Runner(rt, concurrency=concurrency, poll=poll, lease=lease)
    if burst:
        runner.maintain()
        while runner.run_pending():
            pass
        return runner
    runner.start()
    try:
        while not rt.stopping:
            gevent.sleep(0.1)
    finally:
        runner.stop()
    return runner


# -- helpers ------------------------------------------------------------------------------------


def _has_due(path: Any, now: float) -> bool:
    """Has the database at ``path`` a due job? A read-only peek that opens no Store."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            row = conn.execute(
                "SELECT 1 FROM _orion_jobs WHERE state IN ('queued', 'running') AND run_at <= ? LIMIT 1", (now,)
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return row is not None


def _dumps(value: Any, what: str, *, lenient: bool = False) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        if lenient:
            return json.dumps(repr(value))
        raise ValueError(f"{what} must be JSON (dicts, lists, strings, numbers, booleans, None): {exc}.") from None


def _describe(exc: BaseException) -> str:
    """The error a person reads in the dead letter: the message, then where it happened."""
    frames = traceback.format_exception(exc, limit=-4)
    text = f"{type(exc).__name__}: {exc}\n" + "".join(frames[:-1])
    return text[:4000]


@contextmanager
def _timeout(seconds: float | None) -> Iterator[gevent.Timeout | None]:
    if seconds is None:
        yield None
        return
    timer = gevent.Timeout(seconds)
    timer.start()
    try:
        yield timer
    finally:
        timer.close()


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
