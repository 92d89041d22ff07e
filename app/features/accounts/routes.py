"""accounts: the blueprint. Sign-in pages are plain forms (a full navigation sets the cookie);
the users admin is a live region that repaints when anyone's role changes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, request
from markupsafe import Markup

from app.belt import Ctx, can, command, current_user, document, live_attrs, region, request_ctx, stream
from app.patterns.nav import nav

from . import commands, sql, view

bp = Blueprint("accounts", __name__)

USERS = region(
    "users",
    topics=[commands.TOPIC],
    model=lambda ctx: (sql.all(ctx.store), str(current_user(ctx).id), can(ctx, "masquerade", "users:*")),  # type: ignore[union-attr]
    view=view.users,
)


def _page(ctx: Ctx, title: str, body: Markup) -> Markup:
    return document(title, body, header=nav(current_user(ctx), admin=can(ctx, "manage", "users:*")))


def _signin_page(ctx: Ctx, issues: dict[str, str], values: dict[str, Any]) -> Markup:
    email = values.get("email") if isinstance(values.get("email"), str) else ""
    return _page(ctx, "Sign in", view.signin(issues, str(email), str(values.get("next") or "/")))


def _signup_page(ctx: Ctx, issues: dict[str, str], values: dict[str, Any]) -> Markup:
    email, name = values.get("email"), values.get("name")
    return _page(ctx, "Sign up", view.signup(issues, str(email or ""), str(name or "")))


def _account_page(ctx: Ctx, issues: dict[str, str], values: dict[str, Any]) -> Markup:
    user = current_user(ctx)
    assert user is not None
    return _page(ctx, "Account", view.account(user.email, user.role, issues, changed="changed" in request.args))


@bp.get("/signin")
def signin_page() -> Any:
    ctx = request_ctx()
    if current_user(ctx) is not None:
        return redirect("/")
    return _signin_page(ctx, {}, {"next": request.args.get("next", "/")})


@bp.get("/signup")
def signup_page() -> Any:
    return _signup_page(request_ctx(), {}, {})


@bp.get("/account")
def account_page() -> Any:
    ctx = request_ctx()
    if current_user(ctx) is None:
        return redirect("/signin?next=/account")
    return _account_page(ctx, {}, {})


@bp.get("/admin/users")
def users_page() -> Any:
    ctx = request_ctx()
    if current_user(ctx) is None:
        return redirect("/signin?next=/admin/users")
    if not can(ctx, "manage", "users:*"):
        return _page(ctx, "Users", Markup('<main class="app"><p>Only admins can manage users.</p></main>')), 403
    return _page(ctx, "Users", view.users_page(USERS.render(ctx), live_attrs("/admin/users/live")))


@bp.get("/admin/users/live")
def users_live() -> Any:
    return stream([USERS], authorize=lambda ctx: can(ctx, "manage", "users:*"))


sign_up = command(commands.sign_up, shape=commands.SIGN_UP, form=view.SIGNUP, page=_signup_page, anonymous=True)
sign_in = command(commands.sign_in, shape=commands.SIGN_IN, form=view.SIGNIN, page=_signin_page, anonymous=True)
sign_out = command(commands.sign_out, while_masquerading=True)
change_password = command(
    commands.change_password, shape=commands.CHANGE_PASSWORD, form=view.PASSWORD, page=_account_page
)
set_role = command(commands.set_role, shape=commands.SET_ROLE)
masquerade_start = command(commands.masquerade_start)
masquerade_stop = command(commands.masquerade_stop, while_masquerading=True)

bp.post("/signup")(sign_up)
bp.post("/signin")(sign_in)
bp.post("/signout")(sign_out)
bp.post("/account/password")(change_password)
bp.post("/admin/users/<id:user_id>/role")(set_role)
bp.post("/admin/users/<id:user_id>/masquerade")(masquerade_start)
bp.post("/masquerade/stop")(masquerade_stop)
