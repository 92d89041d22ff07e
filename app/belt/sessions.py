"""Sessions: hashed tokens in a cookie, looked up by id, compared in constant time.

The cookie carries ``<id>.<secret>``, each 128 random bits (url-safe base64). The database
keeps only SHA-256 of the secret, so a copy of the database (a backup, a leaked replica)
holds no usable token. A token is read from the cookie only, never from a query string or a
header a script could set.

Expiry slides: a session lives 30 days and, when used in its last 15, is extended to 30
again; an absolute cap (90 days from sign-in) ends it regardless. Every sign-in makes a new
session (no fixation); a password change ends all of the user's sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Request
from werkzeug.wrappers import Response

from .store import Store

DAY = 86400.0
_PART = re.compile(r"[A-Za-z0-9_-]{22}")
COOKIE = "orion_session"
SECURE_COOKIE = "__Host-orion_session"  # __Host-: Secure, Path=/, no Domain: no subdomain can set it


@dataclass(frozen=True)
class Session:
    id: str
    user_id: str
    created_at: float
    expires_at: float
    absolute_expires_at: float
    masquerade_as: str | None = None


def _token_part() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Sessions:
    """Create, look up, extend and end sessions in ``_orion_sessions``."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        ttl: float = 30 * DAY,
        refresh_within: float = 15 * DAY,
        absolute: float = 90 * DAY,
    ) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.refresh_within = refresh_within
        self.absolute = absolute

    def create(self, user_id: str, *, ip: str | None = None, user_agent: str | None = None) -> str:
        """A new session for ``user_id``; returns the token for the cookie (shown once)."""
        sid, secret = _token_part(), _token_part()
        now = self.clock()
        self.store.exec(
            "INSERT INTO _orion_sessions (id, user_id, secret_hash, created_at, last_used_at, expires_at,"
            " absolute_expires_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sid,
                str(user_id),
                _digest(secret),
                now,
                now,
                now + self.ttl,
                now + self.absolute,
                ip,
                (user_agent or "")[:300],
            ),
        )
        return f"{sid}.{secret}"

    def lookup(self, token: str | None) -> Session | None:
        """The live session ``token`` names, or None (malformed, unknown, wrong, expired)."""
        if not token or len(token) != 45:
            return None
        sid, dot, secret = token.partition(".")
        if not dot or not _PART.fullmatch(sid) or not _PART.fullmatch(secret):
            return None
        row = self.store.one("SELECT * FROM _orion_sessions WHERE id = ?", (sid,))
        if row is None:
            _digest(secret)  # same work as a real comparison
            return None
        if not hmac.compare_digest(_digest(secret), row["secret_hash"]):
            return None
        now = self.clock()
        if now >= row["expires_at"] or now >= row["absolute_expires_at"]:
            self.store.exec("DELETE FROM _orion_sessions WHERE id = ?", (sid,))
            return None
        expires = row["expires_at"]
        if expires - now < self.refresh_within:
            expires = min(now + self.ttl, row["absolute_expires_at"])
            self.store.exec(
                "UPDATE _orion_sessions SET expires_at = ?, last_used_at = ? WHERE id = ?", (expires, now, sid)
            )
        return Session(
            sid, row["user_id"], row["created_at"], expires, row["absolute_expires_at"], row["masquerade_as"]
        )

    def end(self, session_id: str) -> None:
        self.store.exec("DELETE FROM _orion_sessions WHERE id = ?", (session_id,))

    def end_all(self, user_id: str) -> int:
        """End every session of ``user_id`` (a password change, an admin's "sign out everywhere")."""
        count, _ = self.store.exec("DELETE FROM _orion_sessions WHERE user_id = ?", (str(user_id),))
        return count

    def masquerade(self, session_id: str, as_user: str | None) -> None:
        """Make ``session_id`` view as ``as_user`` (read-only), or stop with None."""
        self.store.exec("UPDATE _orion_sessions SET masquerade_as = ? WHERE id = ?", (as_user, session_id))

    def purge_expired(self) -> int:
        now = self.clock()
        count, _ = self.store.exec(
            "DELETE FROM _orion_sessions WHERE expires_at <= ? OR absolute_expires_at <= ?", (now, now)
        )
        return count


def secure_request(request: Request) -> bool:
    """Served over HTTPS (directly, or behind a proxy that ProxyFix trusts)."""
    return request.is_secure


def read_token(request: Request) -> str | None:
    """The session token, from the cookie only (a query string or header never counts)."""
    if secure_request(request):
        return request.cookies.get(SECURE_COOKIE)
    return request.cookies.get(COOKIE)


def set_cookie(response: Response, request: Request, token: str, *, max_age: float) -> None:
    secure = secure_request(request)
    response.set_cookie(
        SECURE_COOKIE if secure else COOKIE,
        token,
        max_age=int(max_age),
        path="/",
        secure=secure,
        httponly=True,
        samesite="Lax",
    )


def clear_cookie(response: Response, request: Request) -> None:
    secure = secure_request(request)
    response.delete_cookie(SECURE_COOKIE if secure else COOKIE, path="/", secure=secure, httponly=True, samesite="Lax")
