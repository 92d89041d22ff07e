"""app.belt.store with write_queue=True: group commit that still answers only when durable.

The transactions of one hub tick share one SQLite transaction (one fsync); each stays atomic
through a savepoint and reads its own writes; publishes wait for the batch; ``tx()`` returns
only once its batch committed; ``flush()``, ``close()`` and migrations commit at once.
(tests/features/test_jobs_admin.py runs one app server with the write queue on.)
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.event
import pytest
from flask import Flask

from app.belt import settings
from app.belt.store import Store, WriteBatchError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db.sqlite", write_queue=True)
    s.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    yield s
    s.close()


def names(store: Store) -> list[str]:
    return [row["name"] for row in store.query("SELECT name FROM items ORDER BY id")]


def on_disk(store: Store) -> list[str]:
    """What another connection (another process) sees: only committed rows."""
    with sqlite3.connect(store.path) as other:
        rows = [r[0] for r in other.execute("SELECT name FROM items ORDER BY id")]
    other.close()
    return rows


def insert_in_greenlets(store: Store, items: list[str]) -> list[gevent.Greenlet]:
    def add(name: str) -> None:
        with store.tx():
            store.exec("INSERT INTO items (name) VALUES (?)", (name,))

    return [gevent.spawn(add, name) for name in items]


def test_the_writes_of_one_tick_share_one_commit(store: Store) -> None:
    batches, commits = store.stats.batches, store.stats.commits
    greenlets = insert_in_greenlets(store, [f"item-{i}" for i in range(20)])
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert store.stats.batches - batches == 1
    assert store.stats.commits - commits == 1
    assert store.stats.batched >= 20
    assert sorted(on_disk(store)) == sorted(f"item-{i}" for i in range(20))


def test_one_greenlets_consecutive_transactions_each_wait_for_their_own_commit(store: Store) -> None:
    batches = store.stats.batches
    for i in range(5):
        with store.tx():
            store.exec("INSERT INTO items (name) VALUES (?)", (f"n{i}",))
        # acknowledged means durable: another connection sees it the moment tx() returns
        assert on_disk(store)[-1] == f"n{i}"
    assert store.stats.batches - batches == 5


def test_a_transaction_reads_its_own_writes_and_nobody_else_sees_them_before_the_commit(store: Store) -> None:
    inside: list[list[str]] = []
    outside: list[list[str]] = []
    released = gevent.event.Event()

    def writer() -> None:
        with store.tx():
            store.exec("INSERT INTO items (name) VALUES ('mine')")
            inside.append(names(store))
        released.set()

    def reader() -> None:
        # runs after the writer's tx() body, before its batch commits
        outside.append(names(store))
        outside.append(on_disk(store))

    g1, g2 = gevent.spawn(writer), gevent.spawn(reader)
    gevent.joinall([g1, g2], timeout=10, raise_error=True)
    assert inside == [["mine"]]
    assert outside == [[], []]
    assert released.is_set() and names(store) == ["mine"]


def test_a_failing_transaction_rolls_back_only_itself(store: Store) -> None:
    outcomes: dict[str, str] = {}

    def add(name: str, fail: bool) -> None:
        try:
            with store.tx():
                store.exec("INSERT INTO items (name) VALUES (?)", (name,))
                store.exec("INSERT INTO items (name) VALUES (?)", (name + "-extra",))
                if fail:
                    raise ValueError("refused")
            outcomes[name] = "ok"
        except ValueError:
            outcomes[name] = "refused"

    greenlets = [gevent.spawn(add, "a", False), gevent.spawn(add, "b", True), gevent.spawn(add, "c", False)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert outcomes == {"a": "ok", "b": "refused", "c": "ok"}
    assert sorted(on_disk(store)) == ["a", "a-extra", "c", "c-extra"]


def test_a_nested_tx_is_still_a_savepoint(store: Store) -> None:
    with store.tx():
        store.exec("INSERT INTO items (name) VALUES ('outer')")
        with pytest.raises(ValueError), store.tx():
            store.exec("INSERT INTO items (name) VALUES ('inner')")
            raise ValueError("inner failed")
    assert names(store) == ["outer"]


def test_publishes_are_delivered_after_the_batch_commits_and_before_tx_returns(store: Store) -> None:
    heard: list[tuple[str, list[str]]] = []
    returned: list[str] = []

    def add(name: str) -> None:
        with store.tx():
            store.exec("INSERT INTO items (name) VALUES (?)", (name,))
            store.after_commit(lambda: heard.append((name, on_disk(store))))
        returned.append(name)
        assert any(n == name for n, _ in heard)  # its publish already ran

    gevent.joinall([gevent.spawn(add, "x"), gevent.spawn(add, "y")], timeout=10, raise_error=True)
    # both publishes ran after the one commit: each saw both rows on disk
    assert sorted(n for n, _ in heard) == ["x", "y"]
    assert all(sorted(rows) == ["x", "y"] for _, rows in heard)
    assert sorted(returned) == ["x", "y"]


def test_the_publishes_of_a_rolled_back_transaction_are_dropped(store: Store) -> None:
    heard: list[str] = []
    with pytest.raises(RuntimeError), store.tx():
        store.after_commit(lambda: heard.append("dropped"))
        raise RuntimeError("abort")
    with store.tx():
        store.after_commit(lambda: heard.append("kept"))
    assert heard == ["kept"]


def test_a_batch_that_fails_to_commit_fails_every_transaction_in_it(store: Store) -> None:
    store.exec(
        "CREATE TABLE tags (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    errors: dict[str, BaseException] = {}
    heard: list[str] = []

    def add(name: str, bad: bool) -> None:
        try:
            with store.tx():
                store.exec("INSERT INTO items (name) VALUES (?)", (name,))
                if bad:
                    store.exec("INSERT INTO tags (item_id) VALUES (4242)")  # checked only at COMMIT
                store.after_commit(lambda: heard.append(name))
        except WriteBatchError as exc:
            errors[name] = exc

    gevent.joinall([gevent.spawn(add, "good", False), gevent.spawn(add, "bad", True)], timeout=10, raise_error=True)
    assert set(errors) == {"good", "bad"}
    assert "FOREIGN KEY" in str(errors["good"]) and "Retry" in str(errors["good"])
    assert isinstance(errors["good"], sqlite3.DatabaseError)
    assert heard == []
    assert on_disk(store) == []
    # the store stays usable
    store.exec("INSERT INTO items (name) VALUES ('after')")
    assert names(store) == ["after"]


def test_sqlite_rolling_back_the_whole_batch_fails_the_others_in_it(store: Store) -> None:
    store.exec("INSERT INTO items (name) VALUES ('taken')")
    results: dict[str, str] = {}

    def good() -> None:
        try:
            with store.tx():
                store.exec("INSERT INTO items (name) VALUES ('innocent')")
            results["good"] = "ok"
        except WriteBatchError:
            results["good"] = "batch failed"

    def rogue() -> None:
        try:
            with store.tx():
                # ON CONFLICT ROLLBACK ends the whole SQLite transaction, not just a savepoint
                store.exec("INSERT OR ROLLBACK INTO items (name) VALUES ('taken')")
        except sqlite3.IntegrityError:
            results["rogue"] = "refused"

    gevent.joinall([gevent.spawn(good), gevent.spawn(rogue)], timeout=10, raise_error=True)
    assert results == {"good": "batch failed", "rogue": "refused"}
    assert on_disk(store) == ["taken"]
    store.exec("INSERT INTO items (name) VALUES ('next')")
    assert on_disk(store) == ["taken", "next"]


def in_the_same_tick(store: Store, name: str, then: object) -> list[object]:
    """Run a tx() in one greenlet and ``then()`` in the next, before the batch's commit runs."""
    seen: list[object] = []

    def add() -> None:
        with store.tx():
            store.exec("INSERT INTO items (name) VALUES (?)", (name,))
        seen.append("returned")

    def after() -> None:
        seen.append(on_disk(store))  # the body ended; its batch has not committed yet
        then()  # type: ignore[operator]
        seen.append(on_disk(store))

    gevent.joinall([gevent.spawn(add), gevent.spawn(after)], timeout=10, raise_error=True)
    return seen


