"""admin: pure views for the flags, health and billing pages.

Every control is a real ``<form>``; with Datastar loaded, one listener per region turns a
submit into a background ``@post`` of that form (as in the todos list).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from markupsafe import Markup

from app.belt import BreakerSnapshot, Flag, html, join

# One listener per region: a form's submit becomes a background post of that form.
_DELEGATE = Markup(
    " data-on:submit__prevent=\"@post(evt.target.action, {contentType: 'form', "
    "selector: '#' + evt.target.id, requestCancellation: 'disabled'})\""
)

TABS = (("flags", "/admin/flags", "Flags"), ("health", "/admin/health", "Health"), ("billing", "/billing", "Billing"))


def tabs(current: str, admin: bool) -> Markup:
    """Links between the capability pages (the admin ones only for those who may manage)."""
    shown = [t for t in TABS if admin or t[0] == "billing"]
    return html(
        '<nav class="tabs">{}</nav>',
        join(
            html('<a href="{}"{}>{}</a>', url, Markup(' aria-current="page"') if key == current else "", label)
            for key, url, label in shown
        ),
    )


def page(title: str, intro: Markup | str, region: Markup, live: Markup, nav_tabs: Markup) -> Markup:
    return html(
        '<main class="app wide"{}>{}<h1>{}</h1><p class="hint">{}</p>{}</main>', live, nav_tabs, title, intro, region
    )


# -- flags ---------------------------------------------------------------------------------


def flag_list(flags: Sequence[Flag]) -> Markup:
    """The live flags region: each flag's state, rollout and targets, with their forms."""
    if not flags:
        return Markup(
            '<section id="flag-list"><p class="hint">No flags yet: a feature declares its flags in code '
            "(<code>FLAGS = {...}</code>).</p></section>"
        )
    return html(
        '<section id="flag-list"{}><table class="users flags"><thead><tr><th>Flag</th><th>State</th>'
        "<th>Rollout</th><th>Targets (attr:value)</th></tr></thead><tbody>{}</tbody></table></section>",
        _DELEGATE,
        join(_flag_row(i, flag) for i, flag in enumerate(flags)),
    )


def _flag_row(i: int, flag: Flag) -> Markup:
    url = f"/admin/flags/{flag.name}"
    if flag.error is not None:
        state = html('<span class="state state-open" title="{}">Broken</span>', flag.error)
    elif flag.enabled:
        state = Markup('<span class="state state-closed">On</span>')
    else:
        state = Markup('<span class="state state-off">Off</span>')
    toggle = html(
        '<form id="flag-{i}-t" method="post" action="{url}/toggle">'
        '<input type="hidden" name="enabled" value="{value}">'
        '<button aria-label="Turn {name} {word}">Turn {word}</button></form>',
        i=i,
        url=url,
        value="false" if flag.enabled else "true",
        name=flag.name,
        word="off" if flag.enabled else "on",
    )
    percent = html(
        '<form id="flag-{i}-p" class="inline" method="post" action="{url}/percent">'
        '<input name="percent" type="number" min="0" max="100" step="1" value="{value}" '
        'aria-label="Rollout percent of {name}"><span>%</span><button>Set</button></form>',
        i=i,
        url=url,
        value=f"{flag.percent:g}",
        name=flag.name,
    )
    targets = html(
        '<form id="flag-{i}-g" class="targets" method="post" action="{url}/targets">'
        '<input name="on_for" value="{on}" placeholder="on for: role:admin key:42" aria-label="On for ({name})">'
        '<input name="off_for" value="{off}" placeholder="off for (kill switch)" aria-label="Off for ({name})">'
        "<button>Save</button></form>",
        i=i,
        url=url,
        on=" ".join(flag.on_for),
        off=" ".join(flag.off_for),
        name=flag.name,
    )
    changed = html("<small>changed {} by {}</small>", flag.updated_at[:19].replace("T", " "), flag.updated_by or "—")
    return html(
        '<tr id="flag-{}" data-flag="{}"><td><strong>{}</strong><br><small>{}</small></td>'
        "<td>{} {}<br>{}</td><td>{}</td><td>{}</td></tr>",
        i,
        flag.name,
        flag.name,
        flag.description,
        state,
        toggle,
        changed,
        percent,
        targets,
    )


# -- health --------------------------------------------------------------------------------


