"""admin: commands. Flip and roll out flags, break and call the demo dependency, upgrade.

Flags and plans are written through the belt (``rt.flags.set``, the billing recipe), which
repaints every region watching them; the demo dependency publishes "admin.health".
"""

from __future__ import annotations

import logging
from typing import Any

from app.belt import (
    BREAKERS,
    CircuitOpen,
    Ctx,
    FlagError,
    Flags,
    Invalid,
    Refused,
    Respond,
    UnknownFlag,
    require,
    shape,
)

from . import demo, policy

log = logging.getLogger("orion.admin")

HEALTH_TOPIC = "admin.health"

TOGGLE = shape.obj(enabled=shape.boolean())
PERCENT = shape.obj(percent=shape.integer(min=0, max=100, label="Percent"))
TARGETS = shape.obj(
    on_for=shape.text(max=4000, label="On for"),
    off_for=shape.text(max=4000, label="Off for"),
)
DEMO_FAIL = shape.obj(failing=shape.boolean())
UPGRADE = shape.obj(plan=shape.text(min=1, max=100, label="Plan"))


# -- flags ---------------------------------------------------------------------------------


def toggle_flag(ctx: Ctx, data: dict[str, Any], respond: Respond, name: str) -> None:
    _set_flag(ctx, name, enabled=data["enabled"])


def set_percent(ctx: Ctx, data: dict[str, Any], respond: Respond, name: str) -> None:
    _set_flag(ctx, name, percent=data["percent"])


def set_targets(ctx: Ctx, data: dict[str, Any], respond: Respond, name: str) -> None:
    _set_flag(ctx, name, on_for=data["on_for"], off_for=data["off_for"])


def _set_flag(ctx: Ctx, name: str, **changes: Any) -> None:
    user = require(ctx, "manage", "flags:*")
    flags: Flags | None = ctx.runtime.flags
    if flags is None:
        raise Refused("This app has no feature flags.", 404)
    try:
        flags.set(name, by=str(user.id), **changes)
    except UnknownFlag as exc:
        raise Refused(str(exc), 404) from None
    except FlagError as exc:
        raise Invalid({exc.field or "form": str(exc)}) from None


# -- the demo dependency -------------------------------------------------------------------


def demo_fail(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    require(ctx, "manage", "health:*")
    demo.DEMO.failing = data["failing"]
    ctx.bus.publish(HEALTH_TOPIC)


def demo_call(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    """Call the demo dependency through its breaker; the health panel repaints by itself."""
    require(ctx, "manage", "health:*")
    try:
        demo.BREAKER.call(demo.DEMO.ping)
    except CircuitOpen as exc:
        respond.toast(f"Failed fast, nothing sent: {exc}", level="error")
    except ConnectionError as exc:
        respond.toast(f"The call failed: {exc}.", level="error")
    else:
        respond.toast("The demo dependency answered.", level="success")


def reset_breaker(ctx: Ctx, data: dict[str, Any], respond: Respond, name: str) -> None:
    require(ctx, "manage", "health:*")
    found = BREAKERS.find(name)
    if found is None:
        known = ", ".join(b.name for b in BREAKERS.all()) or "none"
        raise Refused(f"There is no breaker {name!r} in this process (registered: {known}).", 404)
    found.reset()


# -- billing -------------------------------------------------------------------------------


def upgrade(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    """Send the customer to the billing provider's checkout for ``plan``."""
    rt = ctx.runtime
    billing, ents = rt.billing, rt.entitlements
    if billing is None or ents is None:
        raise Refused("Billing is off on this server: every capability is already included.", 404)
    plan = data["plan"]
    for_sale = billing.for_sale()
    if plan not in for_sale:
        raise Invalid({"plan": f"{plan!r} is not for sale here; choose one of {', '.join(for_sale) or 'none'}."})
    account = policy.account_of(ctx)
    if account is None:
        raise Refused("Sign in to upgrade.", 403)
    if ents.plan(account) == plan:
        raise Invalid({"plan": f"Your account is already on {plan}."})
    base = ctx.request.host_url if ctx.request is not None else "/"
    try:
        url = billing.checkout(
            account, plan, success_url=base + "billing?checkout=done", cancel_url=base + "billing?checkout=cancelled"
        )
    except CircuitOpen as exc:
        raise Invalid({"plan": f"Payments are unavailable right now. {exc}"}) from None
    except Exception as exc:
        # The provider's failure is its own sentence; the breaker already counted it.
        log.warning("checkout for %s (%s) failed: %s", account, plan, exc)
        raise Invalid({"plan": f"The checkout could not start: {exc} Try again in a minute."}) from None
    respond.redirect(url)
