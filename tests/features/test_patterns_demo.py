"""The patterns demo over real sockets: everything renders before JavaScript, fragments are
pages too, the inline editor's server check holds without the browser's, and presence follows
streams as they open and close."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

from tests.support.accounts import BROWSER, DATASTAR, HTML, JSON, call
from tests.support.server import LiveServer
from tests.support.sse import SSEClient


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("patterns") / "app.sqlite").start()
    try:
        yield server
        server.wait_for(
            lambda s: s["streams"] == 0 and s["subscribers"] == 0,
            timeout=3.5,
            what="streams and subscriptions back to zero",
        )
    finally:
        server.stop()


def profile_name(server: LiveServer) -> str:
    with closing(sqlite3.connect(f"file:{server.db}?mode=ro", uri=True, timeout=5)) as conn:
        return str(conn.execute("SELECT name FROM patterns_demo_profile").fetchone()[0])


def test_the_page_renders_every_pattern_before_javascript(live: LiveServer) -> None:
    page = call(live, "GET", "/patterns?tab=cities", headers=HTML)
    assert page.status == 200
    for part in (
        'id="patterns-presence"',
        'id="demo-name"',
        'role="combobox"',
        'id="demo-tabs"',
        'id="modal"',
        'action="patterns/hello"',
    ):
        assert part in page.text, part
    # The server decided the tab: its panel, from SQLite, and aria-selected on its link.
    assert (
        'id="demo-tabs-tab-cities" href="?tab=cities" aria-controls="demo-tabs-panel" aria-selected="true"' in page.text
    )
    assert "<strong>51</strong> cities" in page.text


def test_fragments_answer_datastar_with_the_part_and_a_browser_with_a_page(live: LiveServer) -> None:
    options = call(live, "GET", "/patterns/cities?q=par", headers=DATASTAR)
    assert options.text.startswith('<ul id="city-listbox"')
    assert ">Paris</li>" in options.text and "São Paulo" not in options.text
    assert options.headers["cache-control"] == "no-store"
    odd = call(live, "GET", "/patterns/cities?q=%25_%5C", headers=DATASTAR)  # LIKE's wildcards are literal
    assert "No match for “%_\\”" in odd.text
    modal = call(live, "GET", "/patterns/modal/about", headers=HTML)
    assert modal.text.startswith("<!doctype html>") and '<dialog class="modal" open' in modal.text
    tab = call(live, "GET", "/patterns/tabs?tab=nope", headers=DATASTAR)
    assert tab.text.startswith('<div id="demo-tabs"') and 'id="demo-tabs-tab-loop"' in tab.text


def test_the_server_checks_the_name_again_without_the_browser(live: LiveServer) -> None:
    before = profile_name(live)
    # A Datastar client that skipped the browser's checks: the error lands in the field's slot.
    short = call(live, "POST", "/patterns/name", json.dumps({"name": "x"}), {**JSON, **DATASTAR})
    assert short.status == 200
    assert 'id="demo-name-form-name-error"' in short.text and "at least 2 characters" in short.text
    reserved = call(live, "POST", "/patterns/name", json.dumps({"name": "Admin"}), {**JSON, **DATASTAR})
    assert "&#39;Admin&#39; is reserved" in reserved.text or "'Admin' is reserved" in reserved.text
    # A form without JavaScript: the page again (422), with the value and the message.
    page = call(live, "POST", "/patterns/name", {"name": "root"}, BROWSER)
    assert page.status == 422 and "is reserved; pick another display name." in page.text
    assert 'value="root"' in page.text
    assert profile_name(live) == before

    good = call(live, "POST", "/patterns/name", {"name": "Grace Hopper"}, BROWSER)
    assert good.status == 303
    assert profile_name(live) == "Grace Hopper"
    closed = call(live, "POST", "/patterns/name", json.dumps({"name": "Ada"}), {**JSON, **DATASTAR})
    assert '"demoNameEditing":false' in closed.text.replace(" ", "")


def test_presence_follows_streams_as_they_open_and_close(live: LiveServer) -> None:
    with SSEClient(live.url + "/patterns/live") as a:
        a.wait_for(lambda e: "1 here" in e.elements)
        b = SSEClient(live.url + "/patterns/live")
        a.wait_for(lambda e: "2 here" in e.elements and "(2 tabs)" in e.elements)
        seen = len(a.events)
        b.close()
        # The server notices at its next heartbeat (1 s in tests) and the viewer leaves.
        a.wait_for(lambda e: "1 here" in e.elements, timeout=5, start=seen)
