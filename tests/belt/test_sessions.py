"""app.belt.sessions: hashed tokens in a cookie, sliding expiry under an absolute cap."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask, Response, request

from app.belt.sessions import (
    COOKIE,
    DAY,
    SECURE_COOKIE,
    Sessions,
    clear_cookie,
    read_token,
    set_cookie,
)
from app.belt.store import Store

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0  # an arbitrary "now" for the injected clock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db.sqlite")
    s.migrate("orion", ROOT / "migrations")
    yield s
    s.close()


@pytest.fixture
def now() -> list[float]:
    return [T0]


@pytest.fixture
def sessions(store: Store, now: list[float]) -> Sessions:
    return Sessions(store, clock=lambda: now[0])


def rows(store: Store) -> int:
    row = store.one("SELECT count(*) AS n FROM _orion_sessions")
    assert row is not None
    return int(row["n"])


def expires_day(sessions: Sessions, token: str) -> float:
    session = sessions.lookup(token)
    assert session is not None
    return (session.expires_at - T0) / DAY


# the token


def test_a_token_is_id_dot_secret_with_128_random_bits_each(sessions: Sessions) -> None:
    tokens = [sessions.create("u1") for _ in range(20)]
    for token in tokens:
        sid, secret = token.split(".")
        for part in (sid, secret):
            assert re.fullmatch(r"[A-Za-z0-9_-]{22}", part)
            assert len(base64.urlsafe_b64decode(part + "==")) * 8 >= 120
    assert len({t.split(".")[0] for t in tokens}) == 20
    assert len({t.split(".")[1] for t in tokens}) == 20


def test_lookup_returns_the_session_of_a_good_token(sessions: Sessions) -> None:
    token = sessions.create("u1", ip="192.0.2.1", user_agent="pytest")
    session = sessions.lookup(token)
    assert session is not None
    assert session.id == token.split(".")[0]
    assert session.user_id == "u1"
    assert session.created_at == T0
    assert session.expires_at == T0 + 30 * DAY
    assert session.absolute_expires_at == T0 + 90 * DAY
    assert session.masquerade_as is None


def test_only_the_sha256_of_the_secret_is_stored(sessions: Sessions, store: Store) -> None:
    token = sessions.create("u1")
    sid, secret = token.split(".")
    row = store.one("SELECT * FROM _orion_sessions WHERE id = ?", (sid,))
    assert row is not None
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).digest()
    assert secret not in [str(v) for v in tuple(row)]


def test_the_database_files_never_hold_the_token_or_its_secret(
    sessions: Sessions, store: Store, tmp_path: Path
) -> None:
    token = sessions.create("u1")
    assert sessions.lookup(token) is not None
    _, secret = token.split(".")
    files = [p for p in tmp_path.iterdir() if p.name.startswith("db.sqlite")]
    assert {p.name for p in files} >= {"db.sqlite", "db.sqlite-wal"}
    data = b"".join(p.read_bytes() for p in files)
    # The grep looks in the right place: the id and the digest of the secret are there.
    assert token.split(".")[0].encode() in data
    assert hashlib.sha256(secret.encode()).digest() in data
    assert data.count(token.encode()) == 0
    assert data.count(secret.encode()) == 0


def test_the_secret_is_compared_in_constant_time(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    token = sessions.create("u1")
    sid, secret = token.split(".")
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # sessions calls hmac.compare_digest
    wrong = sid + "." + ("B" if secret[0] == "A" else "A") + secret[1:]
    assert sessions.lookup(wrong) is None
    assert sessions.lookup(token) is not None
    assert len(calls) == 2


# bad tokens: each is refused, and none of them disturbs the real session


def _off_by_one(token: str) -> str:
    sid, secret = token.split(".")
    return f"{sid}.{secret[:5]}{'B' if secret[5] == 'A' else 'A'}{secret[6:]}"


BAD_TOKENS: dict[str, Callable[[str, str], str | None]] = {
    "none": lambda token, other: None,
    "empty (0 parts)": lambda token, other: "",
    "one part": lambda token, other: "abc",
    "one part, token length": lambda token, other: token.replace(".", "A"),
    "three parts": lambda token, other: "a.b.c",
    "three parts, token length": lambda token, other: token[:30] + "." + token[31:],
    "secret off by one character": lambda token, other: _off_by_one(token),
    "secret missing its last character": lambda token, other: token[:-1],
    "right id, wrong secret": lambda token, other: token.split(".")[0] + "." + other.split(".")[1],
    "unknown id, right secret": lambda token, other: "A" * 22 + "." + token.split(".")[1],
    "halves swapped": lambda token, other: ".".join(reversed(token.split("."))),
    "non-base64 character": lambda token, other: token[:-1] + "!",
    "standard base64 alphabet": lambda token, other: token[:-2] + "+/",
    "padding": lambda token, other: token[:-1] + "=",
    "space inside": lambda token, other: token[:10] + " " + token[11:],
    "non-ASCII": lambda token, other: token[:-1] + "é",
    "NUL byte": lambda token, other: token[:-1] + "\x00",
    "overlong by one": lambda token, other: token + "A",
    "overlong by a megabyte": lambda token, other: token + "A" * 1_000_000,
}


@pytest.mark.parametrize("make", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_a_bad_token_finds_no_session(sessions: Sessions, store: Store, make: Callable[[str, str], str | None]) -> None:
    token = sessions.create("u1")
    other = sessions.create("u2")
    bad = make(token, other)
    assert bad != token
    assert sessions.lookup(bad) is None
    assert rows(store) == 2
    assert sessions.lookup(token) is not None


# sliding expiry under an absolute cap (30 days, extended when used in the last 15; 90 at most)


SLIDE = {
    "used at day 1: not extended": (1, 30),
    "used at day 14: not extended": (14, 30),
    "used at day 15 exactly: not extended": (15, 30),
    "used at day 16: extended to day 46": (16, 46),
    "used at day 29.5: extended to day 59.5": (29.5, 59.5),
}


@pytest.mark.parametrize(("used_at", "expires_at"), SLIDE.values(), ids=SLIDE.keys())
def test_expiry_slides_only_when_used_in_the_last_15_days(
    sessions: Sessions, store: Store, now: list[float], used_at: float, expires_at: float
) -> None:
    token = sessions.create("u1")
    now[0] = T0 + used_at * DAY
    assert expires_day(sessions, token) == pytest.approx(expires_at)
    row = store.one("SELECT expires_at FROM _orion_sessions")
    assert row is not None and row["expires_at"] == pytest.approx(T0 + expires_at * DAY)


def test_a_session_used_often_never_outlives_the_absolute_cap(
    sessions: Sessions, store: Store, now: list[float]
) -> None:
    token = sessions.create("u1")
    seen = []
    for day in (16, 32, 48, 64, 80, 89.9):
        now[0] = T0 + day * DAY
        seen.append(round(expires_day(sessions, token), 6))
    assert seen == [46, 62, 78, 90, 90, 90]
    now[0] = T0 + 90 * DAY
    assert sessions.lookup(token) is None
    assert rows(store) == 0


EXPIRED = {
    "unused for 30 days": [30],
    "unused for a year": [365],
    "extended once, then unused past day 46": [16, 46],
    "used daily, past the absolute cap": [*range(1, 90), 90],
}


@pytest.mark.parametrize("days", EXPIRED.values(), ids=EXPIRED.keys())
def test_an_expired_session_is_none_and_its_row_is_deleted(
    sessions: Sessions, store: Store, now: list[float], days: list[float]
) -> None:
    token = sessions.create("u1")
    keep = sessions.create("u2")
    for day in days[:-1]:
        now[0] = T0 + day * DAY
        assert sessions.lookup(token) is not None
        assert sessions.lookup(keep) is not None
    now[0] = T0 + days[-1] * DAY
    assert sessions.lookup(token) is None
    assert store.one("SELECT 1 FROM _orion_sessions WHERE id = ?", (token.split(".")[0],)) is None
    assert rows(store) == 1


def test_purge_expired_deletes_only_dead_sessions(sessions: Sessions, store: Store, now: list[float]) -> None:
    old = sessions.create("u1")
    now[0] = T0 + 20 * DAY
    young = sessions.create("u1")
    now[0] = T0 + 31 * DAY
    assert sessions.purge_expired() == 1
    assert sessions.lookup(old) is None
    assert sessions.lookup(young) is not None


# sign-in, sign-out, password change, masquerade


def test_every_sign_in_makes_a_new_session(sessions: Sessions) -> None:
    first = sessions.create("u1")
    second = sessions.create("u1")
    assert first.split(".")[0] != second.split(".")[0]
    assert first.split(".")[1] != second.split(".")[1]
    a, b = sessions.lookup(first), sessions.lookup(second)
    assert a is not None and b is not None and a.id != b.id


def test_end_ends_one_session(sessions: Sessions) -> None:
    phone, laptop = sessions.create("u1"), sessions.create("u1")
    sessions.end(phone.split(".")[0])
    assert sessions.lookup(phone) is None
    assert sessions.lookup(laptop) is not None


def test_end_all_ends_every_session_of_that_user_only(sessions: Sessions) -> None:
    mine = [sessions.create("u1") for _ in range(3)]
    theirs = sessions.create("u2")
    assert sessions.end_all("u1") == 3
    assert [sessions.lookup(t) for t in mine] == [None, None, None]
    assert sessions.lookup(theirs) is not None
    assert sessions.end_all("u1") == 0


def test_masquerade_is_on_the_session_and_can_stop(sessions: Sessions) -> None:
    token = sessions.create("admin")
    sid = token.split(".")[0]
    sessions.masquerade(sid, "u7")
    session = sessions.lookup(token)
    assert session is not None and session.user_id == "admin" and session.masquerade_as == "u7"
    sessions.masquerade(sid, None)
    session = sessions.lookup(token)
    assert session is not None and session.masquerade_as is None


# the cookie


app = Flask(__name__)
TOKEN = "A" * 22 + "." + "B" * 22


READ = {
    "http, no cookie, token in the query string": ("http://x", "/?session=T&orion_session=T", {}, None),
    "http, no cookie, Authorization header": ("http://x", "/", {"Authorization": "Bearer T"}, None),
    "http, no cookie, X-Session header": ("http://x", "/", {"X-Session": "T"}, None),
    "http, no cookie, all three": ("http://x", "/?session=T", {"Authorization": "Bearer T", "X-Session": "T"}, None),
    "http, cookie": ("http://x", "/", {"Cookie": f"{COOKIE}=T"}, "T"),
    "http, cookie and a query string": ("http://x", "/?session=Q", {"Cookie": f"{COOKIE}=T"}, "T"),
    "http, cookie and a header": ("http://x", "/", {"Cookie": f"{COOKIE}=T", "Authorization": "Bearer Q"}, "T"),
    "https, __Host- cookie": ("https://x", "/", {"Cookie": f"{SECURE_COOKIE}=T"}, "T"),
    "https, only the plain cookie": ("https://x", "/", {"Cookie": f"{COOKIE}=T"}, None),
    "https, no cookie, query and header": ("https://x", "/?session=T", {"Authorization": "Bearer T"}, None),
    "http, only the __Host- cookie": ("http://x", "/", {"Cookie": f"{SECURE_COOKIE}=T"}, None),
}


@pytest.mark.parametrize(("base_url", "path", "headers", "expected"), READ.values(), ids=READ.keys())
def test_the_token_is_read_from_the_cookie_only(
    base_url: str, path: str, headers: dict[str, str], expected: str | None
) -> None:
    with app.test_request_context(path, base_url=base_url, headers=headers):
        assert read_token(request) == expected


def _set_cookie_header(base_url: str) -> str:
    with app.test_request_context("/", base_url=base_url):
        response = Response()
        set_cookie(response, request, TOKEN, max_age=30 * DAY)
        headers = response.headers.getlist("Set-Cookie")
    assert len(headers) == 1
    return headers[0]


def _attributes(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def test_over_https_the_cookie_is_host_prefixed_secure_httponly_lax() -> None:
    header = _set_cookie_header("https://x")
    assert header.startswith(f"__Host-orion_session={TOKEN};")
    assert "; Secure" in header
    assert "; HttpOnly" in header
    assert "; SameSite=Lax" in header
    assert "; Path=/" in header
    assert "; Max-Age=2592000" in header
    assert "domain" not in _attributes(header)  # __Host- forbids it


def test_over_http_the_cookie_is_plain_httponly_lax_without_secure() -> None:
    header = _set_cookie_header("http://x")
    assert header.startswith(f"orion_session={TOKEN};")
    assert "__Host-" not in header
    assert "secure" not in _attributes(header)
    assert "; HttpOnly" in header
    assert "; SameSite=Lax" in header
    assert "; Path=/" in header
    assert "domain" not in _attributes(header)


@pytest.mark.parametrize(("base_url", "name"), [("https://x", SECURE_COOKIE), ("http://x", COOKIE)])
def test_clear_cookie_expires_the_same_cookie(base_url: str, name: str) -> None:
    with app.test_request_context("/", base_url=base_url):
        response = Response()
        clear_cookie(response, request)
    (header,) = response.headers.getlist("Set-Cookie")
    assert header.startswith(f"{name}=;")
    assert "; Max-Age=0" in header
    assert "; Path=/" in header


def test_a_set_cookie_round_trips_through_read_token(sessions: Sessions) -> None:
    token = sessions.create("u1")
    with app.test_request_context("/", base_url="https://x"):
        response = Response()
        set_cookie(response, request, token, max_age=30 * DAY)
    cookie = response.headers["Set-Cookie"].split(";")[0]
    with app.test_request_context("/", base_url="https://x", headers={"Cookie": cookie}):
        session = sessions.lookup(read_token(request))
    assert session is not None and session.user_id == "u1"