def health(model: tuple[Sequence[BreakerSnapshot], bool]) -> Markup:
    """The live health region: every registered breaker, and the demo dependency's controls."""
    breakers, demo_failing = model
    rows = join(_breaker_row(i, b) for i, b in enumerate(breakers))
    demo = html(
        '<div class="demo"><p>The demo dependency is <strong id="demo-state">{}</strong>.</p>'
        '<form id="demo-fail" method="post" action="/admin/health/demo/fail">'
        '<input type="hidden" name="failing" value="{}"><button>{}</button></form>'
        '<form id="demo-call" method="post" action="/admin/health/demo/call"><button>Call it</button></form></div>',
        "failing" if demo_failing else "healthy",
        "false" if demo_failing else "true",
        "Make it healthy" if demo_failing else "Make it fail",
    )
    return html(
        '<section id="breaker-list"{}><table class="users breakers"><thead><tr><th>Dependency</th><th>State</th>'
        "<th>Failures</th><th>Calls</th><th>Failed fast</th><th>Last change</th></tr></thead>"
        "<tbody>{}</tbody></table>{}</section>",
        _DELEGATE,
        rows,
        demo,
    )


def _breaker_row(i: int, b: BreakerSnapshot) -> Markup:
    reset = Markup("")
    if b.state != "closed":
        reset = html(
            '<form id="breaker-{}-r" method="post" action="/admin/health/{}/reset"><button class="link">'
            "Close by hand</button></form>",
            i,
            b.name,
        )
    error = html("<br><small>{}</small>", b.last_error) if b.last_error else Markup("")
    return html(
        '<tr id="breaker-{i}" data-breaker="{name}" data-state="{state}"><td><strong>{name}</strong>'
        "<br><small>opens after {threshold} failures, probes after {cooloff:g} s</small></td>"
        '<td><span class="state state-{state}">{state}</span>{reset}</td>'
        "<td>{failures} / {threshold}{error}</td><td>{calls}</td><td>{rejections}</td><td>{changed}</td></tr>",
        i=i,
        name=b.name,
        state=b.state,
        threshold=b.threshold,
        cooloff=b.cooloff,
        reset=reset,
        failures=b.failures,
        error=error,
        calls=b.calls,
        rejections=b.rejections,
        changed=time.strftime("%H:%M:%S UTC", time.gmtime(b.changed_at)),
    )


# -- billing -------------------------------------------------------------------------------


class BillingModel(NamedTuple):
    provider: str | None  # None: billing is off
    plan: str = ""
    capabilities: tuple[str, ...] = ()
    for_sale: tuple[str, ...] = ()
    available: bool = True
    status: str | None = None


def billing_plan(model: BillingModel) -> Markup:
    """The live plan region: the plan, what it includes, and how to get more."""
    if model.provider is None:
        return Markup(
            '<section id="billing-plan"><p>Billing is off on this server (self-hosted): every capability '
            "is included.</p></section>"
        )
    included = join(html("<li><code>{}</code></li>", c) for c in model.capabilities) or Markup(
        "<li>nothing beyond the basics</li>"
    )
    status = html(" <small>({})</small>", model.status) if model.status else ""
    offers = [p for p in model.for_sale if p != model.plan]
    if not model.available:
        action = Markup(
            '<p class="degraded" role="status">Payments are unavailable right now; upgrading will be back '
            "shortly. Everything you already have keeps working.</p>"
        )
    else:
        action = join(
            html(
                '<form id="upgrade-{plan}" method="post" action="/billing/upgrade">'
                '<input type="hidden" name="plan" value="{plan}"><button>Upgrade to {label}</button></form>',
                plan=plan,
                label=plan.capitalize(),
            )
            for plan in offers
        )
    return html(
        '<section id="billing-plan"{}><p>Your plan: <strong class="plan">{}</strong>{}</p>'
        "<p>Included:</p><ul>{}</ul>{}</section>",
        _DELEGATE,
        model.plan,
        status,
        included,
        action,
    )


def checkout_note(outcome: str | None) -> Markup:
    """What the page says when the customer comes back from the checkout."""
    if outcome == "done":
        return Markup(
            '<p class="ok" role="status">Thank you! Your plan changes here as soon as the payment is '
            "confirmed (usually within seconds); no need to reload.</p>"
        )
    if outcome == "cancelled":
        return Markup('<p class="hint" role="status">Checkout cancelled: nothing was charged.</p>')
    return Markup("")


def problem(message: str) -> Markup:
    return html('<p class="field-error" role="alert">{}</p>', message)
