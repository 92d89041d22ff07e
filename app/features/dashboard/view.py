"""dashboard: pure views. Each panel is a function of its model; times are shown in UTC.

The page is a **shell** (the tab bar, grouped, and one panel container) and the open panel's
regions. Only the open panel is in the DOM: its container opens the panel's own stream
(``data-init``) with ``requestCancellation: 'cleanup'``, so when a tab switch morphs the
container away, Datastar aborts that stream, and the new container opens the next one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from markupsafe import Markup

from app.belt import Row, analytics, canon, health, html, join, stalls, trace

STREAM_OPTIONS = (
    "{requestCancellation: 'cleanup', retry: 'always', retryMaxCount: Infinity, retryInterval: 500, retryMaxWait: 5000}"
)


class Shell(NamedTuple):
    tab: str
    groups: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    regions: tuple[str, ...]  # the ids of the open panel's regions
    links: tuple[tuple[str, str], ...]  # the other admin pages this app has


def _form_action(url: str) -> Markup:
    return html(" data-on:submit__prevent=\"@post('{}', {{contentType: 'form'}})\"", url)


def _time(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def _ms(ms: float) -> str:
    return f"{ms:,.1f} ms" if ms < 10_000 else f"{ms / 1000:,.1f} s"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:,.0f} {unit}"
        n /= 1024
    return f"{n:,.1f} GiB"


def page(body: Markup) -> Markup:
    return html('<main class="app wide dash-page"><h1>Admin</h1>{}</main>', body)


def shell(model: Shell, panel: Markup | None = None) -> Markup:
    """The tab bar and the open panel's container (``panel``: its regions, rendered; else
    empty region slots that the panel's stream fills in its first frame)."""
    tabs = join(
        html(
            '<div class="dash-group"><h2>{}</h2>{}</div>',
            group,
            join(
                html(
                    '<form method="post" action="/admin/tab"{}><input type="hidden" name="tab" value="{}">'
                    '<button{} data-tab="{}">{}</button></form>',
                    _form_action("/admin/tab"),
                    key,
                    Markup(' aria-current="page" class="current"') if key == model.tab else "",
                    key,
                    label,
                )
                for key, label in tabs
            ),
        )
        for group, tabs in model.groups
    )
    links = join(html('<a href="{}">{}</a>', url, label) for label, url in model.links)
    if panel is None:
        panel = join(html('<div id="{}" class="dash-body" aria-busy="true"></div>', rid) for rid in model.regions)
    return html(
        '<div id="dash-shell" class="dash"><nav class="dash-tabs" aria-label="Dashboard">{}{}</nav>'
        '<section id="panel-{}" class="dash-panel" data-tab="{}" data-init="@get(\'/admin/live/{}\', {})">{}</section>'
        "</div>",
        tabs,
        html('<div class="dash-group"><h2>Pages</h2><p class="dash-links">{}</p></div>', links) if model.links else "",
        model.tab,
        model.tab,
        model.tab,
        Markup(STREAM_OPTIONS),  # noqa: S704 - a constant of this module
        panel,
    )


def _trace_link(trace_id: str | None, label: str | None = None) -> Markup:
    if not trace_id:
        return Markup("")
    return html('<a class="trace-link" href="/admin/traces/{}"><code>{}</code></a>', trace_id, label or trace_id[:8])


def _table(head: Sequence[str], rows: Sequence[Markup], empty: str, cls: str = "") -> Markup:
    if not rows:
        return html('<p class="hint">{}</p>', empty)
    return html(
        '<table class="dash-table {}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        cls,
        join(html("<th>{}</th>", h) for h in head),
        join(rows),
    )


# -- Health -------------------------------------------------------------------------------


