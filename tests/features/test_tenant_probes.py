"""Attacks on tenant isolation, against a real server (ORION_TENANCY=db, ORION_AUTH=accounts).

Bob's workspace "bravo" is seeded with canary strings. Alice (owner of "alpha", not a member
of bravo) then replays every route and method of the app, enumerated from the app's own
url_map, with bravo's ids (and ids ±1) under alpha's URL and under bravo's. No canary byte
may reach her: not in a response, a live stream, an export, the server's log or a job row.
Bravo's URLs answer exactly like a workspace that does not exist, and never open its file.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from app.belt import Tenants
from tests.support.accounts import BROWSER, COOKIE, HTML, JSON, call, sign_up, user_id
from tests.support.server import ROOT, LiveServer
from tests.support.sse import SSEClient

PASSWORD = "correct horse battery"
ENV = {"ORION_TENANCY": "db", "ORION_AUTH": "accounts", "ORION_ACCESS_LOG": "-"}
CANARY = f"CANARY{uuid.uuid4().hex[:12]}"
UNKNOWN = "nosuch"  # a workspace that does not exist
#: Routes not replayed, and why. Everything else in url_map is.
SKIP = {
    "static": "files from app/static, no tenant data",
    "accounts.sign_out": "would end the prober's own session",
    "accounts.sign_up": "makes accounts (one scrypt hash each); no tenant data",
    "accounts.sign_in": "one scrypt hash each; no tenant data",
    "accounts.change_password": "one scrypt hash each; no tenant data",
}
DATA = {"title": "probe", "done": "true", "role": "viewer", "email": "nobody@example.com", "name": "probe-ws"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str


@dataclass
class World:
    server: LiveServer
    alice: str
    bob: str
    carol: str
    carol_id: int
    bob_id: int
    bravo_ids: list[int]
    routes: list[dict[str, Any]]
    seen: list[str] = field(default_factory=list)  # every body and header alice received

    @property
    def tenants(self) -> Path:
        return self.server.db.parent / "tenants"


def fetch(
    server: LiveServer,
    method: str,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    window: float = 0.3,
) -> Answer:
    """One request; a live stream is read for ``window`` seconds, then hung up."""
    headers = dict(headers or {})
    if token is not None:
        headers["Cookie"] = f"{COOKIE}={token}"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        if (response.getheader("Content-Type") or "").startswith("text/event-stream"):
            assert conn.sock is not None
            conn.sock.settimeout(window)
            chunks = []
            try:
                while chunk := response.read1(65536):
                    chunks.append(chunk)
            except TimeoutError:
                pass
            data = b"".join(chunks)
            conn.sock.shutdown(socket.SHUT_RDWR)
        else:
            data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data.decode(errors="replace"))
    finally:
        conn.close()


def url_map(tmp: Path) -> subprocess.Popen[str]:
    """Every rule and method of the app, as create_app() builds it with tenancy on (JSON on
    the process's stdout: it runs while the server starts)."""
    script = (
        "import json\nfrom app import create_app\napp = create_app()\n"
        "print(json.dumps([{'endpoint': r.endpoint, 'rule': r.rule, 'args': sorted(r.arguments),"
        " 'methods': sorted(r.methods - {'HEAD', 'OPTIONS'})} for r in app.url_map.iter_rules()]))\n"
    )
    env = {**os.environ, **ENV, "ORION_DB": str(tmp / "routes.sqlite"), "SECRET_KEY": "x", "ORION_AUDIT_JSONL": ""}
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


def routes_of(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, "create_app() failed: run it by hand to see why"
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def todo_ids(path: Path) -> list[int]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM todos ORDER BY id")]


def post(server: LiveServer, path: str, data: dict[str, str], token: str) -> int:
    return call(server, "POST", path, data, BROWSER, token=token).status


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("probes")
    mapping = url_map(folder)
    server = LiveServer(folder / "app.sqlite", env=ENV).start()
    try:
        # carol signs up first, so she owns the site: that grants nothing in any workspace
        # (grants there come from memberships), and alice, the prober, is a plain account.
        carol = sign_up(server, "carol@example.com", PASSWORD)
        alice = sign_up(server, "alice@example.com", PASSWORD)
        bob = sign_up(server, "bob@example.com", PASSWORD)
        assert post(server, "/workspaces", {"name": "alpha"}, alice) == 303
        assert post(server, "/workspaces", {"name": "bravo"}, bob) == 303
        assert post(server, "/workspaces/alpha/members", {"email": "carol@example.com", "role": "member"}, alice) in (
            204,
            303,
        )
        for i in range(3):
            assert (
                call(server, "POST", "/w/alpha/todos", json.dumps({"title": f"alpha {i}"}), JSON, token=alice).status
                == 204
            )
        for i in range(12):
            assert (
                call(
                    server, "POST", "/w/bravo/todos", json.dumps({"title": f"{CANARY} bravo {i}"}), JSON, token=bob
                ).status
                == 204
            )
        bravo_ids = todo_ids(folder / "tenants" / "bravo.sqlite")
        assert post(server, f"/w/bravo/todos/{bravo_ids[0]}/toggle", {"done": "on"}, bob) in (204, 303)
        assert post(server, f"/w/bravo/todos/{bravo_ids[1]}/rename", {"title": f"{CANARY} renamed"}, bob) in (204, 303)
        ids = {email: user_id(server, email) for email in ("bob@example.com", "carol@example.com")}
    finally:
        server.stop()
    # A fresh process: no workspace file is open, so any open during a probe is visible.
    server = LiveServer(folder / "app.sqlite", env=ENV).start()
    try:
        routes = routes_of(mapping)
        yield World(server, alice, bob, carol, ids["carol@example.com"], ids["bob@example.com"], bravo_ids, routes)
        server.wait_for(
            lambda s: s["streams"] == 0 and s["subscribers"] == 0,
            timeout=3.5,
            what="streams and subscriptions back to zero",
        )
    finally:
        server.stop()


def variants(method: str) -> list[tuple[str, dict[str, str], str | None]]:
    """(name, headers, body): a Datastar request and a no-JavaScript browser request."""
    if method == "GET":
        return [
            ("datastar", {"Datastar-Request": "true", "Accept": "text/event-stream"}, None),
            ("browser", HTML, None),
        ]
    return [
        ("datastar", {"Datastar-Request": "true", **JSON}, json.dumps({**DATA, "done": True})),
        ("browser", BROWSER, urlencode(DATA)),
    ]


def refused(status: int, content_type: str | None, variant: str, method: str) -> bool:
    """A 404; or, for a Datastar command, the same refusal as SSE events in a 200 (the v1
    client ignores the body of any other status, so requester feedback travels that way)."""
    if status == 404:
        return True
    return variant == "datastar" and method != "GET" and status == 200 and content_type == "text/event-stream"


def fill(rule: str, values: dict[str, Any]) -> str:
    path = rule
    for name, value in values.items():
        path = path.replace(f"<{name}>", str(value)).replace(f"<id:{name}>", str(value))
    assert "<" not in path, path
    return path


def test_a_probe_of_a_foreign_or_unknown_workspace_opens_nothing_and_answers_the_same(world: World) -> None:
    server = world.server
    bravo = world.tenants / "bravo.sqlite"
    mtime = bravo.stat().st_mtime_ns
    before = server.stats()["tenants"]
    assert before == {"open": 0, "opens": 0, "creates": 0, "closes": 0}, "a workspace was opened at boot"
    probed = 0
    for route in world.routes:
        scoped = {"workspace", "key"} & set(route["args"])
        if route["endpoint"] in SKIP or not scoped:
            continue
        for method, (name, headers, body), token in product(route["methods"], variants("GET"), ["alice", None]):
            if method != "GET":
                name, headers, body = dict((v[0], v) for v in variants(method))[name]
            answers = {}
            for key in ("bravo", UNKNOWN):
                values = {a: key for a in scoped} | {
                    "todo_id": world.bravo_ids[0],
                    "user_id": world.bob_id,
                    "name": "bob",
                }
                path = fill(route["rule"], {a: v for a, v in values.items() if a in route["args"]})
                answer = fetch(server, method, path, body, headers, world.alice if token else None)
                assert CANARY not in answer.text + repr(answer.headers), path
                answers[key] = (answer.status, answer.headers.get("content-type"), answer.text.replace(key, "<key>"))
                probed += 1
            where = f"{method} {route['rule']} ({name}, {'alice' if token else 'anonymous'})"
            assert answers["bravo"] == answers[UNKNOWN], f"{where}: a foreign workspace answers unlike an unknown one"
            status, kind, _ = answers["bravo"]
            if token and route["rule"].startswith(("/w/", "/workspaces/")):  # bravo's own URLs
                assert refused(status, kind, name, method), f"{where}: {status} {kind}"
            elif token:  # elsewhere (an admin-only console): refused, the same way
                assert status >= 400 or refused(status, kind, name, method), f"{where}: {status} {kind}"
    assert probed >= 40
    # Nothing was opened or created: no workspace store, no file, no -wal/-shm beside bravo's.
    assert server.stats()["tenants"] == before
    assert not list(world.tenants.glob(f"{UNKNOWN}*"))
    assert not Path(f"{bravo}-wal").exists() and not Path(f"{bravo}-shm").exists()
    assert bravo.stat().st_mtime_ns == mtime


def test_a_removed_members_open_stream_is_severed(world: World) -> None:
    server = world.server
    with SSEClient(server.url + "/w/alpha/todos/live", headers={"Cookie": f"{COOKIE}={world.carol}"}) as carol:
        assert carol.status == 200
        carol.wait_for(lambda e: "alpha 0" in e.elements)
        assert post(server, f"/workspaces/alpha/members/{world.carol_id}/remove", {}, world.alice) in (204, 303)
        event = carol.wait_for(lambda e: "Access revoked" in e.elements)
        assert "alpha 0" not in event.elements
        carol.wait_closed(timeout=5)
    assert fetch(server, "GET", "/w/alpha/", None, HTML, world.carol).status == 404
    again = fetch(server, "GET", "/w/alpha/todos/live", None, {"Datastar-Request": "true"}, world.carol)
    assert again.status == 404


def test_replaying_another_tenants_ids_on_every_route_leaks_no_canary(world: World, tmp_path: Path) -> None:
    server = world.server
    ids = sorted({n for i in world.bravo_ids for n in (i - 1, i, i + 1) if n > 0})
    choices: dict[str, list[Any]] = {
        "workspace": ["alpha", "bravo"],
        "key": ["alpha", "bravo"],
        "todo_id": ids,
        "user_id": [world.bob_id - 1, world.bob_id, world.bob_id + 1],
        "name": ["bob", "bravo"],
    }
    stop = threading.Event()

    def bob_keeps_writing() -> None:  # bravo's topics fire while alpha's stream is open
        n = 0
        while not stop.is_set():
            call(server, "POST", "/w/bravo/todos", json.dumps({"title": f"{CANARY} live {n}"}), JSON, token=world.bob)
            n += 1
            time.sleep(0.02)

    sent, handed, started = 0, [], time.monotonic()
    with SSEClient(server.url + "/w/alpha/todos/live", headers={"Cookie": f"{COOKIE}={world.alice}"}) as stream:
        stream.wait_for(lambda e: "alpha 0" in e.elements)
        writer = threading.Thread(target=bob_keeps_writing)
        writer.start()
        try:
            for route in world.routes:
                if route["endpoint"] in SKIP:
                    continue
                args = route["args"]
                for values in product(*(choices.get(a, ["1"]) for a in args)):
                    path = fill(route["rule"], dict(zip(args, values, strict=True)))
                    for method in route["methods"]:
                        for name, headers, body in variants(method):
                            answer = fetch(server, method, path, body, headers, world.alice)
                            sent += 1
                            seen = answer.text + repr(answer.headers)
                            assert CANARY not in seen, f"{method} {path}: {answer.status} {seen[:300]}"
                            if "/w/bravo/" in path or "/workspaces/bravo/" in path:
                                kind = answer.headers.get("content-type")
                                assert refused(answer.status, kind, name, method), f"{method} {path}: {answer.status}"
                            handed += [
                                c.split("=", 1)[1].split(";")[0]
                                for k, c in answer.headers.items()
                                if k == "set-cookie" and c.startswith(f"{COOKIE}=")
                            ]
        finally:
            stop.set()
            writer.join()
        time.sleep(0.3)
        frames = [e.elements for e in stream.events]
    print(f"{sent} probes of {len(world.routes)} routes in {time.monotonic() - started:.1f}s")
    assert sent > 300
    # Controls: bravo's member does see the canaries, the log records requests, and the
    # server's open counter moves when a workspace really opens (alpha, for alice).
    assert CANARY in fetch(server, "GET", "/w/bravo/", None, HTML, world.bob).text
    assert '"GET /w/bravo/todos/live' in server.log()
    assert server.stats()["tenants"]["opens"] >= 1
    assert frames and not [f for f in frames if CANARY in f], "a canary reached alpha's live stream"
    # A session any route handed out (a persona switch, a sign-in) sees no more of bravo.
    for token in {t for t in handed if t}:
        for path in ("/w/bravo/", "/w/bravo/todos/export.csv"):
            assert CANARY not in fetch(server, "GET", path, None, HTML, token).text
    assert call(server, "GET", "/w/alpha/", headers=HTML, token=world.alice).status == 200  # still alice
    # Her exports, the server's log and every job row hold no canary either.
    export = Tenants(world.tenants, migrate=lambda store: None).export("alpha")
    assert CANARY.encode() not in export
    assert CANARY not in server.log()
    for path in (server.db, world.tenants / "alpha.sqlite"):
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                dump = repr(conn.execute(f'SELECT * FROM "{table}"').fetchall())
                assert CANARY not in dump, f"a canary in {path.name}:{table}"
    assert {t for t in tables if "job" in t}, "the jobs table moved: point this check at it"


def test_a_live_stream_sees_none_of_another_tenants_events_under_load(world: World) -> None:
    server = world.server
    alice_cookie = {"Cookie": f"{COOKIE}={world.alice}"}
    with (
        SSEClient(server.url + "/w/alpha/todos/live", headers=alice_cookie) as alpha,
        SSEClient(server.url + "/w/bravo/todos/live", headers={"Cookie": f"{COOKIE}={world.bob}"}) as bravo,
    ):
        alpha.wait_for(lambda e: "todo-status" in e.elements)
        bravo.wait_for(lambda e: "todo-status" in e.elements)
        time.sleep(0.2)
        alpha_frames, bravo_frames = len(alpha.events), len(bravo.events)
        published = server.stats()["published"]
        total = len(todo_ids(world.tenants / "bravo.sqlite")) + 150

        def burst(w: int) -> None:
            for n in range(50):
                answer = call(
                    server,
                    "POST",
                    "/w/bravo/todos",
                    json.dumps({"title": f"{CANARY} load {w}.{n}"}),
                    JSON,
                    token=world.bob,
                )
                assert answer.status == 204

        threads = [threading.Thread(target=burst, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bravo.wait_for(lambda e: f"of {total} remaining" in e.elements, timeout=10, start=bravo_frames)
        time.sleep(0.5)
        assert server.stats()["published"] - published >= 150
        assert len(bravo.events) > bravo_frames
        assert len(alpha.events) == alpha_frames, [e.elements[:80] for e in alpha.events[alpha_frames:]]
        # alpha's stream is alive: its own change arrives, and still nothing of bravo's.
        assert (
            call(
                server, "POST", "/w/alpha/todos", json.dumps({"title": "alpha after load"}), JSON, token=world.alice
            ).status
            == 204
        )
        alpha.wait_for(lambda e: "alpha after load" in e.elements, start=alpha_frames)
        assert not [e for e in alpha.events if CANARY in e.elements]
        assert [e for e in bravo.events if CANARY in e.elements]  # the control: bravo's own stream has them
