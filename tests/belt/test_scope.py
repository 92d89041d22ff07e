"""Shared-db tenancy (app/belt/scope.py): scoped statements, and the oracle that refuses the rest.

One SQLite file holds two tenants' rows in three tenant tables (projects → tasks → comments,
with foreign keys and cascades), beside shared tables, a view and triggers. Every tenant table
is walked: reached raw in any way (SELECT, count, INSERT, UPDATE, DELETE, a JOIN, a subquery,
a CTE, INSERT ... SELECT, a view, a trigger) it raises in development; through a scope it
sees and touches only its own tenant's rows.
"""

from __future__ import annotations

import io
import json
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.event
import pytest
from flask import Flask

from app import belt
from app.belt.scope import (
    Oracle,
    ScopeError,
    SharedTenants,
    install_oracle,
    oracle_of,
    tenant_scope,
    unscoped,
)
from app.belt.store import Store

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
TENANT_TABLES = ["projects", "tasks", "comments"]  # parents first
CANARY = "CANARY-globex-7f3a"

SCHEMA = """
CREATE TABLE plans (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, what TEXT NOT NULL);
CREATE TABLE projects (id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE comments (
    id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL,
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE, body TEXT NOT NULL
);
CREATE VIEW open_tasks AS SELECT * FROM tasks WHERE done = 0;
-- A trigger on a shared table that writes a tenant table, and one that reads one.
CREATE TRIGGER events_spill AFTER INSERT ON events
BEGIN INSERT INTO comments (tenant_id, task_id, body) VALUES ('acme', 1, NEW.what); END;
CREATE TRIGGER plans_peek AFTER UPDATE OF name ON plans
BEGIN UPDATE plans SET name = (SELECT title FROM tasks LIMIT 1) WHERE id = NEW.id AND 0; END;
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "shared.sqlite")
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "0001_shared.sql").write_text(SCHEMA)
    s.migrate("shared", tmp_path / "schema")
    s.exec("INSERT INTO plans (name) VALUES ('free')")
    yield s
    s.close()


def seed(store: Store) -> dict[str, dict[str, int]]:
    """Two tenants, a project, two tasks and a comment each; globex's text is all canary."""
    ids: dict[str, dict[str, int]] = {}
    for key, word in (("acme", "acme"), ("globex", CANARY)):
        scope = tenant_scope(store, key)
        project = scope.insert("projects", name=f"{word} project")
        task = scope.insert("tasks", project_id=project, title=f"{word} task")
        scope.insert("tasks", project_id=project, title=f"{word} done", done=1)
        comment = scope.insert("comments", task_id=task, body=f"{word} comment")
        ids[key] = {"project": project, "task": task, "comment": comment}
    return ids


@pytest.fixture
def oracle(store: Store) -> Oracle:
    return install_oracle(store)


def counts(store: Store) -> dict[str, int]:
    with unscoped(store):
        return {t: store.one(f"SELECT count(*) AS n FROM {t}")["n"] for t in TENANT_TABLES}  # type: ignore[index]


def raw_statements(table: str) -> list[str]:
    return [
        f"SELECT * FROM {table}",
        f"SELECT count(*) FROM {table}",
        f"SELECT * FROM {table} WHERE tenant_id = 'acme'",  # even with the right predicate: raw is raw
        f"SELECT * FROM {table.upper()}",
        f"INSERT INTO {table} (tenant_id) VALUES ('acme')",
        f"UPDATE {table} SET tenant_id = tenant_id",
        f"DELETE FROM {table}",
        f"DELETE FROM {table} WHERE tenant_id = 'globex'",
        f"SELECT plans.name FROM plans JOIN {table} ON {table}.id = plans.id",
        f"SELECT name FROM plans WHERE id IN (SELECT id FROM {table})",
        f"SELECT EXISTS (SELECT 1 FROM {table} WHERE tenant_id = 'globex')",
        f"WITH x AS (SELECT * FROM {table}) SELECT count(*) FROM x",
        f"INSERT INTO plans (name) SELECT tenant_id FROM {table}",
        f"UPDATE plans SET name = (SELECT max(tenant_id) FROM {table})",
    ]