def test_flush_commits_the_open_batch_at_once(store: Store) -> None:
    batches = store.stats.batches
    seen = in_the_same_tick(store, "queued", store.flush)
    assert seen == [[], ["queued"], "returned"]
    assert store.stats.batches - batches == 1
    store.flush()  # nothing open: a no-op
    assert store.stats.batches - batches == 1


def test_flush_inside_a_transaction_is_refused(store: Store) -> None:
    with pytest.raises(RuntimeError, match=r"flush\(\) inside tx\(\)"), store.tx():
        store.flush()


def test_close_commits_the_open_batch(tmp_path: Path) -> None:
    s = Store(tmp_path / "db.sqlite", write_queue=True)
    s.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    seen: list[object] = []

    def add() -> None:
        with s.tx():
            s.exec("INSERT INTO items (name) VALUES ('at shutdown')")
        seen.append("returned")

    def shutdown() -> None:
        seen.append(s.stats.batches)
        s.close()

    gevent.joinall([gevent.spawn(add), gevent.spawn(shutdown)], timeout=10, raise_error=True)
    assert seen == [1, "returned"]  # one batch so far (the CREATE); close() committed the second
    with sqlite3.connect(tmp_path / "db.sqlite") as other:
        assert [r[0] for r in other.execute("SELECT name FROM items")] == ["at shutdown"]
    other.close()


