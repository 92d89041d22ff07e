"""accounts: pure views for signing in and up, the account page and the users admin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup

from app.belt import Row, html, join
from app.belt import attrs as belt_attrs
from app.patterns.forms import error_id, field_error

from .policy import LABELS, ROLES

SIGNIN, SIGNUP, PASSWORD = "signin", "signup", "password"


def _field(form: str, name: str, label: str, kind: str, value: str, error: str | None, **extra: Any) -> Markup:
    attrs = belt_attrs(**extra)
    return html(
        '<div class="field"><label for="{form}-{name}">{label}</label>'
        '<input id="{form}-{name}" name="{name}" type="{kind}" value="{value}" '
        'aria-describedby="{err}"{invalid}{attrs}>'
        "{error}</div>",
        form=form,
        name=name,
        label=label,
        kind=kind,
        value=value,
        err=error_id(form, name),
        invalid=Markup(' aria-invalid="true"') if error else "",
        attrs=attrs,
        error=field_error(form, name, error),
    )


def _form_error(form: str, issues: dict[str, str]) -> Markup:
    return field_error(form, "form", issues.get("form"))


def signin(issues: dict[str, str] | None = None, email: str = "", next_url: str = "/") -> Markup:
    issues = issues or {}
    return html(
        '<main class="app narrow"><h1>Sign in</h1>'
        '<form id="{f}" method="post" action="/signin" novalidate>{err}'
        '<input type="hidden" name="next" value="{next}">'
        "{email}{password}<button>Sign in</button></form>"
        '<p class="hint">New here? <a href="/signup">Create an account</a>.</p></main>',
        f=SIGNIN,
        err=_form_error(SIGNIN, issues),
        next=next_url,
        email=_field(
            SIGNIN,
            "email",
            "Email",
            "email",
            email,
            issues.get("email"),
            autocomplete="username",
            required="required",
            autofocus="autofocus",
        ),
        password=_field(
            SIGNIN,
            "password",
            "Password",
            "password",
            "",
            issues.get("password"),
            autocomplete="current-password",
            required="required",
        ),
    )


def signup(issues: dict[str, str] | None = None, email: str = "", name: str = "") -> Markup:
    issues = issues or {}
    return html(
        '<main class="app narrow"><h1>Create an account</h1>'
        '<form id="{f}" method="post" action="/signup" novalidate>{err}'
        "{email}{name}{password}<button>Sign up</button></form>"
        '<p class="hint">Have an account? <a href="/signin">Sign in</a>.</p></main>',
        f=SIGNUP,
        err=_form_error(SIGNUP, issues),
        email=_field(
            SIGNUP,
            "email",
            "Email",
            "email",
            email,
            issues.get("email"),
            autocomplete="username",
            required="required",
            autofocus="autofocus",
        ),
        name=_field(SIGNUP, "name", "Name", "text", name, issues.get("name"), autocomplete="name"),
        password=_field(
            SIGNUP,
            "password",
            "Password",
            "password",
            "",
            issues.get("password"),
            autocomplete="new-password",
            required="required",
            minlength="8",
        ),
    )


def account(email: str, role: str, issues: dict[str, str] | None = None, changed: bool = False) -> Markup:
    issues = issues or {}
    done = (
        html('<p class="ok" role="status">Password changed. Your other sessions were signed out.</p>')
        if changed
        else ""
    )
    return html(
        '<main class="app narrow"><h1>Your account</h1><p>{email} &middot; {role}</p>'
        "<h2>Change password</h2>{done}"
        '<form id="{f}" method="post" action="/account/password" novalidate>{err}{current}{new}'
        "<button>Change password</button></form></main>",
        email=email,
        role=LABELS.get(role, role),
        done=done,
        f=PASSWORD,
        err=_form_error(PASSWORD, issues),
        current=_field(
            PASSWORD,
            "current",
            "Current password",
            "password",
            "",
            issues.get("current"),
            autocomplete="current-password",
        ),
        new=_field(
            PASSWORD,
            "new",
            "New password",
            "password",
            "",
            issues.get("new"),
            autocomplete="new-password",
            minlength="8",
        ),
    )


def _action(url: str) -> Markup:
    return html(" data-on:submit__prevent=\"@post('{}', {{contentType: 'form'}})\"", url)


def _user_row(row: Row, me: str, can_masquerade: bool) -> Markup:
    uid = row["id"]
    options = join(
        html('<option value="{}"{}>{}</option>', r, Markup(" selected") if r == row["role"] else "", LABELS[r])
        for r in ROLES
    )
    is_me = str(uid) == me
    role_control = (
        html("<span>{}</span>", LABELS.get(row["role"], row["role"]))
        if is_me or row["role"] == "owner"
        else html(
            '<form method="post" action="/admin/users/{id}/role"{act}>'
            '<select name="role" aria-label="Role of {email}" data-on:change="el.form.requestSubmit()">{opts}</select>'
            "<noscript><button>Save</button></noscript></form>",
            id=uid,
            act=_action(f"/admin/users/{uid}/role"),
            email=row["email"],
            opts=options,
        )
    )
    view_as = ""
    if can_masquerade and not is_me and row["role"] != "owner":
        view_as = html(
            '<form method="post" action="/admin/users/{}/masquerade"><button class="link">View as {}</button></form>',
            uid,
            row["email"],
        )
    return html(
        '<tr id="user-{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
        uid,
        row["email"],
        row["name"],
        role_control,
        view_as,
    )


def users(model: tuple[Sequence[Row], str, bool]) -> Markup:
    """The live users region: everyone, their role (editable), and "View as"."""
    rows, me, can_masquerade = model
    return html(
        '<section id="users"><table class="users"><thead><tr><th>Email</th><th>Name</th><th>Role</th><th></th>'
        "</tr></thead><tbody>{}</tbody></table></section>",
        join(_user_row(row, me, can_masquerade) for row in rows),
    )


def users_page(region: Markup, live: Markup) -> Markup:
    return html(
        '<main class="app wide"{}><h1>Users</h1>'
        '<p class="hint">A role change reaches that person\'s open pages at once: controls appear or '
        "disappear, and &ldquo;No access&rdquo; closes their live view.</p>{}</main>",
        live,
        region,
    )
