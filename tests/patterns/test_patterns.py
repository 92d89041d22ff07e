"""app/patterns: the presence store (joins and leaves through a live stream's hooks, however
the stream ends) and the markup contracts of the combobox, tabs, modal and inline editor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
from flask import Flask

from app.belt import Ctx, User, html
from app.belt.boot import install, settings
from app.belt.bus import Bus
from app.belt.live import Region, Stream, region
from app.belt.runtime import Runtime
from app.belt.store import Store
from app.patterns.combobox import combobox, combobox_options
from app.patterns.inline_edit import form_id, inline_edit, inline_edit_done
from app.patterns.modal import modal, modal_link
from app.patterns.presence import Presence, Viewer
from app.patterns.tabs import tabs


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    app = Flask(__name__)
    cfg = settings(app, {"ORION_DB": str(tmp_path / "x.sqlite"), "ORION_HEARTBEAT": 0.2})
    runtime = install(app, Store(cfg["ORION_DB"]), Bus())
    yield runtime
    runtime.shutdown(timeout=2)


def viewer(rt: Runtime, regions: list[Region], name: str) -> tuple[Stream, gevent.Greenlet]:
    ctx = rt.ctx()
    ctx.user, ctx.extra["auth_resolved"] = User(id=name.lower(), email=f"{name}@x", name=name), True
    stream = Stream(rt, ctx, regions, "identity", None)
    return stream, gevent.spawn(lambda: [None for _ in stream.events()])


def wait(predicate: object, timeout: float = 2.0) -> None:
    with gevent.Timeout(timeout):
        while not predicate():  # type: ignore[operator]
            gevent.sleep(0.01)


def test_presence_joins_when_a_stream_opens_and_leaves_however_it_ends(rt: Runtime) -> None:
    presence = Presence("page")
    who = presence.region("who")
    heard: list[int] = []
    stop = presence.subscribe(lambda: heard.append(1))
    ann, ann_loop = viewer(rt, [who], "Ann")
    bob, bob_loop = viewer(rt, [who], "Bob")
    _ann2, ann2_loop = viewer(rt, [who], "Ann")  # the same person in a second tab
    wait(lambda: len(presence.viewers(ann.ctx)) == 2 and sum(v.tabs for v in presence.viewers(ann.ctx)) == 3)
    assert [(v.label, v.tabs) for v in presence.viewers(ann.ctx)] == [("Ann", 2), ("Bob", 1)]
    assert len(heard) == 3

    bob.end()  # a clean end (shutdown, revocation)
    wait(lambda: [v.label for v in presence.viewers(ann.ctx)] == ["Ann"])
    ann2_loop.kill()  # the WSGI server closes the generator: a client that went away
    wait(lambda: presence.viewers(ann.ctx)[0].tabs == 1)
    ann.end()
    gevent.joinall([ann_loop, bob_loop, ann2_loop], timeout=2)
    assert presence.viewers(ann.ctx) == ()
    assert len(heard) == 6
    stop()
    presence.leave(ann.ctx)  # leaving twice changes nothing and wakes no one
    assert len(heard) == 6


def test_a_region_whose_on_open_fails_still_closes_the_ones_opened_before(rt: Runtime) -> None:
    calls: list[str] = []

    def fail(ctx: Ctx) -> None:
        raise RuntimeError("cannot open")

    first = region(
        "a",
        model=lambda ctx: 1,
        view=lambda m: html('<p id="a"></p>'),
        on_open=lambda ctx: calls.append("open a"),
        on_close=lambda ctx: calls.append("close a"),
    )
    second = region(
        "b",
        model=lambda ctx: 1,
        view=lambda m: html('<p id="b"></p>'),
        on_open=fail,
        on_close=lambda ctx: calls.append("close b"),
    )
    stream = Stream(rt, rt.ctx(), [first, second], "identity", None)
    with pytest.raises(RuntimeError, match="cannot open"):
        next(stream.events())
    assert calls == ["open a", "close a"]
    assert not rt.streams


def test_presence_keeps_tenants_apart_and_colours_people_the_same_everywhere(rt: Runtime) -> None:
    presence = Presence("page")
    here, there = rt.ctx(), rt.ctx(tenant="acme")
    here.extra["auth_resolved"] = there.extra["auth_resolved"] = True
    presence.join(here)
    presence.join(there)
    assert [v.label for v in presence.viewers(here)] == ["Guest"]
    assert presence.viewers(here)[0].hue == presence.viewers(there)[0].hue
    markup = presence.region("who").view((Viewer("1", "<Zoë>", 2, 10),))
    assert "&lt;Zoë&gt;" in markup and "<Zoë>" not in markup and "2 here" in markup and "(2 tabs)" in markup


def test_the_combobox_escapes_and_names_its_parts_for_assistive_technology() -> None:
    page = combobox("city", label="City", url="places/cities", value='"quoted"')
    assert 'role="combobox"' in page and 'aria-controls="city-listbox"' in page and 'aria-autocomplete="list"' in page
    assert '"quoted"' not in page.replace("&#34;quoted&#34;", "")  # escaped, in the value and the signals
    options = combobox_options("city", ["<b>Paris</b>"], query="pa")
    assert 'id="city-opt-0" role="option"' in options and "&lt;b&gt;Paris&lt;/b&gt;" in options
    assert "No match for “<x>”" not in combobox_options("city", [], query="<x>")
    with pytest.raises(ValueError, match="letters and digits"):
        combobox("my-city", label="City", url="x")


def test_tabs_render_only_the_active_panel_and_refuse_an_unknown_tab() -> None:
    markup = tabs("t", [("a", "A"), ("b", "B")], "b", html("<p>panel b</p>"), url="x/tabs")
    assert 'id="t-tab-b" href="?tab=b" aria-controls="t-panel" aria-selected="true" tabindex="0"' in markup
    assert 'aria-selected="false" tabindex="-1"' in markup and 'aria-labelledby="t-tab-b"' in markup
    with pytest.raises(ValueError, match="'c' is not one of"):
        tabs("t", [("a", "A")], "c", html(""), url="x")


def test_the_modal_and_the_inline_editor_markup() -> None:
    dialog = modal("Title <1>", html("<p>body</p>"))
    assert dialog.startswith('<div id="modal"><dialog class="modal" open aria-labelledby="modal-title"')
    assert "Title &lt;1&gt;" in dialog
    assert "@get(&#34;x/y&#34;)" in modal_link("x/y", "Open")
    assert "@get(&#34;it&#39;s&#34;)" in modal_link("it's", "Open")  # a JS string, then an attribute
    editor = inline_edit("profile-name", name="name", label="Name", value="Ada", action="p/name", maxlength=40)
    assert form_id("profile-name") == "profile-name-form"
    assert 'id="profile-name-form-name-error"' in editor and 'data-text="$profileNameError"' in editor
    assert ' required maxlength="40"' in editor
    assert inline_edit_done("profile-name") == {"profileNameEditing": False, "profileNameError": ""}
