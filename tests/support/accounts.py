"""Helpers for tests of a server started with ORION_AUTH=accounts: plain HTTP calls with a
session cookie, signing up and in through the real forms, and reads of the database file.

Each sign-up or sign-in costs one scrypt hash (~0.3 s), so a test module makes a few accounts
on one server and shares them.
"""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.support.server import LiveServer

COOKIE = "orion_session"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# What a browser sends with a form post when JavaScript is off.
BROWSER = {**FORM, "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
HTML = {"Accept": BROWSER["Accept"]}
DATASTAR = {"Datastar-Request": "true"}
JSON = {"Content-Type": "application/json"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str
    set_cookies: list[str] = field(default_factory=list)

    @property
    def token(self) -> str | None:
        """The session token this answer set (None: it set none; "" : it cleared it)."""
        for raw in self.set_cookies:
            name, _, rest = raw.partition("=")
            if name == COOKIE:
                return rest.split(";", 1)[0]
        return None


def call(
    server: LiveServer,
    method: str,
    path: str,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    token: str | None = None,
    timeout: float = 10,
) -> Answer:
    """One request on a fresh connection; a dict body is sent as a urlencoded form."""
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = urlencode(body)
        headers.setdefault("Content-Type", FORM["Content-Type"])
    if token is not None:
        headers["Cookie"] = f"{COOKIE}={token}"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        raw = response.getheaders()
        return Answer(
            response.status,
            {k.lower(): v for k, v in raw},
            text,
            [v for k, v in raw if k.lower() == "set-cookie"],
        )
    finally:
        conn.close()


def sign_up(server: LiveServer, email: str, password: str, name: str = "") -> str:
    """Create an account through the no-JavaScript form; its session token."""
    answer = call(server, "POST", "/signup", {"email": email, "name": name, "password": password}, BROWSER)
    assert answer.status == 303, (answer.status, answer.text[:500])
    assert answer.token, answer.set_cookies
    return answer.token


def sign_in(server: LiveServer, email: str, password: str, *, token: str | None = None) -> str:
    """Sign in through the no-JavaScript form; the new session token."""
    answer = call(server, "POST", "/signin", {"email": email, "password": password}, BROWSER, token=token)
    assert answer.status == 303, (answer.status, answer.text[:500])
    assert answer.token, answer.set_cookies
    return answer.token


def signed_in(server: LiveServer, token: str) -> bool:
    """Does ``token`` name a live session? (GET / answers the page, not a redirect.)"""
    answer = call(server, "GET", "/", headers=HTML, token=token)
    if answer.status == 302:
        assert answer.headers["location"].startswith("/signin"), answer.headers
        return False
    return True


def db(server: LiveServer) -> sqlite3.Connection:
    conn = sqlite3.connect(server.db, timeout=5)
    conn.row_factory = sqlite3.Row
    return conn


def query(server: LiveServer, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    with closing(db(server)) as conn:
        return conn.execute(sql, params).fetchall()


def execute(server: LiveServer, sql: str, params: tuple[Any, ...] = ()) -> None:
    with closing(db(server)) as conn, conn:
        conn.execute(sql, params)


def user_id(server: LiveServer, email: str) -> int:
    [row] = query(server, "SELECT id FROM users WHERE email = ?", (email,))
    return int(row["id"])


def set_role_in_db(server: LiveServer, email: str, role: str) -> None:
    """Set a role behind the app's back (its authz cache lasts 5 minutes: only before the
    user's first request, or for a user whose grants the server has not loaded yet)."""
    execute(server, "UPDATE users SET role = ? WHERE email = ?", (role, email))


def audit(server: LiveServer, after: int = 0) -> list[sqlite3.Row]:
    return query(server, "SELECT * FROM _orion_audit WHERE seq > ? ORDER BY seq", (after,))


def last_seq(server: LiveServer) -> int:
    rows = query(server, "SELECT max(seq) AS seq FROM _orion_audit")
    return int(rows[0]["seq"] or 0)


def todos(server: LiveServer) -> list[sqlite3.Row]:
    return query(server, "SELECT id, title, done FROM todos ORDER BY id")


def add_todo(server: LiveServer, token: str | None, title: str) -> int:
    """Add a todo as ``token``'s user through the JSON API; its id."""
    answer = call(server, "POST", "/todos", json.dumps({"title": title}), JSON, token=token)
    assert answer.status == 204, (answer.status, answer.text)
    [row] = [row for row in todos(server) if row["title"] == title]
    return int(row["id"])


def text_of(page: str) -> str:
    """A page's text: tags dropped, whitespace collapsed (for "the banner says ...")."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


@contextmanager
def serving(folder: Path, env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """A server for a whole module, with conftest's leak check when the module is done."""
    server = LiveServer(folder / "app.sqlite", env=env).start()
    try:
        yield server
        server.wait_for(
            lambda s: s["streams"] == 0 and s["subscribers"] == 0,
            timeout=3.5,
            what="streams and subscriptions back to zero",
        )
    finally:
        server.stop()


ACCOUNTS = {"ORION_AUTH": "accounts"}
