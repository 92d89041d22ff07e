"""``flask orion ...``: the operator's commands (a click group on the app's CLI)."""

from __future__ import annotations

import sys
from pathlib import Path

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


def register(app: Flask) -> None:
    app.cli.add_command(orion)
