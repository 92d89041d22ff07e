"""The store: plain SQL over one SQLite file, synchronous on purpose.

Five calls carry the whole seam: ``query``, ``one``, ``exec``, ``tx`` and ``close``.
Views and models read with no ``await`` and no ``yield``; commands write inside ``tx()``.

Platform facts this module is built on (measured on the target machine, see DESIGN.md §5):

* One **writer** connection, its transactions serialized by a gevent lock, and a separate
  **reader** connection in autocommit mode, so a read never sees an uncommitted write of a
  command that is still running in another greenlet.
* Every write transaction starts with ``BEGIN IMMEDIATE``: a deferred transaction that reads
  and then writes fails at once with ``SQLITE_BUSY_SNAPSHOT`` whatever the busy timeout.
* sqlite3 calls block the gevent hub. Taking the write lock is tried first without waiting;
  only if another *process* (a jobs worker, the CLI, a backup) holds it do we wait for it, and
  that wait runs on gevent's thread pool so streams keep ticking while we wait.
* ``PRAGMA data_version`` on the reader changes whenever any other connection commits (our
  writer included). It is the store's ``generation``: reads are memoized per generation, so N
  viewers re-reading the same list during one fan-out run one query.
* ``synchronous=NORMAL`` (the default here) in WAL mode: a commit survives a crash or kill of
  the process (the WAL is in the OS page cache); only an OS crash or power loss can lose the
  last commits, never corrupt the file. It saves an fsync per commit on the hub. Set
  ``synchronous="FULL"`` for fsync-per-commit durability.
* **Checkpoints run off the hub.** SQLite's automatic checkpoint runs inside the COMMIT that
  takes the WAL past 1,000 pages: it copies the WAL into the database and fsyncs, on the hub,
  for as long as the WAL is big (65-150 ms measured with 20-40 MB left by another process,
  soak/hub_liveness.py). The writer turns it off (``wal_autocheckpoint=0``); after a commit
  that finds the WAL past the same size, a ``PRAGMA wal_checkpoint(PASSIVE)`` runs on
  gevent's thread pool on a connection of its own. PASSIVE never waits for a lock and never
  blocks a writer, so commits go on meanwhile. The WAL restarts from its beginning (stops
  growing) only at a write that finds it fully checkpointed, so the thread repeats while
  commits land during its pass; if they never stop landing, the next committer keeps the
  write lock for one more pass on the pool (writers wait a few ms; the hub never does).

**The write queue** (``Store(path, write_queue=True)``, ORION_WRITE_QUEUE=1): group commit.
The transactions of one hub tick share one SQLite transaction and one fsync. Each ``tx()``
runs inside a savepoint of the batch, so it stays atomic (its failure rolls back only
itself) and reads its own writes at once; its publishes wait for the batch. ``tx()``
returns only once the batch has committed (a failed batch raises ``WriteBatchError`` in
every transaction it held), so a command never answers before its write is durable:
*acknowledged means durable*. The durability window is the batch: a crash before the
batch commits loses that batch, rolled back cleanly by SQLite, never corrupting the file,
and none of its requesters had been answered. ``flush()``, ``close()`` (hence shutdown)
and migrations commit at once; migrations never batch. Deferred constraints
(``DEFERRABLE INITIALLY DEFERRED``) are checked when the batch commits, so a violation
fails the whole batch: keep constraints immediate (SQLite's default) on a queued store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, ClassVar

import gevent
import gevent.event
import gevent.lock
from gevent.monkey import get_original
from greenlet import getcurrent

log = logging.getLogger("orion.store")
_os_sleep: Callable[[float], None] = get_original("time", "sleep")

Row = sqlite3.Row
Params = Sequence[Any] | dict[str, Any]

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_MEMO_LIMIT = 512
#: A batch this full commits before the next transaction joins: a burst of thousands of
#: writes in one tick then waits for a few commits of ~1,000, not one huge one.
_BATCH_MAX = 1000
#: SQLite's own automatic checkpoint threshold (pages of the WAL), kept, but run off the hub.
_CHECKPOINT_PAGES = 1000
#: Once the WAL file is past the threshold, checkpoint again after this many commits or
#: seconds, or when the file has grown by the threshold: a WAL that restarted from its
#: beginning fills with frames without growing the file, and its size is all we can see.
_CHECKPOINT_COMMITS = 250
_CHECKPOINT_EVERY = 1.0
#: Passes the thread makes while commits land during them, before the writer finishes up.
_CHECKPOINT_PASSES = 4
_open_stores: weakref.WeakSet[Store] = weakref.WeakSet()


class MigrationError(RuntimeError):
    """A migration cannot run: the boot stops here, before any request is served."""


class WriteBatchError(sqlite3.DatabaseError):
    """The group commit this transaction joined failed: nothing of the batch was written."""


@dataclass
class _Tx:
    """The write transaction the current holder of the writer lock is running."""

    owner: Any
    depth: int = 0
    # One list of after-commit callbacks per savepoint level: a rolled-back savepoint
    # drops the publishes made inside it, a released one hands them to its parent.
    pending: list[list[Callable[[], None]]] = field(default_factory=list)


@dataclass
class _Batch:
    """One group commit (write queue): the transactions of one hub tick and their publishes."""

    committed: gevent.event.Event = field(default_factory=gevent.event.Event)
    callbacks: list[Callable[[], None]] = field(default_factory=list)
    size: int = 0
    error: BaseException | None = None


@dataclass
class Stats:
    """Counters the benchmarks and the health view read."""

    queries: int = 0
    memo_hits: int = 0
    writes: int = 0
    commits: int = 0
    rollbacks: int = 0
    lock_waits: int = 0
    #: Write queue: group commits made, and the transactions they carried.
    batches: int = 0
    batched: int = 0
    #: WAL checkpoints run off the hub (see the module's docstring), and those that failed.
    checkpoints: int = 0
    checkpoint_errors: int = 0
    #: Final passes a committer held the write lock for, because commits kept landing.
    checkpoint_catch_ups: int = 0


class Store:
    """One SQLite database: a serialized writer, a reader, memoized reads.

    >>> import os, tempfile
    >>> store = Store(os.path.join(tempfile.mkdtemp(), "demo.sqlite"))
    >>> with store.tx():
    ...     store.exec("CREATE TABLE t (x)")
    ...     store.exec("INSERT INTO t VALUES (?)", (1,))
    (-1, 0)
    (1, 1)
    >>> store.query("SELECT x FROM t")[0]["x"]
    1
    >>> store.close()
    """

    #: Process-wide observer of every SQL call with its time, ``on_timed(store, kind, sql,
    #: seconds)`` (app/belt/observe.py: the query log, query spans, the canonical line).
    #: It runs inside the call: it must be cheap and never block, publish or touch a store.
    on_timed: ClassVar[Callable[[Store, str, str, float], None] | None] = None

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = 5000,
        synchronous: str = "NORMAL",
        write_queue: bool = False,
    ) -> None:
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous={synchronous!r} is not a SQLite setting; use one of {_SYNCHRONOUS}.")
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.stats = Stats()
        #: The tenant this store belongs to (db-per-tenant), None for the main store.
        self.tenant: str | None = None
        #: Open streams using this store: tenancy never closes a store while one is.
        self.leases = 0
        #: Optional observer of every call, ``on_call(kind, sql)`` with kind "query" or "exec"
        #: (the architecture console's feed). It runs inside the call: it must be cheap and
        #: never block, publish or touch the store.
        self.on_call: Callable[[str, str], None] | None = None
        if self.path == ":memory:" or self.path.startswith("file:"):
            # A reader and a writer must share one database, and WAL needs a file.
            raise ValueError(
                f"Store({self.path!r}): the store needs a file path (WAL mode, a reader beside "
                "the writer); in tests use a temporary file, e.g. tmp_path / 'app.sqlite'."
            )
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect(self.path, synchronous.upper())
        self._reader = self._connect(self.path, synchronous.upper())
        # The writer never checkpoints inside a COMMIT on the hub: _maybe_checkpoint does it
        # on the thread pool, on a third connection opened there on first use.
        self._writer.execute("PRAGMA wal_autocheckpoint = 0")
        self._checkpoint_bytes = _CHECKPOINT_PAGES * int(self._writer.execute("PRAGMA page_size").fetchone()[0])
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing = False  # set on the hub, cleared by the thread when it is done
        self._checkpoint_error: BaseException | None = None
        self._checkpoint_catch_up = False  # set by the thread: the writer checkpoints the rest
        self._checkpointed_at = 0.0
        self._checkpointed_size = 0
        self._commits_unchecked = 0  # commits since the last checkpoint started
        self._lock = gevent.lock.RLock()
        self._tx: _Tx | None = None
        #: Group commit: on, the batch now open (None: no write since the last commit), and
        #: how many callers asked to bypass it (migrations).
        self.write_queue = write_queue
        self._batch: _Batch | None = None
        self._unbatched = 0
        self._memo: OrderedDict[tuple[str, Any], Any] = OrderedDict()
        self._memo_generation = -1
        self._closed = False
        self._on_close: list[Callable[[], None]] = []
        _open_stores.add(self)

    def _connect(self, target: str, synchronous: str) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (sqlite3's implicit
        # transactions would start DEFERRED ones). check_same_thread=False: a lock wait
        # may run on the thread pool, but never concurrently with another call.
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        return conn

    # -- reads ---------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """A number that changes whenever a commit has landed since the last call."""
        self._check_open()
        return int(self._reader.execute("PRAGMA data_version").fetchone()[0])

    def query(self, sql: str, params: Params = ()) -> tuple[Row, ...]:
        """All rows of a read, as an immutable tuple (memoized until the next commit)."""
        if self.on_call is not None:
            self.on_call("query", sql)
        if self._in_own_tx():
            self.stats.queries += 1
            started = perf_counter()
            rows = tuple(self._writer.execute(sql, params).fetchall())
            if Store.on_timed is not None:
                Store.on_timed(self, "query", sql, perf_counter() - started)
            return rows
        return self._memoized(sql, params)

    def one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a read, or None."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def _memoized(self, sql: str, params: Params) -> tuple[Row, ...]:
        generation = self.generation
        if generation != self._memo_generation:
            self._memo.clear()
            self._memo_generation = generation
        key = (sql, _freeze(params))
        try:
            rows: tuple[Row, ...] = self._memo[key]
        except KeyError:
            pass
        else:
            self.stats.memo_hits += 1
            self._memo.move_to_end(key)
            return rows
        self.stats.queries += 1
        started = perf_counter()
        rows = tuple(self._reader.execute(sql, params).fetchall())
        if Store.on_timed is not None:
            Store.on_timed(self, "query", sql, perf_counter() - started)
        self._memo[key] = rows
        if len(self._memo) > _MEMO_LIMIT:
            self._memo.popitem(last=False)
        return rows

    # -- writes --------------------------------------------------------------------------

    def exec(self, sql: str, params: Params = ()) -> tuple[int, int | None]:
        """Run one write; returns ``(rowcount, lastrowid)``. Outside ``tx()`` it is its own tx."""
        if not self._in_own_tx():
            with self.tx():
                return self.exec(sql, params)
        if self.on_call is not None:
            self.on_call("exec", sql)
        self.stats.writes += 1
        started = perf_counter()
        cur = self._writer.execute(sql, params)
        if Store.on_timed is not None:
            Store.on_timed(self, "exec", sql, perf_counter() - started)
        return cur.rowcount, cur.lastrowid

    @contextmanager
    def tx(self) -> Iterator[Store]:
        """A write transaction (``BEGIN IMMEDIATE``); nested calls are savepoints.

        Callbacks registered with ``after_commit`` inside it (the bus's publishes) run once
        the outermost transaction commits, and are dropped if it, or their savepoint, rolls
        back. Never hold a transaction across something that yields (network, sleep).
        With the write queue on, the outermost ``tx()`` is a savepoint of the tick's batch
        and returns once the batch has committed (see the module's docstring).
        """
        self._check_open()
        if self._in_own_tx():
            yield from self._savepoint()
            return
        if self.write_queue and not self._unbatched:
            yield from self._queued()
            return
        self._lock.acquire()
        while self._batch is not None:
            # A batch is open and this transaction must not join it (a migration): commit it
            # first (its own transactions hear how that went).
            self._lock.release()
            self._flush()
            self._lock.acquire()
        try:
            self._begin()
            self._tx = _Tx(owner=getcurrent(), pending=[[]])
            try:
                yield self
            except BaseException:
                self._tx = None
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                self.stats.rollbacks += 1
                raise
            callbacks = self._tx.pending[0]
            self._tx = None
            try:
                self._writer.execute("COMMIT")
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                self.stats.rollbacks += 1
                raise
            self.stats.commits += 1
            self._maybe_checkpoint()
        finally:
            self._tx = None
            self._lock.release()
        for callback in callbacks:
            _safely(callback)

    # -- the write queue (group commit) -------------------------------------------------------

    def _queued(self) -> Iterator[Store]:
        """The outermost ``tx()`` with the write queue on: a savepoint of the open batch."""
        self._lock.acquire()
        batch: _Batch | None = None
        aborted: _Batch | None = None
        full: _Batch | None = None
        try:
            if self._batch is not None and self._batch.size >= _BATCH_MAX:
                full = self._commit_batch()
            if self._batch is None:
                self._begin()
                self._batch = _Batch()
                # Spawned now, it runs after every greenlet already ready to run in this hub
                # tick: their transactions join this batch and share its one commit.
                gevent.spawn(self._commit_later, self._batch)
            batch = self._batch
            self._tx = _Tx(owner=getcurrent(), pending=[[]])
            self._writer.execute("SAVEPOINT orion_batch")
            try:
                yield self
                callbacks = self._tx.pending[0]
                self._tx = None
                self._writer.execute("RELEASE orion_batch")
            except BaseException as exc:
                self._tx = None
                self.stats.rollbacks += 1
                try:
                    if not self._writer.in_transaction:
                        # SQLite itself rolled the whole transaction back (ON CONFLICT ROLLBACK,
                        # a full disk): the other transactions of the batch are gone too.
                        raise exc
                    self._writer.execute("ROLLBACK TO orion_batch")
                    self._writer.execute("RELEASE orion_batch")
                except BaseException:
                    aborted = self._abort_batch(exc)
                raise
            batch.callbacks.extend(callbacks)
            batch.size += 1
        finally:
            self._tx = None
            self._lock.release()
            for finished in (full, aborted):
                if finished is not None:
                    self._finish_batch(finished)
        # Acknowledged means durable: return only once the batch is committed.
        batch.committed.wait()
        if batch.error is not None:
            raise WriteBatchError(
                f"The group commit this transaction joined failed ({batch.error}); nothing of "
                f"its {batch.size} transaction(s) was written. Retry the command."
            ) from batch.error

    def _commit_later(self, batch: _Batch) -> None:
        with self._lock:
            done = self._commit_batch() if self._batch is batch else None
        if done is not None:
            self._finish_batch(done)

    def _commit_batch(self) -> _Batch | None:
        """COMMIT the open batch (the lock is held); finish it with ``_finish_batch`` after."""
        batch, self._batch = self._batch, None
        if batch is None:
            return None
        try:
            self._writer.execute("COMMIT")
        except BaseException as exc:
            self._rollback_quietly()
            self.stats.rollbacks += 1
            batch.error = exc
        else:
            self.stats.commits += 1
            self.stats.batches += 1
            self.stats.batched += batch.size
            self._maybe_checkpoint()
        return batch

    def _abort_batch(self, exc: BaseException) -> _Batch | None:
        batch, self._batch = self._batch, None
        self._rollback_quietly()
        if batch is not None:
            batch.error = exc
            log.error("write batch of %d transaction(s) rolled back: %s", batch.size, exc)
        return batch

    def _rollback_quietly(self) -> None:
        if self._writer.in_transaction:
            try:
                self._writer.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("ROLLBACK of a failed write batch failed")

    def _finish_batch(self, batch: _Batch) -> None:
        # Outside the lock: a publish callback may itself start a transaction.
        if batch.error is None:
            for callback in batch.callbacks:
                _safely(callback)
        batch.committed.set()

    def flush(self) -> None:
        """Commit the write queue's open batch now, and wait for it; a no-op when none is open.

        ``close()`` flushes, and so does a migration. Raises ``WriteBatchError`` if the
        batch failed to commit.
        """
        self._check_open()
        if self._in_own_tx():
            raise RuntimeError(
                "flush() inside tx() would commit a transaction that has not finished; "
                "call it after the with-block."
            )
        batch = self._flush()
        if batch is not None and batch.error is not None:
            raise WriteBatchError(f"The write batch failed to commit: {batch.error}.") from batch.error

    def _flush(self) -> _Batch | None:
        if self._batch is None:
            return None
        with self._lock:
            batch = self._commit_batch()
        if batch is not None:
            self._finish_batch(batch)
        return batch

    @contextmanager
    def _unqueued(self) -> Iterator[None]:
        """Transactions inside commit on their own, never in a batch (migrations)."""
        self._unbatched += 1
        try:
            yield
        finally:
            self._unbatched -= 1

    def _savepoint(self) -> Iterator[Store]:
        tx = self._tx
        assert tx is not None
        tx.depth += 1
        name = f"orion_sp_{tx.depth}"
        tx.pending.append([])
        self._writer.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            self._writer.execute(f"ROLLBACK TO {name}")
            self._writer.execute(f"RELEASE {name}")
            tx.pending.pop()
            tx.depth -= 1
            raise
        self._writer.execute(f"RELEASE {name}")
        done = tx.pending.pop()
        tx.pending[-1].extend(done)
        tx.depth -= 1

    def _begin(self) -> None:
        # Fast path: the lock is free (always, when this process is the only writer).
        self._writer.execute("PRAGMA busy_timeout = 0")
        try:
            self._writer.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        finally:
            self._writer.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        # Another process holds the write lock: wait for it off the hub (DESIGN.md §5).
        self.stats.lock_waits += 1
        waiting = gevent.get_hub().threadpool.spawn(self._writer.execute, "BEGIN IMMEDIATE")
        try:
            waiting.get()
        except BaseException:
            # Interrupted (a gevent.Timeout, a kill) while the thread still waits: a thread
            # cannot be cancelled, and its BEGIN may yet succeed. Keep the writer (and the
            # lock) until it is done and undo that BEGIN, or every later tx() would fail
            # with "cannot start a transaction within a transaction". Bounded by busy_timeout.
            while not waiting.ready():
                try:
                    waiting.wait()
                except BaseException:  # noqa: S112 - a second interruption must not skip the cleanup
                    continue
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            raise

    # -- checkpoints, off the hub ---------------------------------------------------------------

    def _maybe_checkpoint(self) -> None:
        """After a commit: start a PASSIVE checkpoint on the thread pool if the WAL has grown.

        Costs one ``stat`` on the hub. The thread clears ``_checkpointing`` itself (a plain
        attribute), so this works in a process whose hub never runs (a CLI, a script). Never
        raises an error: the commit before it stands, and a checkpoint is only housekeeping.
        """
        try:
            self._checkpoint_if_due()
        except Exception:
            log.exception("could not start a WAL checkpoint of %s", self.path)

    def _checkpoint_if_due(self) -> None:
        self._commits_unchecked += 1
        if self._checkpointing:
            return
        error, self._checkpoint_error = self._checkpoint_error, None
        if error is not None:
            self.stats.checkpoint_errors += 1
            log.warning("WAL checkpoint of %s failed (retried after the next commits): %s", self.path, error)
        if self._checkpoint_catch_up and getcurrent() is not gevent.get_hub():
            # Commits kept landing during the thread's passes, so the WAL never got to restart.
            # This greenlet holds the write lock: one more pass on the pool now copies what
            # is left while no commit can land. Writers wait for it; the hub does not.
            self._checkpoint_catch_up = False
            self.stats.checkpoint_catch_ups += 1
            self._checkpointing = True
            try:
                gevent.get_hub().threadpool.apply(self._checkpoint, (1, True))
            except Exception:
                self._checkpointing = False  # never started (the thread clears it otherwise)
                raise
            return
        try:
            size = os.stat(self.path + "-wal").st_size
        except OSError:
            return
        now = perf_counter()
        if size < self._checkpoint_bytes:
            return
        if (
            size < self._checkpointed_size + self._checkpoint_bytes
            and now - self._checkpointed_at < _CHECKPOINT_EVERY
            and self._commits_unchecked < _CHECKPOINT_COMMITS
        ):
            return
        self._checkpointed_at, self._checkpointed_size, self._commits_unchecked = now, size, 0
        self._checkpointing = True
        try:
            gevent.get_hub().threadpool.spawn(self._checkpoint)
        except BaseException:
            self._checkpointing = False
            raise

    def _checkpoint(self, passes: int = _CHECKPOINT_PASSES, final: bool = False) -> None:
        """On a pool thread: copy the WAL into the database as far as readers allow.

        Repeats while commits land during a pass; if they never stop, asks the writer to hold
        them for one ``final`` pass (``_checkpoint_catch_up``).
        """
        try:
            if self._checkpointer is None:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                self._checkpointer = conn
            last = -1
            for _ in range(passes):
                _busy, frames, _done = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.stats.checkpoints += 1
                if frames == last:  # nothing landed during the last pass: caught up
                    break
                last = frames
            else:
                self._checkpoint_catch_up = not final
        except BaseException as exc:  # reported on the hub by the next _maybe_checkpoint
            self._checkpoint_error = exc
        finally:
            self._checkpointing = False

    def _close_checkpointer(self) -> None:
        # A checkpoint in flight is bounded by the WAL's size; wait on a real sleep, which works
        # whichever greenlet (or none) is closing the store.
        while self._checkpointing:
            _os_sleep(0.002)
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current greenlet's transaction commits; now if none."""
        if self._in_own_tx():
            assert self._tx is not None
            self._tx.pending[-1].append(callback)
        else:
            _safely(callback)

    def in_transaction_anywhere(self) -> bool:
        """True when any greenlet holds a write transaction on this store."""
        return self._tx is not None

    def in_transaction(self) -> bool:
        """True when the calling greenlet is inside ``tx()``."""
        return self._in_own_tx()

    def _in_own_tx(self) -> bool:
        tx = self._tx
        return tx is not None and tx.owner is getcurrent()

    # -- migrations ----------------------------------------------------------------------

    def migrate(self, owner: str, directory: str | Path) -> list[str]:
        """Apply ``directory``'s numbered ``.sql`` files not yet applied; returns their names.

        Each file runs in its own transaction and is recorded in ``_orion_migrations`` with
        its SHA-256. A file edited after it was applied stops the boot: applied history is
        never rewritten silently. Migrations never join the write queue's batches.
        """
        with self._unqueued():
            return self._migrate(owner, directory)

    def _migrate(self, owner: str, directory: str | Path) -> list[str]:
        self.exec(
            "CREATE TABLE IF NOT EXISTS _orion_migrations ("
            " owner TEXT NOT NULL, name TEXT NOT NULL, checksum TEXT NOT NULL,"
            " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),"
            " PRIMARY KEY (owner, name))"
        )
        directory = Path(directory)
        files = sorted(p for p in directory.glob("*.sql") if p.is_file())
        for path in files:
            if not re.match(r"^\d{4}_[a-z0-9_]+\.sql$", path.name):
                raise MigrationError(
                    f"{path}: migration files are named NNNN_lower_snake.sql "
                    f"(e.g. 0001_create_todos.sql); rename {path.name!r}."
                )
        applied = {
            row["name"]: row["checksum"]
            for row in self._writer.execute("SELECT name, checksum FROM _orion_migrations WHERE owner = ?", (owner,))
        }
        ran = []
        for path in files:
            sql = path.read_text(encoding="utf-8")
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if path.name in applied:
                if applied[path.name] != checksum:
                    raise MigrationError(
                        f"{path} was edited after it was applied to {self.path} "
                        f"(recorded sha256 {applied[path.name][:12]}…, file now {checksum[:12]}…). "
                        "Applied migrations are history: restore the file as it was and put the "
                        "change in a new, higher-numbered migration."
                    )
                continue
            with self.tx():
                # Another process (a second gunicorn worker on the Redis bus) may have applied
                # it since we looked: the write lock is ours now, so look again.
                if self._writer.execute(
                    "SELECT 1 FROM _orion_migrations WHERE owner = ? AND name = ? AND checksum = ?",
                    (owner, path.name, checksum),
                ).fetchone():
                    continue
                try:
                    for statement in _statements(sql):
                        self._writer.execute(statement)
                except sqlite3.Error as exc:
                    raise MigrationError(f"{path} failed: {exc}. Nothing of it was applied.") from exc
                self._writer.execute(
                    "INSERT INTO _orion_migrations (owner, name, checksum) VALUES (?, ?, ?)",
                    (owner, path.name, checksum),
                )
            ran.append(path.name)
            log.info("migrated %s %s", owner, path.name)
        return ran

    # -- lifecycle -----------------------------------------------------------------------

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the store closes (used to end streams before the file)."""
        self._on_close.append(callback)

    def close(self) -> None:
        """Close both connections (idempotent). Waits for a running transaction to end;
        the write queue's open batch commits first (a durable commit at shutdown)."""
        if self._closed:
            return
        for callback in self._on_close:
            _safely(callback)
        with self._lock:
            batch = self._commit_batch()
            self._closed = True
            self._memo.clear()
            try:
                self._writer.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            self._close_checkpointer()
            self._writer.close()
            self._reader.close()
        _open_stores.discard(self)
        if batch is not None:
            self._finish_batch(batch)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"The store {self.path!r} is closed; no reads or writes after close().")

    def __repr__(self) -> str:
        return f"<Store {self.path!r}{' closed' if self._closed else ''}>"


def open_stores() -> list[Store]:
    """Stores not yet closed in this process (the test suite's leak check reads it)."""
    return list(_open_stores)


def _statements(script: str) -> Iterator[str]:
    """Split a SQL script into complete statements (sqlite3.complete_statement decides)."""
    buffer = ""
    # Cut after every ';', not every line: two statements on one line are two statements
    # (sqlite3 executes one at a time). A ';' inside a string, a comment or a trigger's
    # BEGIN...END leaves the buffer incomplete, so it is not taken as an end.
    for piece in re.split(r"(?<=;)", script):
        buffer += piece
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if statement.strip(" ;\n"):
                yield statement
    if buffer.strip() and not _only_comments(buffer):
        raise MigrationError(f"Incomplete SQL statement at the end of the file: {buffer.strip()[:80]!r}")


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


def _freeze(params: Params) -> Any:
    if isinstance(params, dict):
        return tuple(sorted(params.items()))
    return tuple(params)


def _safely(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # a subscriber must never break the writer that published
        log.exception("after-commit callback %r failed", callback)