def test_the_oracle_covers_every_table_with_a_tenant_column(store: Store, oracle: Oracle) -> None:
    with_column = {
        r["name"]
        for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        if any(c["name"] == "tenant_id" for c in store.query(f"PRAGMA table_info({r['name']})"))
    }
    assert with_column == set(TENANT_TABLES)
    assert oracle.tables == with_column
    assert oracle_of(store) is oracle


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_every_tenant_table_is_reached_only_through_the_scope(store: Store, oracle: Oracle, table: str) -> None:
    seed(store)
    before = counts(store)
    for sql in raw_statements(table):
        n = len(oracle.violations)
        with pytest.raises(sqlite3.DatabaseError, match=r"prohibited|not authorized"):
            if sql.startswith(("SELECT", "WITH")):
                store.query(sql)
            else:
                store.exec(sql)
        assert len(oracle.violations) > n, sql
        assert table in oracle.violations[-1] and "tenant_scope" in oracle.violations[-1]
        with pytest.raises(sqlite3.DatabaseError), store.tx():  # on the writer, inside a transaction
            store.query(sql)
    assert counts(store) == before
    # ... and through its scope, the same table answers with the tenant's own rows only.
    rows = tenant_scope(store, "acme").all(table)
    assert rows and {r["tenant_id"] for r in rows} == {"acme"}


def test_views_and_triggers_cannot_carry_raw_access(store: Store, oracle: Oracle) -> None:
    seed(store)
    before = counts(store)
    with pytest.raises(sqlite3.DatabaseError):
        store.query("SELECT * FROM open_tasks")  # a view over a tenant table
    with pytest.raises(sqlite3.DatabaseError):
        store.exec("INSERT INTO events (what) VALUES ('spill')")  # its trigger writes comments
    assert "by trigger 'events_spill'" in oracle.violations[-1]
    with pytest.raises(sqlite3.DatabaseError):
        store.exec("UPDATE plans SET name = 'pro'")  # its trigger reads tasks
    assert counts(store) == before
    assert store.query("SELECT count(*) AS n FROM events")[0]["n"] == 0
    # Shared tables stay plain SQL.
    assert store.one("SELECT name FROM plans")["name"] == "free"  # type: ignore[index]
    store.exec("INSERT INTO plans (name) VALUES ('team')")


def test_a_raw_statement_with_a_scoped_statements_text_is_checked_afresh(store: Store, oracle: Oracle) -> None:
    """sqlite3 caches prepared statements by text and the authorizer runs only at prepare:
    after each scoped call the oracle re-arms, which expires them."""
    seed(store)
    acme = tenant_scope(store, "acme")
    assert len(acme.all("tasks")) == 2
    generated = 'SELECT * FROM "tasks" WHERE "tenant_id" = ?'
    with pytest.raises(sqlite3.DatabaseError):
        store.query(generated, ("globex",))
    with store.tx():
        acme.all("tasks")  # prepared on the writer now
        with pytest.raises(sqlite3.DatabaseError):
            store.query(generated, ("globex",))


