"""todos: commands. Validate, write in one transaction, publish "todos" (after commit)."""

from __future__ import annotations

from typing import Any

from app.belt import Ctx, Refused, Respond, analytics, require, shape

from . import sql

TOPIC = "todos"

TITLE = shape.text(trim=True, min=1, max=200, label="Title")
NEW = shape.obj(title=TITLE)
RENAME = shape.obj(title=TITLE)
DONE = shape.obj(done=shape.boolean())


def add(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    user = require(ctx, "create", "todos:*")
    with ctx.store.tx():
        sql.insert(ctx.store, data["title"])
        ctx.bus.publish(TOPIC)
    analytics.track("todo_added", subject=user.id, tenant=ctx.tenant)  # buffered: never slows the command
    respond.signals(title="")


def set_done(ctx: Ctx, data: dict[str, Any], respond: Respond, todo_id: int) -> None:
    user = require(ctx, "edit", f"todos:{todo_id}")
    with ctx.store.tx():
        _exists(ctx, todo_id)
        sql.set_done(ctx.store, todo_id, data["done"])
        ctx.bus.publish(TOPIC)
    if data["done"]:
        analytics.track("todo_completed", subject=user.id, tenant=ctx.tenant)


def rename(ctx: Ctx, data: dict[str, Any], respond: Respond, todo_id: int) -> None:
    require(ctx, "edit", f"todos:{todo_id}")
    with ctx.store.tx():
        _exists(ctx, todo_id)
        sql.rename(ctx.store, todo_id, data["title"])
        ctx.bus.publish(TOPIC)


def delete(ctx: Ctx, data: dict[str, Any], respond: Respond, todo_id: int) -> None:
    require(ctx, "delete", f"todos:{todo_id}")
    with ctx.store.tx():
        _exists(ctx, todo_id)
        sql.delete(ctx.store, todo_id)
        ctx.bus.publish(TOPIC)


def clear_completed(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    require(ctx, "delete", "todos:*")
    with ctx.store.tx():
        if sql.clear_completed(ctx.store):
            ctx.bus.publish(TOPIC)


def _exists(ctx: Ctx, todo_id: int) -> None:
    if sql.get(ctx.store, todo_id) is None:
        raise Refused(
            f"There is no todo #{todo_id}: someone may have deleted it. The list on your page "
            "is current; pick another one.",
            404,
        )
