"""admin: the blueprint. Three pages, each one live region, and the commands behind them."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, request
from markupsafe import Markup

from app.belt import (
    BREAKERS,
    Ctx,
    Watchable,
    can,
    command,
    current_user,
    document,
    entitlements_watch,
    live_attrs,
    region,
    request_ctx,
    stream,
)
from app.patterns.nav import nav

from . import commands, demo, policy, sql, view

bp = Blueprint("admin", __name__)


class _Never:
    def subscribe(self, callback: Any) -> Any:
        return lambda: None


def _flags_watch(ctx: Ctx) -> Watchable:
    return ctx.runtime.flags or _Never()  # type: ignore[no-any-return]


def _billing_watch(ctx: Ctx) -> Watchable:
    billing = ctx.runtime.billing
    return billing.breaker if billing is not None else _Never()


def billing_model(ctx: Ctx) -> view.BillingModel:
    rt = ctx.runtime
    account = policy.account_of(ctx)
    if rt.billing is None or rt.entitlements is None or account is None:
        return view.BillingModel(None)
    row = sql.account_plan(ctx.store, account)
    return view.BillingModel(
        rt.billing.name,
        rt.entitlements.plan(account),
        tuple(sorted(rt.entitlements.capabilities(account))),
        rt.billing.for_sale(),
        rt.billing.breaker.available(),
        row["status"] if row is not None else None,
    )


FLAGS = region(
    "flag-list",
    watch=[_flags_watch],
    model=lambda ctx: ctx.runtime.flags.all() if ctx.runtime.flags is not None else (),
    view=view.flag_list,
)
HEALTH = region(
    "breaker-list",
    topics=[commands.HEALTH_TOPIC],
    watch=[BREAKERS],
    model=lambda ctx: (BREAKERS.snapshots(), demo.DEMO.failing),
    view=view.health,
)
BILLING = region(
    "billing-plan", watch=[entitlements_watch, _billing_watch], model=billing_model, view=view.billing_plan
)


def may_flags(ctx: Ctx) -> bool:
    return can(ctx, "manage", "flags:*")


def may_health(ctx: Ctx) -> bool:
    return can(ctx, "manage", "health:*")


def signed_in(ctx: Ctx) -> bool:
    return current_user(ctx) is not None


def _page(ctx: Ctx, key: str, title: str, intro: Markup | str, body: Markup, live: str, allowed: bool) -> Any:
    user = current_user(ctx)
    if user is None:
        return redirect("/signin?next=" + request.path)
    header = nav(user, admin=can(ctx, "manage", "users:*"))
    if not allowed:
        refused = Markup('<main class="app"><p class="revoked">Only admins can see this page.</p></main>')
        return document(title, refused, header=header), 403
    admin = may_flags(ctx) and may_health(ctx)
    return document(title, view.page(title, intro, body, live_attrs(live), view.tabs(key, admin)), header=header)


@bp.get("/admin/flags")
def flags_page() -> Any:
    ctx = request_ctx()
    intro = (
        "Flip a flag, or roll it out to a percentage of people: every open page gated on it repaints "
        "at once. Targets are attr:value tokens (role:admin, key:42); \u201coff for\u201d beats everything."
    )
    return _page(ctx, "flags", "Feature flags", intro, FLAGS.render(ctx), "/admin/flags/live", may_flags(ctx))


@bp.get("/admin/flags/live")
def flags_live() -> Any:
    return stream([FLAGS], authorize=may_flags)


@bp.get("/admin/health")
def health_page() -> Any:
    ctx = request_ctx()
    intro = (
        "Every dependency wrapped in a circuit breaker in this process. A circuit opens after repeated "
        "failures (calls then fail fast), and one probe after the cooloff closes it again."
    )
    return _page(ctx, "health", "Health", intro, HEALTH.render(ctx), "/admin/health/live", may_health(ctx))


@bp.get("/admin/health/live")
def health_live() -> Any:
    return stream([HEALTH], authorize=may_health)


def _billing_page(ctx: Ctx, issues: dict[str, str], values: dict[str, Any]) -> Any:
    note = view.checkout_note(request.args.get("checkout"))
    if issues:
        note = view.problem(" ".join(issues.values()))
    body = note + BILLING.render(ctx)
    intro = "What your account's plan includes. An upgrade shows up on every open page as soon as it is paid."
    return _page(ctx, "billing", "Billing", intro, body, "/billing/live", signed_in(ctx))


@bp.get("/billing")
def billing_page() -> Any:
    return _billing_page(request_ctx(), {}, {})


@bp.get("/billing/live")
def billing_live() -> Any:
    return stream([BILLING], authorize=signed_in)


bp.post("/admin/flags/<name>/toggle")(command(commands.toggle_flag, shape=commands.TOGGLE, action="flags.toggle"))
bp.post("/admin/flags/<name>/percent")(command(commands.set_percent, shape=commands.PERCENT, action="flags.percent"))
bp.post("/admin/flags/<name>/targets")(command(commands.set_targets, shape=commands.TARGETS, action="flags.targets"))
bp.post("/admin/health/demo/fail")(command(commands.demo_fail, shape=commands.DEMO_FAIL, action="health.demo_fail"))
bp.post("/admin/health/demo/call")(command(commands.demo_call, action="health.demo_call"))
bp.post("/admin/health/<name>/reset")(command(commands.reset_breaker, action="health.reset"))
bp.post("/billing/upgrade")(
    command(commands.upgrade, shape=commands.UPGRADE, page=_billing_page, action="billing.upgrade")
)
