"""Accounts over real sockets (ORION_AUTH=accounts): the sign-in pages without JavaScript,
the session cookie, throttling, password changes, sign-out, what never counts as a session,
that no token is ever written down, and the cross-site check on a signed-in session.

One server for the module; its first account is the owner. Tests that change an account's
state (its password, its sessions, its throttle) make their own account.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.accounts import (
    ACCOUNTS,
    BROWSER,
    HTML,
    JSON,
    Answer,
    audit,
    call,
    last_seq,
    serving,
    sign_in,
    sign_up,
    signed_in,
    todos,
)
from tests.support.server import LiveServer

PASSWORD = "correct horse battery"
TOKEN = re.compile(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{22}")


@dataclass
class Site:
    server: LiveServer
    owner: str  # the owner's session token
    owner_email: str = "owner@example.com"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving(tmp_path_factory.mktemp("accounts"), ACCOUNTS) as server:
        yield Site(server, sign_up(server, "owner@example.com", PASSWORD))


def signin_form(server: LiveServer, email: str, password: str, token: str | None = None) -> Answer:
    return call(server, "POST", "/signin", {"email": email, "password": password}, BROWSER, token=token)


# -- the pages ----------------------------------------------------------------------------------


def test_the_start_page_sends_a_stranger_to_sign_in(site: Site) -> None:
    answer = call(site.server, "GET", "/", headers=HTML)
    assert answer.status == 302
    assert answer.headers["location"] == "/signin?next=/"


@pytest.mark.parametrize("path", ["/signin", "/signup"])
def test_the_sign_in_pages_are_plain_forms_with_labelled_fields(site: Site, path: str) -> None:
    answer = call(site.server, "GET", path, headers=HTML)
    assert answer.status == 200
    page = answer.text
    form = path.strip("/")
    # A form that posts without JavaScript, to itself.
    assert f'<form id="{form}" method="post" action="{path}"' in page
    for field, label, kind in (("email", "Email", "email"), ("password", "Password", "password")):
        assert f'<label for="{form}-{field}">{label}</label>' in page
        assert re.search(rf'<input id="{form}-{field}" name="{field}" type="{kind}"', page), field


def test_sign_up_sets_an_http_only_lax_cookie_and_shows_who_is_signed_in(site: Site) -> None:
    email = "cookie@example.com"
    answer = call(site.server, "POST", "/signup", {"email": email, "password": PASSWORD}, BROWSER)
    assert answer.status == 303 and answer.headers["location"] == "/"
    [cookie] = answer.set_cookies
    value, *flags = [part.strip() for part in cookie.split(";")]
    name, _, token = value.partition("=")
    assert name == "orion_session" and TOKEN.fullmatch(token), cookie
    assert {"HttpOnly", "Path=/", "SameSite=Lax"} <= set(flags)
    # Served over plain http: a Secure cookie would never come back.
    assert "Secure" not in flags
    page = call(site.server, "GET", "/", headers=HTML, token=token)
    assert page.status == 200
    assert f'<span class="who">{email} <small>(member)</small></span>' in page.text


def test_a_second_sign_up_with_the_same_email_is_refused_on_the_form(site: Site) -> None:
    answer = call(site.server, "POST", "/signup", {"email": site.owner_email.upper(), "password": PASSWORD}, BROWSER)
    assert answer.status == 422 and answer.token is None
    assert "That email already has an account: sign in instead." in answer.text


# -- signing in ---------------------------------------------------------------------------------


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(site: Site) -> None:
    email = "same-answer@example.com"
    sign_up(site.server, email, PASSWORD)
    wrong = signin_form(site.server, email, "not the password")
    unknown = signin_form(site.server, "nobody@example.com", "not the password")
    assert wrong.status == unknown.status == 422
    assert wrong.token is None and unknown.token is None
    assert "Wrong email or password." in wrong.text
    # The page echoes the email typed; apart from that the two are the same page.
    assert wrong.text.replace(email, "EMAIL") == unknown.text.replace("nobody@example.com", "EMAIL")


def test_every_sign_in_makes_a_new_session_and_never_adopts_the_cookie_it_came_with(site: Site) -> None:
    email = "twice@example.com"
    first = sign_up(site.server, email, PASSWORD)
    # A token an attacker planted (well-formed, unknown) and a live one: neither is kept.
    planted = "A" * 22 + "." + "B" * 22
    second = sign_in(site.server, email, PASSWORD, token=planted)
    third = sign_in(site.server, email, PASSWORD, token=first)
    assert len({planted, first, second, third}) == 4
    assert all(signed_in(site.server, token) for token in (first, second, third))
    assert not signed_in(site.server, planted)


def test_sign_in_returns_to_the_page_asked_for_but_never_to_another_site(site: Site) -> None:
    email = "next@example.com"
    sign_up(site.server, email, PASSWORD)
    for next_url, location in (("/account", "/account"), ("//evil.example/x", "/"), ("https://evil.example", "/")):
        answer = call(site.server, "POST", "/signin", {"email": email, "password": PASSWORD, "next": next_url}, BROWSER)
        assert answer.status == 303 and answer.headers["location"] == location, next_url


def test_repeated_failures_are_throttled_without_saying_whether_the_account_exists(site: Site) -> None:
    email = "throttled@example.com"
    sign_up(site.server, email, PASSWORD)
    # The account's five free failures, then a 1 s wait (doubling per failure after that).
    statuses = [signin_form(site.server, email, f"wrong {i}").status for i in range(5)]
    fifth = time.monotonic()
    statuses += [signin_form(site.server, email, f"wrong {i}").status for i in range(5, 11)]
    right = signin_form(site.server, email, PASSWORD)
    assert statuses == [422] * 5 + [429] * 6
    # Inside the wait even the right password is refused, without hashing it.
    assert right.status == 429 and right.token is None
    assert "Too many sign-in attempts. Wait 1 second, then try again." in right.text
    # An email with no account is throttled the same way, with the same page.
    ghost = [signin_form(site.server, "ghost@example.com", f"wrong {i}") for i in range(6)]
    assert [a.status for a in ghost] == [422] * 5 + [429]
    assert ghost[-1].text == right.text
    # Waiting it out works, and a success clears the count.
    time.sleep(max(0.0, fifth + 1.05 - time.monotonic()))
    assert signin_form(site.server, email, PASSWORD).status == 303
    assert signin_form(site.server, email, "wrong again").status == 422


@pytest.mark.parametrize("path", ["/signin", "/signup"])
def test_a_huge_password_is_refused_before_any_hashing(site: Site, path: str) -> None:
    fields = {"email": "huge@example.com", "password": "x" * 2**20}
    before = last_seq(site.server)
    started = time.monotonic()
    huge = call(site.server, "POST", path, fields, BROWSER)
    # A 1 MB body is over the request limit: refused before the form is even read.
    assert huge.status == 413 and "the limit is 262,144 bytes" in huge.text
    # Under the body limit but over the password limit: the form says so, with the limit.
    long = call(site.server, "POST", path, {**fields, "password": "x" * 200_000}, BROWSER)
    elapsed = time.monotonic() - started
    assert long.status == 422 and long.token is None
    assert "Password must be at most 1024 characters (got 200000)." in long.text
    # Neither reached the command (its started record would be in the journal), so neither
    # reached scrypt; the server is still up.
    assert audit(site.server, before) == []
    assert elapsed < 1.0, elapsed
    assert call(site.server, "GET", "/_orion/health").status == 200


# -- changing the password, signing out --------------------------------------------------------


def test_changing_the_password_ends_every_other_session_and_renews_this_one(site: Site) -> None:
    email = "changer@example.com"
    here = sign_up(site.server, email, PASSWORD)
    elsewhere = sign_in(site.server, email, PASSWORD)
    wrong = call(
        site.server, "POST", "/account/password", {"current": "not it", "new": "a new password"}, BROWSER, token=here
    )
    assert wrong.status == 422
    assert '<p id="password-current-error" class="field-error" role="alert"' in wrong.text
    assert "That is not your current password." in wrong.text
    assert signed_in(site.server, here) and signed_in(site.server, elsewhere)

    right = call(
        site.server, "POST", "/account/password", {"current": PASSWORD, "new": "a new password"}, BROWSER, token=here
    )
    assert right.status == 303 and right.headers["location"] == "/account?changed=1"
    fresh = right.token
    assert fresh and TOKEN.fullmatch(fresh) and fresh not in (here, elsewhere)
    assert not signed_in(site.server, elsewhere)
    assert not signed_in(site.server, here)
    account = call(site.server, "GET", "/account?changed=1", headers=HTML, token=fresh)
    assert account.status == 200 and "Your other sessions were signed out." in account.text


def test_sign_out_clears_the_cookie_and_ends_the_session(site: Site) -> None:
    token = sign_up(site.server, "leaver@example.com", PASSWORD)
    answer = call(site.server, "POST", "/signout", {}, BROWSER, token=token)
    assert answer.status == 303 and answer.headers["location"] == "/signin"
    [cookie] = answer.set_cookies
    assert cookie.startswith("orion_session=;") and "Max-Age=0" in cookie
    assert not signed_in(site.server, token)


# -- what is not a session -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/?session={t}", None),
        ("/?orion_session={t}", None),
        ("/", ("Authorization", "Bearer {t}")),
        ("/", ("X-Session", "{t}")),
        ("/", ("Cookie", "session={t}")),
    ],
    ids=["query-session", "query-orion_session", "authorization", "x-session", "other-cookie-name"],
)
def test_a_token_anywhere_but_the_cookie_is_ignored(site: Site, path: str, header: tuple[str, str] | None) -> None:
    headers = dict(HTML)
    if header is not None:
        headers[header[0]] = header[1].format(t=site.owner)
    answer = call(site.server, "GET", path.format(t=site.owner), headers=headers)
    assert answer.status == 302 and answer.headers["location"].startswith("/signin")


def _malformed(token: str) -> dict[str, str]:
    sid, _, secret = token.partition(".")
    other = "A" if secret[0] != "A" else "B"
    return {
        "empty": "",
        "abc": "abc",
        "a.b.c": "a.b.c",
        "no dot": sid + secret + "x",
        "one part": sid,
        "three parts": f"{sid}.{secret[:10]}.{secret[11:]}",
        "id and a wrong secret": f"{sid}.{'A' * 22}",
        "secret off by one char": f"{sid}.{other}{secret[1:]}",
        "secret one char short": f"{sid}.{secret[:-1]}",
        "secret one char long": f"{sid}.{secret}A",
        "swapped halves": f"{secret}.{sid}",
        "non-ascii": f"{sid}.{secret[:-1]}é",
        "huge": "A" * 4000,
    }


def test_a_malformed_or_wrong_cookie_means_signed_out_never_an_error(site: Site) -> None:
    answers = {}
    for what, value in _malformed(site.owner).items():
        answer = call(site.server, "GET", "/", headers={**HTML, "Cookie": f"orion_session={value}"})
        answers[what] = (answer.status, answer.headers.get("location"))
    assert answers == dict.fromkeys(answers, (302, "/signin?next=/"))
    # ...and a command with one is refused as signed out.
    answer = call(
        site.server,
        "POST",
        "/todos",
        json.dumps({"title": "x"}),
        {**JSON, "Cookie": f"orion_session={site.owner[:-1]}B"},
    )
    assert answer.status == 403 and "not signed in" in answer.text
    assert signed_in(site.server, site.owner)


def test_no_token_or_secret_is_ever_written_down(site: Site) -> None:
    server = site.server
    email = "secret-keeper@example.com"
    tokens = [sign_up(server, email, PASSWORD), sign_in(server, email, PASSWORD), sign_in(server, email, PASSWORD)]
    # Put them to use: a page, a command, a failed command, a sign-out.
    for token in tokens:
        assert call(server, "GET", "/", headers=HTML, token=token).status == 200
    call(server, "POST", "/todos", json.dumps({"title": "kept quiet"}), JSON, token=tokens[0])
    call(server, "POST", "/todos/999999/rename", json.dumps({"title": "x"}), JSON, token=tokens[1])
    call(server, "POST", "/signout", {}, BROWSER, token=tokens[2])
    jsonl = server.db.parent / f"audit-{server.db.stem}.jsonl"
    files = [server.db, Path(f"{server.db}-wal"), jsonl, server.log_path]
    assert all(path.exists() for path in files[1:]), files
    haystacks = {path.name: path.read_bytes() for path in files if path.exists()}
    needles = [t.encode() for t in tokens] + [t.split(".")[1].encode() for t in tokens]
    hits = [(name, needle) for name, data in haystacks.items() for needle in needles if needle in data]
    assert hits == []


# -- the cross-site check on a signed-in session -------------------------------------------------

SITES = ("cross-site", "same-site", "same-origin", "none", None)
ORIGINS = ("same", "other", None)
# Sec-Fetch-Site decides when present (same-origin and none pass whatever Origin says: a
# browser never sends those with another site's Origin); without it, Origin decides; with
# neither (and no Referer) the request did not come from a browser page.
ALLOWED = {
    ("cross-site", "same"): False,
    ("cross-site", "other"): False,
    ("cross-site", None): False,
    ("same-site", "same"): False,
    ("same-site", "other"): False,
    ("same-site", None): False,
    ("same-origin", "same"): True,
    ("same-origin", "other"): True,
    ("same-origin", None): True,
    ("none", "same"): True,
    ("none", "other"): True,
    ("none", None): True,
    (None, "same"): True,
    (None, "other"): False,
    (None, None): True,
}


def _csrf_headers(server: LiveServer, site: str | None, origin: str | None) -> dict[str, str]:
    headers = {}
    if site is not None:
        headers["Sec-Fetch-Site"] = site
    if origin is not None:
        headers["Origin"] = server.url if origin == "same" else "https://evil.example"
    return headers


def test_the_cross_site_matrix_on_post_delete_and_put(site: Site) -> None:
    server = site.server
    expected, observed = {}, {}
    for n, (fetch_site, origin) in enumerate(ALLOWED):
        headers = _csrf_headers(server, fetch_site, origin)
        allowed = ALLOWED[(fetch_site, origin)]
        cell = f"{fetch_site}/{origin}"

        title = f"csrf post {n}"
        post = call(server, "POST", "/todos", json.dumps({"title": title}), {**JSON, **headers}, token=site.owner)
        made = any(row["title"] == title for row in todos(server))
        expected["POST", cell] = (204, True) if allowed else (403, False)
        observed["POST", cell] = (post.status, made)

        victim = call(server, "POST", "/todos", json.dumps({"title": f"csrf victim {n}"}), JSON, token=site.owner)
        assert victim.status == 204
        [todo_id] = [row["id"] for row in todos(server) if row["title"] == f"csrf victim {n}"]
        delete = call(server, "DELETE", f"/todos/{todo_id}", headers=headers, token=site.owner)
        kept = any(row["id"] == todo_id for row in todos(server))
        expected["DELETE", cell] = (204, False) if allowed else (403, True)
        observed["DELETE", cell] = (delete.status, kept)

        # No PUT route: the cross-site check runs before routing's 405, so a refused PUT is a
        # 403 and one let through learns only that the method is wrong.
        put = call(server, "PUT", "/todos", json.dumps({"title": "put"}), {**JSON, **headers}, token=site.owner)
        expected["PUT", cell] = 405 if allowed else 403
        observed["PUT", cell] = put.status
        if put.status == 403:
            assert "this request came from another site" in put.text
    assert observed == expected


# -- the self-host mode --------------------------------------------------------------------------


def test_local_mode_needs_no_sign_in_and_attributes_actions_to_the_local_identity(server: LiveServer) -> None:
    page = call(server, "GET", "/", headers=HTML)
    assert page.status == 200 and "<h1>Todos</h1>" in page.text
    before = last_seq(server)
    assert call(server, "POST", "/todos", json.dumps({"title": "local work"}), JSON).status == 204
    records = audit(server, before)
    assert [(r["action"], r["outcome"], r["actor"]) for r in records] == [
        ("todos.add", "started", "local"),
        ("todos.add", "succeeded", "local"),
    ]
