"""What a load balancer asks: liveness (/_orion/health) and readiness (/_orion/ready).

Liveness stays 200 while the process runs, draining included (nothing should kill a process
that is finishing its last commands); readiness is 200 once the store answers and 503 while
stopping, or when the database does not answer.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from app.belt.runtime import Runtime, runtime
from tests.support.server import LiveServer


def get(server: LiveServer, path: str) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_running_server_is_live_and_ready(start_server: Callable[..., LiveServer]) -> None:
    server = start_server()
    assert get(server, "/_orion/health") == (200, {"status": "ok", "streams": 0})
    assert get(server, "/_orion/ready") == (200, {"status": "ready"})


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"ORION_DB": str(tmp_path / "app.sqlite"), "ORION_AUTH": "local", "ORION_TENANCY": "off"})
    yield app
    runtime(app).shutdown(timeout=1)


def test_while_stopping_it_is_alive_but_not_ready(app: Flask) -> None:
    rt: Runtime = runtime(app)
    client = app.test_client()
    assert client.get("/_orion/ready").status_code == 200
    rt.stopping = True  # what SIGTERM sets (app/belt/boot.py gunicorn_post_worker_init)
    health = client.get("/_orion/health")
    assert health.status_code == 200 and health.json == {"status": "stopping", "streams": 0}
    ready = client.get("/_orion/ready")
    assert ready.status_code == 503
    assert ready.json == {"status": "not ready", "reason": "stopping"}


def test_a_store_that_does_not_answer_is_not_ready(app: Flask) -> None:
    runtime(app).store.close()
    ready = app.test_client().get("/_orion/ready")
    assert ready.status_code == 503
    assert ready.json == {"status": "not ready", "reason": "the store does not answer"}