def test_scoped_crud_sees_and_touches_only_its_own_rows(store: Store, oracle: Oracle) -> None:
    ids = seed(store)
    acme, globex = tenant_scope(store, "acme"), tenant_scope(store, "globex")
    theirs = ids["globex"]
    for table in TENANT_TABLES:
        rows = acme.all(table)
        assert rows and all(r["tenant_id"] == "acme" for r in rows)
        assert CANARY not in repr([tuple(r) for r in rows])
    assert acme.one("tasks", "id = ?", (theirs["task"],)) is None
    assert [r["title"] for r in acme.all("tasks", "done = 0 OR 1 = 1", order="id")] == ["acme task", "acme done"]
    assert acme.one("tasks", "title LIKE ?", (f"%{CANARY}%",)) is None
    # Writes naming another tenant's row do nothing; globex's rows are untouched.
    assert acme.update("tasks", theirs["task"], title="pwned") == 0
    assert acme.delete("comments", theirs["comment"]) == 0
    assert acme.delete("projects", theirs["project"]) == 0
    assert globex.one("tasks", "id = ?", (theirs["task"],))["title"] == f"{CANARY} task"  # type: ignore[index]
    assert len(globex.all("comments")) == 1
    # Writes naming another tenant's key are refused, with the fix.
    with pytest.raises(ScopeError, match="may not write tenant_id='globex' into 'tasks'"):
        acme.insert("tasks", tenant_id="globex", project_id=ids["acme"]["project"], title="smuggled")
    with pytest.raises(ScopeError, match="may not write tenant_id='globex'"):
        acme.update("tasks", ids["acme"]["task"], tenant_id="globex")
    assert acme.update("tasks", ids["acme"]["task"], tenant_id="acme", title="renamed") == 1  # its own key: fine
    # Its own rows: full CRUD, and schema-driven work (foreign-key checks, cascades) passes.
    assert acme.delete("projects", ids["acme"]["project"]) == 1
    assert acme.all("tasks") == () and acme.all("comments") == ()
    assert len(globex.all("tasks")) == 2
    assert counts(store) == {"projects": 1, "tasks": 2, "comments": 1}


@pytest.mark.parametrize(
    ("where", "order"),
    [
        ("1) OR (1", ""),
        ("1 = 1); DELETE FROM tasks; --", ""),
        ("id IN (SELECT id FROM tasks)", ""),
        ("0 UNION SELECT * FROM tasks", ""),
        ("1 = 1 -- the rest", ""),
        ("1 = 1 /* the rest */", ""),
        ("title = 'unterminated", ""),
        ("(1 = 1", ""),
        ("", "(SELECT 1)"),
        ("", "id; DROP TABLE tasks"),
    ],
)
def test_a_fragment_can_narrow_the_scope_never_widen_it(store: Store, oracle: Oracle, where: str, order: str) -> None:
    seed(store)
    with pytest.raises(ScopeError):
        tenant_scope(store, "acme").all("tasks", where, order=order)


def test_a_scope_refuses_what_is_not_a_tenant_table_or_a_plain_name(store: Store, oracle: Oracle) -> None:
    acme = tenant_scope(store, "acme")
    with pytest.raises(ScopeError, match="'plans' is not a tenant table"):
        acme.all("plans")
    with pytest.raises(ScopeError, match="not a plain SQL name"):
        acme.all('tasks" --')
    with pytest.raises(ScopeError, match="not a plain SQL name"):
        acme.insert("tasks", **{"title) VALUES ('x'); --": "y"})
    with pytest.raises(ScopeError, match="needs a tenant key"):
        tenant_scope(store, "")
    with pytest.raises(ScopeError, match="no 'tenant_id' column"):
        install_oracle(store, ["tasks", "plans"])


def test_a_trigger_on_a_tenant_table_cannot_reach_another_from_a_scope(store: Store, oracle: Oracle) -> None:
    ids = seed(store)
    with unscoped(store):
        store.exec(
            "CREATE TRIGGER tasks_touch AFTER UPDATE OF title ON tasks"
            " BEGIN UPDATE comments SET body = body WHERE task_id = NEW.id; END"
        )
    with pytest.raises(sqlite3.DatabaseError):
        tenant_scope(store, "acme").update("tasks", ids["acme"]["task"], title="renamed")
    assert "by trigger 'tasks_touch'" in oracle.violations[-1]
    assert tenant_scope(store, "acme").one("tasks", "id = ?", (ids["acme"]["task"],))["title"] == "acme task"  # type: ignore[index]


