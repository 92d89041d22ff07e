"""jobs_admin: the blueprint. One page, one live region, five commands."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, request
from markupsafe import Markup

from app.belt import (
    Ctx,
    Watchable,
    can,
    command,
    current_user,
    document,
    idempotent,
    live_attrs,
    region,
    request_ctx,
    stream,
)
from app.patterns.nav import nav

from . import commands, sql, view

bp = Blueprint("jobs_admin", __name__)


def may_manage(ctx: Ctx) -> bool:
    return can(ctx, "manage", "jobs:*")


def panel_model(ctx: Ctx) -> view.PanelModel:
    return tuple(view.StoreJobs(*sql.of_store(tenant, store)) for tenant, store in ctx.runtime.all_stores())


class _TenantJobs:
    """Wakes on the jobs and workflows topics of every workspace open when the stream starts."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    def subscribe(self, callback: Any) -> Any:
        bus = self.ctx.runtime.bus
        stops = [
            bus.subscribe(f"{tenant}:{topic}", callback)
            for tenant, _ in self.ctx.runtime.all_stores()
            if tenant is not None
            for topic in ("jobs", "workflows")
        ]
        return lambda: [stop() for stop in stops]


def tenant_jobs(ctx: Ctx) -> Watchable:
    return _TenantJobs(ctx)


PANEL = region("jobs-panel", topics=["jobs", "workflows"], watch=[tenant_jobs], model=panel_model, view=view.panel)
INTRO = (
    "Work that outlives the request, live: jobs commit with the write that asked for them, retry with "
    "backoff, and land here as dead after their last attempt. They run in this process and in any "
    "separate worker process (flask orion worker)."
)


@bp.get("/admin/jobs")
def page() -> Any:
    ctx = request_ctx()
    user = current_user(ctx)
    if user is None:
        return redirect("/signin?next=" + request.path)
    header = nav(user, admin=can(ctx, "manage", "users:*"))
    if not may_manage(ctx):
        refused = Markup('<main class="app"><p class="revoked">Only admins can see the jobs.</p></main>')
        return document("Jobs", refused, header=header), 403
    body = view.page(INTRO, PANEL.render(ctx), view.demos(), live_attrs("/admin/jobs/live"))
    return document("Jobs", body, header=header)


@bp.get("/admin/jobs/live")
def live() -> Any:
    return stream([PANEL], authorize=may_manage)


# Retrying twice (a double click, a client retry) is harmless anyway; the Idempotency-Key
# support shows how a command opts in.
bp.post("/admin/jobs/<id:job_id>/retry")(
    idempotent(command(commands.retry, shape=commands.TARGET, action="jobs.retry"))
)
bp.post("/admin/jobs/<id:job_id>/discard")(command(commands.discard, shape=commands.TARGET, action="jobs.discard"))
bp.post("/admin/jobs/demo/export")(
    command(commands.demo_export_start, shape=commands.EXPORT, action="jobs.demo_export")
)
bp.post("/admin/jobs/demo/flaky")(command(commands.demo_flaky_start, action="jobs.demo_flaky"))
bp.post("/admin/jobs/demo/onboarding")(command(commands.demo_onboarding_start, action="jobs.demo_onboarding"))
