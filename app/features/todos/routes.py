"""todos: the blueprint. One resource: the page, its live stream, the export, five commands."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, redirect, request
from markupsafe import Markup

from app.belt import (
    Ctx,
    Refused,
    Region,
    can,
    command,
    current_user,
    document,
    entitled,
    entitlements_watch,
    flag,
    flag_watch,
    grants_watch,
    html,
    live_attrs,
    region,
    request_ctx,
    resource,
)
from app.patterns.nav import nav

from . import commands, sql, view

bp = Blueprint("todos", __name__)


def perms(ctx: Ctx) -> view.Perms:
    """What the viewer may do, asked of authz (cached per subject: dictionary lookups)."""
    return view.Perms(can(ctx, "create", "todos:*"), can(ctx, "edit", "todos:*"), can(ctx, "delete", "todos:*"))


# Every region watches the viewer's grants: a role change repaints their controls at once.
NEW = region("todo-new", topics=[], watch=[grants_watch], model=lambda ctx: perms(ctx).create, view=view.new_todo)
LIST = region(
    "todo-list",
    topics=[commands.TOPIC],
    watch=[grants_watch],
    model=lambda ctx: (sql.all(ctx.store), perms(ctx)),
    view=view.todo_list,
)
STATUS = region(
    "todo-status",
    topics=[commands.TOPIC],
    watch=[grants_watch],
    model=lambda ctx: view.status_model(sql.all(ctx.store), perms(ctx)),
    view=view.status,
)


# Gated on a flag (an admin turns it on, for some or all) and on a capability (the plan).
STATS = region(
    "todo-stats",
    topics=[commands.TOPIC],
    watch=[flag_watch("todos.stats")],
    model=lambda ctx: view.stats_model(sql.all(ctx.store)) if flag(ctx, "todos.stats") else None,
    view=view.stats,
)
EXPORT = region(
    "todo-export", watch=[entitlements_watch], model=lambda ctx: entitled(ctx, "todos.export"), view=view.export_link
)


def footer() -> tuple[Region, ...]:
    """Regions another slice mounts at the foot of this page (the console's x-ray footer),
    wired by the composition root: ``app.extensions["todos.footer"]``."""
    return tuple(current_app.extensions.get("todos.footer", ()))


def may_view(ctx: Ctx) -> bool:
    return can(ctx, "view", "todos:*")


def _page(ctx: Ctx, form: Markup | None = None) -> Any:
    user = current_user(ctx)
    if user is None:
        return redirect("/signin?next=" + request.path)
    header = nav(user, admin=can(ctx, "manage", "users:*"))
    if not may_view(ctx):
        body = html(
            '<main class="app"><h1>Todos</h1><p class="revoked">You have no access to the todos. '
            "Ask an admin for a role.</p></main>"
        )
        return document("Todos", body, header=header), 403
    new = html('<div id="todo-new">{}</div>', form) if form is not None else NEW.render(ctx)
    extras = STATS.render(ctx) + EXPORT.render(ctx) + Markup().join(r.render(ctx) for r in footer())
    body = view.page(new, LIST.render(ctx), STATUS.render(ctx), live_attrs("todos/live"), extras)
    return document("Todos", body, header=header)


def _page_with_errors(ctx: Ctx, issues: dict[str, str], values: dict[str, Any]) -> Any:
    value = values.get("title")
    return _page(ctx, view.new_form(value if isinstance(value, str) else "", issues.get("title")))


def index() -> Any:
    return _page(request_ctx())


def export() -> Any:
    ctx = request_ctx()
    if current_user(ctx) is None:
        return redirect("/signin?next=" + request.path)
    if not may_view(ctx):
        raise Refused("You have no access to the todos. Ask an admin for a role.", 403)
    if not entitled(ctx, "todos.export"):  # the law; the hidden link is the courtesy
        raise Refused("Your plan does not include the export (todos.export). Upgrade on /billing.", 402)
    headers = {"Content-Disposition": 'attachment; filename="todos.csv"'}
    return Response(view.export_csv(sql.all(ctx.store)), mimetype="text/csv", headers=headers)


add = command(commands.add, shape=commands.NEW, form=view.FORM, page=_page_with_errors)
set_done = command(commands.set_done, shape=commands.DONE)
rename = command(commands.rename, shape=commands.RENAME)
delete = command(commands.delete)
clear_completed = command(commands.clear_completed)

todos = resource(
    bp,
    "todos",
    pages={"/": index, "/todos/export.csv": export},
    # One stream carries all the page's regions (and those another slice mounts in its footer).
    live=lambda: [NEW, LIST, STATUS, STATS, EXPORT, *footer()],
    authorize=may_view,
    commands={
        "POST /todos": add,
        "POST /todos/<id:todo_id>/toggle": set_done,
        "POST /todos/<id:todo_id>/rename": rename,
        "POST /todos/<id:todo_id>/delete": delete,
        "DELETE /todos/<id:todo_id>": delete,  # the same command for API clients and @delete()
        "POST /todos/clear-completed": clear_completed,
    },
)
