"""console: pure views of the architecture console and the todos page's x-ray footer.

Every model here is a tuple of tuples (hashable), so viewers with equal models share one
render. Forms post without JavaScript; with Datastar they post in the background.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from markupsafe import Markup

from app.belt import html, join

if TYPE_CHECKING:
    from .state import Call

ACTIONS = ("view", "create", "edit", "delete")


class Persona(NamedTuple):
    name: str  # the switcher's URL part: alice
    label: str
    email: str
    roles: str  # "home: owner · acme: —"
    current: bool


class You(NamedTuple):
    """The viewer (None: nobody signed in), their workspaces and the others (to probe)."""

    label: str | None
    demo: bool
    personas: tuple[Persona, ...]
    mine: tuple[tuple[str, str, str], ...]  # (key, name, role)
    foreign: tuple[tuple[str, str], ...]  # (key, name)
    tenancy: bool


class Directory(NamedTuple):
    users: tuple[tuple[str, str, str], ...]  # (email, name, account role)
    workspaces: tuple[tuple[str, str], ...]  # (key, name)
    roles: tuple[tuple[str, tuple[str, ...]], ...]  # (email, role per workspace or "")


class StoreRow(NamedTuple):
    key: str  # "main" or the workspace key
    name: str
    path: str
    size: int  # bytes of the file and its WAL; -1: no file
    open: bool
    streams: int  # live streams reading it (tenancy never closes those)
    todos: int | None  # None: this store holds no todos (the directory)


class Counters(NamedTuple):
    open: int
    files: int
    opens: int
    creates: int
    closes: int
    refused: int


class Plane(NamedTuple):
    rows: tuple[StoreRow, ...]
    counters: Counters | None  # None: tenancy is off


class Grants(NamedTuple):
    roles: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    checks: tuple[tuple[str, tuple[bool, ...]], ...]  # ("delete todos:*", allowed per role)


class Feed(NamedTuple):
    calls: tuple[Call, ...]
    total: int


class Xray(NamedTuple):
    """What served this page, and what the viewer may do here."""

    served_by: str  # the tenant key, or "main"
    file: str
    who: str
    role: str
    grants: tuple[tuple[str, str], ...]
    checks: tuple[tuple[str, bool], ...]


def _post(url: str) -> Markup:
    return html(" data-on:submit__prevent=\"@post('{}', {{contentType: 'form'}})\"", url)


def page(you: Markup, directory: Markup, plane: Markup, grants: Markup, feed: Markup, live: Markup) -> Markup:
    return html(
        '<main class="app wide console"{live}>'
        "<h1>Architecture console</h1>"
        '<p class="hint">The design, X-rayed and live: who you are, what the directory knows, every '
        "workspace's own database, what each role may do, and the store calls as they land.</p>"
        "{you}"
        '<div class="planes">{directory}{plane}</div>'
        "{grants}{feed}</main>",
        live=live, you=you, directory=directory, plane=plane, grants=grants, feed=feed,
    )  # fmt: skip


def you(model: You) -> Markup:
    """The viewer, the persona switcher (demo), their workspaces and the probes."""
    who = (html("You are <strong>{}</strong>.", model.label) if model.label
           else Markup("Nobody is signed in: pick a persona."))  # fmt: skip
    switcher = Markup("")
    if model.demo:
        switcher = html(
            '<ul class="personas" aria-label="Demo personas">{}</ul>',
            join(
                html(
                    '<li><form method="post" action="/console/persona/{n}"{post}>'
                    '<button{cur} aria-label="Sign in as {label}">{label}</button></form>'
                    "<small>{email} &middot; {roles}</small></li>",
                    n=p.name, post=_post(f"/console/persona/{p.name}"), label=p.label, email=p.email,
                    roles=p.roles, cur=Markup(' class="current" aria-current="true"') if p.current else "",
                )
                for p in model.personas
            ),
        )  # fmt: skip
    mine = Markup("")
    if model.label and model.tenancy:
        mine = html(
            "<p>Your workspaces: {}</p>",
            join((html('<a href="/w/{}/">{}</a> <small>({})</small>', k, n, r) for k, n, r in model.mine), ", ")
            if model.mine else Markup("none"),
        )  # fmt: skip
    probes = Markup("")
    if model.label and model.foreign:
        probes = html(
            '<div class="probes"><p>Not yours: ask the gate, as a visit to <code>/w/&lt;key&gt;/</code> would.</p>'
            "{}</div>",
            join(
                html('<form method="post" action="/console/probe/{k}"{post}>'
                     '<button class="probe">Probe {k}</button></form>',
                     k=key, post=_post(f"/console/probe/{key}"))
                for key, _ in model.foreign
            ),
        )  # fmt: skip
    return html('<section id="console-you" class="panel you"><h2>You</h2><p>{}</p>{}{}{}</section>',
                who, switcher, mine, probes)  # fmt: skip


def directory(model: Directory) -> Markup:
    """The directory plane: accounts, workspaces and who belongs where (the main store)."""
    users = join(html("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", e, n, r) for e, n, r in model.users)
    head = join(html('<th scope="col">{}</th>', key) for key, _ in model.workspaces)
    rows = join(
        html('<tr><th scope="row">{}</th>{}</tr>', email,
             join(html("<td>{}</td>", role or "—") for role in roles))
        for email, roles in model.roles
    )  # fmt: skip
    return html(
        '<section id="console-directory" class="panel"><h2>Directory plane <small>the main store</small></h2>'
        '<table aria-label="Accounts"><thead><tr><th>Account</th><th>Name</th><th>App role</th></tr></thead>'
        "<tbody>{}</tbody></table>"
        '<table aria-label="Memberships"><thead><tr><th>Member</th>{}</tr></thead><tbody>{}</tbody></table>'
        "</section>",
        users, head, rows,
    )  # fmt: skip


def _size(size: int) -> str:
    if size < 0:
        return "no file"
    return f"{size / 1024:.0f} KiB" if size >= 1024 else f"{size} B"


def plane(model: Plane) -> Markup:
    """The data plane: every workspace's own database, and its live todo count."""
    rows = join(
        html(
            '<tr id="store-{key}"><th scope="row">{key}</th><td><code>{path}</code></td><td>{size}</td>'
            '<td>{state}</td><td class="count" data-todos="{todos}">{todos}</td></tr>',
            key=s.key, path=s.path, size=_size(s.size), todos="—" if s.todos is None else s.todos,
            state=("open" + (f", {s.streams} stream{'s' if s.streams != 1 else ''}" if s.streams else ""))
            if s.open else "closed",
        )
        for s in model.rows
    )  # fmt: skip
    counters = Markup("")
    if model.counters is not None:
        c = model.counters
        counters = html(
            '<p class="counters" id="tenant-counters">Workspace stores open: <strong data-open="{}">{}</strong> of {} '
            "files &middot; opened {} &middot; created {} &middot; closed {} &middot; "
            'gate refusals: <strong data-refused="{}">{}</strong></p>',
            c.open,
            c.open,
            c.files,
            c.opens,
            c.creates,
            c.closes,
            c.refused,
            c.refused,
        )
    return html(
        '<section id="console-data" class="panel"><h2>Data plane <small>a file per workspace</small></h2>'
        '<table aria-label="Stores"><thead><tr><th>Store</th><th>File</th><th>Size</th><th>State</th>'
        "<th>Todos</th></tr></thead><tbody>{}</tbody></table>{}</section>",
        rows, counters,
    )  # fmt: skip


