"""app.belt.live, in process: wakes become frames; shared renders, memoized reads, coalescing, cleanup."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from flask import Flask

from app.belt.boot import install, settings
from app.belt.bus import Bus, Callback, Unsubscribe
from app.belt.ctx import Ctx
from app.belt.html import Markup, html, join
from app.belt.live import Region, Stream, region
from app.belt.runtime import Runtime
from app.belt.sse import comment
from app.belt.store import Row, Store

FIRST = comment("orion live")
HEARTBEAT = comment("hb")
GOODBYE = comment("server stopping, reconnect")


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    app = Flask(__name__)
    cfg = settings(app, {"ORION_DB": str(tmp_path / "x.sqlite"), "ORION_ENV": "development", "ORION_HEARTBEAT": 0.2})
    store = Store(cfg["ORION_DB"], synchronous=cfg["ORION_SYNCHRONOUS"])
    runtime = install(app, store, Bus())
    store.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    yield runtime
    runtime.shutdown(timeout=2)  # ends every stream still open, then closes the store


@pytest.fixture
def viewers(rt: Runtime) -> Iterator[Callable[..., Viewer]]:
    """Open viewers (one greenlet iterating one stream each); all are gone after the test."""
    opened: list[Viewer] = []

    def open_viewer(regions: list[Region], authorize: Callable[[Ctx], bool] | None = None) -> Viewer:
        viewer = Viewer(rt, regions, authorize)
        opened.append(viewer)
        return viewer

    yield open_viewer
    for viewer in opened:
        viewer.stream.end()
    gevent.joinall([v.greenlet for v in opened], timeout=2)
    gevent.killall([v.greenlet for v in opened])


class Viewer:
    """One stream's generator, iterated in its own greenlet as the WSGI server would."""

    def __init__(self, rt: Runtime, regions: list[Region], authorize: Callable[[Ctx], bool] | None) -> None:
        self.stream = Stream(rt, rt.ctx(), regions, "identity", authorize)
        self.chunks: list[str] = []
        self.error: BaseException | None = None
        self.greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        try:
            for chunk in self.stream.events():
                text = chunk.decode()
                if text.startswith(FIRST) and text != FIRST:
                    # The greeting and the first frame leave in one write; kept apart here.
                    self.chunks.append(FIRST)
                    text = text[len(FIRST) :]
                self.chunks.append(text)
        except Exception as exc:
            self.error = exc

    def wait_for(self, count: int, timeout: float = 3.0) -> list[str]:
        """Wait until ``count`` chunks arrived; return them all."""
        wait_until(lambda: len(self.chunks) >= count, timeout, f"{count} chunks (have {self.chunks!r})")
        return self.chunks

    @property
    def ended(self) -> bool:
        return self.greenlet.dead


def wait_until(condition: Callable[[], bool], timeout: float = 3.0, what: str = "the condition") -> None:
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not condition():
            gevent.sleep(0.005)


def settle() -> None:
    """Let every ready greenlet run (and show that nothing more happens)."""
    gevent.sleep(0.05)


def all_items(ctx: Ctx) -> tuple[Row, ...]:
    return ctx.store.query("SELECT id, name FROM items ORDER BY id")


def list_view(rows: tuple[Row, ...]) -> Markup:
    return html('<ul id="items">{}</ul>', join(html("<li>{}</li>", r["name"]) for r in rows))


def count_view(count: int) -> Markup:
    return html('<p id="count">{} items</p>', count)


@pytest.fixture
def regions() -> list[Region]:
    """Two regions over one table, both reading it with the same query."""
    return [
        region("items", model=all_items, view=list_view, topics=["items"]),
        region("count", model=lambda ctx: len(all_items(ctx)), view=count_view, topics=["items"]),
    ]


def add(rt: Runtime, name: str) -> None:
    """A command: write, publish inside the transaction (delivered after the commit)."""
    ctx = rt.ctx()
    with ctx.store.tx():
        ctx.store.exec("INSERT INTO items (name) VALUES (?)", (name,))
        ctx.bus.publish("items")


# frames


