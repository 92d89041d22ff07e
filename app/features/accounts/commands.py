"""accounts: sign up, sign in, sign out, change password, set a role, masquerade.

Each runs through belt.command's audited pipeline; the ones a stranger may run say
``anonymous=True`` where they are wired (routes.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import request

from app.belt import Ctx, Invalid, Refused, Respond, analytics, current_user, require, runtime, sessions, shape
from app.belt import passwords as pw

from . import sql
from .policy import DEFAULT_ROLE, ROLES

TOPIC = "users"
GENERIC = "Wrong email or password."  # the same answer for an unknown email and a wrong password

EMAIL = shape.text(
    trim=True,
    min=3,
    max=254,
    pattern=r"[^@\s]+@[^@\s]+",
    label="Email",
    pattern_message="Email must look like name@example.com.",
)
SIGN_IN = shape.obj(
    email=EMAIL,
    password=shape.text(trim=False, min=1, max=pw.MAX_LENGTH, label="Password"),
    next=shape.optional(shape.text(max=500)),
)
SIGN_UP = shape.obj(
    email=EMAIL,
    name=shape.optional(shape.text(max=100, label="Name"), default=""),
    password=shape.text(trim=False, min=8, max=pw.MAX_LENGTH, label="Password"),
)
CHANGE_PASSWORD = shape.obj(
    current=shape.text(trim=False, min=1, max=pw.MAX_LENGTH, label="Current password"),
    new=shape.text(trim=False, min=8, max=pw.MAX_LENGTH, label="New password"),
)
SET_ROLE = shape.obj(role=shape.choice(*ROLES, label="Role"))


def _auth() -> Any:
    auth = runtime().auth
    assert auth is not None, "the accounts feature needs belt auth installed (ORION_AUTH=accounts)"
    return auth


def _start_session(ctx: Ctx, respond: Respond, user_id: int) -> None:
    auth = _auth()
    token = auth.sessions.create(str(user_id), ip=request.remote_addr, user_agent=request.user_agent.string)
    respond.on_response(lambda response: sessions.set_cookie(response, request, token, max_age=auth.sessions.absolute))
    ctx.user = auth.load_user(ctx.store, str(user_id))


def sign_up(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    if sql.by_email(ctx.store, data["email"]) is not None:
        raise Invalid({"email": "That email already has an account: sign in instead."})
    hashed = pw.hash_password(data["password"])  # ~0.3 s, on the password pool, not the hub
    with ctx.store.tx():
        # The first account owns the app; later ones start with the default role.
        role = "owner" if sql.count(ctx.store) == 0 else DEFAULT_ROLE
        user_id = sql.insert(ctx.store, data["email"], data["name"] or "", hashed, role)
        ctx.bus.publish(TOPIC)
    _start_session(ctx, respond, user_id)
    analytics.track("signed_up", subject=user_id)  # the first step of the dashboard's funnel
    respond.redirect("/")


def sign_in(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    auth = _auth()
    keys = [f"account:{data['email'].lower()}", f"address:{request.remote_addr}"]
    wait = max(auth.account_throttle.retry_after(keys[:1]), auth.ip_throttle.retry_after(keys[1:]))
    if wait > 0:
        seconds = int(wait) + 1
        raise Refused(
            f"Too many sign-in attempts. Wait {seconds} second{'s' if seconds != 1 else ''}, then try again.", 429
        )
    row = sql.by_email(ctx.store, data["email"])
    if not pw.verify_password(data["password"], row["password_hash"] if row else None):
        auth.account_throttle.fail(keys[:1])
        auth.ip_throttle.fail(keys[1:])
        raise Invalid({"form": GENERIC})
    assert row is not None
    auth.account_throttle.reset(keys[:1])
    auth.ip_throttle.reset(keys[1:])
    if pw.needs_rehash(row["password_hash"]):
        sql.set_password(ctx.store, row["id"], pw.hash_password(data["password"]))
    _start_session(ctx, respond, row["id"])
    respond.redirect(_safe_next(data.get("next")))


def sign_out(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    session = _auth().session(ctx)
    if session is not None:
        _auth().sessions.end(session.id)
    respond.on_response(lambda response: sessions.clear_cookie(response, request))
    respond.redirect("/signin")


def change_password(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    user = current_user(ctx)
    assert user is not None
    row = sql.by_id(ctx.store, user.id)
    if row is None or not pw.verify_password(data["current"], row["password_hash"]):
        raise Invalid({"current": "That is not your current password."})
    hashed = pw.hash_password(data["new"])
    with ctx.store.tx():
        sql.set_password(ctx.store, user.id, hashed)
        # Every session of this user ends, this one too; this browser gets a fresh one.
        _auth().sessions.end_all(str(user.id))
    _start_session(ctx, respond, int(user.id))
    respond.redirect("/account?changed=1")


def set_role(ctx: Ctx, data: dict[str, Any], respond: Respond, user_id: int) -> None:
    me = require(ctx, "manage", "users:*")
    target = sql.by_id(ctx.store, user_id)
    if target is None:
        raise Refused(f"There is no user #{user_id}.", 404)
    if str(user_id) == str(me.id):
        raise Refused("You cannot change your own role: ask another admin.", 403)
    if target["role"] == "owner" or (data["role"] == "owner" and me.role != "owner"):
        raise Refused("Only an owner can make or unmake an owner.", 403)
    with ctx.store.tx():
        sql.set_role(ctx.store, user_id, data["role"])
        ctx.bus.publish(TOPIC)
    authz = runtime().authz
    if authz is not None:
        # Their grants changed: every region that watches them repaints (or is severed).
        ctx.store.after_commit(lambda: authz.invalidate(str(user_id)))
    respond.toast(f"{target['email']} is now {data['role']}.", level="success")


def masquerade_start(ctx: Ctx, data: dict[str, Any], respond: Respond, user_id: int) -> None:
    me = require(ctx, "masquerade", "users:*")
    target = sql.by_id(ctx.store, user_id)
    if target is None:
        raise Refused(f"There is no user #{user_id}.", 404)
    if str(user_id) == str(me.id) or target["role"] == "owner":
        raise Refused("You can view as another member, not as yourself or an owner.", 403)
    session = _auth().session(ctx)
    assert session is not None
    _auth().sessions.masquerade(session.id, str(user_id))
    respond.redirect("/")


def masquerade_stop(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    session = _auth().session(ctx)
    if session is not None and session.masquerade_as is not None:
        _auth().sessions.masquerade(session.id, None)
    respond.redirect("/admin/users")


def _safe_next(url: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if not url:
        return "/"
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith(("//", "/\\")):
        return "/"
    return url
