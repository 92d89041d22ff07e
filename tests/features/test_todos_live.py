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


def test_a_viewer_that_stops_reading_is_dropped_and_the_others_keep_up(start_server) -> None:  # type: ignore[no-untyped-def]
    import socket
    import time

    server = start_server(env={"ORION_SEND_TIMEOUT": "1", "ORION_HEARTBEAT": "1"})
    for i in range(40):  # a list of ~8 KB, sent uncompressed below: the buffers fill fast
        assert post(server, "/todos", {"title": f"row {i} " + "x" * 150}) == 200
    stuck = socket.create_connection(("127.0.0.1", server.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /todos/live HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n")
    try:
        with SSEClient(server.url + "/todos/live", encoding="identity") as reader:
            reader.wait_for(lambda e: "todo-list" in e.elements)
            server.wait_for(lambda s: s["streams"] == 2, what="both streams")
            k = 0
            # Each rename rewrites the whole list (~8 KB, identity): the stuck socket's buffers
            # fill within a few dozen; then its write blocks, and after 1 s it is dropped.
            deadline = time.monotonic() + 30
            while server.stats()["streams"] == 2:
                assert time.monotonic() < deadline, "the viewer that never reads was never dropped"
                assert post(server, "/todos/1/rename", {"title": f"renamed {k}"}) in (200, 204)
                reader.wait_for(lambda e, k=k: f"renamed {k}" in e.elements)  # the reader keeps up
                k += 1
                time.sleep(0.02)
            assert post(server, "/todos/1/rename", {"title": "after the drop"}) in (200, 204)
            reader.wait_for(lambda e: "after the drop" in e.elements)
            assert server.stats()["streams"] == 1
    finally:
        stuck.close()
    assert "Traceback" not in server.log(), server.log()[-3000:]
