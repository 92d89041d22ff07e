"""Identity: who is acting. Asked visibly, at the top of a handler: ``current_user(ctx)``.

Two modes:

* ``accounts`` — people sign up and sign in; the session cookie names them.
* ``local`` — a self-hosted, single-user install: no sign-up, no sign-in; every request acts
  as the one identity read from a file (``data/identity.json``), so every audited action
  is still attributed to someone.

Where the users live and what a role means is the app's policy: the app passes
``load_user(store, user_id) -> User | None``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bus import Callback, Unsubscribe, Watchable, subscribe_all
from .sessions import Session, Sessions, read_token
from .throttle import Throttle

if TYPE_CHECKING:
    from .ctx import Ctx
    from .store import Store

MODES = ("accounts", "local")


@dataclass(frozen=True)
class User:
    """Who is acting. When an admin masquerades, ``real`` is the admin and this is the user."""

    id: str
    email: str
    name: str = ""
    role: str = "member"
    real: User | None = None
    #: The self-host identity: nobody signs in or out.
    local: bool = False

    @property
    def masquerading(self) -> bool:
        return self.real is not None

    @property
    def label(self) -> str:
        return self.name or self.email


LoadUser = Callable[["Store", str], "User | None"]


class Auth:
    """The app's identity settings and the session store, hung on the runtime."""

    def __init__(
        self,
        store: Store,
        load_user: LoadUser,
        *,
        mode: str = "accounts",
        local_identity: User | None = None,
        sessions: Sessions | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"ORION_AUTH={mode!r} is not a mode; use one of {MODES}.")
        if mode == "local" and local_identity is None:
            raise ValueError("ORION_AUTH=local needs a local identity (data/identity.json).")
        self.store = store
        self.load_user = load_user
        self.mode = mode
        self.local_identity = local_identity
        self.sessions = sessions or Sessions(store)
        # Sign-in throttles: an account gets 5 free failures, an address (shared by an
        # office behind one NAT) 20.
        self.account_throttle = Throttle(store, free=5)
        self.ip_throttle = Throttle(store, free=20)

    def session(self, ctx: Ctx) -> Session | None:
        """The request's live session (cached on the ctx)."""
        if "session" not in ctx.extra:
            token = read_token(ctx.request) if ctx.request is not None else None
            ctx.extra["session"] = self.sessions.lookup(token)
        session: Session | None = ctx.extra["session"]
        return session

    def resolve(self, ctx: Ctx) -> User | None:
        if self.mode == "local":
            return self.local_identity
        session = self.session(ctx)
        if session is None:
            return None
        # Users live in the directory (this store), whichever tenant's store ctx is bound to.
        user = self.load_user(self.store, session.user_id)
        if user is None:
            return None
        if session.masquerade_as is not None:
            target = self.load_user(self.store, session.masquerade_as)
            if target is not None:
                return replace(target, real=user)
            # The user being viewed is gone: end the masquerade visibly (the banner goes away)
            # rather than carry on as the admin under a read-only guard they cannot see.
            self.sessions.masquerade(session.id, None)
        return user


def current_user(ctx: Ctx) -> User | None:
    """Who is acting in ``ctx`` (None: nobody signed in). Resolved once per ctx."""
    if ctx.user is None and "auth_resolved" not in ctx.extra:
        auth = _rt(ctx).auth
        ctx.user = auth.resolve(ctx) if auth is not None else None
        ctx.extra["auth_resolved"] = True
    return ctx.user  # type: ignore[no-any-return]


def load_local_identity(path: Path) -> User:
    """The self-host identity: created on first boot as the machine's owner, then read."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: a second worker booting at once never reads half a file.
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.write_text(json.dumps({"id": "local", "email": "owner@localhost", "name": "Owner", "role": "owner"}))
        os.replace(draft, path)
    try:
        data = json.loads(path.read_text())
        return User(
            id=str(data["id"]),
            email=str(data["email"]),
            name=str(data.get("name", "")),
            role=str(data.get("role", "owner")),
            local=True,
        )
    except (ValueError, KeyError) as exc:
        raise SystemExit(
            f"{path}: the local identity must be JSON like "
            '{"id": "local", "email": "you@example.com", "name": "You", "role": "owner"} '
            f"({exc})."
        ) from None


def can(ctx: Ctx, action: str, resource: str) -> bool:
    """May the acting user of ``ctx`` do ``action`` on ``resource``? (False when nobody is.)

    The command checks it (the law: refuse with 403); the view uses the answer, carried in
    its model, to leave out controls the viewer may not use (a courtesy).
    """
    rt = _rt(ctx)
    user = current_user(ctx)
    if rt.authz is None:
        return user is not None or rt.auth is None
    if user is None:
        return False
    return bool(rt.authz.can(ctx.store, str(user.id), action, resource))


def require(ctx: Ctx, action: str, resource: str) -> User:
    """The acting user, if they may do ``action`` on ``resource``; otherwise a 403."""
    from .command import Refused

    user = current_user(ctx)
    if user is None:
        raise Refused("You are not signed in. Sign in, then try again.", 403)
    if not can(ctx, action, resource):
        raise Refused(f"Your role ({user.role}) may not {action} {resource.split(':')[0]}. Ask an admin.", 403)
    return user


def grants_watch(ctx: Ctx) -> Watchable:
    """A Watchable that fires when the acting user's grants change (for a region's ``watch``)."""
    rt = _rt(ctx)
    user = current_user(ctx)
    if rt.authz is None or user is None:
        return _Never()
    subject = str(user.real.id if user.real else user.id)
    watch: Watchable = rt.authz.watch(str(user.id))
    if subject != str(user.id):  # masquerading: the admin's own grants matter too
        return _Both(watch, rt.authz.watch(subject))
    return watch


class _Never:
    def subscribe(self, callback: Callback) -> Unsubscribe:
        return lambda: None


class _Both:
    def __init__(self, *parts: Watchable) -> None:
        self.parts = parts

    def subscribe(self, callback: Callback) -> Unsubscribe:
        return subscribe_all(self.parts, callback)


def _rt(ctx: Ctx) -> Any:
    """The runtime the ctx was built by (streams run outside Flask's app context)."""
    if ctx.runtime is not None:
        return ctx.runtime
    from .runtime import runtime

    return runtime()