def health_panel(f: health.Figures) -> Markup:
    figures = (
        ("Event-loop lag", _ms(f.lag_ms), f"worst in 10 s: {_ms(f.lag_max_ms)}"),
        ("Stalls", f"{f.stall_count}", f"worst {_ms(f.stall_worst_ms)}" if f.stall_count else "none since start"),
        ("Open streams", f"{f.streams}", f"{f.regions} regions"),
        ("Bus subscribers", f"{f.subscribers}", ""),
        ("Requests", f"{f.rate('requests'):,.1f}/s", f"{f.requests:,} in all, {f.errors:,} errors"),
        ("Renders", f"{f.rate('renders'):,.1f}/s", f"{f.rate('events'):,.1f} events/s"),
        ("Sent", f"{_bytes(f.rate('wire_bytes'))}/s", "compressed"),
        ("Store queries", f"{f.rate('queries'):,.1f}/s", f"{f.rate('memo_hits'):,.1f} memo hits/s"),
    )
    cards = join(
        html('<div class="dash-card"><dt>{}</dt><dd>{}</dd><small>{}</small></div>', name, value, note)
        for name, value, note in figures
    )
    jobs = (
        html('<p class="hint">No jobs table in this database.</p>')
        if f.jobs is None
        else html('<p class="dash-pills">{}</p>', join(html("<span>{} <b>{}</b></span>", k, v) for k, v in f.jobs))
    )
    breakers = _table(
        ("Dependency", "State", "Failures"),
        [html('<tr class="breaker-{}"><td>{}</td><td>{}</td><td>{}</td></tr>', s, n, s, c) for n, s, c in f.breakers],
        "No circuit breakers registered in this process yet.",
    )
    return html(
        '<div id="dash-health" class="dash-body"><dl class="dash-cards">{}</dl>'
        "<h3>Stalls</h3>{}<h3>Open streams by route</h3>{}"
        "<h3>Slowest recent queries</h3>{}<h3>Costliest statements</h3>{}"
        '<h3>Job queue</h3>{}<h3>Circuit breakers</h3>{}<p class="hint">Up {} s.</p></div>',
        cards,
        _stalls(f.last_stalls),
        _table(
            ("Route", "Streams"),
            [html("<tr><td><code>{}</code></td><td>{}</td></tr>", r, n) for r, n in f.streams_by_route],
            "No stream is open.",
        ),
        _queries(f.slowest),
        _table(
            ("Calls", "Total", "Worst", "SQL"),
            [
                html(
                    '<tr><td>{}</td><td>{}</td><td>{}</td><td><code class="sql">{}</code></td></tr>',
                    c,
                    _ms(t),
                    _ms(w),
                    s,
                )
                for s, c, t, w in f.costliest
            ],
            "No queries yet.",
        ),
        jobs,
        breakers,
        f.uptime,
    )


def _stalls(recent: Sequence[stalls.Stall]) -> Markup:
    return _table(
        ("At", "Blocked", "Where", "Culprit", "Trace"),
        [
            html(
                '<tr class="stall"><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code>'
                '<details><summary>stack</summary><pre>{}</pre><p class="hint">{}</p></details></td><td>{}</td></tr>',
                _time(s.at),
                _ms(s.duration_ms),
                s.where,
                s.culprit,
                "\n".join(s.stack),
                s.greenlet or "",
                _trace_link(s.trace_id),
            )
            for s in recent
        ],
        "The hub has not been blocked past the threshold since the process started.",
    )


def _queries(queries: Sequence[health.Query]) -> Markup:
    return _table(
        ("At", "Time", "Store", "SQL", "Trace"),
        [
            html(
                '<tr><td>{}</td><td>{}</td><td>{}</td><td><code class="sql">{}</code></td><td>{}</td></tr>',
                _time(q.at),
                _ms(q.ms),
                q.db,
                q.sql,
                _trace_link(q.trace_id),
            )
            for q in queries
        ],
        "No queries yet.",
    )


# -- Traces -------------------------------------------------------------------------------


class TracesModel(NamedTuple):
    traces: tuple[trace.TraceRecord, ...]
    selected_id: str | None
    selected: trace.TraceRecord | None


def traces_panel(m: TracesModel) -> Markup:
    rows = [
        html(
            '<tr class="{}"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>'
            '<td><form method="post" action="/admin/trace"{}><input type="hidden" name="trace" value="{}">'
            '<button class="link">show</button></form></td></tr>',
            " ".join(c for c in ("selected" if m.selected is t else "", "failed" if t.status == "error" else "") if c),
            _time(t.start),
            t.name,
            t.root.attribute("http.response.status_code") or t.status,
            _ms(t.duration * 1000),
            len(t.spans),
            _form_action("/admin/trace"),
            t.trace_id,
        )
        for t in m.traces
    ]
    if m.selected is not None:
        detail = span_tree(m.selected)
    elif m.selected_id:
        detail = html(
            '<p class="hint">Trace <code>{}</code> is no longer in memory (the last 200 are kept).</p>', m.selected_id
        )
    else:
        detail = html('<p class="hint">Show a trace to see its span tree.</p>')
    return html(
        '<div id="dash-traces" class="dash-body"><div class="dash-split"><div>{}</div><div>{}</div></div></div>',
        _table(("At", "Request", "Status", "Took", "Spans", ""), rows, "No request has finished yet.", "traces"),
        detail,
    )


