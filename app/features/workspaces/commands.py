"""workspaces: create one, and manage who belongs to it (the directory's writes)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from app.belt import Ctx, Invalid, Refused, Respond, current_user, runtime, shape

from . import sql

TOPIC = "workspaces"
CREATE = shape.obj(name=shape.text(trim=True, min=1, max=100, label="Workspace name"))
ADD = shape.obj(email=shape.text(trim=True, min=3, max=254, label="Email"),
                role=shape.choice("admin", "member", "viewer", label="Role"))
ROLE = shape.obj(role=shape.choice("admin", "member", "viewer", label="Role"))


def slug(name: str) -> str:
    """A workspace key from its name: "Acme Inc." → "acme-inc"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63] or "workspace"


def create(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    user = current_user(ctx)
    assert user is not None
    key = slug(data["name"])
    if sql.by_key(ctx.store, key) is not None:
        raise Invalid({"name": f"A workspace called {key!r} exists already: pick another name."})
    tenants = runtime().tenants
    if tenants is not None and tenants.exists(key):
        # A file with no directory row (deleted without its data, or restored before its row):
        # opening it would hand its rows to whoever creates the name next.
        raise Invalid({"name": f"The name {key!r} is not available: pick another name."})
    try:
        with ctx.store.tx():
            sql.insert(ctx.store, key, data["name"])
            if not user.local:
                sql.set_member(ctx.store, key, user.id, "owner")
            ctx.bus.publish(TOPIC)
    except sqlite3.IntegrityError:  # created a moment ago by someone else
        raise Invalid({"name": f"A workspace called {key!r} exists already: pick another name."}) from None
    if tenants is not None:
        tenants.store(key, create=True)  # the workspace's own file, migrated
    respond.redirect(f"/w/{key}/")


def _manage(ctx: Ctx, key: str) -> None:
    """Only the workspace's owners and admins manage its members."""
    user = current_user(ctx)
    assert user is not None
    role = "owner" if user.local else sql.role(ctx.store, str(user.id), key)
    if role not in ("owner", "admin"):
        # The same answer as for a workspace that does not exist: no existence oracle.
        raise Refused(f"There is no workspace {key!r} whose members you manage.", 404)


def add_member(ctx: Ctx, data: dict[str, Any], respond: Respond, key: str) -> None:
    _manage(ctx, key)
    row = ctx.store.one("SELECT id FROM users WHERE email = ?", (data["email"],))
    if row is None:
        raise Invalid({"email": f"No account uses {data['email']!r}: ask them to sign up first."})
    with ctx.store.tx():
        sql.set_member(ctx.store, key, row["id"], data["role"])
        ctx.bus.publish(TOPIC)
    _changed(ctx, str(row["id"]))


def set_role(ctx: Ctx, data: dict[str, Any], respond: Respond, key: str, user_id: int) -> None:
    _manage(ctx, key)
    if sql.role(ctx.store, str(user_id), key) in (None, "owner"):
        raise Refused("That person is not a member you can change.", 404)
    with ctx.store.tx():
        sql.set_member(ctx.store, key, user_id, data["role"])
        ctx.bus.publish(TOPIC)
    _changed(ctx, str(user_id))


def remove(ctx: Ctx, data: dict[str, Any], respond: Respond, key: str, user_id: int) -> None:
    _manage(ctx, key)
    if sql.role(ctx.store, str(user_id), key) in (None, "owner"):
        raise Refused("That person is not a member you can remove.", 404)
    with ctx.store.tx():
        sql.remove_member(ctx.store, key, user_id)
        ctx.bus.publish(TOPIC)
    _changed(ctx, str(user_id))


def _changed(ctx: Ctx, user_id: str) -> None:
    """Their grants changed: open pages repaint, and a removed member's streams are severed."""
    authz = runtime().authz
    if authz is not None:
        ctx.store.after_commit(lambda: authz.invalidate(user_id))