def grants(model: Grants) -> Markup:
    """The role → grants table (accounts/policy.py) and what each role may do."""
    roles = [role for role, _ in model.roles]
    listed = join(
        html('<tr><th scope="row">{}</th><td>{}</td></tr>', role,
             join((html("<code>{} {}</code>", a, r) for a, r in pairs), " ") if pairs else "nothing")
        for role, pairs in model.roles
    )  # fmt: skip
    checks = join(
        html('<tr><th scope="row">{}</th>{}</tr>', label,
             join(html('<td class="{}">{}</td>', "yes" if ok else "no", "allowed" if ok else "denied")
                  for ok in allowed))
        for label, allowed in model.checks
    )  # fmt: skip
    return html(
        '<section id="console-grants" class="panel"><h2>Roles &rarr; grants <small>accounts/policy.py</small></h2>'
        '<table aria-label="Grants by role"><tbody>{}</tbody></table>'
        '<table aria-label="Checks by role"><thead><tr><th>may they&hellip;</th>{}</tr></thead>'
        "<tbody>{}</tbody></table>"
        "</section>",
        listed, join(html('<th scope="col">{}</th>', r) for r in roles), checks,
    )  # fmt: skip


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def feed(model: Feed) -> Markup:
    """The newest store calls in this process, across every store (the console's own reads
    are left out: they would feed themselves)."""
    rows = join(
        html('<tr class="{kind}"><td>{t}</td><td class="db">{db}</td><td>{kind}</td>'
             "<td><code>{sql}</code></td></tr>", t=_clock(c.at), db=c.db, kind=c.kind, sql=c.sql)
        for c in model.calls
    )  # fmt: skip
    return html(
        '<section id="console-feed" class="panel feed"><h2>Store calls <small>{} so far, newest first</small></h2>'
        '<table aria-label="Store calls"><thead><tr><th>When</th><th>Store</th><th>Kind</th><th>SQL</th></tr>'
        "</thead><tbody>{}</tbody></table></section>",
        model.total, rows,
    )  # fmt: skip


def forbidden() -> Markup:
    return html(
        '<main class="app"><h1>Architecture console</h1><p class="revoked">The console shows every '
        "workspace: only admins may open it (or anyone, in the demo: ORION_DEMO=1).</p></main>"
    )


def xray(model: Xray) -> Markup:
    """The todos page's footer: which store served it, your role here, your grants, the checks."""
    served = "the main store" if model.served_by == "main" else f"workspace {model.served_by}"
    granted = join((html("<code>{} {}</code>", a, r) for a, r in model.grants), " ") if model.grants else "none"
    checks = join(
        html('<li class="{}">{} todos: {}</li>', "yes" if ok else "no", action, "allowed" if ok else "denied")
        for action, ok in model.checks
    )
    return html(
        '<footer id="todo-xray" class="xray" aria-label="X-ray">'
        "<h2>X-ray</h2><dl>"
        "<dt>Served by</dt><dd>{served} <code>{file}</code></dd>"
        '<dt>You</dt><dd>{who}, role <strong data-role="{role}">{role}</strong></dd>'
        "<dt>Grants</dt><dd>{granted}</dd>"
        '<dt>Checks</dt><dd><ul class="checks">{checks}</ul></dd>'
        '</dl><p class="hint"><a href="/console">Open the architecture console</a></p></footer>',
        served=served, file=model.file, who=model.who, role=model.role, granted=granted, checks=checks,
    )  # fmt: skip