def span_tree(t: trace.TraceRecord) -> Markup:
    """A trace as a waterfall: one row per span, indented by depth, a bar where it ran."""
    total = max(t.duration, 1e-9)

    def row(depth: int, s: trace.SpanRecord) -> Markup:
        left = max(0.0, min(100.0, (s.start - t.start) / total * 100))
        width = max(0.5, min(100.0 - left, s.duration / total * 100))
        attrs = join(html("<span>{}={}</span>", k, v) for k, v in s.attributes)
        return html(
            '<li class="span {}" style="--depth:{}"><div class="span-name">{}<small>{}</small>{}</div>'
            '<div class="span-bar"><i style="margin-left:{:.2f}%;width:{:.2f}%"></i></div>'
            '<div class="span-attrs">{}</div></li>',
            "failed" if s.status == "error" else "",
            depth,
            s.name,
            _ms(s.duration * 1000),
            html('<em class="err">{}</em>', s.error) if s.error else "",
            left,
            width,
            attrs,
        )

    dropped = html('<p class="hint">{} more spans were not kept.</p>', t.dropped) if t.dropped else ""
    return html(
        '<div class="span-tree" data-trace="{}"><h3>{} <small>{} · trace <code>{}</code></small></h3>'
        "<ol>{}</ol>{}</div>",
        t.trace_id,
        t.name,
        _ms(t.duration * 1000),
        t.trace_id,
        join(row(d, s) for d, s in t.tree()),
        dropped,
    )


# -- Logs ---------------------------------------------------------------------------------


def logs_filter(q: str) -> Markup:
    return html(
        '<form id="logs-filter" class="dash-filter" method="post" action="/admin/logs"{}>'
        '<label for="logs-q">Filter</label><input id="logs-q" name="q" value="{}" autocomplete="off" '
        'placeholder="status>=500 route=/todos tags.plan=pro slow"><button>Apply</button>'
        '<small class="hint">key=value, !=, &gt;, &lt;, &gt;=, &lt;= on any field (tags.x, flags.x); '
        "other words match anywhere in the line.</small></form>",
        _form_action("/admin/logs"),
        q,
    )


class LogsModel(NamedTuple):
    q: str
    entries: tuple[canon.Entry, ...]
    scanned: int


def logs_panel(m: LogsModel) -> Markup:
    rows = [
        html(
            '<tr class="{}"><td>{}</td><td>{} <code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td><td><details><summary>line</summary><pre>{}</pre></details></td></tr>",
            e.fields.get("outcome", ""),
            str(e.fields.get("ts", ""))[11:19],
            e.fields.get("method", ""),
            e.fields.get("route") or e.fields.get("path", ""),
            e.fields.get("status", ""),
            e.fields.get("outcome", ""),
            _ms(float(e.fields.get("duration_ms") or 0)),
            e.fields.get("user", ""),
            _trace_link(e.fields.get("trace_id")),
            e.text,
        )
        for e in m.entries
    ]
    shown = f"{len(m.entries)} of the last {m.scanned} lines" + (f" matching {m.q!r}" if m.q else "")
    return html(
        '<div id="logs-lines" class="dash-body"><p class="hint">{}</p>{}</div>',
        shown,
        _table(
            ("At", "Request", "Status", "Outcome", "Took", "User", "Trace", ""),
            rows,
            "No canonical line matches." if m.q else "No request has finished yet.",
            "logs",
        ),
    )


# -- Jobs, Audit, Flags -------------------------------------------------------------------


class JobsModel(NamedTuple):
    counts: tuple[tuple[str, int], ...] | None
    jobs: tuple[Row, ...]
    page: str | None  # the jobs admin page, if the app has one


def jobs_panel(m: JobsModel) -> Markup:
    if m.counts is None:
        return Markup('<div id="dash-jobs" class="dash-body"><p class="hint">This app has no jobs table.</p></div>')
    rows = [
        html(
            '<tr class="job-{}"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}/{}</td><td>{}</td>'
            "<td>{}</td></tr>",
            r["state"],
            r["id"],
            r["kind"],
            r["state"],
            r["attempts"],
            r["max_attempts"],
            "" if r["progress"] is None else f"{r['progress']:.0%}",
            r["last_error"] or "",
        )
        for r in m.jobs
    ]
    return html(
        '<div id="dash-jobs" class="dash-body"><p class="dash-pills">{}</p>{}{}</div>',
        join(html("<span>{} <b>{}</b></span>", k, v) for k, v in m.counts),
        _table(
            ("Job", "Kind", "State", "Attempts", "Progress", "Last error"),
            rows,
            "No job is queued, running, retrying or dead.",
        ),
        html('<p><a href="{}">Retry or discard jobs on the jobs page.</a></p>', m.page) if m.page else "",
    )


class AuditModel(NamedTuple):
    records: tuple[Row, ...]
    interrupted: int


