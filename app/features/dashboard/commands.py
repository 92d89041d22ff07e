"""dashboard: commands. Each saves a piece of the admin's dashboard state and publishes it.

The state is the admin's own (per user, server-side): the open tab, the trace on show, the
logs filter. Publishing ``dashboard:<user>`` repaints every dashboard that admin has open, so
a switch made in one browser moves the others too, and a reload opens where they left off.
"""

from __future__ import annotations

from typing import Any

from app.belt import Ctx, Respond, User, require, shape

from . import sql

#: The tabs, grouped as the page shows them.
GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Observability", (("health", "Health"), ("traces", "Traces"), ("logs", "Logs"))),
    ("Operations", (("jobs", "Jobs"), ("audit", "Audit"), ("flags", "Flags"))),
    ("Product", (("analytics", "Analytics"),)),
)
TABS = tuple(key for _, tabs in GROUPS for key, _ in tabs)
DEFAULT = "health"

TAB = shape.obj(tab=shape.choice(*TABS, label="Tab"))
TRACE = shape.obj(
    trace=shape.text(
        min=16,
        max=32,
        pattern=r"[0-9a-f]{16}|[0-9a-f]{32}",
        label="Trace id",
        pattern_message="A trace id is 32 hex digits (a request id, 16).",
    ),
)
FILTER = shape.obj(q=shape.optional(shape.text(max=200, label="Filter"), default=""))


def topic(user_id: str) -> str:
    """The topic that repaints one admin's dashboards."""
    return f"dashboard:{user_id}"


def admin_id(user: User) -> str:
    return "local" if user.local else str(user.id)


def switch_tab(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    _save(ctx, "tab", data["tab"])


def show_trace(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    _save(ctx, "trace", data["trace"])


def filter_logs(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    _save(ctx, "logs", data["q"] or "")


def _save(ctx: Ctx, key: str, value: str) -> None:
    user = require(ctx, "manage", "admin:*")
    with ctx.store.tx():
        sql.save(ctx.store, admin_id(user), key, value)
        ctx.bus.publish(topic(admin_id(user)))
