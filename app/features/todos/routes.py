"""todos: the blueprint. One page, one live stream with three regions, five commands."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, request
from markupsafe import Markup

from app.belt import (
    Ctx,
    can,
    command,
    current_user,
    document,
    grants_watch,
    html,
    live_attrs,
    region,
    request_ctx,
    stream,
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
    body = view.page(new, LIST.render(ctx), STATUS.render(ctx), live_attrs("todos/live"))
    return document("Todos", body, header=header)


def _page_with_errors(ctx: Ctx, issues: dict[str, str], values: dict[str, Any]) -> Any:
    value = values.get("title")
    return _page(ctx, view.new_form(value if isinstance(value, str) else "", issues.get("title")))


@bp.get("/")
def index() -> Any:
    return _page(request_ctx())


@bp.get("/todos/live")
def live() -> Any:
    return stream([NEW, LIST, STATUS], authorize=may_view)


add = command(commands.add, shape=commands.NEW, form=view.FORM, page=_page_with_errors)
set_done = command(commands.set_done, shape=commands.DONE)
rename = command(commands.rename, shape=commands.RENAME)
delete = command(commands.delete)
clear_completed = command(commands.clear_completed)

bp.post("/todos")(add)
bp.post("/todos/<id:todo_id>/toggle")(set_done)
bp.post("/todos/<id:todo_id>/rename")(rename)
bp.post("/todos/<id:todo_id>/delete")(delete)
bp.delete("/todos/<id:todo_id>")(delete)  # the same command for API clients and @delete()
bp.post("/todos/clear-completed")(clear_completed)
