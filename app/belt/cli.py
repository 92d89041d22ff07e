"""``flask orion ...``: the operator's commands (a click group on the app's CLI)."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from .audit import JsonlSink, verify_records
from .runtime import runtime

orion = AppGroup("orion", help="orion: operate the app (audit, ...).")
audit = AppGroup("audit", help="The audit journal.")
orion.add_command(audit)


@audit.command("verify")
@click.option(
    "--jsonl", type=click.Path(path_type=Path), default=None, help="Check a JSONL export instead of the database table."
)
def audit_verify(jsonl: Path | None) -> None:
    """Recompute the hash chain; report the first broken record (exit 1) or "ok"."""
    rt = runtime()
    if jsonl is not None:
        if not jsonl.exists():
            raise click.ClickException(f"{jsonl} does not exist.")
        try:
            verdict = verify_records(JsonlSink(jsonl).read())
        except ValueError as exc:  # a line that is not JSON: garbled, or cut short by a crash
            click.echo(f"BROKEN in {jsonl}: {exc}.", err=True)
            sys.exit(1)
        where = str(jsonl)
    else:
        if rt.journal is None:
            raise click.ClickException("This app has no audit journal (rt.journal is None).")
        verdict = rt.journal.verify()
        where = rt.store.path
    if verdict.ok:
        click.echo(f"ok: {verdict.checked} records in {where} form an unbroken chain.")
        return
    click.echo(
        f"BROKEN at record {verdict.broken_seq} of {where}: {verdict.message}. "
        f"{verdict.checked} records before it check out.",
        err=True,
    )
    sys.exit(1)


@audit.command("interrupted")
def audit_interrupted() -> None:
    """List commands that started but never recorded an outcome (a crash mid-effect)."""
    rt = runtime()
    if rt.journal is None:
        raise click.ClickException("This app has no audit journal.")
    rows = rt.journal.interrupted()
    for row in rows:
        click.echo(f"#{row['seq']} {row['at']} {row['action']} actor={row['actor']} target={row['target']}")
    click.echo(f"{len(rows)} interrupted.")


# -- per-customer operations: `flask orion tenant ...` -------------------------------------

tenant = AppGroup("tenant", help="Per-customer operations: list, backup, export, restore, delete.")
orion.add_command(tenant)


def _tenants() -> Any:
    """The app's tenants: ``Tenants`` (a file each) or ``scope.SharedTenants`` (scoped rows)."""
    tenants = runtime().tenants
    if tenants is None:
        raise click.ClickException(
            "This app has no tenancy (ORION_TENANCY=off): there is one store; back up its file whole."
        )
    return tenants


def _tenant_op(action: str, key: str, effect: Callable[[], Any]) -> Any:
    """Run ``effect`` between an audit "started" record and its outcome (like a command)."""
    journal = runtime().journal
    actor = f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'operator'}"
    seq = journal.started(action=action, actor=actor, target=key, tenant=key, client="flask orion") if journal else None
    try:
        result = effect()
    except (ValueError, LookupError, OSError, sqlite3.Error) as exc:
        if journal is not None and seq is not None:
            journal.finished(seq, "failed", reason=str(exc)[:300])
        reason = "no such tenant (`flask orion tenant list` shows them)" if isinstance(exc, LookupError) else exc
        raise click.ClickException(f"{action} {key!r} failed: {reason}.") from exc
    if journal is not None and seq is not None:
        journal.finished(seq, "succeeded")
    return result


@tenant.command("list")
def tenant_list() -> None:
    """Every tenant, with its size (a file each) or row count (shared-db)."""
    tenants = _tenants()
    keys = tenants.keys()
    for key in keys:
        info = tenants.info(key)
        click.echo("\t".join([key, *(f"{name}={value}" for name, value in info.items())]))
    click.echo(f"{len(keys)} tenant(s).")


@tenant.command("backup")
@click.argument("key")
@click.argument("dest", type=click.Path(path_type=Path))
def tenant_backup(key: str, dest: Path) -> None:
    """A consistent copy of KEY's data at DEST (a file, or a folder), taken while writes go on."""
    tenants = _tenants()
    started = time.monotonic()
    path = _tenant_op("tenant.backup", key, lambda: tenants.backup(key, dest))
    click.echo(
        f"backed up {key!r} to {path} ({path.stat().st_size} bytes, integrity ok) in {time.monotonic() - started:.2f}s."
    )


@tenant.command("export")
@click.argument("key")
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
def tenant_export(key: str, dest: Path) -> None:
    """KEY's data as DEST.zip: one JSON file per table, and a manifest."""
    tenants = _tenants()
    data: bytes = _tenant_op("tenant.export", key, lambda: tenants.export(key))
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, dest)
    click.echo(f"exported {key!r} to {dest} ({len(data)} bytes, one JSON file per table).")


@tenant.command("restore")
@click.argument("key")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def tenant_restore(key: str, src: Path) -> None:
    """Replace KEY's data with the backup SRC (checked first; nothing changes if it is unsound)."""
    tenants = _tenants()
    _tenant_op("tenant.restore", key, lambda: tenants.restore(key, src))
    click.echo(f"restored {key!r} from {src}.")


@tenant.command("delete")
@click.argument("key")
@click.option("--yes", is_flag=True, help="Confirm: KEY's data and directory rows go for good.")
def tenant_delete(key: str, yes: bool) -> None:
    """Remove KEY's data and its directory rows (workspace, memberships); audited."""
    tenants = _tenants()
    if not yes:
        raise click.ClickException(
            f"This removes {key!r}'s data and its directory rows for good. Take a backup first "
            f"(flask orion tenant backup {key} DEST), then run again with --yes."
        )
    report = _tenant_op("tenant.delete", key, lambda: tenants.delete(key))
    parts = [f"{len(v) if isinstance(v, list) else v} {name.replace('_', ' ')}" for name, v in report.items()]
    click.echo(f"deleted {key!r}: {', '.join(parts)}.")


# The developer's commands: new, gen, routes, dev, doctor (app/belt/devcli.py).
from .devcli import COMMANDS as _DEV_COMMANDS  # noqa: E402

for _command in _DEV_COMMANDS:
    orion.add_command(_command)


def register(app: Flask) -> None:
    from .worker import jobs, worker  # `flask orion worker`, `flask orion jobs` (app/belt/worker.py)

    orion.add_command(worker)
    orion.add_command(jobs)
    app.cli.add_command(orion)
