"""The one loop, end to end over real sockets: command -> store -> bus -> every stream."""

from __future__ import annotations

import json
import urllib.request

from tests.support.server import LiveServer
from tests.support.sse import SSEClient


def post(server: LiveServer, path: str, signals: dict[str, object]) -> int:
    req = urllib.request.Request(
        server.url + path,
        data=json.dumps(signals).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Datastar-Request": "true"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def test_two_viewers_see_a_command_change_over_brotli(server: LiveServer) -> None:
    with SSEClient(server.url + "/todos/live") as a, SSEClient(server.url + "/todos/live") as b:
        assert a.headers["Content-Encoding"] == "br"
        assert a.headers["Content-Type"] == "text/event-stream"
        for viewer in (a, b):
            viewer.wait_for(lambda e: "Nothing to do." in e.elements)
        assert post(server, "/todos", {"title": "Buy milk"}) == 200
        for viewer in (a, b):
            event = viewer.wait_for(lambda e: "Buy milk" in e.elements)
            assert event.type == "datastar-patch-elements"
            viewer.wait_for(lambda e: "1 of 1 remaining" in e.elements)


def test_a_vanished_client_is_cleaned_up_within_a_heartbeat(server: LiveServer) -> None:
    baseline = server.stats()["subscribers"]
    client = SSEClient(server.url + "/todos/live")
    client.wait_for(lambda e: "todo-list" in e.elements)
    assert server.stats()["streams"] == 1
    client.close()
    # heartbeat is 1 s in tests: the next heartbeat write fails and the stream ends
    server.wait_for(
        lambda s: s["streams"] == 0 and s["subscribers"] == baseline, timeout=2.0, what="the stream's cleanup"
    )
