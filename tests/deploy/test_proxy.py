"""deploy/nginx.conf in front of the app, for real: Debian's nginx on free ports with a
self-signed certificate, curl as the client. It speaks HTTP/2 to the client, and a stream
through it delivers a change at once (nothing buffers the events).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.proxy import Proxy, missing_tools
from tests.support.server import LiveServer

#: The app's heartbeat (ORION_HEARTBEAT) is far above this, so no later write can push the
#: change out of a buffer: it must leave the proxy on its own.
PROMPT = 5.0
HEARTBEAT = 30


@pytest.fixture
def proxied(start_server: Callable[..., LiveServer], tmp_path: Path) -> Iterator[tuple[LiveServer, Proxy]]:
    problem = missing_tools()
    if problem:
        pytest.fail(problem)
    app = start_server(env={"ORION_PROXIES": "1", "ORION_HEARTBEAT": str(HEARTBEAT)})
    folder = tmp_path / "nginx"
    folder.mkdir()
    proxy = Proxy(folder, app.port).start()
    try:
        yield app, proxy
    finally:
        proxy.stop()
        # The app would notice the vanished clients only at a heartbeat (30 s): stop it now
        # (SIGTERM ends every stream at once) rather than have conftest's check wait for one.
        assert app.stop() == 0


def curl(*args: str) -> str:
    proc = subprocess.run(["curl", "--http2", "-k", "-sS", *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_proxy_speaks_http2_and_serves_the_page(proxied: tuple[LiveServer, Proxy]) -> None:
    _, proxy = proxied
    assert curl("-o", "/dev/null", "-w", "%{http_version} %{http_code}", proxy.https_url + "/") == "2 200"
    page = curl(proxy.https_url + "/")
    assert 'id="todo-list"' in page
    # Plain HTTP is sent to HTTPS.
    assert curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{proxy.http_port}/") == "301"


def test_a_stream_through_the_proxy_delivers_a_change_at_once(
    proxied: tuple[LiveServer, Proxy], tmp_path: Path
) -> None:
    app, proxy = proxied
    headers = tmp_path / "headers.txt"
    # --compressed: curl asks for br like a browser and decodes it as it arrives.
    stream = subprocess.Popen(
        ["curl", "--http2", "-k", "-sS", "-N", "--compressed", "-D", str(headers),
         "-H", "Accept: text/event-stream", "-H", "Datastar-Request: true", proxy.https_url + "/todos/live"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    lines: list[tuple[float, str]] = []
    got = threading.Condition()

    def read() -> None:
        assert stream.stdout is not None
        for raw in stream.stdout:
            with got:
                lines.append((time.monotonic(), raw.decode(errors="replace")))
                got.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_line(text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with got:
            while True:
                for at, line in lines:
                    if text in line:
                        return at
                if time.monotonic() > deadline:
                    raise AssertionError(f"no line with {text!r} within {timeout}s; got {len(lines)} lines")
                got.wait(0.05)

    try:
        wait_line('id="todo-list"', timeout=10)
        head = headers.read_text().lower()
        assert head.startswith("http/2 200")
        assert "content-type: text/event-stream" in head
        assert "content-encoding: br" in head  # the app's own compression, passed through
        app.wait_for(lambda s: s["streams"] == 1, what="the stream open behind the proxy")
        posted = time.monotonic()
        status = curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
                      "-H", "Datastar-Request: true", "--data", '{"title": "Through the proxy"}',
                      proxy.https_url + "/todos")  # fmt: skip
        assert status == "200"  # a Datastar post: the answer patches the requester's signals
        arrived = wait_line("Through the proxy", timeout=PROMPT)
        print(f"POST through nginx -> event through nginx: {(arrived - posted) * 1000:.0f} ms")
    finally:
        stream.terminate()
        stream.wait(timeout=10)
        reader.join(timeout=5)
        assert stream.stdout is not None
        stream.stdout.close()
