"""db-per-tenant (app/belt/tenancy.py), in process: lazy open, isolation under 1,000 interleaved
greenlets, eviction that never closes a store in use, and the per-customer operations
(backup during a write burst, export, restore in place, delete)."""

from __future__ import annotations

import io
import json
import os
import random
import sqlite3
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import gevent
import pytest

from app.belt import Bus, Runtime, Store, Tenants, UnknownTenant
from app.belt.ctx import BoundBus

TODOS = """CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0);"""


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_todos.sql").write_text(TODOS)
    return folder


@pytest.fixture
def tenants(tmp_path: Path, migrations: Path) -> Iterator[Tenants]:
    t = Tenants(tmp_path / "tenants", migrate=lambda store: store.migrate("todos", migrations) and None)
    yield t
    t.close_all()


def titles(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT title FROM todos ORDER BY id")]


def test_a_tenant_opens_lazily_and_only_when_it_exists(tenants: Tenants) -> None:
    with pytest.raises(UnknownTenant):
        tenants.store("acme")
    assert not tenants.path("acme").exists() and tenants.stats.creates == 0
    store = tenants.store("acme", create=True)
    assert tenants.store("acme") is store
    assert (tenants.stats.opens, tenants.stats.creates) == (1, 1)
    assert tenants.keys() == ["acme"]
    with pytest.raises(ValueError, match="is not a tenant key"):
        tenants.store("../acme", create=True)


def test_1000_interleaved_greenlets_each_see_only_their_own_tenant(tmp_path: Path, migrations: Path) -> None:
    keys = [f"t{i}" for i in range(10)]
    # Fewer stores may stay open than there are tenants: eviction runs on every open, and must
    # never close a store a greenlet still holds between two statements.
    tenants = Tenants(tmp_path / "tenants", migrate=lambda s: s.migrate("todos", migrations) and None, max_open=4)
    for key in keys:
        tenants.store(key, create=True)
    bus = Bus()
    rt = Runtime(store=Store(tmp_path / "main.sqlite"), bus=bus)
    rt.tenants, rt.tenant_store, rt.tenant_stores = tenants, tenants.store, tenants.open_stores
    heard: Counter[str] = Counter()
    unsubscribe = [
        BoundBus(bus, rt.store, prefix=f"{k}:").subscribe("todos", lambda k=k: heard.update([k])) for k in keys
    ]
    unsubscribe.append(bus.subscribe("todos", lambda: heard.update(["<unscoped>"])))
    wrong: list[str] = []
    rng = random.Random(7)

    def worker(n: int) -> None:
        key = keys[n % len(keys)]
        ctx = rt.ctx_for(key)
        gevent.sleep(rng.random() / 1000)
        with ctx.store.tx():
            ctx.store.exec("INSERT INTO todos (title) VALUES (?)", (f"{key}:{n}",))
            ctx.bus.publish("todos")
        gevent.sleep(0)
        seen = ctx.store.query("SELECT title FROM todos")
        wrong.extend(f"{key} saw {r['title']}" for r in seen if not r["title"].startswith(f"{key}:"))
        gevent.sleep(rng.random() / 1000)
        again = rt.ctx_for(key).store.query("SELECT title FROM todos WHERE title = ?", (f"{key}:{n}",))
        if len(again) != 1:
            wrong.append(f"{key} lost {key}:{n}")

    started = time.monotonic()
    try:
        greenlets = [gevent.spawn(worker, n) for n in range(1000)]
        gevent.joinall(greenlets, raise_error=True)
    finally:
        gevent.killall(greenlets)
        for stop in unsubscribe:
            stop()
        tenants.close_all()
        rt.store.close()
    elapsed = time.monotonic() - started
    assert not wrong, wrong[:5]
    for key in keys:
        rows = titles(tenants.path(key))
        assert len(rows) == 100 and all(t.startswith(f"{key}:") for t in rows)
    assert heard == Counter({k: 100 for k in keys})  # each publish woke only its own tenant
    assert elapsed < 60, elapsed


def test_eviction_closes_idle_stores_never_leased_or_fresh_ones(tmp_path: Path, migrations: Path) -> None:
    tenants = Tenants(tmp_path / "t", migrate=lambda s: s.migrate("todos", migrations) and None, max_open=2, idle=0)
    a = tenants.store("a", create=True)
    a.leases += 1  # a live stream reads it
    b = tenants.store("b", create=True)
    tenants.store("c", create=True)
    assert not a.closed and b.closed  # b: least recently used and idle; a: leased
    a.leases -= 1
    fresh = Tenants(tmp_path / "t", migrate=lambda s: s.migrate("todos", migrations) and None, max_open=1, idle=60)
    held = fresh.store("a")
    fresh.store("b")
    assert not held.closed  # handed out within `idle` seconds: a request may still be using it
    fresh.close_all()
    tenants.close_all()


def test_a_backup_during_a_write_burst_holds_every_acknowledged_row(tenants: Tenants, tmp_path: Path) -> None:
    store = tenants.store("acme", create=True)
    with store.tx():
        for i in range(3000):  # some pages to copy
            store.exec("INSERT INTO todos (title) VALUES (?)", (f"seed {i} " + "x" * 100,))
    acked: list[tuple[float, int]] = []
    stop = False

    def writer(w: int) -> None:
        n = 0
        while not stop:
            _, rowid = store.exec("INSERT INTO todos (title) VALUES (?)", (f"burst {w}.{n}",))
            acked.append((time.monotonic(), rowid))  # acknowledged: committed
            n += 1
            gevent.sleep(0)

    writers = [gevent.spawn(writer, w) for w in range(4)]
    gevent.sleep(0.05)
    began = time.monotonic()
    before = {rowid for at, rowid in acked if at < began}
    # The backup blocks for the copy, so the web process runs it on the thread pool; the
    # writers keep committing meanwhile.
    dest = gevent.get_hub().threadpool.apply(tenants.backup, ("acme", tmp_path / "backups" / "acme.sqlite"))
    during = len([1 for at, _ in acked if at >= began])
    stop = True
    gevent.joinall(writers, raise_error=True)
    with closing(sqlite3.connect(dest)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        ids = [r[0] for r in conn.execute("SELECT id FROM todos ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1))  # a snapshot: a prefix of the commits, no holes
    assert before <= set(ids)
    assert set(ids) <= {rowid for _, rowid in acked} | set(range(1, 3001))
    assert during > 0, "no write landed while the backup ran: the test proves nothing"
    assert not list(dest.parent.glob("*.partial")) and not Path(f"{dest}-wal").exists()


def test_export_is_a_zip_with_a_json_file_per_table(tenants: Tenants) -> None:
    store = tenants.store("acme", create=True)
    store.exec("INSERT INTO todos (title, done) VALUES ('ship it', 1)")
    with zipfile.ZipFile(io.BytesIO(tenants.export("acme"))) as zf:
        assert {"todos.json", "_orion_migrations.json", "manifest.json"} <= set(zf.namelist())
        assert json.loads(zf.read("todos.json")) == [{"id": 1, "title": "ship it", "done": 1}]
        assert json.loads(zf.read("manifest.json"))["tenant"] == "acme"
    with pytest.raises(UnknownTenant):
        tenants.export("nobody")


def test_restore_replaces_in_place_and_migrates(tenants: Tenants, tmp_path: Path, migrations: Path) -> None:
    store = tenants.store("acme", create=True)
    store.exec("INSERT INTO todos (title) VALUES ('kept')")
    backup = tenants.backup("acme", tmp_path)  # a folder: named after the tenant and the time
    assert backup.parent == tmp_path and backup.name.startswith("acme-")
    store.exec("INSERT INTO todos (title) VALUES ('after the backup')")
    inode = os.stat(tenants.path("acme")).st_ino
    (migrations / "0002_tags.sql").write_text("CREATE TABLE tags (name TEXT);")  # shipped since
    tenants.restore("acme", backup)
    # The open store (and any other process with the file open) sees the restored rows.
    assert [r["title"] for r in store.query("SELECT title FROM todos")] == ["kept"]
    assert tenants.store("acme") is store and os.stat(tenants.path("acme")).st_ino == inode
    assert store.query("SELECT count(*) AS n FROM tags")[0]["n"] == 0
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(ValueError, match="not a sound SQLite database"):
        tenants.restore("acme", garbage)
    assert [r["title"] for r in store.query("SELECT title FROM todos")] == ["kept"]


def test_delete_drops_directory_rows_then_every_file(tenants: Tenants) -> None:
    forgotten: list[str] = []
    tenants.forget = lambda key: forgotten.append(key) or 3
    store = tenants.store("acme", create=True)
    store.exec("INSERT INTO todos (title) VALUES ('gone')")
    report = tenants.delete("acme")
    assert forgotten == ["acme"] and report["directory_rows"] == 3
    assert store.closed and tenants.keys() == []
    assert not list(tenants.root.glob("acme*"))
    with pytest.raises(UnknownTenant):
        tenants.store("acme")


def test_a_file_removed_or_replaced_by_another_process_is_reopened(tenants: Tenants, tmp_path: Path) -> None:
    store = tenants.store("acme", create=True)
    store.exec("INSERT INTO todos (title) VALUES ('old')")
    other = Tenants(tenants.root, migrate=tenants.migrate)  # `flask orion tenant delete`, elsewhere
    other.delete("acme")
    with pytest.raises(UnknownTenant):
        tenants.store("acme")
    assert store.closed
    fresh = tenants.store("acme", create=True)  # the name is created again: a new, empty file
    assert fresh is not store and fresh.query("SELECT * FROM todos") == ()
    other.close_all()
