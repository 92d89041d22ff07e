"""dashboard: the blueprint. /admin: a shell of tabs and the open panel, each panel its own stream.

Every panel's stream carries two regions: the **shell** (the tab bar and the panel container,
repainted when this admin switches tabs) and the **panel** (repainted when what it shows
changes: a ring of traces or lines, the analytics flush, a flag flip, a job, once a second for
health). Switching tabs is a command that saves the tab and publishes ``dashboard:<admin>``;
the open stream repaints the shell with the new container, Datastar aborts the old stream as
its container leaves the DOM, and the new container opens the next panel's stream.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect, request
from markupsafe import Markup

from app.belt import (
    BREAKERS,
    Ctx,
    Watchable,
    analytics,
    can,
    canon,
    command,
    current_user,
    document,
    health,
    html,
    jobs,
    join,
    observe,
    region,
    request_ctx,
    stalls,
    stream,
    trace,
)
from app.patterns.nav import nav

from . import commands, sql, view

bp = Blueprint("dashboard", __name__)

#: The admin pages other slices may provide: linked from the dashboard when they exist.
PAGES = (("Users", "/admin/users"), ("Flags", "/admin/flags"), ("Health", "/admin/health"), ("Jobs", "/admin/jobs"))
FUNNEL = ("signed_up", "todo_added", "todo_completed")
FUNNEL_DAYS = 7
LOG_LINES = 100


class _Never:
    def subscribe(self, callback: Any) -> Any:
        return lambda: None


def may_admin(ctx: Ctx) -> bool:
    return can(ctx, "manage", "admin:*")


def _admin(ctx: Ctx) -> str:
    user = current_user(ctx)
    return commands.admin_id(user) if user is not None else "-"


def _state(ctx: Ctx) -> dict[str, str]:
    return sql.state(ctx.store, _admin(ctx))


def _tab(ctx: Ctx) -> str:
    tab = _state(ctx).get("tab", commands.DEFAULT)
    return tab if tab in commands.TABS else commands.DEFAULT


def _mine(ctx: Ctx) -> Watchable:
    """This admin's dashboard topic (a tab switch, a trace shown, a filter set)."""
    return ctx.bus.topic(commands.topic(_admin(ctx)))


def _flags_watch(ctx: Ctx) -> Watchable:
    return ctx.runtime.flags or _Never()  # type: ignore[no-any-return]


def _jobs_watch(ctx: Ctx) -> Watchable:
    return ctx.bus.topic(jobs.TOPIC)


# -- models ------------------------------------------------------------------------------


def shell_model(ctx: Ctx) -> view.Shell:
    tab = _tab(ctx)
    return view.Shell(tab, commands.GROUPS, tuple(r.id for r in PANELS[tab]), ctx.extra.get("dashboard.pages", ()))


def traces_model(ctx: Ctx) -> view.TracesModel:
    selected_id = _state(ctx).get("trace")
    return view.TracesModel(trace.RING.recent(50), selected_id, trace.find(selected_id) if selected_id else None)


def logs_model(ctx: Ctx) -> view.LogsModel:
    q = _state(ctx).get("logs", "")
    entries = canon.RING.recent()
    if q:
        entries = tuple(e for e in entries if canon.matches(e, q))
    return view.LogsModel(q, entries[:LOG_LINES], len(canon.RING))


def jobs_model(ctx: Ctx) -> view.JobsModel:
    counts = health.jobs_counts(ctx.store)
    if counts is None:
        return view.JobsModel(None, (), None)
    listed = tuple(
        row for state in ("running", "retrying", "dead", "queued") for row in jobs.listing(ctx.store, state, 10)
    )
    return view.JobsModel(counts, listed, _page(ctx, "/admin/jobs"))


def audit_model(ctx: Ctx) -> view.AuditModel:
    return view.AuditModel(sql.audit(ctx.store), sql.interrupted(ctx.store))


def flags_model(ctx: Ctx) -> view.FlagsModel:
    tally: dict[str, list[int]] = {}
    for entry in canon.RING.recent():
        for name, on in (entry.fields.get("flags") or {}).items():
            tally.setdefault(name, [0, 0])[0 if on else 1] += 1
    evaluated = tuple((name, on, off) for name, (on, off) in sorted(tally.items()))
    return view.FlagsModel(sql.flags(ctx.store), evaluated, _page(ctx, "/admin/flags"))


