"""app.belt.stalls: a handler that blocks the hub is reported with its route, trace and stack."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from flask import Flask

from app import belt
from app.belt import canon, stalls

# The test process is not monkey-patched: time.sleep blocks the hub, as an unpatched C call would.


@pytest.fixture
def watchdog() -> Iterator[tuple[stalls.Watchdog, list[stalls.Stall]]]:
    reported: list[stalls.Stall] = []
    dog = stalls.Watchdog(threshold=0.1, tick=0.01, on_stall=reported.append).start()
    gevent.sleep(0.05)  # a few ticks
    yield dog, reported
    dog.stop()


def wait_for(reported: list[Any], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not reported and time.monotonic() < deadline:
        gevent.sleep(0.01)


def test_a_blocked_hub_is_reported_with_its_culprit(watchdog: tuple[stalls.Watchdog, list[stalls.Stall]]) -> None:
    dog, reported = watchdog

    def crunch_numbers() -> None:
        time.sleep(0.3)  # the culprit

    crunch_numbers()
    wait_for(reported)
    [stall] = reported
    assert 280 <= stall.duration_ms < 1000, stall
    assert 100 <= stall.detected_ms <= 250, stall  # threshold + one check interval (+ slack for a busy box)
    assert stall.route is None and stall.where == "outside any request"
    assert "in crunch_numbers" in stall.culprit and stall.culprit.startswith("tests/belt/test_stalls.py:")
    assert any("time.sleep(0.3)" in frame for frame in stall.stack)
    assert stalls.RING.recent(1)[0] is stall and stalls.STATS.count >= 1
    assert dog.lag_max_ms() >= 250


def test_short_waits_are_not_stalls(watchdog: tuple[stalls.Watchdog, list[stalls.Stall]]) -> None:
    _, reported = watchdog
    for _ in range(5):
        time.sleep(0.03)
        gevent.sleep(0.01)
    gevent.sleep(0.2)
    assert reported == []


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Flask, list[dict[str, Any]]]]:
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr(canon, "sink", lambda text: lines.append(json.loads(text)))
    flask_app = Flask(__name__, root_path=str(Path(belt.__file__).parents[1]))
    belt.settings(flask_app, {"ORION_DB": str(tmp_path / "s.sqlite"), "SECRET_KEY": "x", "ORION_ENV": "production"})
    store = belt.Store(flask_app.config["ORION_DB"])
    belt.install(flask_app, store, belt.Bus())

    @flask_app.get("/reports/<int:year>")
    def slow_report(year: int) -> str:
        time.sleep(0.25)  # a deliberately blocking handler
        return "done"

    yield flask_app, lines
    store.close()


def test_a_blocking_handler_is_reported_with_its_route_and_stack(
    app: tuple[Flask, list[dict[str, Any]]], watchdog: tuple[stalls.Watchdog, list[stalls.Stall]]
) -> None:
    flask_app, lines = app
    _, reported = watchdog
    assert flask_app.test_client().get("/reports/2026", buffered=True).status_code == 200
    wait_for(reported)
    [stall] = reported
    assert stall.route == "GET /reports/<int:year>"
    assert "in slow_report" in stall.culprit
    assert any("time.sleep(0.25)" in frame for frame in stall.stack)
    assert stall.greenlet is not None
    # The request's canonical line says it stalled, and carries the same trace id.
    [line] = [entry for entry in lines if entry.get("kind") == "request"]
    assert line["route"] == "/reports/<int:year>" and line["stall_ms"] >= 100
    assert stall.trace_id == line["trace_id"]