def test_migrations_never_batch(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_notes.sql").write_text("CREATE TABLE notes (body TEXT);")
    batches, commits = store.stats.batches, store.stats.commits
    ran: list[list[str]] = []
    seen = in_the_same_tick(store, "before the migration", lambda: ran.append(store.migrate("notes", folder)))
    assert ran == [["0001_notes.sql"]]
    assert seen == [[], ["before the migration"], "returned"]
    # the open batch committed on its own first; the migration's transactions were not batches
    assert store.stats.batches - batches == 1
    assert store.stats.commits - commits >= 3


def test_a_caller_killed_while_waiting_for_the_commit_does_not_undo_the_write(store: Store) -> None:
    # Once its body ended, a transaction is part of the batch and commits with the others,
    # even if its caller is interrupted while waiting (a request timeout): the requester saw
    # an error though the write stands, the case an Idempotency-Key makes safe to retry.
    def add() -> None:
        with store.tx():
            store.exec("INSERT INTO items (name) VALUES ('committed anyway')")

    g = gevent.spawn(add)
    killer = gevent.spawn(lambda: g.kill(block=False))  # runs while add() waits for its batch
    gevent.joinall([g, killer], timeout=5)
    assert g.dead
    assert on_disk(store) == ["committed anyway"]


CRASH = """
import os, sys, gevent
from app.belt.store import Store
store = Store(sys.argv[1], write_queue=True, synchronous="FULL")
with store.tx():
    store.exec("INSERT INTO items (name) VALUES ('durable')")
print("acknowledged durable", flush=True)

def waiting():
    with store.tx():
        store.exec("INSERT INTO items (name) VALUES ('in the batch')")
    print("acknowledged in the batch", flush=True)   # never reached: the process dies first

def crashing():
    with store.tx():
        store.exec("INSERT INTO items (name) VALUES ('crashing')")
        os._exit(9)   # the process dies before the batch commits

gevent.joinall([gevent.spawn(waiting), gevent.spawn(crashing)])
"""


def test_a_crash_before_the_batch_commits_loses_only_that_batch_and_never_corrupts(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    s = Store(db)
    s.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    s.close()
    proc = subprocess.run([sys.executable, "-c", CRASH, str(db)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 9, proc.stderr
    # only what was acknowledged survives; the unacknowledged batch is cleanly gone
    assert proc.stdout.splitlines() == ["acknowledged durable"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [r[0] for r in conn.execute("SELECT name FROM items")] == ["durable"]
    conn.close()


def test_orion_write_queue_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORION_DB", str(tmp_path / "app.sqlite"))
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.delenv("ORION_WRITE_QUEUE", raising=False)
    assert settings(Flask("a"))["ORION_WRITE_QUEUE"] is False
    monkeypatch.setenv("ORION_WRITE_QUEUE", "1")
    assert settings(Flask("b"))["ORION_WRITE_QUEUE"] is True
    assert os.environ["ORION_WRITE_QUEUE"] == "1"
