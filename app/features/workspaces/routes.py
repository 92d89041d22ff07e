"""workspaces: the directory's pages. "/" lists your workspaces; the gate guards /w/<key>/."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect
from markupsafe import Markup

from app.belt import Ctx, can, command, current_user, document, html, request_ctx
from app.patterns.nav import nav

from . import commands, sql, view

bp = Blueprint("workspaces", __name__)


def _mine(ctx: Ctx) -> Any:
    user = current_user(ctx)
    assert user is not None
    if user.local:
        return tuple({"key": w["key"], "name": w["name"], "role": "owner"} for w in sql.all(ctx.store))
    return sql.for_user(ctx.store, str(user.id))


def _home(ctx: Ctx, issues: dict[str, str], values: dict[str, Any]) -> Any:
    user = current_user(ctx)
    if user is None:
        return redirect("/signin?next=/")
    name = values.get("name") if isinstance(values.get("name"), str) else ""
    body = view.home(_mine(ctx), issues, str(name))
    return document("Workspaces", body, header=nav(user, admin=can(ctx, "manage", "users:*")))


@bp.get("/")
def home() -> Any:
    return _home(request_ctx(), {}, {})


@bp.get("/workspaces/<key>/members")
def members(key: str) -> Any:
    ctx = request_ctx()
    user = current_user(ctx)
    if user is None:
        return redirect(f"/signin?next=/workspaces/{key}/members")
    role = "owner" if user.local else sql.role(ctx.store, str(user.id), key)
    workspace = sql.by_key(ctx.store, key)
    if role is None or workspace is None:
        body = html_404(key)
        return document("Not found", body, header=nav(user)), 404
    body = view.members(key, workspace["name"], sql.members(ctx.store, key), role in ("owner", "admin"))
    return document(f"{workspace['name']} members", body, header=nav(user, admin=can(ctx, "manage", "users:*")))


def html_404(key: str) -> Markup:
    return html('<main class="app"><p>There is no workspace {} that you belong to.</p></main>', key)


create = command(commands.create, shape=commands.CREATE, form=view.CREATE, page=_home)
add_member = command(commands.add_member, shape=commands.ADD)
set_role = command(commands.set_role, shape=commands.ROLE)
remove = command(commands.remove)

bp.post("/workspaces")(create)
bp.post("/workspaces/<key>/members")(add_member)
bp.post("/workspaces/<key>/members/<id:user_id>/role")(set_role)
bp.post("/workspaces/<key>/members/<id:user_id>/remove")(remove)
