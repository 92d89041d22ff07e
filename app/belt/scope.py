"""Tenancy, shared-db: one database, a tenant column, and statements with the predicate baked in.

The other isolation model (tenancy.py) gives each tenant a file, so feature code cannot even
name another tenant's rows. Here every tenant shares one file and each tenant table has a
tenant column; the risk is the forgotten ``WHERE tenant_id = ?``. Two pieces close it:

* ``tenant_scope(store, key)`` generates the statements: ``all``/``one`` read with the
  predicate baked in, ``insert`` injects the column, ``update``/``delete`` touch a row only if
  it is the tenant's, and a write naming another tenant's key is refused (``ScopeError``).
* ``install_oracle(store)`` (development): SQLite's authorizer callback sees, when a statement
  is prepared, every table it reads or writes (joins, subqueries, views, triggers, foreign-key
  actions). Any access to a tenant table outside a scope is denied: a raw query fails in
  development instead of leaking in production. It fails closed: an authorizer that raises
  denies too.

>>> import os, tempfile
>>> from app.belt.store import Store
>>> store = Store(os.path.join(tempfile.mkdtemp(), "shared.sqlite"))
>>> _ = store.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, body TEXT)")
>>> oracle = install_oracle(store)
>>> acme, globex = tenant_scope(store, "acme"), tenant_scope(store, "globex")
>>> acme.insert("notes", body="hello"), globex.insert("notes", body="secret")
(1, 2)
>>> [row["body"] for row in acme.all("notes")]
['hello']
>>> acme.update("notes", 2, body="mine now")  # globex's row: not in acme's scope
0
>>> store.query("SELECT body FROM notes")
Traceback (most recent call last):
sqlite3.DatabaseError: access to notes.body is prohibited
>>> store.close()
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sqlite3
import time
import weakref
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from greenlet import getcurrent

from .store import Row, Store

log = logging.getLogger("orion.scope")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ROW_ACTIONS = {
    sqlite3.SQLITE_READ: "read",
    sqlite3.SQLITE_INSERT: "insert into",
    sqlite3.SQLITE_UPDATE: "update",
    sqlite3.SQLITE_DELETE: "delete from",
}
# What a where/order fragment may not hold: a second statement, a comment that hides the
# rest, or another query (a subquery or a compound reads rows the predicate does not cover).
_FORBIDDEN = re.compile(r";|--|/\*|\b(select|union|intersect|except|values)\b", re.IGNORECASE)
_oracles: weakref.WeakKeyDictionary[Store, Oracle] = weakref.WeakKeyDictionary()


class ScopeError(ValueError):
    """A scoped statement was asked to do something outside its tenant (or cannot be built)."""


def _ident(name: str, what: str) -> str:
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise ScopeError(f"{what} {name!r} is not a plain SQL name (letters, digits, '_').")
    return f'"{name}"'


def _fragment(text: str, what: str) -> str:
    """Check a caller's where/order fragment: it can narrow the scope, never widen it.

    >>> _fragment("done = ? AND title LIKE '%;%'", "where")
    "done = ? AND title LIKE '%;%'"
    >>> _fragment("1) OR (1", "where")
    Traceback (most recent call last):
    app.belt.scope.ScopeError: The where fragment '1) OR (1' closes a parenthesis it did not open: ...
    """
    if not isinstance(text, str):
        raise ScopeError(f"The {what} fragment must be a string, not {type(text).__name__}.")
    bare = re.sub(r"'(?:[^']|'')*'", "x", text)  # what a string literal holds is only data
    bare = re.sub(r'"(?:[^"]|"")*"', "x", bare)
    if "'" in bare or '"' in bare:
        raise ScopeError(f"The {what} fragment {text!r} has an unterminated quote.")
    bad = _FORBIDDEN.search(bare)
    if bad:
        raise ScopeError(
            f"The {what} fragment {text!r} holds {bad.group(0)!r}: a scope's fragment is one "
            "expression over its own table (no subqueries, compounds, comments or second "
            "statements). Read the other table through its own scope and combine in Python."
        )
    depth = 0
    for char in bare:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise ScopeError(
                f"The {what} fragment {text!r} closes a parenthesis it did not open: it could "
                "escape the tenant predicate."
            )
    if depth:
        raise ScopeError(f"The {what} fragment {text!r} leaves a parenthesis open.")
    return text


class Oracle:
    """Development only: denies every access to a tenant table that no scope asked for."""

    def __init__(self, store: Store, tables: Iterable[str], column: str) -> None:
        self.store = store
        self.column = column
        self.tables = frozenset(t.lower() for t in tables)
        #: Every denial, as a sentence (tests read it; each is logged as an error too).
        self.violations: list[str] = []
        #: The passes each greenlet holds now, innermost last: a table, or None (any).
        self._passes: dict[Any, list[str | None]] = {}
        self.arm()

    def _connections(self) -> list[sqlite3.Connection]:
        # The store's writer and reader: every statement it runs goes through one of them.
        return [self.store._writer, self.store._reader]

    def arm(self) -> None:
        """(Re)install the authorizer on the store's connections.

        Setting an authorizer expires every statement the connection has prepared (SQLite's
        auth.c), and the authorizer runs only when a statement is prepared. Python's sqlite3
        caches prepared statements by their text, so without this a raw statement with the
        same text as one a scope prepared would reuse it unchecked: after each scoped call we
        arm again, and the next raw statement is prepared, and checked, afresh.
        """
        if self.store.closed:
            return
        for conn in self._connections():
            conn.set_authorizer(self._authorize)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
        verb = _ROW_ACTIONS.get(action)
        if verb is None or arg1 is None or arg1.lower() not in self.tables:
            return sqlite3.SQLITE_OK
        table = arg1.lower()
        granted = self._passes.get(getcurrent())
        if granted:
            if granted[-1] is None or granted[-1] == table:
                return sqlite3.SQLITE_OK
            if trigger is None:
                # Another tenant table reached by the schema itself (a foreign-key check or
                # cascade): the scoped statement's own rows lead there, not a raw query.
                return sqlite3.SQLITE_OK
        where = f" (by trigger {trigger!r})" if trigger else ""
        column = f".{arg2}" if arg2 else ""
        message = (
            f"raw {verb} tenant table {arg1}{column}{where} outside a tenant scope: use "
            f"tenant_scope(store, key).all/one/insert/update/delete({arg1!r}, ...) "
            "(app/belt/scope.py), or unscoped(store) for an operator's cross-tenant work."
        )
        self.violations.append(message)
        log.error("scope oracle: %s", message)
        return sqlite3.SQLITE_DENY

    @contextmanager
    def allow(self, table: str | None) -> Iterator[None]:
        """Let the calling greenlet touch ``table`` (None: every tenant table) for the block.

        A scope wraps exactly one statement in this. The pass is per call and per greenlet,
        never ambient: sqlite3 calls block the gevent hub (they never yield), so no other
        greenlet runs between taking the pass and dropping it; and the pass is keyed by the
        greenlet that took it, so one that ran meanwhile anyway, or a thread-pool thread, is
        still refused. ``unscoped()`` blocks may yield: the key is what keeps others out then.
        """
        me = getcurrent()
        stack = self._passes.setdefault(me, [])
        stack.append(None if table is None else table.lower())
        try:
            yield
        finally:
            stack.pop()
            if not stack:
                del self._passes[me]
            self.arm()


def install_oracle(store: Store, tables: Iterable[str] | None = None, *, column: str = "tenant_id") -> Oracle:
    """Deny raw access to ``store``'s tenant tables (development); returns the oracle.

    ``tables`` defaults to every table with a ``column``: a tenant table nobody declared
    cannot slip past. Install it after the migrations (a migration that touches a tenant
    table's rows would be refused; wrap such work in ``unscoped(store)``).
    """
    _ident(column, "The tenant column")
    found = {
        row["name"].lower()
        for row in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        if any(c["name"] == column for c in store.query(f'PRAGMA table_info("{row["name"]}")'))
    }
    declared = found if tables is None else {t.lower() for t in tables}
    missing = sorted(declared - found)
    if missing:
        raise ScopeError(
            f"{missing} declared as tenant tables but {'they have' if len(missing) > 1 else 'it has'} "
            f"no {column!r} column (or no such table): add the column in a migration, or fix the name."
        )
    oracle = Oracle(store, declared, column)
    _oracles[store] = oracle
    return oracle


def oracle_of(store: Store) -> Oracle | None:
    """The oracle installed on ``store`` (None: production, or shared-db is not in use)."""
    return _oracles.get(store)


@contextmanager
def _allowed(store: Store, table: str | None) -> Iterator[None]:
    oracle = _oracles.get(store)
    if oracle is None:
        yield
        return
    with oracle.allow(table):
        yield


@contextmanager
def unscoped(store: Store) -> Iterator[None]:
    """Raw access to every tenant's rows on purpose: operator tools, cross-tenant reports.

    Greppable by design; the oracle lets only the calling greenlet through.
    """
    with _allowed(store, None):
        yield


class Scope:
    """One tenant's view of a shared store: every statement carries ``column = key``."""

    def __init__(self, store: Store, key: Any, column: str = "tenant_id", *, id_column: str = "id") -> None:
        if key is None or key == "":
            raise ScopeError("A tenant scope needs a tenant key; got an empty one.")
        self.store = store
        self.key = key
        self.column = column
        self._col = _ident(column, "The tenant column")
        self._id = _ident(id_column, "The id column")

    def __repr__(self) -> str:
        return f"<Scope {self.column}={self.key!r} of {self.store!r}>"

    def _table(self, table: str) -> str:
        quoted = _ident(table, "The table")
        oracle = _oracles.get(self.store)
        if oracle is not None and table.lower() not in oracle.tables:
            raise ScopeError(
                f"{table!r} is not a tenant table of this store (those are {sorted(oracle.tables)}): "
                "read a shared table with store.query, or add the tenant column to it."
            )
        return quoted

    def _select(self, table: str, where: str, params: Sequence[Any], order: str) -> tuple[str, tuple[Any, ...]]:
        if isinstance(params, dict):
            raise ScopeError("A scope's params are positional (a sequence for the '?' in where), not a dict.")
        sql = f"SELECT * FROM {self._table(table)} WHERE {self._col} = ?"
        if where:
            sql += f" AND ({_fragment(where, 'where')})"
        if order:
            sql += f" ORDER BY {_fragment(order, 'order')}"
        return sql, (self.key, *params)

    def all(self, table: str, where: str = "", params: Sequence[Any] = (), order: str = "") -> tuple[Row, ...]:
        """The tenant's rows of ``table`` matching ``where`` (positional ``?`` params)."""
        sql, args = self._select(table, where, params, order)
        with _allowed(self.store, table):
            return self.store.query(sql, args)

    def one(self, table: str, where: str = "", params: Sequence[Any] = (), order: str = "") -> Row | None:
        """The first of the tenant's rows of ``table`` matching ``where``, or None."""
        sql, args = self._select(table, where, params, order)
        with _allowed(self.store, table):
            return self.store.one(sql + " LIMIT 1", args)

    def _refuse_other(self, table: str, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        if self.column in values:
            named = values.pop(self.column)
            if named != self.key:
                raise ScopeError(
                    f"The scope of tenant {self.key!r} may not write {self.column}={named!r} into "
                    f"{table!r}: a scope writes only its own tenant's rows. Drop {self.column} (the "
                    "scope sets it), or use that tenant's own scope."
                )
        for name in values:
            _ident(name, "The column")
        return values

    def insert(self, table: str, **values: Any) -> int:
        """Insert one row; the tenant column is set by the scope. Returns the new rowid."""
        quoted = self._table(table)
        values = self._refuse_other(table, values)
        columns = ", ".join([self._col, *(f'"{name}"' for name in values)])
        marks = ", ".join("?" * (len(values) + 1))
        sql = f"INSERT INTO {quoted} ({columns}) VALUES ({marks})"
        # tx() may wait for the writer (it yields): take the pass only once it is ours.
        with self.store.tx(), _allowed(self.store, table):
            _, rowid = self.store.exec(sql, (self.key, *values.values()))
        assert rowid is not None
        return rowid

    def update(self, table: str, id: Any, **values: Any) -> int:
        """Set ``values`` on row ``id`` if it is the tenant's; returns 1, or 0 (not theirs)."""
        quoted = self._table(table)
        values = self._refuse_other(table, values)
        if not values:
            raise ScopeError(f"update({table!r}, {id!r}) names no column to set.")
        assignments = ", ".join(f'"{name}" = ?' for name in values)
        sql = f"UPDATE {quoted} SET {assignments} WHERE {self._id} = ? AND {self._col} = ?"
        with self.store.tx(), _allowed(self.store, table):
            count, _ = self.store.exec(sql, (*values.values(), id, self.key))
        return count

    def delete(self, table: str, id: Any) -> int:
        """Delete row ``id`` if it is the tenant's; returns 1, or 0 (not theirs)."""
        sql = f"DELETE FROM {self._table(table)} WHERE {self._id} = ? AND {self._col} = ?"
        with self.store.tx(), _allowed(self.store, table):
            count, _ = self.store.exec(sql, (id, self.key))
        return count

    def _purge(self, table: str) -> int:
        """Delete every row of the tenant in ``table`` (per-customer delete and restore)."""
        sql = f"DELETE FROM {self._table(table)} WHERE {self._col} = ?"
        with self.store.tx(), _allowed(self.store, table):
            count, _ = self.store.exec(sql, (self.key,))
        return count


def tenant_scope(store: Store, key: Any, column: str = "tenant_id") -> Scope:
    """The statements of tenant ``key`` over ``store``'s tenant tables (see ``Scope``)."""
    return Scope(store, key, column)


# -- per-customer operations on the scoped rows ---------------------------------------------

_META = "_orion_scope_backup"


class SharedTenants:
    """Backup, export, restore and delete one tenant's rows of a shared store.

    The same operations ``Tenants`` offers for db-per-tenant files (so ``flask orion tenant``
    drives either). A backup is a SQLite file holding the tenant tables' schema and only this
    tenant's rows, read in one transaction (a consistent snapshot across tables).
    """

    def __init__(
        self,
        store: Store,
        tables: Iterable[str],
        column: str = "tenant_id",
        *,
        forget: Callable[[str], int] | None = None,
    ) -> None:
        self.store = store
        self.tables = list(tables)
        self.column = column
        #: Drops the app's directory rows of a tenant (its workspace, memberships) on delete.
        self.forget = forget
        for table in self.tables:
            _ident(table, "The table")

    def scope(self, key: str) -> Scope:
        return Scope(self.store, key, self.column)

    def keys(self) -> list[str]:
        """Every tenant with a row in any tenant table."""
        selects = " UNION ".join(f'SELECT "{self.column}" AS k FROM "{t}"' for t in self.tables)
        with unscoped(self.store):
            return sorted(str(r["k"]) for r in self.store.query(selects))

    def exists(self, key: str) -> bool:
        return any(self.scope(key).one(t) is not None for t in self.tables)

    def info(self, key: str) -> dict[str, Any]:
        return {"rows": sum(len(self.scope(key).all(t)) for t in self.tables)}

    def _snapshot(self, key: str) -> dict[str, tuple[Row, ...]]:
        scope = self.scope(key)
        with self.store.tx():  # one snapshot: no commit lands between two tables' reads
            return {t: scope.all(t) for t in self.tables}

    def _schema(self) -> dict[str, str]:
        marks = ", ".join("?" * len(self.tables))
        rows = self.store.query(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN ({marks})", tuple(self.tables)
        )
        return {r["name"]: r["sql"] for r in rows}

    def backup(self, key: str, dest: str | Path) -> Path:
        """A SQLite file at ``dest`` with the tenant tables and ``key``'s rows only."""
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"{key}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.sqlite"
        dest.parent.mkdir(parents=True, exist_ok=True)
        snapshot, schema = self._snapshot(key), self._schema()
        partial = dest.with_name(dest.name + ".partial")
        partial.unlink(missing_ok=True)
        conn = sqlite3.connect(partial)
        try:
            with conn:
                conn.execute(f"CREATE TABLE {_META} (tenant TEXT, column_name TEXT, tables TEXT, taken_at TEXT)")
                conn.execute(
                    f"INSERT INTO {_META} VALUES (?, ?, ?, ?)", (key, self.column, json.dumps(self.tables), _now())
                )
                for table in self.tables:
                    conn.execute(schema[table])
                    for row in snapshot[table]:
                        names = row.keys()
                        conn.execute(
                            f'INSERT INTO "{table}" ({", ".join(f"{chr(34)}{n}{chr(34)}" for n in names)})'
                            f" VALUES ({', '.join('?' * len(names))})",
                            tuple(row),
                        )
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
        if ok != "ok":
            raise RuntimeError(f"the backup of {key!r} at {partial} failed its integrity check: {ok}")
        os.replace(partial, dest)
        return dest

    def export(self, key: str) -> bytes:
        """A zip holding one JSON file per tenant table (``key``'s rows) and a manifest."""
        snapshot = self._snapshot(key)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for table, rows in snapshot.items():
                zf.writestr(
                    f"{table}.json", json.dumps([dict(r) for r in rows], ensure_ascii=False, indent=1, default=_plain)
                )
            zf.writestr(
                "manifest.json",
                json.dumps(
                    {"tenant": key, "exported_at": _now(), "tables": self.tables, "model": "shared-db"}, indent=1
                ),
            )
        return buffer.getvalue()

    def restore(self, key: str, src: str | Path) -> None:
        """Replace ``key``'s rows with those of the backup at ``src`` (one transaction)."""
        conn = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise ScopeError(f"{src} is not a sound SQLite database ({ok}); nothing was restored.")
            try:
                meta = conn.execute(f"SELECT tenant, column_name, tables FROM {_META}").fetchone()
            except sqlite3.OperationalError:
                meta = None
            if meta is None or meta["column_name"] != self.column:
                raise ScopeError(
                    f"{src} is not a shared-db tenant backup (`flask orion tenant backup`); nothing was restored."
                )
            if meta["tenant"] != key:
                raise ScopeError(f"{src} is a backup of tenant {meta['tenant']!r}, not {key!r}; nothing was restored.")
            tables = json.loads(meta["tables"])
            unknown = sorted(set(tables) - set(self.tables))
            if unknown:
                raise ScopeError(f"{src} holds tables this app does not scope: {unknown}; nothing was restored.")
            rows = {t: [dict(r) for r in conn.execute(f'SELECT * FROM "{t}"')] for t in tables}
        finally:
            conn.close()
        for table, table_rows in rows.items():
            if any(row.get(self.column) != key for row in table_rows):
                raise ScopeError(f"{src} holds rows of another tenant in {table!r}; nothing was restored.")
        scope = self.scope(key)
        with self.store.tx():
            self.store.exec("PRAGMA defer_foreign_keys = ON")  # parents and children in any order
            for table in reversed(self.tables):
                scope._purge(table)
            for table in self.tables:
                for row in rows.get(table, ()):
                    scope.insert(table, **row)

    def delete(self, key: str) -> dict[str, Any]:
        """Drop the directory rows (``forget``) and every row of ``key`` in every tenant table."""
        directory_rows = self.forget(key) if self.forget is not None else 0
        scope = self.scope(key)
        with self.store.tx():
            self.store.exec("PRAGMA defer_foreign_keys = ON")
            rows = sum(scope._purge(table) for table in reversed(self.tables))
        return {"rows": rows, "directory_rows": directory_rows}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot export a {type(value).__name__}")
