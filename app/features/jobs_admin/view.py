"""jobs_admin: pure views. The panel is one live region; every form posts without JavaScript too."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from markupsafe import Markup

from app.belt import Row, html, join


class StoreJobs(NamedTuple):
    """One store's jobs, as the panel shows them (tenant None: the main store)."""

    tenant: str | None
    counts: tuple[tuple[str, int], ...]
    running: tuple[Row, ...]
    retrying: tuple[Row, ...]
    queued: tuple[Row, ...]
    dead: tuple[Row, ...]
    runs: tuple[Row, ...]


PanelModel = tuple[StoreJobs, ...]
LABELS = {"queued": "Queued", "retrying": "Retrying", "running": "Running", "dead": "Dead", "done": "Done"}

# Each form posts in the background with Datastar (and as a plain form post without it).
_DELEGATE = Markup(
    " data-on:submit__prevent=\"@post(evt.target.action, {contentType: 'form', "
    "selector: '#' + evt.target.id, requestCancellation: 'disabled'})\""
)


def _clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + " UTC" if ts else ""


def _where(tenant: str | None) -> str:
    return tenant or ""


def _first_line(text: str | None) -> str:
    return (text or "").splitlines()[0][:200] if text else ""


def _running(row: Row) -> Markup:
    value = row["progress"] or 0
    return html(
        '<li class="job running" id="job-{id}"><strong>{kind}</strong> #{id} '
        '<small>attempt {n} of {max}</small> <progress max="1" value="{value}" aria-label="Progress of job {id}">'
        "{pct}%</progress> <small>{pct}%</small></li>",
        id=row["id"],
        kind=row["kind"],
        n=row["attempts"],
        max=row["max_attempts"],
        value=f"{value:.3f}",
        pct=round(value * 100),
    )


def _retrying(row: Row) -> Markup:
    return html(
        '<li class="job retrying" id="job-{id}"><strong>{kind}</strong> #{id} <small>failed attempt {n} of {max}; '
        "next at {at}</small><br><code>{error}</code></li>",
        id=row["id"],
        kind=row["kind"],
        n=row["attempts"],
        max=row["max_attempts"],
        at=_clock(row["run_at"]),
        error=_first_line(row["last_error"]),
    )


def _queued(row: Row) -> Markup:
    return html(
        '<li class="job queued" id="job-{}"><strong>{}</strong> #{} <small>due {}</small></li>',
        row["id"],
        row["kind"],
        row["id"],
        _clock(row["run_at"]),
    )


def _dead(row: Row, tenant: str | None) -> Markup:
    forms = join(
        html(
            '<form id="job-{id}-{verb}" method="post" action="/admin/jobs/{id}/{verb}">'
            '<input type="hidden" name="tenant" value="{tenant}"><button{cls}>{label}</button></form>',
            id=row["id"],
            verb=verb,
            tenant=_where(tenant),
            label=label,
            cls=Markup(' class="danger"') if verb == "discard" else "",
        )
        for verb, label in (("retry", "Retry"), ("discard", "Discard"))
    )
    return html(
        '<li class="job dead" id="job-{id}"><strong>{kind}</strong> #{id} <small>dead after {n} attempt(s), '
        "{at}</small><details><summary><code>{first}</code></summary><pre>{error}</pre></details>"
        '<span class="actions">{forms}</span></li>',
        id=row["id"],
        kind=row["kind"],
        n=row["attempts"],
        at=_clock(row["updated_at"]),
        first=_first_line(row["last_error"]),
        error=row["last_error"] or "",
        forms=forms,
    )


def _run(row: Row) -> Markup:
    where = html(" waiting until {}", _clock(row["wake_at"])) if row["state"] == "waiting" else ""
    step = html(" at <em>{}</em>", row["step"]) if row["step"] else ""
    error = html("<br><code>{}</code>", _first_line(row["error"])) if row["error"] else ""
    return html(
        '<li class="run {state}" id="run-{id}"><strong>{name}</strong> #{id}: <span class="state">{state}</span>'
        "{step}{where} <small>({n} step(s) finished)</small>{error}</li>",
        id=row["id"],
        name=row["name"],
        state=row["state"],
        step=step,
        where=where,
        n=row["finished"],
        error=error,
    )


def _list(title: str, items: Sequence[Markup], empty: str) -> Markup:
    body = join(items) if items else html('<li class="empty">{}</li>', empty)
    return html('<h3>{} <small>({})</small></h3><ul class="jobs">{}</ul>', title, len(items), body)


def _section(part: StoreJobs, heading: bool) -> Markup:
    counts = join(
        html('<span class="count {}"><strong>{}</strong> {}</span>', state, n, LABELS[state])
        for state, n in part.counts
    )
    title = html("<h2>Workspace {}</h2>", part.tenant) if heading and part.tenant else Markup("")
    return html(
        '<section class="store" data-tenant="{tenant}">{title}<p class="counts">{counts}</p>{running}{retrying}'
        "{queued}{dead}{runs}</section>",
        tenant=_where(part.tenant),
        title=title,
        counts=counts,
        running=_list("Running", [_running(r) for r in part.running], "Nothing running."),
        retrying=_list("Retrying", [_retrying(r) for r in part.retrying], "Nothing waiting for a retry."),
        queued=_list("Queued", [_queued(r) for r in part.queued], "Nothing queued."),
        dead=_list("Dead", [_dead(r, part.tenant) for r in part.dead], "No dead jobs."),
        runs=_list("Workflow runs", [_run(r) for r in part.runs], "No workflow runs yet."),
    )


def panel(model: PanelModel) -> Markup:
    """The live region: each store's jobs by state, and its workflow runs."""
    shown = [p for p in model if p.tenant is None or any(n for _, n in p.counts) or p.runs]
    return html(
        '<section id="jobs-panel"{}>{}</section>',
        _DELEGATE,
        join(_section(p, heading=len(shown) > 1) for p in shown),
    )


def demos() -> Markup:
    """Buttons that start the demo jobs and the onboarding workflow."""
    buttons = [
        ("export", "Run an export (a progress bar)"),
        ("flaky", "Run a job that always fails (retries, then dead)"),
        ("onboarding", "Start the onboarding workflow (welcome, wait 5 s, tip)"),
    ]
    return html(
        '<section class="demos"{}><h2>Try it</h2>{}</section>',
        _DELEGATE,
        join(
            html(
                '<form id="demo-{k}" method="post" action="/admin/jobs/demo/{k}"><button>{label}</button></form>',
                k=key,
                label=label,
            )
            for key, label in buttons
        ),
    )


def page(intro: str, panel_html: Markup, demos_html: Markup, live: Markup) -> Markup:
    return html(
        '<main class="app wide"{}><h1>Jobs</h1><p class="hint">{}</p>{}{}</main>', live, intro, demos_html, panel_html
    )