def analytics_model(ctx: Ctx) -> view.AnalyticsModel:
    store = ctx.store
    a = analytics.ANALYTICS
    return view.AnalyticsModel(
        analytics.counts(store),
        analytics.funnel(store, FUNNEL, within_days=FUNNEL_DAYS),
        FUNNEL_DAYS,
        analytics.retention(store, start="signed_up", weeks=6),
        analytics.recent(store, 15),
        (a.tracked, a.flushed, a.dropped),
    )


def _page(ctx: Ctx, url: str) -> str | None:
    return url if any(u == url for _, u in ctx.extra.get("dashboard.pages", ())) else None


SHELL = region("dash-shell", watch=[_mine], model=shell_model, view=view.shell)
PANELS = {
    "health": (
        region(
            "dash-health",
            watch=[health.TICK, stalls.RING, BREAKERS],
            model=lambda ctx: observe.figures(ctx.runtime),
            view=view.health_panel,
        ),
    ),
    "traces": (region("dash-traces", watch=[trace.RING, _mine], model=traces_model, view=view.traces_panel),),
    "logs": (
        region("logs-filter", watch=[_mine], model=lambda ctx: _state(ctx).get("logs", ""), view=view.logs_filter),
        region("logs-lines", watch=[canon.RING, _mine], model=logs_model, view=view.logs_panel),
    ),
    "jobs": (region("dash-jobs", watch=[_jobs_watch], model=jobs_model, view=view.jobs_panel),),
    "audit": (region("dash-audit", watch=[health.TICK], model=audit_model, view=view.audit_panel),),
    "flags": (region("dash-flags", watch=[_flags_watch, canon.RING], model=flags_model, view=view.flags_panel),),
    "analytics": (
        region("dash-analytics", watch=[analytics.ANALYTICS], model=analytics_model, view=view.analytics_panel),
    ),
}


# -- pages, streams, commands ------------------------------------------------------------


def _ctx() -> Ctx:
    """A request's ctx, carrying which admin pages this app has (streams run outside Flask)."""
    ctx = request_ctx()
    rules = {rule.rule for rule in current_app.url_map.iter_rules()}
    ctx.extra["dashboard.pages"] = tuple((label, url) for label, url in PAGES if url in rules)
    return ctx


def _refused(ctx: Ctx, title: str) -> Any:
    user = current_user(ctx)
    if user is None:
        return redirect("/signin?next=" + request.path)
    return document(title, view.forbidden(), header=nav(user, admin=can(ctx, "manage", "users:*"))), 403


def _head() -> Markup:
    return html('<link rel="stylesheet" href="/static/dashboard.css">\n')


@bp.get("/admin")
def index() -> Any:
    ctx = _ctx()
    if not may_admin(ctx):
        return _refused(ctx, "Admin")
    model = shell_model(ctx)
    panel = join(r.render(ctx) for r in PANELS[model.tab])
    header = nav(current_user(ctx), admin=can(ctx, "manage", "users:*"))
    return document("Admin", view.page(view.shell(model, panel)), head=_head(), header=header)


@bp.get("/admin/live/<tab>")
def live(tab: str) -> Any:
    if tab not in PANELS:
        abort(404)
    ctx = _ctx()
    return stream([SHELL, *PANELS[tab]], ctx=ctx, authorize=may_admin)


@bp.get("/admin/traces/<trace_id>")
def trace_page(trace_id: str) -> Any:
    ctx = _ctx()
    if not may_admin(ctx):
        return _refused(ctx, "Trace")
    found = trace.find(trace_id.lower()) if len(trace_id) <= 32 else None
    header = nav(current_user(ctx), admin=can(ctx, "manage", "users:*"))
    return document("Trace", view.trace_page(found, trace_id), head=_head(), header=header), 200 if found else 404


bp.post("/admin/tab")(command(commands.switch_tab, shape=commands.TAB, action="dashboard.tab"))
bp.post("/admin/trace")(command(commands.show_trace, shape=commands.TRACE, action="dashboard.trace"))
bp.post("/admin/logs")(command(commands.filter_logs, shape=commands.FILTER, action="dashboard.logs"))
