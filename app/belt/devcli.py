"""The developer's commands: ``flask orion new | gen | routes | dev | doctor``.

They hang on the ``flask orion`` group (``cli.py``). ``new`` and ``gen`` write files
(``scaffold.py`` holds what and where from); ``routes`` prints the app as a hypermedia map
(``resource.py``); ``dev`` runs the real server, reloading; ``doctor`` checks a deployment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from . import doctor as doctor_mod
from . import scaffold
from .resource import format_map, route_map
from .runtime import runtime


def _say(done: scaffold.Written, root: Path) -> None:
    for path in done.files:
        try:
            shown = path.relative_to(root)
        except ValueError:
            shown = path
        click.echo(f"  wrote {shown}")
    for note in done.notes:
        click.echo(note)


def _run(action: object) -> scaffold.Written:
    try:
        return action()  # type: ignore[operator, no-any-return]
    except scaffold.ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("new")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Write over files that exist in PATH.")
def new(path: Path, force: bool) -> None:
    """A new, runnable app in PATH: the belt, the core patterns, the todos slice, tests."""
    done = _run(lambda: scaffold.new_app(path, force=force))
    target = path.resolve()
    folders: dict[str, int] = {}
    for file in done.files:
        parts = file.relative_to(target).parts
        top = "/".join(parts[: min(2, len(parts) - 1)]) + "/" if len(parts) > 1 else parts[0]
        folders[top] = folders.get(top, 0) + 1
    click.echo(f"wrote {len(done.files)} files into {target}:")
    for top, count in folders.items():
        click.echo(f"  {top}" + (f" ({count} file{'s' if count > 1 else ''})" if top.endswith("/") else ""))
    for note in done.notes:
        click.echo(note)
    click.echo(f"\nnext: cd {path} && make run    (then: make test, flask orion gen feature NAME)")


@click.group("gen")
def gen() -> None:
    """Generate a slice, or copy a pattern or a recipe into this app."""


@gen.command("feature")
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace the slice's files if they exist.")
def gen_feature(name: str, force: bool) -> None:
    """A slice NAME (a plural noun): list page, live region, add command, migration, test."""
    _say(_run(lambda: scaffold.gen_feature(name, force=force)), scaffold.ROOT)


@gen.command("pattern")
@click.argument("name", required=False)
@click.option("--force", is_flag=True, help="Replace the pattern's files if they exist.")
def gen_pattern(name: str | None, force: bool) -> None:
    """Copy pattern NAME (view functions + CSS) into app/patterns/; without NAME, list them."""
    if name is None:
        for found, files in scaffold.patterns_available().items():
            where = "installed" if files[0].parent == scaffold.ROOT / "app" / "patterns" else "available"
            click.echo(f"  {found:<14}{where:<11}{_summary(files[0])}")
        return
    _say(_run(lambda: scaffold.gen_pattern(name, force=force)), scaffold.ROOT)


@gen.command("recipe")
@click.argument("name", required=False)
@click.option("--force", is_flag=True, help="Replace the recipe's file if it exists.")
def gen_recipe(name: str | None, force: bool) -> None:
    """Copy recipe NAME (glue for an outside dependency) into app/recipes/; without NAME, list them."""
    if name is None:
        for found, file in scaffold.recipes_available().items():
            where = "installed" if file.parent == scaffold.ROOT / "app" / "recipes" else "available"
            click.echo(f"  {found:<16}{where:<11}{_summary(file)}")
        return
    _say(_run(lambda: scaffold.gen_recipe(name, force=force)), scaffold.ROOT)


def _summary(path: Path) -> str:
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.splitlines()[0] if doc else ""


@click.command("routes")
@with_appcontext
def routes() -> None:
    """The app as a hypermedia map: pages, live streams (regions, topics), commands (audit
    actions), fragments and webhooks, grouped by resource. (`flask routes` still works.)"""
    click.echo(format_map(route_map(current_app)))


@click.command("dev")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """The development server: gunicorn's gevent worker, reloading on every code change, with
    ORION_ENV=development (error overlay, region oracle, live reload, debug panel: Alt+D)."""
    argv, env = dev_server(scaffold.ROOT, host, port)
    click.echo(f"orion dev: http://{host}:{port}  (reloads on change; Ctrl+C stops)")
    os.chdir(scaffold.ROOT)
    os.execvpe(argv[0], argv, env)  # noqa: S606  (replaces the flask CLI with gunicorn, same venv)


def dev_server(root: Path, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The gunicorn command line and environment ``flask orion dev`` runs."""
    env = {**os.environ, "ORION_ENV": "development", "PYTHONUNBUFFERED": "1"}
    env.setdefault("ORION_DB", str(root / "data" / "app.sqlite"))
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "gunicorn.conf.py",
        "--bind",
        f"{host}:{port}",
        "--reload",
        # Readable access lines: "GET /todos?x=1 -> 200 in 3 ms".
        "--access-logfile",
        "-",
        "--access-logformat",
        "%(m)s %(U)s%(q)s -> %(s)s in %(M)s ms",
        # A graceful restart on reload need not wait: streams end at once and reconnect.
        "--graceful-timeout",
        "2",
    ]
    # Migrations and templates are read at boot: a change to one restarts the worker too.
    for extra in sorted([*root.glob("migrations/*.sql"), *root.glob("app/features/*/migrations/*.sql")]):
        argv += ["--reload-extra-file", str(extra)]
    argv.append("wsgi:app")
    return argv, env


@click.command("doctor")
@with_appcontext
def doctor() -> None:
    """Check what goes wrong in deployment; print the fix for each problem (exit 1 if any)."""
    app = current_app
    findings = doctor_mod.check_all(Path(app.root_path).parent, runtime(), dict(app.config))
    text, ok = doctor_mod.report(findings)
    click.echo(text)
    if not ok:
        sys.exit(1)


COMMANDS = (new, gen, routes, dev, doctor)
