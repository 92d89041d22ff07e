"""patterns_demo: commands. Rename the profile (the inline editor's second check), say hello (a toast)."""

from __future__ import annotations

from typing import Any

from app.belt import Ctx, Invalid, Respond, shape
from app.patterns.inline_edit import inline_edit_done

from . import sql

TOPIC = "patterns_demo"
#: The inline editor's id, and the limits both checks use: the browser's (the input's
#: constraints, rendered from these) and the server's (the shape).
EDITOR = "demo-name"
NAME_MIN, NAME_MAX = 2, 40
NAME = shape.obj(name=shape.text(trim=True, min=NAME_MIN, max=NAME_MAX, label="Display name"))
#: A rule only the server knows: the browser cannot check it, the command always does.
RESERVED = frozenset({"admin", "root", "orion", "system"})


def rename(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    name = data["name"]
    if name.casefold() in RESERVED:
        raise Invalid({"name": f"{name!r} is reserved; pick another display name."})
    with ctx.store.tx():
        sql.set_profile_name(ctx.store, name)
        ctx.bus.publish(TOPIC)
    respond.signals(inline_edit_done(EDITOR))


def hello(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    respond.toast(
        "Hello! This toast went to you alone: shared truth travels through the live regions.", level="success"
    )
