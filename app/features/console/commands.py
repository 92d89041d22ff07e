"""console: the demo's seed, the persona switcher and the gate probe.

The persona switch and the probe are ordinary audited commands (``command()`` in routes.py):
the journal records who switched to whom and every probe the gate refused.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import request

from app.belt import Ctx, Refused, Respond, Runtime, current_user, passwords, runtime, sessions

from . import sql
from .state import state

log = logging.getLogger("orion.console")

TOPIC = "console"  # the gate refused a probe: the console's counters repaint
PASSWORD = "demo-password"  # noqa: S105 - the demo's published password
#: (name, label, account role): the people of the demo, signed in by the persona switcher.
PERSONAS = (("alice", "Alice", "owner"), ("bob", "Bob", "member"), ("carol", "Carol", "member"))
#: (key, name, {persona: role}, [(todo, done)]): alice owns home but is not in acme.
WORKSPACES = (
    ("home", "Home", {"alice": "owner", "bob": "member", "carol": "viewer"},
     [("Water the plants", False), ("Book the dentist", True), ("Fix the bike light", False)]),
    ("acme", "Acme", {"bob": "owner", "carol": "admin"},
     [("Ship the architecture console", False), ("Review the gate", False), ("Write the release notes", True)]),
)  # fmt: skip


def email(name: str) -> str:
    return f"{name}@example.com"


def seed_demo(rt: Runtime) -> bool:
    """First boot with ORION_DEMO=1: the personas, their workspaces and a few todos each.

    Runs only while the directory has no users (so never over real accounts); returns
    whether it seeded. Each workspace's file is made the way the app makes one
    (``tenants.store(key, create=True)``: created and migrated), then filled.
    """
    directory = rt.store
    assert rt.tenants is not None, "the demo seeds workspaces: it needs ORION_TENANCY=db"
    if sql.user_count(directory):
        return False
    hashes = [passwords.hash_password(PASSWORD) for _ in PERSONAS]  # ~0.3 s each, off the hub
    with directory.tx():
        if sql.user_count(directory):  # another process seeded while we hashed
            return False
        ids = {
            name: sql.insert_user(directory, email(name), label, hashed, role)
            for (name, label, role), hashed in zip(PERSONAS, hashes, strict=True)
        }
        for key, title, members, _ in WORKSPACES:
            sql.insert_workspace(directory, key, title)
            for who, role in members.items():
                sql.set_member(directory, key, ids[who], role)
    for key, _, _, todos in WORKSPACES:
        store = rt.tenants.store(key, create=True)
        with store.tx():
            if not sql.todo_count(store):
                for title, done in todos:
                    sql.insert_todo(store, title, done)
    log.info(
        "demo: seeded %s and the workspaces %s (password %r)",
        ", ".join(n for n, _, _ in PERSONAS),
        ", ".join(k for k, *_ in WORKSPACES),
        PASSWORD,
    )
    return True


def persona(ctx: Ctx, data: dict[str, Any], respond: Respond, name: str) -> None:
    """Sign this browser in as a demo persona: a new session, exactly like a sign-in."""
    row = sql.user_by_email(ctx.store, email(name)) if name in {n for n, _, _ in PERSONAS} else None
    if row is None:
        names = ", ".join(n for n, _, _ in PERSONAS)
        raise Refused(f"There is no demo persona {name!r}: pick one of {names}.", 404)
    auth = runtime().auth
    assert auth is not None, "the persona switcher needs ORION_AUTH=accounts"
    previous = auth.session(ctx)
    if previous is not None:
        auth.sessions.end(previous.id)  # one browser, one session: switching signs the last one out
    token = auth.sessions.create(str(row["id"]), ip=request.remote_addr, user_agent=request.user_agent.string)
    respond.on_response(lambda response: sessions.set_cookie(response, request, token, max_age=auth.sessions.absolute))
    ctx.user = auth.load_user(ctx.store, str(row["id"]))
    respond.redirect("/console")


def probe(ctx: Ctx, data: dict[str, Any], respond: Respond, key: str) -> None:
    """Ask the gate whether the acting persona may enter ``key``, as a request to /w/<key>/
    would, and show its answer. The gate reads only the directory: no workspace store is
    opened (or created) to answer, which the open-store count before and after shows."""
    user = current_user(ctx)
    assert user is not None
    console, tenants = state(), runtime().tenants
    gate = console.gate
    if gate is None or tenants is None:
        raise Refused("There is no gate to probe: workspaces are off (ORION_TENANCY=db turns them on).", 404)
    before = len(tenants.open_stores()), tenants.stats.opens, tenants.stats.creates
    verdict = gate.verdict("local" if user.local else str(user.id), key)
    after = len(tenants.open_stores()), tenants.stats.opens, tenants.stats.creates
    ctx.bus.publish(TOPIC)  # the gate's refusal count changed
    if verdict is None:
        raise Refused(
            f"The gate said no: {user.label} is not a member of {key} — no store was opened "
            f"(open workspace stores: {before[0]} before, {after[0]} after).",
            403,
        )
    respond.toast(
        f"The gate said yes: {user.label} is {verdict.role} in {key}. It asked only the directory "
        f"(open workspace stores: {before[0]} before, {after[0]} after).",
        level="success",
    )
