"""console: the blueprint. One page with four live regions on one stream, two commands, the
stats as JSON, and the x-ray region the composition root mounts at the foot of the todos page.

The console's models read every store (the directory, then each workspace's own: a real
fan-out) inside ``feed.muted()``: the console re-reads on every wake, and recording its own
reads would wake the feed forever.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, redirect

from app.belt import (
    Authz,
    BadInput,
    Ctx,
    Store,
    UnknownTenant,
    can,
    command,
    current_user,
    document,
    grants_watch,
    live_attrs,
    region,
    request_ctx,
    stream,
)
from app.patterns.nav import nav

from . import commands, sql, view
from .state import Console, state

bp = Blueprint("console", __name__)


def _console(ctx: Ctx) -> Console:
    console: Console = ctx.extra["console"]
    return console


def _request_ctx() -> Ctx:
    ctx = request_ctx()
    ctx.extra["console"] = state()  # streams run outside the app context: carry it along
    return ctx


def may_see(ctx: Ctx) -> bool:
    """Anyone in the demo; otherwise those who manage users (the console shows everyone's)."""
    return _console(ctx).demo or can(ctx, "manage", "users:*")


def _uid(ctx: Ctx) -> str | None:
    user = current_user(ctx)
    return None if user is None else "local" if user.local else str(user.id)


# -- models: each a tuple of tuples (hashable: equal models share one render) ----------------


def you_model(ctx: Ctx) -> view.You:
    console, directory, user = _console(ctx), ctx.runtime.store, current_user(ctx)
    tenancy = ctx.runtime.tenants is not None
    with console.feed.muted():
        workspaces = sql.workspaces(directory) if tenancy else ()
        members = sql.memberships(directory) if tenancy else ()
        personas = []
        if console.demo:
            for name, label, _ in commands.PERSONAS:
                row = sql.user_by_email(directory, commands.email(name))
                if row is None:
                    continue
                roles = {m["workspace"]: m["role"] for m in members if m["user_id"] == row["id"]}
                summary = " · ".join(f"{w['key']}: {roles.get(w['key'], '—')}" for w in workspaces)
                personas.append(
                    view.Persona(
                        name, label, row["email"], summary, user is not None and str(row["id"]) == str(user.id)
                    )
                )
        uid = _uid(ctx)
        if uid == "local":
            mine = {w["key"]: "owner" for w in workspaces}
        else:
            mine = {m["workspace"]: m["role"] for m in members if str(m["user_id"]) == uid}
    return view.You(
        label=user.label if user is not None else None,
        demo=console.demo,
        personas=tuple(personas),
        mine=tuple((w["key"], w["name"], mine[w["key"]]) for w in workspaces if w["key"] in mine),
        foreign=tuple((w["key"], w["name"]) for w in workspaces if w["key"] not in mine),
        tenancy=tenancy,
    )  # fmt: skip


def directory_model(ctx: Ctx) -> view.Directory:
    directory = ctx.runtime.store
    with _console(ctx).feed.muted():
        users = sql.users(directory)
        tenancy = ctx.runtime.tenants is not None
        workspaces = sql.workspaces(directory) if tenancy else ()
        members = sql.memberships(directory) if tenancy else ()
    role = {(m["user_id"], m["workspace"]): m["role"] for m in members}
    return view.Directory(
        users=tuple((u["email"], u["name"], u["role"]) for u in users),
        workspaces=tuple((w["key"], w["name"]) for w in workspaces),
        roles=tuple((u["email"], tuple(role.get((u["id"], w["key"]), "") for w in workspaces)) for u in users),
    )


def _size(path: str) -> int:
    try:
        size = os.path.getsize(path)
    except OSError:
        return -1
    try:
        size += os.path.getsize(path + "-wal")
    except OSError:
        pass
    return size


def _row(key: str, name: str, store: Store, todos: int | None) -> view.StoreRow:
    return view.StoreRow(key, name, store.path, _size(store.path), not store.closed, store.leases, todos)


def plane_model(ctx: Ctx) -> view.Plane:
    """The directory's store, then every workspace's own, each asked for its todo count."""
    console, rt = _console(ctx), ctx.runtime
    tenants = rt.tenants
    with console.feed.muted():
        if tenants is None:  # one store holds everything
            return view.Plane((_row("main", "directory and todos", rt.store, sql.todo_count(rt.store)),), None)
        rows = [_row("main", "directory", rt.store, None)]
        for w in sql.workspaces(rt.store):
            try:
                store = tenants.store(w["key"])  # opened (and kept, LRU) on first use
            except (UnknownTenant, ValueError):
                rows.append(view.StoreRow(w["key"], w["name"], str(tenants.path(w["key"])), -1, False, 0, None))
                continue
            rows.append(_row(w["key"], w["name"], store, sql.todo_count(store)))
    stats = tenants.stats
    counters = view.Counters(len(tenants.open_stores()), len(tenants.keys()), stats.opens, stats.creates,
                             stats.closes, console.gate.refused if console.gate is not None else 0)  # fmt: skip
    return view.Plane(tuple(rows), counters)


def feed_model(ctx: Ctx) -> view.Feed:
    feed = _console(ctx).feed
    return view.Feed(feed.snapshot(), feed.total)


def xray_model(ctx: Ctx) -> view.Xray:
    """Which store served the todos page, the viewer's role there (read live from the
    directory), the grants authz holds for them there, and the checks the page relies on."""
    rt, store, user = ctx.runtime, ctx.store, current_user(ctx)
    tenant = ctx.tenant or store.tenant
    where = (tenant or "main", Path(store.path).name)
    if user is None:
        return view.Xray(*where, "nobody", "none", (), ())
    uid = "local" if user.local else str(user.id)
    if user.local:
        role = "owner" if tenant else user.role
    elif tenant:
        role = sql.role_in(rt.store, uid, tenant) or "none"
    else:
        role = sql.account_role(rt.store, uid) or "none"
    grants = tuple(sorted(rt.authz.grants(store, uid))) if rt.authz is not None else ()
    checks = tuple((action, can(ctx, action, "todos:*")) for action in view.ACTIONS)
    return view.Xray(*where, user.label, role, grants, checks)


#: What the role table is asked, per role, through the belt's own authz (wildcards and all).
CHECKS = (("view", "todos:1"), ("create", "todos:1"), ("edit", "todos:1"), ("delete", "todos:1"),
          ("view", "users:1"), ("manage", "users:1"), ("masquerade", "users:1"))  # fmt: skip


def grants_model(table: dict[str, tuple[tuple[str, str], ...]]) -> view.Grants:
    """The role → grants table, and every check of CHECKS answered for each role."""
    authz = Authz(lambda store, role: table.get(role, ()))
    roles = tuple(table)
    return view.Grants(
        roles=tuple((role, tuple(table[role])) for role in roles),
        checks=tuple(
            (f"{action} {resource.split(':')[0]}", tuple(authz.can(None, role, action, resource) for role in roles))
            for action, resource in CHECKS
        ),
    )  # fmt: skip


def _feed(ctx: Ctx) -> Any:
    return _console(ctx).feed


# Every publish anywhere ("*": any workspace's todos, memberships, accounts) repaints the
# planes; equal models send nothing. The feed wakes on its own ring, at most every 100 ms.
YOU = region("console-you", topics=["*"], model=you_model, view=view.you)
DIRECTORY = region("console-directory", topics=["*"], model=directory_model, view=view.directory)
PLANE = region("console-data", topics=["*"], model=plane_model, view=view.plane)
FEED = region("console-feed", watch=[_feed], model=feed_model, view=view.feed)
#: The todos page's x-ray footer (mounted there by the composition root): it watches the
#: viewer's grants, so a role change repaints it at once.
XRAY = region("todo-xray", watch=[grants_watch], model=xray_model, view=view.xray)


@bp.get("/console")
def index() -> Any:
    ctx = _request_ctx()
    user = current_user(ctx)
    header = nav(user, admin=can(ctx, "manage", "users:*"))
    if not may_see(ctx):
        if user is None:
            return redirect("/signin?next=/console")
        return document("Architecture console", view.forbidden(), header=header), 403
    body = view.page(YOU.render(ctx), DIRECTORY.render(ctx), PLANE.render(ctx), view.grants(state().grants_model),
                     FEED.render(ctx), live_attrs("/console/live"))  # fmt: skip
    return document("Architecture console", body, header=header)


@bp.get("/console/live")
def live() -> Any:
    return stream([YOU, DIRECTORY, PLANE, FEED], ctx=_request_ctx(), authorize=may_see)


@bp.get("/console/stats")
def stats() -> Any:
    """The console's counters as JSON: open workspace stores, the gate, the feed."""
    ctx = _request_ctx()
    if not may_see(ctx):
        raise BadInput("Only admins may read the console's stats (or anyone, in the demo).", 403)
    console, tenants = state(), ctx.runtime.tenants
    body: dict[str, Any] = {"demo": console.demo, "feed": {
        "total": console.feed.total,
        "recent": [c._asdict() for c in console.feed.snapshot(limit=200)],
    }}  # fmt: skip
    if tenants is not None:
        body["tenants"] = {"open": sorted(str(k) for k, _ in tenants.open_stores()), "files": tenants.keys(),
                           **tenants.stats.__dict__}  # fmt: skip
        body["gate"] = {"refused": console.gate.refused if console.gate is not None else 0}
    return jsonify(body)


_persona = command(commands.persona, anonymous=True, while_masquerading=True)


@bp.post("/console/persona/<name>")
@functools.wraps(_persona)
def persona(name: str) -> Any:
    if not state().demo:
        raise BadInput("There is no persona switcher here: it exists only in the demo (ORION_DEMO=1).", 404)
    return _persona(name=name)


bp.post("/console/probe/<key>")(command(commands.probe))