def test_the_pass_belongs_to_one_greenlet_even_across_a_yield(store: Store, oracle: Oracle) -> None:
    seed(store)
    inside = gevent.event.Event()
    results: list[str] = []

    def operator() -> None:
        with unscoped(store):
            results.append(f"operator sees {len(store.query('SELECT * FROM tasks'))} tasks")
            inside.set()
            gevent.sleep(0.05)  # yields while its pass is up

    def intruder() -> None:
        inside.wait()
        try:
            store.query("SELECT title FROM tasks")
            results.append("intruder read tasks")
        except sqlite3.DatabaseError:
            results.append("intruder refused")

    gevent.joinall([gevent.spawn(operator), gevent.spawn(intruder)], raise_error=True)
    assert results == ["operator sees 4 tasks", "intruder refused"]
    # A thread-pool thread (where a slow call may run) is not the greenlet holding the pass.
    with unscoped(store), pytest.raises(sqlite3.DatabaseError):
        gevent.get_hub().threadpool.apply(store.query, ("SELECT tenant_id FROM tasks",))


def test_interleaved_unscoped_blocks_leave_no_pass_behind(store: Store, oracle: Oracle) -> None:
    seed(store)
    log: list[str] = []

    def read(who: str) -> None:
        try:
            store.query(f"SELECT count(*) AS n FROM tasks WHERE '{who}' = '{who}'")
            log.append(f"{who} read")
        except sqlite3.DatabaseError:
            log.append(f"{who} refused")

    def a() -> None:
        with unscoped(store):
            gevent.sleep(0.01)  # b enters its block meanwhile
            read("a inside")
        gevent.sleep(0.02)  # b is still inside its block
        read("a after")

    def b() -> None:
        gevent.sleep(0.005)
        with unscoped(store):
            gevent.sleep(0.02)  # a leaves its block meanwhile
            read("b inside")

    gevent.joinall([gevent.spawn(a), gevent.spawn(b)], raise_error=True)
    assert sorted(log) == ["a after refused", "a inside read", "b inside read"]
    read("main")
    assert log[-1] == "main refused"


def test_an_oracle_that_cannot_decide_refuses(store: Store, oracle: Oracle) -> None:
    class Broken(frozenset[str]):
        def __contains__(self, item: object) -> bool:
            raise RuntimeError("the oracle broke")

    oracle.tables = Broken()
    with pytest.raises(sqlite3.DatabaseError, match=r"prohibited|not authorized"):
        store.query("SELECT * FROM plans")  # fail closed: even a shared table
    with pytest.raises(sqlite3.DatabaseError, match=r"prohibited|not authorized"):
        store.exec("INSERT INTO events (what) VALUES ('x')")


def test_without_the_oracle_scopes_work_the_same(store: Store) -> None:
    """Production: no authorizer, the same generated statements."""
    ids = seed(store)
    acme = tenant_scope(store, "acme")
    assert {r["title"] for r in acme.all("tasks")} == {"acme task", "acme done"}
    assert acme.update("tasks", ids["globex"]["task"], title="x") == 0
    assert store.query("SELECT count(*) AS n FROM tasks")[0]["n"] == 4  # raw is allowed: no oracle


# -- per-customer operations on the scoped rows -------------------------------------------------


