"""app.belt.trace: spans nest within a greenlet, never across concurrent ones, and land in the ring."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
from flask import Flask

from app import belt
from app.belt import canon, trace


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """An orion app in process (belt.install wraps it in the observe middleware)."""
    monkeypatch.setattr(canon, "sink", lambda text: None)
    flask_app = Flask(__name__, root_path=str(Path(belt.__file__).parents[1]))
    belt.settings(flask_app, {"ORION_DB": str(tmp_path / "t.sqlite"), "SECRET_KEY": "x", "ORION_ENV": "production"})
    store = belt.Store(flask_app.config["ORION_DB"])
    belt.install(flask_app, store, belt.Bus())
    store.exec("CREATE TABLE n (v INTEGER)")
    trace.RING.clear()
    canon.RING.clear()
    yield flask_app
    store.close()


def test_spans_nest_inside_one_greenlet() -> None:
    with trace.span("outer", a=1) as outer:
        with trace.span("inner") as inner:
            inner.set(b=2)
            assert trace.current() is inner
        assert trace.current() is outer
    assert trace.current() is None
    record = trace.find(outer.trace_id)
    assert record is not None
    assert [(depth, s.name) for depth, s in record.tree()] == [(0, "outer"), (1, "inner")]
    assert record.spans[0].attributes == (("b", 2),) and record.root.attribute("a") == 1


def test_a_failing_block_marks_its_span_and_reraises() -> None:
    with pytest.raises(ZeroDivisionError), trace.span("boom") as s:
        1 / 0
    record = trace.find(s.trace_id)
    assert record is not None and record.status == "error"
    assert record.root.error == "ZeroDivisionError: division by zero"


def test_a_plain_spawn_starts_empty_and_trace_spawn_carries_the_span() -> None:
    """The platform fact tracing rests on (gevent 26 / greenlet 3): a spawned greenlet has a
    context of its own, empty; trace.spawn hands it the caller's span."""
    seen: dict[str, trace.Span | None] = {}

    def child(name: str) -> None:
        seen[name] = trace.current()
        with trace.span(f"in {name}"):
            gevent.sleep(0)

    with trace.span("parent") as parent:
        gevent.spawn(child, "plain").join()
        trace.spawn(child, "carried").join()
    assert seen["plain"] is None
    assert seen["carried"] is parent
    record = trace.find(parent.trace_id)
    assert record is not None
    assert {s.name: s.parent_id for s in record.spans} == {"in carried": parent.span_id, "parent": None}


def test_a_span_that_outlives_its_root_reaches_the_hooks_only() -> None:
    got: list[tuple[str, ...]] = []
    remove = trace.on_trace(lambda spans: got.append(tuple(s.name for s in spans)))
    try:
        with trace.span("request") as root:
            late = trace.start("straggler")
        late.end()
    finally:
        remove()
    assert got == [("request",), ("straggler",)]
    record = trace.find(root.trace_id)
    assert record is not None and [s.name for s in record.spans] == ["request"]


def test_a_traceparent_header_continues_the_callers_trace() -> None:
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    s = trace.start("GET /", traceparent=header)
    s.end()
    assert (s.trace_id, s.parent_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    bogus = trace.start("GET /", traceparent="00-" + "0" * 32 + "-00f067aa0ba902b7-01")
    bogus.end()
    assert bogus.trace_id != "0" * 32 and bogus.parent_id is None


def test_a_trace_keeps_at_most_max_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "MAX_SPANS", 5)
    with trace.span("root") as root:
        for n in range(10):
            trace.record("sql query", 0.001, n=n)
    record = trace.find(root.trace_id)
    assert record is not None and len(record.spans) == 6 and record.dropped == 5


def test_queries_are_child_spans_of_the_request(app: Flask) -> None:
    store = belt.runtime(app).store

    @app.get("/count")
    def count() -> str:
        return str(len(store.query("SELECT v FROM n WHERE v > ?", (random.random(),))))

    assert app.test_client().get("/count", buffered=True).status_code == 200
    [record] = trace.RING.recent(1)
    assert record.name == "GET /count"
    assert [s.name for s in record.spans] == ["sql query", "GET /count"]
    assert record.spans[0].parent_id == record.root.span_id
    assert record.spans[0].attribute("sql") == "SELECT v FROM n WHERE v > ?"
    assert record.root.attribute("http.route") == "/count"


def test_two_hundred_interleaved_requests_never_cross_talk(app: Flask) -> None:
    """200 requests in 200 greenlets, yielding inside their spans: each trace holds exactly its
    own spans, correctly parented, and each request has exactly one canonical line, its own."""
    store = belt.runtime(app).store

    @app.get("/work/<int:n>")
    def work(n: int) -> str:
        canon.add(n=n)
        with trace.span("outer", n=n):
            gevent.sleep(random.random() / 200)
            with trace.span("inner", n=n):
                store.query("SELECT v FROM n WHERE v = ?", (n,))
                gevent.sleep(0)
                canon.tag(kind_of_work="demo")

            def child() -> None:
                with trace.span("child", n=n):
                    gevent.sleep(0)

            trace.spawn(child).join()
        return str(n)

    client = app.test_client()
    results: dict[int, int] = {}

    def one(n: int) -> None:
        results[n] = client.get(f"/work/{n}", buffered=True).status_code

    gevent.joinall([gevent.spawn(one, n) for n in range(200)], raise_error=True)
    assert results == dict.fromkeys(range(200), 200)

    traces = [t for t in trace.RING.recent() if t.name == "GET /work/<int:n>"]
    assert len(traces) == 200
    seen = set()
    for t in traces:
        n = int(t.root.attribute("url.path").rsplit("/", 1)[1])
        seen.add(n)
        by_name = {s.name: s for s in t.spans}
        assert sorted(by_name) == ["GET /work/<int:n>", "child", "inner", "outer", "sql query"], t.spans
        assert {s.trace_id for s in t.spans} == {t.trace_id}
        assert all(s.attribute("n") == n for s in t.spans if s.name in ("outer", "inner", "child"))
        assert by_name["outer"].parent_id == t.root.span_id
        assert by_name["inner"].parent_id == by_name["outer"].span_id
        assert by_name["child"].parent_id == by_name["outer"].span_id
        assert by_name["sql query"].parent_id == by_name["inner"].span_id
    assert seen == set(range(200))

    lines = [e.fields for e in canon.RING.recent() if e.fields.get("route") == "/work/<int:n>"]
    assert len(lines) == 200
    assert all(line["path"] == f"/work/{line['n']}" for line in lines)
    assert {line["trace_id"] for line in lines} == {t.trace_id for t in traces}
    assert all(line["queries"] == 1 and line["tags"] == {"kind_of_work": "demo"} for line in lines)
