"""Tenancy, db-per-tenant: one SQLite file per tenant, so feature code cannot name another's rows.

To the belt a tenant is an opaque key and a store bound to it; what a tenant *is* (a
workspace, an org, a team) is the app's policy. ``Tenants`` opens a tenant's file lazily,
migrates it on first open with the same feature migrations, keeps a bounded number open
(least recently used, never one a live stream is using) and offers the per-customer
operations: backup (SQLite's online backup API: consistent while writes continue), export
(a zip of JSON per table), restore and delete.

The gate (``Gate``) runs before any of this: the directory (the control plane: accounts,
memberships) answers "is this person a member of that workspace, with which role?" and only a
yes opens the workspace's store. A probe of a workspace you do not belong to never creates or
opens its file, and unknown and foreign workspaces answer the same 404 (no existence oracle).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sqlite3
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from .store import Store

log = logging.getLogger("orion.tenancy")

KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class UnknownTenant(LookupError):
    """No such tenant (or the caller may not know whether there is one)."""


def check_key(key: str) -> str:
    """A tenant key is lowercase letters, digits and dashes: it names a file, so nothing else.

    >>> check_key("acme-2")
    'acme-2'
    >>> check_key("../etc")
    Traceback (most recent call last):
    ValueError: '../etc' is not a tenant key: use 1-63 lowercase letters, digits and dashes.
    """
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise ValueError(f"{key!r} is not a tenant key: use 1-63 lowercase letters, digits and dashes.")
    return key


@dataclass
class TenantStats:
    opens: int = 0
    closes: int = 0
    creates: int = 0


class Tenants:
    """Every tenant's store, opened on demand under ``root``."""

    def __init__(
        self,
        root: str | Path,
        migrate: Callable[[Store], None],
        *,
        synchronous: str = "NORMAL",
        max_open: int = 64,
        on_open: Callable[[str, Store], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.migrate = migrate
        self.synchronous = synchronous
        self.max_open = max_open
        self.on_open = on_open
        self.stats = TenantStats()
        self._open: OrderedDict[str, Store] = OrderedDict()

    def path(self, key: str) -> Path:
        return self.root / f"{check_key(key)}.sqlite"

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def store(self, key: str, *, create: bool = False) -> Store:
        """The open store of ``key``; opened (and migrated) on first use.

        ``create=False`` refuses a tenant whose file does not exist (UnknownTenant): only the
        directory, when it creates a workspace, makes a new file.
        """
        store = self._open.get(key)
        if store is not None and not store.closed:
            self._open.move_to_end(key)
            return store
        path = self.path(key)
        if not path.exists():
            if not create:
                raise UnknownTenant(key)
            self.stats.creates += 1
        store = Store(path, synchronous=self.synchronous)
        store.tenant = key
        try:
            self.migrate(store)
        except BaseException:
            store.close()
            raise
        self.stats.opens += 1
        self._open[key] = store
        if self.on_open is not None:
            self.on_open(key, store)
        self._evict()
        return store

    def _evict(self) -> None:
        """Close the least recently used stores beyond ``max_open`` that no stream is using."""
        for key in list(self._open):
            if len(self._open) <= self.max_open:
                return
            store = self._open[key]
            if store.leases > 0 or store.in_transaction_anywhere():
                continue
            del self._open[key]
            store.close()
            self.stats.closes += 1

    def open_stores(self) -> list[tuple[str | None, Store]]:
        return [(key, store) for key, store in self._open.items() if not store.closed]

    def keys(self) -> list[str]:
        """Every tenant with a file, open or not."""
        return sorted(p.stem for p in self.root.glob("*.sqlite") if KEY.fullmatch(p.stem))

    def close(self, key: str) -> None:
        store = self._open.pop(key, None)
        if store is not None:
            store.close()
            self.stats.closes += 1

    def close_all(self) -> None:
        for key in list(self._open):
            self.close(key)

    # -- per-customer operations ---------------------------------------------------------

    def backup(self, key: str, dest: str | Path) -> Path:
        """A consistent copy of ``key``'s database while writes continue (SQLite backup API).

        Runs on a connection of its own, a few pages at a time, so the writer is never held
        for long; the copy is checked with ``PRAGMA integrity_check``.
        """
        source_path = self.path(key)
        if not source_path.exists():
            raise UnknownTenant(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(source_path, timeout=30)
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst, pages=256, sleep=0.001)
            ok = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
            src.close()
        if ok != "ok":
            raise RuntimeError(f"the backup of {key!r} at {dest} failed its integrity check: {ok}")
        return dest

    def export(self, key: str) -> bytes:
        """A zip holding one JSON file per table of ``key`` (the customer's data, portable)."""
        path = self.path(key)
        if not path.exists():
            raise UnknownTenant(key)
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        buffer = io.BytesIO()
        try:
            with conn, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
                tables = [r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )]
                for table in tables:
                    rows = [dict(r) for r in conn.execute(f'SELECT * FROM "{table}"')]
                    zf.writestr(f"{table}.json", json.dumps(rows, ensure_ascii=False, indent=1, default=_plain))
                zf.writestr("manifest.json", json.dumps(
                    {"tenant": key, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "tables": tables}, indent=1))
        finally:
            conn.close()
        return buffer.getvalue()

    def restore(self, key: str, src: str | Path) -> None:
        """Replace ``key``'s database with the backup at ``src`` (checked first)."""
        src = Path(src)
        check = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
        try:
            ok = check.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            check.close()
        if ok != "ok":
            raise ValueError(f"{src} is not a sound SQLite database ({ok}); nothing was restored.")
        self.close(key)
        target = self.path(key)
        _remove_database(target)
        dst = sqlite3.connect(target)
        source = sqlite3.connect(src)
        try:
            source.backup(dst)
        finally:
            source.close()
            dst.close()

    def delete(self, key: str) -> None:
        """Close and remove ``key``'s database files (the directory rows are the app's to drop)."""
        self.close(key)
        _remove_database(self.path(key))


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot export a {type(value).__name__}")


@dataclass(frozen=True)
class Verdict:
    """The directory's answer at the gate: a member, with a role (and so grants)."""

    tenant: str
    role: str


Membership = Callable[[Store, str, str], "str | None"]


class Gate:
    """Asks the directory before any workspace store is opened or created."""

    def __init__(self, directory: Store, tenants: Tenants, membership: Membership) -> None:
        self.directory = directory
        self.tenants = tenants
        self.membership = membership
        self.refused = 0

    def verdict(self, user_id: str, key: str) -> Verdict | None:
        """The member's role in ``key``, or None (not a member, or no such workspace)."""
        try:
            check_key(key)
        except ValueError:
            self.refused += 1
            return None
        role = self.membership(self.directory, user_id, key)
        if role is None:
            self.refused += 1
            return None
        return Verdict(key, role)


def install_gate(app: Flask, gate: Gate, *, prefix_arg: str = "workspace") -> None:
    """Put the gate in front of every route under ``/w/<workspace>/``.

    The workspace is taken out of the URL values (feature views never see it: the same
    slice serves a single-tenant app), and checked against the directory before the
    request's ctx, and so any workspace store, exists.
    """
    from dataclasses import replace

    from flask import redirect, request

    from .auth import current_user
    from .runtime import runtime
    from .signals import BadInput

    @app.url_value_preprocessor
    def take_workspace(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if values and prefix_arg in values:
            request.environ["orion.workspace"] = values.pop(prefix_arg)

    @app.before_request
    def check_membership() -> Any:
        key = request.environ.get("orion.workspace")
        if key is None:
            return None
        rt = runtime()
        user = current_user(rt.ctx(request=request._get_current_object()))  # type: ignore[attr-defined]
        if user is None:
            if request.method == "GET" and request.headers.get("Datastar-Request") != "true":
                return redirect(f"/signin?next={request.path}")
            raise BadInput("You are not signed in. Sign in, then try again.", 403)
        verdict = gate.verdict("local" if user.local else str(user.id), key)
        if verdict is None:
            # The same answer for "no such workspace" and "not yours": no existence oracle.
            raise BadInput(f"There is no workspace {key!r} that you belong to. Pick one of yours.", 404)
        request.environ["orion.verdict"] = verdict
        request.environ["orion.user"] = replace(user, role=verdict.role)
        return None