def test_the_first_frame_renders_every_region(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    add(rt, "milk")
    viewer = viewers(regions)
    first, frame = viewer.wait_for(2)
    assert first == FIRST
    assert frame == (
        'event: datastar-patch-elements\ndata: elements <ul id="items"><li>milk</li></ul>\n\n'
        'event: datastar-patch-elements\ndata: elements <p id="count">1 items</p>\n\n'
    )
    assert rt.streams == {viewer.stream}
    # the two regions share a topic: one subscription
    assert rt.bus.subscriber_count() == 1


def test_a_change_sends_only_the_regions_whose_model_changed(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    regions.append(
        region("flag", model=lambda ctx: "static", view=lambda m: html('<b id="flag">{}</b>', m), topics=["items"])
    )
    viewer = viewers(regions)
    viewer.wait_for(2)
    add(rt, "eggs")
    frame = viewer.wait_for(3)[2]
    assert 'id="items"><li>eggs</li>' in frame
    assert 'id="count">1 items' in frame
    assert 'id="flag"' not in frame


def test_an_unchanged_model_after_a_wake_sends_nothing(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    viewer = viewers(regions)
    viewer.wait_for(2)
    wakes, unchanged, events = rt.live.wakes, rt.live.unchanged, rt.live.events
    rt.bus.publish("items")
    wait_until(lambda: rt.live.unchanged == unchanged + 2, what="both regions found unchanged")
    settle()
    assert rt.live.wakes == wakes + 1
    assert rt.live.events == events
    assert len(viewer.chunks) == 2


def test_a_topic_no_region_watches_does_not_wake_the_stream(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    viewer = viewers(regions)
    viewer.wait_for(2)
    wakes = rt.live.wakes
    rt.bus.publish("users")
    settle()
    assert rt.live.wakes == wakes


# fan-out


def test_fifty_identical_viewers_share_one_lane_one_render_per_region_and_one_query(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    opened = [viewers(regions) for _ in range(50)]
    for viewer in opened:
        viewer.wait_for(2)
    assert len({id(viewer.stream.lane) for viewer in opened}) == 1
    renders, queries, fanout = rt.live.renders, rt.store.stats.queries, rt.live.queries
    add(rt, "milk")
    for viewer in opened:
        assert "<li>milk</li>" in viewer.wait_for(3)[2]
    assert rt.live.renders - renders == 2  # one per region, not one per viewer
    assert rt.store.stats.queries - queries == 1  # both regions read the same list once
    assert rt.live.queries - fanout == 1  # ...and the fan-out counts it as its own
    assert len({viewer.chunks[2] for viewer in opened}) == 1


def test_viewers_in_lanes_of_their_own_still_share_renders_and_queries(
    rt: Runtime, viewers: Callable[..., Viewer]
) -> None:
    own = [
        region("items", model=all_items, view=list_view, topics=["items"], shared=False),
        region("count", model=lambda ctx: len(all_items(ctx)), view=count_view, topics=["items"], shared=False),
    ]
    opened = [viewers(own) for _ in range(50)]
    for viewer in opened:
        viewer.wait_for(2)
    assert len({id(viewer.stream.lane) for viewer in opened}) == 50
    renders, hits = rt.live.renders, rt.live.render_hits
    queries, memo = rt.store.stats.queries, rt.store.stats.memo_hits
    add(rt, "milk")
    for viewer in opened:
        assert "<li>milk</li>" in viewer.wait_for(3)[2]
    assert rt.live.renders - renders == 2  # the render cache: one per distinct model
    assert rt.live.render_hits - hits == 2 * 49
    # 50 lanes x 2 regions read the same list: one query, the rest memo hits
    assert rt.store.stats.queries - queries == 1
    assert rt.store.stats.memo_hits - memo == 99


def test_an_unhashable_model_still_works_rendered_per_lane(rt: Runtime, viewers: Callable[..., Viewer]) -> None:
    def names(ctx: Ctx) -> list[str]:
        return [r["name"] for r in all_items(ctx)]

    def names_view(m: list[str]) -> Markup:
        return html('<p id="names">{}</p>', ", ".join(m))

    shown = region("names", model=names, view=names_view, topics=["items"])
    alone = region("names", model=names, view=names_view, topics=["items"], shared=False)
    opened = [viewers([shown]) for _ in range(3)] + [viewers([alone]) for _ in range(2)]
    for viewer in opened:
        viewer.wait_for(2)
    renders = rt.live.renders
    add(rt, "milk")
    for viewer in opened:
        assert '<p id="names">milk</p>' in viewer.wait_for(3)[2]
    assert rt.live.renders - renders == 1 + 2  # once for the shared lane, once per lone viewer


def test_a_hundred_publishes_before_the_stream_runs_make_one_frame(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    viewer = viewers(regions)
    viewer.wait_for(2)
    wakes = rt.live.wakes
    # no yield in here: the stream's greenlet cannot run until the loop is done
    for i in range(100):
        rt.store.exec("INSERT INTO items (name) VALUES (?)", (f"item {i}",))
        rt.bus.publish("items")
    frame = viewer.wait_for(3)[2]
    settle()
    assert len(viewer.chunks) == 3
    assert rt.live.wakes == wakes + 1
    assert "item 0" in frame and "item 99" in frame
    assert "100 items" in frame


# watchables


class Grant:
    """A minimal Watchable: whether one viewer may see the page."""

    def __init__(self) -> None:
        self.allowed = True
        self.callbacks: dict[int, Callback] = {}

    def subscribe(self, callback: Callback) -> Unsubscribe:
        key = id(callback)
        self.callbacks[key] = callback
        return lambda: self.callbacks.pop(key, None)  # type: ignore[return-value]

    def revoke(self) -> None:
        self.allowed = False
        for callback in list(self.callbacks.values()):
            callback()


def test_a_watched_thing_wakes_the_stream(rt: Runtime, viewers: Callable[..., Viewer]) -> None:
    flag = Grant()
    shown = region(
        "flag",
        model=lambda ctx: flag.allowed,
        view=lambda on: html('<p id="flag">{}</p>', on),
        watch=[lambda ctx: flag],
    )
    viewer = viewers([shown])
    assert '<p id="flag">True</p>' in viewer.wait_for(2)[1]
    assert len(flag.callbacks) == 1
    flag.revoke()
    assert '<p id="flag">False</p>' in viewer.wait_for(3)[2]
    viewer.stream.end()
    wait_until(lambda: viewer.ended)
    assert flag.callbacks == {}


def test_revoked_access_sends_a_final_frame_and_ends_the_stream(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    grant = Grant()
    regions[0] = region("items", model=all_items, view=list_view, topics=["items"], watch=[grant])
    viewer = viewers(regions, authorize=lambda ctx: grant.allowed)
    viewer.wait_for(2)
    assert rt.bus.subscriber_count() == 1
    grant.revoke()
    wait_until(lambda: viewer.ended, what="the stream to end")
    last = viewer.chunks[-1]
    assert len(viewer.chunks) == 3
    assert '<div id="items" class="revoked" role="status">Access revoked.' in last
    assert '<div id="count" class="revoked" role="status">Access revoked.' in last
    assert viewer.error is None
    assert rt.bus.subscriber_count() == 0
    assert grant.callbacks == {}
    assert rt.streams == set()


def test_a_viewer_refused_from_the_start_sees_only_the_revoked_frame(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    add(rt, "secret")
    viewer = viewers(regions, authorize=lambda ctx: False)
    wait_until(lambda: viewer.ended)
    assert viewer.chunks[0] == FIRST
    assert "Access revoked" in viewer.chunks[1]
    assert "secret" not in "".join(viewer.chunks)
    assert rt.bus.subscriber_count() == 0


# heartbeat, shutdown, disconnect


def test_an_idle_stream_sends_a_heartbeat_comment(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    viewer = viewers(regions)
    viewer.wait_for(2)
    assert viewer.wait_for(3, timeout=rt.heartbeat * 10)[2] == HEARTBEAT
    assert viewer.wait_for(4, timeout=rt.heartbeat * 10)[3] == HEARTBEAT


def test_end_sends_a_final_comment_and_cleans_up(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    viewer = viewers(regions)
    viewer.wait_for(2)
    viewer.stream.end()
    wait_until(lambda: viewer.ended, what="the stream to end")
    assert viewer.chunks[-1] == GOODBYE
    assert viewer.error is None
    assert rt.bus.subscriber_count() == 0
    assert rt.streams == set()


def test_shutdown_ends_every_stream(rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]) -> None:
    opened = [viewers(regions) for _ in range(5)]
    for viewer in opened:
        viewer.wait_for(2)
    rt.shutdown(close_store=False, timeout=2)
    assert rt.streams == set()
    assert all(viewer.ended and viewer.chunks[-1] == GOODBYE for viewer in opened)
    assert rt.bus.subscriber_count() == 0
    assert not rt.store.closed


def test_closing_the_generator_unsubscribes_and_forgets_the_stream(rt: Runtime, regions: list[Region]) -> None:
    # What the WSGI server does when a write fails because the client went away.
    stream = Stream(rt, rt.ctx(), regions, "identity", None)
    events = stream.events()
    first = next(events).decode()
    assert first.startswith(FIRST)
    assert '<ul id="items"></ul>' in first
    assert rt.streams == {stream}
    assert rt.bus.subscriber_count() == 1
    events.close()
    assert rt.streams == set()
    assert rt.bus.subscriber_count() == 0


def test_a_failing_model_ends_the_stream_and_cleans_up(rt: Runtime, viewers: Callable[..., Viewer]) -> None:
    def model(ctx: Ctx) -> Any:
        if all_items(ctx):
            raise RuntimeError("model exploded")
        return ()

    viewer = viewers([region("items", model=model, view=list_view, topics=["items"])])
    viewer.wait_for(2)
    add(rt, "milk")
    wait_until(lambda: viewer.ended)
    # The failure is logged and, in development, shown on the page; the stream ends cleanly
    # (the client reconnects for a fresh render) instead of crashing the server's handler.
    assert viewer.error is None
    assert 'id="orion-error-overlay"' in viewer.chunks[-1]
    assert "RuntimeError: model exploded" in viewer.chunks[-1]
    assert rt.bus.subscriber_count() == 0
    assert rt.streams == set()


def test_the_region_oracle_names_a_view_that_reads_outside_its_model(
    rt: Runtime, viewers: Callable[..., Viewer]
) -> None:
    calls = []

    def impure(model: Any) -> Markup:
        calls.append(1)  # reads something that is not in the model: how often it was called
        return html('<ul id="items"><li>{}</li></ul>', len(calls))

    viewer = viewers([region("items", model=lambda ctx: "same", view=impure, topics=["items"])])
    viewer.wait_for(2)
    rt.bus.publish("items")  # the model is unchanged: development re-renders and compares
    chunks = viewer.wait_for(3)
    assert "the model is unchanged but the view produced different HTML" in chunks[-1]
    assert "Region &#39;items&#39;" in chunks[-1]


def test_the_region_oracle_stays_silent_for_a_pure_view(rt: Runtime, viewers: Callable[..., Viewer]) -> None:
    viewer = viewers(
        [region("items", model=lambda ctx: "same", view=lambda m: html('<ul id="items">{}</ul>', m), topics=["items"])]
    )
    viewer.wait_for(2)
    before = rt.live.unchanged
    rt.bus.publish("items")
    wait_until(lambda: rt.live.unchanged > before)
    gevent.sleep(0.05)
    assert len(viewer.chunks) == 2


# region()


@pytest.mark.parametrize("bad", ["", "todo list", "a.b", "<x>", "---", 'x"y'])
def test_a_bad_region_id_is_refused_with_the_value(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        region(bad, model=all_items, view=list_view)
    assert str(info.value) == f"A region id is letters, digits, '-' and '_' (got {bad!r})."


def test_topics_given_as_a_string_are_refused_with_the_fix() -> None:
    with pytest.raises(TypeError) as info:
        region("items", model=all_items, view=list_view, topics="items")
    assert str(info.value) == "topics is a list of topic names; write topics=['items']."


def test_region_render_is_what_a_page_get_embeds(rt: Runtime) -> None:
    add(rt, "<b>milk</b>")
    shown = region("items", model=all_items, view=list_view, topics=("items",))
    assert shown.topics == ("items",)
    assert shown.render(rt.ctx()) == '<ul id="items"><li>&lt;b&gt;milk&lt;/b&gt;</li></ul>'


def test_a_stream_opened_during_shutdown_ends_at_once(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    rt.shutdown(close_store=False, timeout=0.1)
    viewer = viewers(regions)
    wait_until(lambda: viewer.ended, timeout=1, what="the late stream to end")
    assert viewer.chunks[-1] == GOODBYE


# lanes: identical viewers share one model pass and one compressed stream


def allowed(ctx: Ctx) -> bool:
    """One authorize function for every viewer (it is part of the lane key); each viewer's own
    answer lives in its ctx."""
    return bool(ctx.extra.get("allowed", True))


def test_a_viewer_arriving_after_a_change_opens_a_lane_of_its_own_with_a_complete_render(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    early = viewers(regions)
    early.wait_for(2)
    add(rt, "milk")
    early.wait_for(3)
    late = viewers(regions)
    first = late.wait_for(2)[1]
    assert late.stream.lane is not early.stream.lane
    # a complete render of the current state, not a replay of the early lane's history
    assert first.count("datastar-patch-elements") == 2
    assert "<li>milk</li>" in first and "1 items" in first


def test_a_viewer_that_could_not_write_catches_up_on_every_change_in_one_write(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region]
) -> None:
    other = viewers(regions)  # keeps the lane going while the slow one is stuck
    slow = Stream(rt, rt.ctx(), regions, "identity", None)
    events = slow.events()
    try:
        assert "0 items" in next(events).decode()
        for name in ("milk", "eggs", "flour"):
            add(rt, name)
            settle()
        assert other.wait_for(5)[4].count("<li>") == 3
        caught_up = next(events).decode()  # what the server writes once the socket drains
        assert caught_up.count('<ul id="items">') == 3  # each change in order...
        assert caught_up.rstrip().endswith('<p id="count">3 items</p>')  # ...ending on the latest
        assert slow.lane is other.stream.lane
    finally:
        events.close()


def test_a_viewer_further_behind_than_the_backlog_is_dropped_and_told_to_reconnect(
    rt: Runtime, viewers: Callable[..., Viewer], regions: list[Region], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.belt import lane

    monkeypatch.setattr(lane, "BACKLOG", 2048)  # a few frames of this tiny list
    other = viewers(regions)
    slow = Stream(rt, rt.ctx(), regions, "identity", None)
    events = slow.events()
    next(events)
    for i in range(40):
        add(rt, f"item {i}")
        settle()
    assert "40 items" in other.chunks[-1]
    assert next(events).decode() == comment("too far behind, reconnect")
    with pytest.raises(StopIteration):
        next(events)
    assert rt.streams == {other.stream}
    assert "<li>item 39</li>" in other.chunks[-1]  # the lane goes on for the viewer keeping up


def test_a_revoked_viewer_ends_its_brotli_stream_alone_while_its_lane_goes_on(rt: Runtime) -> None:
    import brotli  # type: ignore[import-untyped]

    regions = [region("items", model=all_items, view=list_view, topics=["items"])]
    streams = [Stream(rt, rt.ctx(), regions, "br", allowed) for _ in range(2)]
    out: list[list[bytes]] = [[], []]

    def read(i: int) -> None:
        for chunk in streams[i].events():
            out[i].append(chunk)

    readers = [gevent.spawn(read, i) for i in range(2)]
    try:
        wait_until(lambda: all(out), what="both openings")
        assert streams[0].lane is streams[1].lane
        streams[0].ctx.extra["allowed"] = False
        add(rt, "milk")
        wait_until(lambda: readers[0].dead, what="the revoked stream to end")
        revoked = brotli.Decompressor()
        text = revoked.process(b"".join(out[0])).decode()
        assert revoked.is_finished()  # a complete brotli stream: the browser sees a clean end
        assert text.endswith(
            '<div id="items" class="revoked" role="status">Access revoked. '
            '<a href="">Reload</a> to sign in again.</div>\n\n'
        )
        assert "milk" not in text
        kept = brotli.Decompressor()
        wait_until(lambda: "<li>milk</li>" in kept.process(b"".join(out[1])).decode() or False, what="the change")
    finally:
        streams[1].end()
        gevent.joinall(readers, timeout=2)
    assert rt.streams == set()
    assert rt.lanes == {}