def test_shared_backup_export_restore_delete_work_on_one_tenants_rows(
    store: Store, oracle: Oracle, tmp_path: Path
) -> None:
    ids = seed(store)
    forgotten: list[str] = []
    tenants = SharedTenants(store, TENANT_TABLES, forget=lambda key: forgotten.append(key) or 2)
    assert tenants.keys() == ["acme", "globex"]
    assert tenants.info("acme") == {"rows": 4}

    backup = tenants.backup("acme", tmp_path / "acme.sqlite")
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        dump = "\n".join(conn.iterdump())
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 2
    conn.close()
    assert CANARY not in dump and "globex" not in dump

    with zipfile.ZipFile(io.BytesIO(tenants.export("acme"))) as zf:
        assert sorted(zf.namelist()) == ["comments.json", "manifest.json", "projects.json", "tasks.json"]
        tasks = json.loads(zf.read("tasks.json"))
        assert sorted(t["title"] for t in tasks) == ["acme done", "acme task"]
        assert CANARY not in b"".join(zf.read(n) for n in zf.namelist()).decode()

    acme = tenant_scope(store, "acme")
    acme.insert("tasks", project_id=ids["acme"]["project"], title="after the backup")
    acme.delete("comments", ids["acme"]["comment"])
    tenants.restore("acme", backup)
    assert sorted(r["title"] for r in acme.all("tasks")) == ["acme done", "acme task"]
    assert [r["body"] for r in acme.all("comments")] == ["acme comment"]
    assert len(tenant_scope(store, "globex").all("tasks")) == 2

    globex_backup = tenants.backup("globex", tmp_path / "globex.sqlite")
    with pytest.raises(ScopeError, match="a backup of tenant 'globex', not 'acme'"):
        tenants.restore("acme", globex_backup)

    assert tenants.delete("acme") == {"rows": 4, "directory_rows": 2}
    assert forgotten == ["acme"]
    assert tenants.keys() == ["globex"] and not tenants.exists("acme")
    assert counts(store) == {"projects": 1, "tasks": 2, "comments": 1}
    assert not [v for v in oracle.violations if "outside" in v and "tenant_scope" in v and "acme" in v]


def test_flask_orion_tenant_drives_shared_db_too(store: Store, oracle: Oracle, tmp_path: Path) -> None:
    """The same CLI as db-per-tenant, on an app whose tenants are SharedTenants; audited."""
    seed(store)
    store.migrate("orion", MIGRATIONS)
    app = Flask("shared")
    belt.settings(
        app,
        {
            "ORION_DB": str(tmp_path / "shared.sqlite"),
            "ORION_ENV": "production",
            "ORION_AUDIT_JSONL": "",
            "SECRET_KEY": "x",
        },
    )
    bus = belt.Bus()
    rt = belt.install(app, store, bus)
    rt.tenants = SharedTenants(store, TENANT_TABLES)
    rt.journal = belt.Journal(store)
    runner = app.test_cli_runner()

    out = runner.invoke(args=["orion", "tenant", "list"])
    assert out.exit_code == 0, out.output
    assert "acme\trows=4" in out.output and "globex\trows=4" in out.output
    out = runner.invoke(args=["orion", "tenant", "backup", "acme", str(tmp_path / "b.sqlite")])
    assert out.exit_code == 0 and "integrity ok" in out.output, out.output
    out = runner.invoke(args=["orion", "tenant", "export", "acme", str(tmp_path / "acme.zip")])
    assert out.exit_code == 0, out.output
    assert "tasks.json" in zipfile.ZipFile(tmp_path / "acme.zip").namelist()
    out = runner.invoke(args=["orion", "tenant", "delete", "acme"])
    assert out.exit_code == 1 and "--yes" in out.output
    out = runner.invoke(args=["orion", "tenant", "delete", "acme", "--yes"])
    assert out.exit_code == 0 and "deleted 'acme': 4 rows" in out.output, out.output
    out = runner.invoke(args=["orion", "tenant", "restore", "acme", str(tmp_path / "b.sqlite")])
    assert out.exit_code == 0, out.output
    assert len(tenant_scope(store, "acme").all("tasks")) == 2
    actions = [(r["action"], r["outcome"], r["target"]) for r in rt.journal.records()]
    assert ("tenant.delete", "succeeded", "acme") in actions
    assert [a for a, o, _ in actions if o == "started"] == [
        "tenant.backup",
        "tenant.export",
        "tenant.delete",
        "tenant.restore",
    ]
    bus.close()
