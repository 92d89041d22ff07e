"""The architecture console over real sockets (ORION_TENANCY=db, ORION_DEMO=1, accounts):
the seeded personas, the persona switcher, the gate probe that opens no store, the live
store-call feed across tenants, and the todos page's x-ray footer repainting on a role change.

One demo server for the module (seeding hashes three passwords, ~1 s). Tests that change
shared state put it back, or only add to it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import gevent
import pytest

from app.features.console.state import Feed
from tests.support.accounts import (
    ACCOUNTS,
    BROWSER,
    DATASTAR,
    HTML,
    JSON,
    audit,
    call,
    last_seq,
    query,
    serving,
    sign_up,
    signed_in,
    text_of,
    user_id,
)
from tests.support.server import LiveServer
from tests.support.sse import SSEClient

DEMO = {**ACCOUNTS, "ORION_TENANCY": "db", "ORION_DEMO": "1"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("console"), DEMO) as server:
        yield server


def persona(server: LiveServer, name: str, token: str | None = None) -> str:
    """Switch to ``name`` through the no-JavaScript form; the new session token."""
    answer = call(server, "POST", f"/console/persona/{name}", {}, BROWSER, token=token)
    assert answer.status == 303 and answer.headers["location"] == "/console", (answer.status, answer.text[:300])
    assert answer.token
    return answer.token


def stats(server: LiveServer, token: str) -> dict[str, object]:
    answer = call(server, "GET", "/console/stats", token=token)
    assert answer.status == 200, answer.text
    return json.loads(answer.text)  # type: ignore[no-any-return]


def query_tenant(server: LiveServer, key: str, sql: str) -> list[tuple[object, ...]]:
    """Read a workspace's own file behind the app's back."""
    with closing(sqlite3.connect(server.db.parent / "tenants" / f"{key}.sqlite")) as conn:
        return conn.execute(sql).fetchall()


def tenant_todos(server: LiveServer, key: str) -> list[str]:
    return [str(row[0]) for row in query_tenant(server, key, "SELECT title FROM todos ORDER BY id")]


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"orion_session={token}"}


# -- the demo's seed and the persona switcher ----------------------------------------------------


def test_the_demo_seeds_personas_workspaces_and_todos(demo: LiveServer) -> None:
    users = {r["email"]: r["role"] for r in query(demo, "SELECT email, role FROM users")}
    assert users == {"alice@example.com": "owner", "bob@example.com": "member", "carol@example.com": "member"}
    members = {
        (r["workspace"], r["email"].split("@")[0]): r["role"]
        for r in query(demo, "SELECT m.workspace, u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id")
    }
    assert members == {("home", "alice"): "owner", ("home", "bob"): "member", ("home", "carol"): "viewer",
                       ("acme", "bob"): "owner", ("acme", "carol"): "admin"}  # fmt: skip
    assert ("acme", "alice") not in members  # alice owns home but is not in acme
    # Each workspace's todos live in its own file, made the way the app makes one.
    assert "Water the plants" in tenant_todos(demo, "home")
    assert "Review the gate" in tenant_todos(demo, "acme")
    assert "Water the plants" not in tenant_todos(demo, "acme")


def test_anyone_can_open_the_demo_console_and_pick_a_persona(demo: LiveServer) -> None:
    page = call(demo, "GET", "/console", headers=HTML)
    assert page.status == 200
    text = text_of(page.text)
    assert "Nobody is signed in" in text
    for name in ("Alice", "Bob", "Carol"):
        assert f'aria-label="Sign in as {name}"' in page.text
    # Both planes, the grants table and the feed are on the first render (works before JS).
    for region in ("console-directory", "console-data", "console-grants", "console-feed"):
        assert f'id="{region}"' in page.text
    assert re.search(r'<tr id="store-home">.*?data-todos="\d+"', page.text)
    assert "home.sqlite" in page.text and "acme.sqlite" in page.text


def test_switching_persona_signs_the_browser_in_as_them_and_out_as_the_last(demo: LiveServer) -> None:
    before = last_seq(demo)
    alice = persona(demo, "alice")
    console = text_of(call(demo, "GET", "/console", headers=HTML, token=alice).text)
    assert "You are Alice" in console and "Probe acme" in console and "Probe home" not in console
    home = call(demo, "GET", "/w/home/", headers=HTML, token=alice)
    assert home.status == 200 and "Water the plants" in home.text

    bob = persona(demo, "bob", token=alice)  # the same browser switches: alice's session ends
    assert not signed_in(demo, alice)
    assert "You are Bob" in text_of(call(demo, "GET", "/console", headers=HTML, token=bob).text)
    switched = [r for r in audit(demo, before) if r["action"] == "console.persona" and r["outcome"] != "started"]
    assert [(r["outcome"], r["actor"]) for r in switched] == [
        ("succeeded", str(user_id(demo, "alice@example.com"))),
        ("succeeded", str(user_id(demo, "bob@example.com"))),
    ]

    unknown = call(demo, "POST", "/console/persona/mallory", {}, BROWSER)
    assert unknown.status == 404 and "pick one of alice, bob, carol" in unknown.text


# -- the gate probe ------------------------------------------------------------------------------


def test_a_probe_shows_the_gates_refusal_and_opens_no_store(demo: LiveServer) -> None:
    alice = persona(demo, "alice")
    first = stats(demo, alice)
    before = last_seq(demo)

    answer = call(demo, "POST", "/console/probe/acme", b"{}", {**DATASTAR, **JSON}, token=alice)
    assert answer.status == 200 and "datastar-patch-elements" in answer.text
    assert "selector #toasts" in answer.text and "toast-error" in answer.text
    assert "The gate said no: Alice is not a member of acme — no store was opened" in answer.text

    # A workspace that does not exist: the same answer, and no file is made for it.
    answer = call(demo, "POST", "/console/probe/nowhere", b"{}", {**DATASTAR, **JSON}, token=alice)
    assert "The gate said no: Alice is not a member of nowhere" in answer.text

    after = stats(demo, alice)
    tenants_before, tenants_after = first["tenants"], after["tenants"]
    assert isinstance(tenants_before, dict) and isinstance(tenants_after, dict)
    for counter in ("open", "opens", "creates", "files"):
        assert tenants_after[counter] == tenants_before[counter], counter
    assert tenants_after["files"] == ["acme", "home"]
    assert after["gate"] == {"refused": first["gate"]["refused"] + 2}  # type: ignore[index]
    assert not (demo.db.parent / "tenants" / "nowhere.sqlite").exists()
    probes = [(r["action"], r["outcome"], r["target"]) for r in audit(demo, before)]
    assert ("console.probe", "denied", "key=acme") in probes

    # Without JavaScript the form post gets the refusal as a page, with the gate's words.
    page = call(demo, "POST", "/console/probe/acme", {}, BROWSER, token=alice)
    assert page.status == 403 and "The gate said no" in page.text
    # Her own workspace: the gate says yes (and still opens nothing to say it).
    answer = call(demo, "POST", "/console/probe/home", b"{}", {**DATASTAR, **JSON}, token=alice)
    assert "The gate said yes: Alice is owner in home" in answer.text


# -- the live feed of store calls ----------------------------------------------------------------


def test_the_feed_shows_store_calls_from_two_tenants_live(demo: LiveServer) -> None:
    bob = persona(demo, "bob")  # a member of home, the owner of acme
    seen_before = stats(demo, bob)["feed"]["total"]  # type: ignore[index]
    with SSEClient(f"{demo.url}/console/live", headers=cookie(bob)) as sse:
        sse.wait_for(lambda e: 'id="console-feed"' in e.elements)
        start = len(sse.events)
        for key in ("home", "acme"):
            answer = call(demo, "POST", f"/w/{key}/todos", json.dumps({"title": f"feed {key}"}), JSON, token=bob)
            assert answer.status == 204, answer.text

        def inserted(key: str) -> bool:
            return any(
                re.search(rf'<td class="db">{key}</td><td>exec</td><td><code>INSERT INTO todos', e.elements)
                for e in sse.events[start:]
            )

        sse.wait_for(lambda e: inserted("home") and inserted("acme"), timeout=5, start=start)
        # The data plane's todo count followed too (a fan-out over both tenants' stores).
        sse.wait_for(lambda e: 'id="console-data"' in e.elements, start=start)
    recent = stats(demo, bob)["feed"]["recent"]  # type: ignore[index]
    stores = {c["db"] for c in recent if c["seq"] > seen_before}
    assert {"main", "home", "acme"} <= stores
    # The console's own reads (a count per workspace on every wake) are never in it.
    assert not [c for c in recent if c["seq"] > seen_before and c["sql"].startswith("SELECT count(*) AS n FROM todos")]


def test_the_feed_wakes_its_watchers_at_most_once_per_interval() -> None:
    feed, wakes = Feed(interval=0.05), []
    stop = feed.subscribe(lambda: wakes.append(time.monotonic()))
    for i in range(1000):  # a write storm inside one hub tick: one wake, later
        feed.record("home", "exec", f"INSERT {i}")
    assert wakes == []  # never from inside the call
    gevent.sleep(0.12)
    assert len(wakes) == 1
    with feed.muted():
        feed.record("main", "query", "SELECT count(*) FROM todos")
    assert feed.total == 1000 and feed.snapshot(limit=1)[0].sql == "INSERT 999"
    assert len(feed.snapshot(limit=500)) == 200  # bounded
    stop()


# -- the x-ray footer ----------------------------------------------------------------------------


def test_a_member_sees_no_delete_control_and_the_command_refuses_it_anyway(demo: LiveServer) -> None:
    bob = persona(demo, "bob")  # a member of home
    page = call(demo, "GET", "/w/home/", headers=HTML, token=bob)
    assert page.status == 200
    assert 'class="delete"' not in page.text
    footer = text_of(re.search(r'<footer id="todo-xray".*?</footer>', page.text, re.S).group(0))  # type: ignore[union-attr]
    assert "Served by workspace home home.sqlite" in footer
    assert "Bob, role member" in footer and "delete todos: denied" in footer and "create todos: allowed" in footer
    [(todo,)] = query_tenant(demo, "home", "SELECT id FROM todos WHERE title = 'Water the plants'")
    refused = call(demo, "POST", f"/w/home/todos/{todo}/delete", {}, BROWSER, token=bob)
    assert refused.status == 403 and "may not delete" in refused.text
    assert "Water the plants" in tenant_todos(demo, "home")


def test_the_xray_footer_follows_a_role_change_live(demo: LiveServer) -> None:
    alice, carol = persona(demo, "alice"), persona(demo, "carol")  # home: owner, viewer
    carol_id = user_id(demo, "carol@example.com")

    def set_role(role: str) -> None:
        answer = call(demo, "POST", f"/workspaces/home/members/{carol_id}/role", {"role": role}, BROWSER, token=alice)
        assert answer.status == 303, (answer.status, answer.text[:300])

    with SSEClient(f"{demo.url}/w/home/todos/live", headers=cookie(carol)) as sse:
        sse.wait_for(lambda e: 'data-role="viewer"' in e.elements and "create todos: denied" in e.elements)
        try:
            set_role("member")
            member = sse.wait_for(lambda e: 'data-role="member"' in e.elements, timeout=3)
            assert "create todos: allowed" in member.elements and "delete todos: denied" in member.elements
        finally:
            set_role("viewer")
        sse.wait_for(lambda e: 'data-role="viewer"' in e.elements, timeout=3, start=len(sse.events) - 1)


# -- with the demo off ---------------------------------------------------------------------------


def test_without_the_demo_there_is_no_switcher_no_seed_and_the_console_is_for_admins(tmp_path: Path) -> None:
    env = {**ACCOUNTS, "ORION_TENANCY": "db"}
    with serving(tmp_path, env) as server:
        assert query(server, "SELECT count(*) AS n FROM users")[0]["n"] == 0
        assert call(server, "POST", "/console/persona/alice", {}, BROWSER).status == 404
        anonymous = call(server, "GET", "/console", headers=HTML)
        assert anonymous.status == 302 and anonymous.headers["location"].startswith("/signin")
        assert call(server, "GET", "/console/stats").status == 403
        owner = sign_up(server, "owner@example.com", "owner password 1")  # the first account owns the app
        member = sign_up(server, "member@example.com", "member password 1")
        assert call(server, "GET", "/console", headers=HTML, token=owner).status == 200
        assert call(server, "GET", "/console", headers=HTML, token=member).status == 403


def test_a_signed_in_viewer_never_shares_the_stream_of_an_anonymous_one(start_server) -> None:  # type: ignore[no-untyped-def]
    # Identity is resolved lazily, on first use: the lane key resolves it first, or alice's
    # stream would join the lane of the anonymous viewer opened just before and show its page.
    from tests.support.accounts import BROWSER, call
    from tests.support.sse import SSEClient

    server = start_server(env={"ORION_AUTH": "accounts", "ORION_TENANCY": "db", "ORION_DEMO": "1"})
    alice = call(server, "POST", "/console/persona/alice", {}, BROWSER)
    assert alice.token
    with SSEClient(server.url + "/console/live") as nobody:
        nobody.wait_for(lambda e: "Nobody is signed in" in e.elements)
        cookie = {"Cookie": f"orion_session={alice.token}"}
        with SSEClient(server.url + "/console/live", headers=cookie) as signed_in:
            you = signed_in.wait_for(lambda e: 'id="console-you"' in e.elements)
            assert "You are <strong>Alice</strong>." in you.elements
            assert not any("Nobody is signed in" in e.elements for e in signed_in.events)
            assert server.stats()["lanes"] == 2
