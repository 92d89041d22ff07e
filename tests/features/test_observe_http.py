"""Observability over real sockets: gunicorn's gevent worker writes one canonical line per
request and per stream (aborted ones too) on stdout, names a stall's culprit, and tracks
product events without the command waiting for them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.accounts import DATASTAR, HTML, JSON, call, query
from tests.support.server import LiveServer
from tests.support.sse import SSEClient


def canonical_lines(server: LiveServer) -> list[dict[str, Any]]:
    """The JSON events the server wrote on stdout (its log file holds stdout and stderr)."""
    out = []
    for raw in server.log().splitlines():
        if raw.startswith('{"ts"'):
            out.append(json.loads(raw))
    return out


def wait_for_lines(
    server: LiveServer, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 5.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in canonical_lines(server) if predicate(line)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_one_canonical_line_per_request_stream_and_error(server: LiveServer) -> None:
    assert call(server, "GET", "/", headers=HTML).status == 200
    secret = "title-that-must-not-be-logged"
    assert call(server, "POST", "/todos", json.dumps({"title": secret}), JSON).status == 204
    assert call(server, "POST", "/todos", json.dumps({"title": ""}), {**JSON, **DATASTAR}).status == 200
    assert call(server, "GET", "/nowhere", headers=HTML).status == 404
    with SSEClient(server.url + "/todos/live") as viewer:
        viewer.wait_for(lambda e: "todo-list" in e.elements)
    # The viewer hung up: the server notices at its next heartbeat write (1 s in tests).
    [stream] = wait_for_lines(server, lambda line: line["kind"] == "stream", timeout=5)
    assert (stream["route"], stream["outcome"], stream["status"]) == ("/todos/live", "aborted", 200)
    assert stream["events"] >= 1 and "todo-list" in stream["regions"]
    assert stream["duration_ms"] > 0 and stream["bytes"] > 0

    lines = [line for line in canonical_lines(server) if line["kind"] == "request"]
    by_path: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in lines:
        by_path.setdefault((line["method"], line["path"]), []).append(line)
    assert len(by_path[("GET", "/")]) == 1
    assert len(by_path[("GET", "/nowhere")]) == 1 and by_path[("GET", "/nowhere")][0]["outcome"] == "client_error"
    added, refused = by_path[("POST", "/todos")]
    assert (added["status"], added["outcome"], added["tags"]) == (204, "ok", {"action": "todos.add", "role": "owner"})
    assert added["user"] == "local" and added["queries"] >= 1 and len(added["trace_id"]) == 32
    assert refused["status"] == 200 and refused["tags"]["action"] == "todos.add"
    assert secret not in server.log()  # signal values are never captured
    # The audit journal names the same request: its request_id is the line's.
    [record] = query(server, "SELECT request_id FROM _orion_audit WHERE action = 'todos.add' AND outcome = 'succeeded'")
    assert record["request_id"] == added["request_id"]

    stats = server.stats()["observe"]
    assert stats["canon"]["lines"] >= 6 and stats["canon"]["aborted"] >= 1
    assert stats["lag_ms"] < 500 and stats["stalls"] == 0


def test_tracked_events_land_in_the_events_table(server: LiveServer) -> None:
    assert call(server, "POST", "/todos", json.dumps({"title": "a"}), JSON).status == 204
    [todo] = query(server, "SELECT id FROM todos")
    assert call(server, "POST", f"/todos/{todo['id']}/toggle", json.dumps({"done": True}), JSON).status == 204
    deadline = time.monotonic() + 5
    rows: list[Any] = []
    while time.monotonic() < deadline and len(rows) < 2:
        rows = query(server, "SELECT name, subject FROM _orion_events ORDER BY id")
        time.sleep(0.05)
    assert [(r["name"], r["subject"]) for r in rows] == [("todo_added", "local"), ("todo_completed", "local")]


@pytest.fixture
def stalling(tmp_path: Path) -> Iterator[LiveServer]:
    """The example app plus a route that blocks the hub, in development (the banner is on)."""
    server = LiveServer(
        tmp_path / "stall.sqlite",
        app="tests.support.stall_app:app",
        env={"ORION_ENV": "development", "ORION_STALL_MS": "100"},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_blocking_handler_is_reported_with_its_route_stack_and_a_banner(stalling: LiveServer) -> None:
    server = stalling
    with SSEClient(server.url + "/_orion/dev", encoding="identity") as page:
        page.wait_for(lambda e: "location.reload" in "\n".join(e.data))
        started = time.monotonic()
        assert call(server, "GET", "/_test/block/400").status == 200
        banner = page.wait_for(lambda e: 'id="orion-stall-banner"' in e.elements, timeout=5)
        reported_after = time.monotonic() - started
    assert "/_test/block/&lt;int:ms&gt;" in banner.elements or "/_test/block/<int:ms>" in banner.elements
    assert "tests/support/stall_app.py" in banner.elements and "in block" in banner.elements
    assert reported_after < 2.0

    stall = server.stats()["observe"]["last_stall"]
    assert stall["route"] == "GET /_test/block/<int:ms>"
    assert stall["culprit"].startswith("tests/support/stall_app.py:") and stall["culprit"].endswith("in block")
    assert any("_blocking_sleep(ms / 1000)" in frame for frame in stall["stack"])
    assert 390 <= stall["duration_ms"] < 2000 and 100 <= stall["detected_ms"] < 400
    assert server.stats()["observe"]["stalls"] == 1

    # Production's half: a log line with the stack, a JSON event, and the request's own line.
    log = server.log()
    assert "stall: the gevent hub was blocked for" in log and "GET /_test/block/<int:ms>" in log
    [event] = wait_for_lines(server, lambda line: line["kind"] == "stall")
    assert event["trace_id"] == stall["trace_id"] and event["culprit"] == stall["culprit"]
    [line] = wait_for_lines(server, lambda line: line.get("path") == "/_test/block/400")
    assert line["stall_ms"] >= 100 and line["trace_id"] == stall["trace_id"]