def audit_panel(m: AuditModel) -> Markup:
    rows = [
        html(
            '<tr class="audit-{}"><td>{}</td><td>{}</td><td>{}{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>'
            "<td>{}</td><td>{}</td></tr>",
            r["outcome"],
            r["seq"],
            str(r["at"])[11:19],
            r["actor"] or "",
            html(" <small>(as {})</small>", r["real_actor"]) if r["real_actor"] else "",
            r["action"],
            r["target"] or "",
            r["outcome"],
            r["reason"] or "",
            _trace_link(r["request_id"]),
        )
        for r in m.records
    ]
    warn = (
        html(
            '<p class="revoked">{} command(s) started and never recorded an outcome (a crash mid-effect). '
            "List them with <code>flask orion audit interrupted</code>.</p>",
            m.interrupted,
        )
        if m.interrupted
        else ""
    )
    return html(
        '<div id="dash-audit" class="dash-body">{}{}<p class="hint">The journal is hash-chained: '
        "<code>flask orion audit verify</code> names the first altered record.</p></div>",
        warn,
        _table(("#", "At", "Actor", "Action", "Target", "Outcome", "Reason", "Request"), rows, "No audit record yet."),
    )


class FlagsModel(NamedTuple):
    flags: tuple[Row, ...]
    evaluated: tuple[tuple[str, int, int], ...]  # (name, on, off) in the recent canonical lines
    page: str | None


def flags_panel(m: FlagsModel) -> Markup:
    seen = {name: (on, off) for name, on, off in m.evaluated}
    rows = [
        html(
            '<tr class="{}"><td><code>{}</code><br><small>{}</small></td><td>{}</td><td>{}%</td><td>{}</td><td>{}</td>'
            "<td>{} on · {} off</td></tr>",
            "on" if r["enabled"] else "off",
            r["name"],
            r["description"],
            "on" if r["enabled"] else "off",
            f"{r['percent']:g}",
            r["on_for"],
            r["off_for"],
            *seen.get(r["name"], (0, 0)),
        )
        for r in m.flags
    ]
    return html(
        '<div id="dash-flags" class="dash-body">{}<p class="hint">Evaluations are counted from the recent canonical '
        "lines (each request lists the flags it evaluated).</p>{}</div>",
        _table(("Flag", "Switch", "Rollout", "On for", "Off for", "Evaluated"), rows, "No flag is declared."),
        html('<p><a href="{}">Flip flags and set rollouts on the flags page.</a></p>', m.page) if m.page else "",
    )


# -- Analytics ----------------------------------------------------------------------------


class AnalyticsModel(NamedTuple):
    counts: tuple[tuple[str, int, int], ...]
    funnel: tuple[analytics.Step, ...]
    within_days: int
    cohorts: tuple[analytics.Cohort, ...]
    recent: tuple[Row, ...]
    capture: tuple[int, int, int]  # tracked, written, dropped (this process)


def analytics_panel(m: AnalyticsModel) -> Markup:
    first = m.funnel[0].subjects if m.funnel else 0
    steps = join(
        html(
            '<li><span class="step">{}</span><span class="bar"><i style="width:{:.1f}%"></i></span>'
            "<b>{}</b> <small>{:.0%}</small></li>",
            s.name,
            s.share_of(first) * 100,
            s.subjects,
            s.share_of(first),
        )
        for s in m.funnel
    )
    weeks = max((len(c.returned) for c in m.cohorts), default=0)
    cohort_rows = [
        html(
            "<tr><td>{}</td><td>{}</td>{}</tr>",
            c.week,
            c.size,
            join(html("<td>{:.0%}</td>", c.share(w)) for w in range(weeks)),
        )
        for c in m.cohorts
    ]
    head = ("Cohort (week of)", "People", *(f"week {w}" for w in range(weeks)))
    events = [
        html(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
            _time(r["at"]),
            r["name"],
            r["subject"] or "",
            r["props"],
        )
        for r in m.recent
    ]
    return html(
        '<div id="dash-analytics" class="dash-body"><p class="hint">'
        "This process tracked {} events, wrote {}, dropped {}."
        "</p><h3>Events</h3>{}<h3>Funnel <small>each step within {} days of the first</small></h3>"
        '<ol class="funnel">{}</ol><h3>Weekly retention</h3>{}<h3>Latest events</h3>{}</div>',
        *m.capture,
        _table(
            ("Event", "Count", "People"),
            [html("<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>", n, c, s) for n, c, s in m.counts],
            "No event tracked yet.",
        ),
        m.within_days,
        steps,
        _table(head, cohort_rows, "No cohort yet."),
        _table(("At", "Event", "Subject", "Props"), events, "No event yet."),
    )


def trace_page(t: trace.TraceRecord | None, trace_id: str) -> Markup:
    """The permalink page of one trace (not live: a trace never changes once it ended)."""
    if t is None:
        body = html(
            '<p class="hint">Trace <code>{}</code> is not in memory: this process keeps its last 200 traces '
            "(and it may have been served by another process).</p>",
            trace_id,
        )
    else:
        body = span_tree(t)
    return html('<main class="app wide dash-page"><p><a href="/admin">← Admin</a></p>{}</main>', body)


def forbidden() -> Markup:
    return Markup('<main class="app"><p class="revoked">Only admins can see the admin dashboard.</p></main>')
