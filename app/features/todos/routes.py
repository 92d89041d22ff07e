"""todos: the blueprint. One page, one live stream with two regions, five commands."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from markupsafe import Markup

from app.belt import Ctx, command, document, live_attrs, region, request_ctx, stream

from . import commands, sql, view

bp = Blueprint("todos", __name__)

LIST = region("todo-list", topics=[commands.TOPIC], model=lambda ctx: sql.all(ctx.store), view=view.todo_list)
STATUS = region(
    "todo-status",
    topics=[commands.TOPIC],
    model=lambda ctx: view.status_model(sql.all(ctx.store)),
    view=view.status,
)


def _page(ctx: Ctx, form: Markup) -> Markup:
    body = view.page(form, LIST.render(ctx), STATUS.render(ctx), live_attrs("/todos/live"))
    return document("Todos", body)


def _page_with_errors(ctx: Ctx, issues: dict[str, str], values: dict[str, Any]) -> Markup:
    value = values.get("title")
    return _page(ctx, view.new_form(value if isinstance(value, str) else "", issues.get("title")))


@bp.get("/")
def index() -> Markup:
    return _page(request_ctx(), view.new_form())


@bp.get("/todos/live")
def live() -> Any:
    return stream([LIST, STATUS])


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
