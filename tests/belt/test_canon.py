"""app.belt.canon: exactly one wide line per request, redacted, sampled, enriched."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import belt
from app.belt import canon
from app.belt.auth import User

MIGRATIONS = Path(belt.__file__).parents[2] / "migrations"


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What the canonical lines would have put on stdout, parsed; the policy restored after."""
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr(canon, "sink", lambda text: lines.append(json.loads(text)))
    saved = dataclasses.replace(canon.POLICY)
    yield lines
    for f in dataclasses.fields(saved):
        setattr(canon.POLICY, f.name, getattr(saved, f.name))


@pytest.fixture
def app(tmp_path: Path, written: list[dict[str, Any]]) -> Iterator[Flask]:
    flask_app = Flask(__name__, root_path=str(Path(belt.__file__).parents[1]))
    belt.settings(
        flask_app,
        {"ORION_DB": str(tmp_path / "c.sqlite"), "SECRET_KEY": "x", "ORION_ENV": "production", "ORION_HEARTBEAT": 0.2},
    )
    store = belt.Store(flask_app.config["ORION_DB"])
    rt = belt.install(flask_app, store, belt.Bus())
    store.migrate("orion", MIGRATIONS)
    rt.auth = belt.Auth(
        store,
        lambda s, uid: None,
        mode="local",
        local_identity=User(id="local", email="owner@localhost", name="Owner", role="owner", local=True),
    )
    rt.flags = belt.Flags(store)
    rt.flags.declare({"beta": "a test flag"}, default=True)

    @flask_app.get("/ok")
    def ok() -> str:
        ctx = belt.request_ctx()
        belt.current_user(ctx)
        belt.flag(ctx, "beta")
        canon.add(rows=3, password="hunter2", note="write to ann@example.com")
        canon.tag(feature="todos")
        return "ok"

    @flask_app.get("/boom")
    def boom() -> str:
        raise ZeroDivisionError("the handler divided by zero")

    def save(ctx: belt.Ctx, data: dict[str, Any], respond: belt.Respond) -> None:
        canon.add(saved=len(data["title"]))

    flask_app.add_url_rule(
        "/save", "save", belt.command(save, shape=belt.shape.obj(title=belt.shape.text())), methods=["POST"]
    )
    items = belt.region(
        "items", topics=["items"], model=lambda ctx: 1, view=lambda m: belt.html('<p id="items">{}</p>', m)
    )

    @flask_app.get("/live")
    def live() -> Any:
        return belt.stream([items])

    yield flask_app
    rt.shutdown(timeout=2)


def get(app: Flask, path: str, **kwargs: Any) -> int:
    return app.test_client().get(path, buffered=True, **kwargs).status_code


def test_one_line_per_request_with_what_happened(app: Flask, written: list[dict[str, Any]]) -> None:
    assert get(app, "/ok?token=abc123&q=x") == 200
    [line] = written
    assert line["kind"] == "request" and line["method"] == "GET"
    assert (line["route"], line["path"], line["status"], line["outcome"]) == ("/ok", "/ok", 200, "ok")
    assert line["duration_ms"] >= 0 and len(line["trace_id"]) == 32 and len(line["request_id"]) == 16
    assert line["user"] == "local" and line["tags"] == {"feature": "todos", "role": "owner"}
    assert line["flags"] == {"beta": True}
    assert line["rows"] == 3
    # Redaction: a secret's key hides its value; emails are masked; query values never appear.
    assert line["password"] == "[redacted]"
    assert line["note"] == "write to a***@example.com"
    assert "abc123" not in json.dumps(line)
    assert [e.fields["trace_id"] for e in canon.RING.recent(1)] == [line["trace_id"]]


def test_errors_and_refusals_get_exactly_one_line_each(app: Flask, written: list[dict[str, Any]]) -> None:
    assert get(app, "/boom") == 500
    assert get(app, "/nowhere") == 404
    boom, missing = written
    assert (boom["route"], boom["status"], boom["outcome"]) == ("/boom", 500, "error")
    assert boom["error"] == "ZeroDivisionError: the handler divided by zero"
    assert (missing["route"], missing["status"], missing["outcome"]) == (None, 404, "client_error")


def test_a_commands_signal_values_are_never_captured(app: Flask, written: list[dict[str, Any]]) -> None:
    r = app.test_client().post("/save", json={"title": "my-secret-title"}, buffered=True)
    assert r.status_code == 204
    [line] = written
    assert "my-secret-title" not in json.dumps(line)
    assert line["saved"] == len("my-secret-title") and line["tags"]["action"] == "test_canon.save"


def test_an_aborted_stream_gets_one_line_with_its_events(app: Flask, written: list[dict[str, Any]]) -> None:
    response = app.test_client().get("/live", headers={"Accept-Encoding": "identity"})
    chunks = iter(response.response)
    first = next(chunks)  # the greeting and the first frame leave in one write
    assert b"orion live" in first and b"datastar-patch-elements" in first
    response.close()  # the client went away (what the server sees when a write fails)
    [line] = written
    assert (line["kind"], line["route"], line["outcome"]) == ("stream", "/live", "aborted")
    assert line["events"] == 1 and line["regions"] == ["items"] and line["chunks"] == 1


def test_sampling_keeps_errors_refusals_and_slow_requests(app: Flask, written: list[dict[str, Any]]) -> None:
    canon.configure(sample=0.0)
    assert [get(app, "/ok"), get(app, "/nowhere"), get(app, "/boom")] == [200, 404, 500]
    assert [line["status"] for line in written] == [404, 500]
    canon.configure(slow_ms=0.0)
    get(app, "/ok")
    assert written[-1]["status"] == 200 and "sample_rate" not in written[-1]
    assert canon.STATS.sampled_out >= 1


def test_sampling_keeps_a_share_of_the_boring_lines_and_says_how_many_each_stands_for(
    app: Flask, written: list[dict[str, Any]]
) -> None:
    canon.configure(sample=0.25)
    for _ in range(200):
        get(app, "/ok")
    assert 20 <= len(written) <= 80, len(written)
    assert all(line["sample_rate"] == 4 for line in written)


def test_a_tag_that_looks_high_cardinality_is_linted_in_development(
    written: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    line = canon.Line()
    token = canon._current.set(line)
    try:
        canon.configure(development=True)
        with caplog.at_level(logging.WARNING, logger="orion.canon"):
            canon.tag(plan="pro", region="todo-list")
            canon.tag(user="7f0c7d3e-3f43-4bd6-9a7e-2f1f2b8d6c11")
            canon.tag(owner="ann@example.com")
            canon.tag(owner="bob@example.com")  # the same key is reported once
        assert [r.getMessage().split(":")[0] for r in caplog.records] == [
            "canon.tag(user='7f0c7d3e-3f43-4bd6-9a7e-2f1f2b8d6c11')",
            "canon.tag(owner='ann@example.com')",
        ]
        assert "Use canon.add(user=...) for it instead" in caplog.records[0].getMessage()
    finally:
        canon._current.reset(token)
        canon._linted.clear()


def test_matches_filters_lines_for_the_logs_tab() -> None:
    entry = canon.Entry(
        1, '{"route":"/todos","status":422}', {"route": "/todos", "status": 422, "flags": {"beta": True}}
    )
    assert canon.matches(entry, "status>=400 route=/todos flags.beta=true")
    assert not canon.matches(entry, "status<400")
    assert canon.matches(entry, "TODOS") and not canon.matches(entry, "users")
