"""app/recipes/otlp.py: a real server ships its traces through the OpenTelemetry SDK to a
collector stand-in on loopback (OTLP/HTTP, protobuf), keeping orion's trace and span ids.

The SDK is the recipe's dependency, not the app's: the test runs when it is importable, or
installed in ``.cache/otlp`` (``ORION_OTLP_SDK`` names another folder)::

    .venv/bin/pip install --target .cache/otlp opentelemetry-sdk==1.45.2 \
        opentelemetry-exporter-otlp-proto-http==1.45.2
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.accounts import HTML, call
from tests.support.server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
SDK = Path(os.environ.get("ORION_OTLP_SDK", ROOT / ".cache" / "otlp"))
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _sdk_path() -> str | None:
    if (SDK / "opentelemetry" / "sdk").is_dir() and (SDK / "opentelemetry" / "exporter").is_dir():
        return str(SDK)
    if importlib.util.find_spec("opentelemetry") and importlib.util.find_spec("opentelemetry.exporter.otlp"):
        return ""
    return None


class Collector:
    """An OTLP/HTTP collector stand-in: records every export request, answers 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                collector.requests.append((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, predicate: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, _, body in list(self.requests):
                if predicate(body):
                    return body
            time.sleep(0.05)
        raise AssertionError(f"no matching export within {timeout}s ({len(self.requests)} received)")


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    c.thread.start()
    yield c
    c.server.shutdown()
    c.server.server_close()


def test_traces_reach_an_otlp_collector_with_their_ids(
    collector: Collector, start_server: Callable[..., LiveServer]
) -> None:
    # (The collector is asked for first, so it outlives the server: shutdown flushes to it.)
    sdk = _sdk_path()
    if sdk is None:
        pytest.skip(
            f"the OpenTelemetry SDK is not installed (the recipe's dependency): see this file's docstring ({SDK})"
        )
    path = os.pathsep.join(p for p in (sdk, os.environ.get("PYTHONPATH", "")) if p)
    server = start_server(env={"ORION_OTLP_ENDPOINT": collector.url, "ORION_SERVICE": "orion-test", "PYTHONPATH": path})
    answer = call(server, "GET", "/", headers={**HTML, "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
    assert answer.status == 200

    body = collector.wait_for(lambda b: bytes.fromhex(TRACE_ID) in b)
    route, content_type, _ = collector.requests[0]
    assert route == "/v1/traces" and content_type == "application/x-protobuf"
    # The request span continues the caller's trace: its parent is the caller's span id.
    assert bytes.fromhex(CALLER_SPAN) in body
    assert b"GET /" in body and b"sql query" in body  # the request span and its queries
    assert b"service.name" in body and b"orion-test" in body
    assert b"http.response.status_code" in body
