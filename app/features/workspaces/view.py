"""workspaces: pure views for the list of your workspaces and a workspace's members."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from app.belt import Row, html, join
from app.patterns.forms import error_id, field_error

CREATE = "new-workspace"
ROLES = ("owner", "admin", "member", "viewer")


def home(workspaces: Sequence[Row], issues: dict[str, str] | None = None, name: str = "") -> Markup:
    """Your workspaces (each a link) and a form to make another."""
    issues = issues or {}
    items = join(
        html('<li><a href="/w/{key}/">{name}</a> <small>{key} &middot; {role}</small> '
             '<a class="small" href="/workspaces/{key}/members">members</a></li>',
             key=w["key"], name=w["name"], role=w["role"])
        for w in workspaces
    )
    listing = html('<ul class="workspaces">{}</ul>', items) if workspaces else Markup(
        '<p class="hint">You belong to no workspace yet: make one, or ask to be added.</p>'
    )
    return html(
        '<main class="app"><h1>Your workspaces</h1>{listing}'
        '<h2>New workspace</h2>'
        '<form id="{f}" method="post" action="/workspaces" novalidate>'
        '<label for="{f}-name">Workspace name</label>'
        '<input id="{f}-name" name="name" value="{name}" maxlength="100" aria-describedby="{err}">'
        "<button>Create</button>{error}</form>"
        '<p class="hint"><a href="/console">Open the architecture console</a>.</p></main>',
        listing=listing, f=CREATE, name=name, err=error_id(CREATE, "name"),
        error=field_error(CREATE, "name", issues.get("name")),
    )


def members(key: str, name: str, rows: Sequence[Row], manage: bool) -> Markup:
    """A workspace's members; owners and admins can add, change and remove them."""
    def row(m: Row) -> Markup:
        controls = Markup("")
        if manage and m["role"] != "owner":
            options = join(html('<option value="{}"{}>{}</option>', r, Markup(" selected") if r == m["role"] else "",
                                r) for r in ROLES[1:])
            controls = html(
                '<form method="post" action="/workspaces/{k}/members/{id}/role">'
                '<select name="role" aria-label="Role of {email}">{opts}</select><button>Save</button></form>'
                '<form method="post" action="/workspaces/{k}/members/{id}/remove">'
                '<button class="link">Remove {email}</button></form>',
                k=key, id=m["id"], email=m["email"], opts=options,
            )
        return html("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", m["email"], m["role"], controls)

    add = Markup("")
    if manage:
        add = html(
            '<h2>Add a member</h2><form method="post" action="/workspaces/{k}/members">'
            '<label for="add-email">Email</label><input id="add-email" name="email" type="email">'
            '<label for="add-role">Role</label><select id="add-role" name="role">{opts}</select>'
            "<button>Add</button></form>",
            k=key, opts=join(html("<option>{}</option>", r) for r in ROLES[1:]),
        )
    return html(
        '<main class="app wide"><h1>{} <small>members</small></h1>'
        '<p><a href="/w/{}/">Open the workspace</a></p>'
        '<table class="users"><thead><tr><th>Email</th><th>Role</th><th></th></tr></thead><tbody>{}</tbody></table>'
        "{}</main>",
        name, key, join(row(m) for m in rows), add,
    )
