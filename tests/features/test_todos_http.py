"""The HTTP contract of the todos slice, over real sockets: the page, forms without
JavaScript, Datastar actions, JSON clients, publish-after-commit, and ``flask routes``.

Most tests share one server; each makes its own todos (unique titles) and asserts only
about those, or about counts read from the database at the same moment.
"""

from __future__ import annotations

import html
import http.client
import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from markupsafe import escape

from tests.support.server import ROOT, LiveServer
from tests.support.sse import Event, SSEClient

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DATASTAR = {"Datastar-Request": "true"}
# What a browser sends with a form post when JavaScript is off.
BROWSER = {**FORM, "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str


def call(
    server: LiveServer, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, text)
    finally:
        conn.close()


def db_rows(server: LiveServer) -> list[sqlite3.Row]:
    with closing(sqlite3.connect(f"file:{server.db}?mode=ro", uri=True, timeout=5)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT id, title, done FROM todos ORDER BY id").fetchall()


def unique(prefix: str = "Todo") -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def add(server: LiveServer, title: str) -> int:
    """Add a todo through the JSON API; its id, read back from the database."""
    assert call(server, "POST", "/todos", json.dumps({"title": title}), JSON).status == 204
    [todo_id] = [row["id"] for row in db_rows(server) if row["title"] == title]
    return int(todo_id)


def item(page: str, todo_id: int) -> str | None:
    """The ``<li>`` of one todo in a page, or None."""
    found = re.search(rf'<li id="todo-{todo_id}".*?</li>', page, re.S)
    return found.group() if found else None


def home(server: LiveServer) -> str:
    answer = call(server, "GET", "/", headers={"Accept": BROWSER["Accept"]})
    assert answer.status == 200
    return answer.text


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("todos-http") / "app.sqlite").start()
    try:
        yield server
        server.wait_for(
            lambda s: s["streams"] == 0 and s["subscribers"] == 0,
            timeout=3.5,
            what="streams and subscriptions back to zero",
        )
    finally:
        server.stop()


# -- the page ------------------------------------------------------------------------------


def test_the_page_renders_every_region_before_javascript(live: LiveServer) -> None:
    title = unique('<b>Tea</b> & "biscuits"')
    todo_id = add(live, title)
    answer = call(live, "GET", "/", headers={"Accept": BROWSER["Accept"]})
    rows = db_rows(live)
    page = answer.text
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/html")
    assert page.startswith("<!doctype html>")
    assert "<h1>Todos</h1>" in page
    assert '<label for="new-todo-title">New todo</label>' in page
    assert '<ul id="todo-list"' in page and '<footer id="todo-status"' in page
    remaining = sum(1 for row in rows if not row["done"])
    assert f"<span>{remaining} of {len(rows)} remaining</span>" in page
    assert all(item(page, row["id"]) for row in rows)
    # The title is escaped: text, never markup.
    assert str(escape(title)) in (item(page, todo_id) or "") and "<b>Tea</b>" not in page
    # The page opens its live stream and loads the Datastar client it names.
    assert "&#34;todos/live&#34;" in page  # relative: the same page works under /w/<workspace>/
    assert '<script type="module" src="/static/datastar.js"></script>' in page
    script = call(live, "GET", "/static/datastar.js")
    assert script.status == 200 and "javascript" in script.headers["content-type"]
    assert "Datastar v1" in script.text


def test_the_datastar_url_setting_changes_the_script_src(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(env={"ORION_DATASTAR_URL": "https://cdn.example/datastar.js"})
    page = home(server)
    assert '<script type="module" src="https://cdn.example/datastar.js"></script>' in page
    assert "/static/datastar.js" not in page


# -- without JavaScript: plain form posts -----------------------------------------------------


@pytest.mark.parametrize(
    ("referer", "location"),
    [
        pytest.param(None, "/", id="no Referer"),
        pytest.param("{url}/?view=all", "/?view=all", id="same-origin Referer"),
        pytest.param("{url}//evil.example/todos", "/", id="same-origin Referer whose path names another host"),
        pytest.param("{url}/\\evil.example/todos", "/", id="same-origin Referer with a backslash host"),
    ],
)
def test_a_form_post_adds_a_todo_and_returns_to_the_page(live: LiveServer, referer: str | None, location: str) -> None:
    title = unique("Buy milk")
    headers = dict(BROWSER)
    if referer is not None:
        headers["Referer"] = referer.format(url=live.url)
    answer = call(live, "POST", "/todos", f"title={title.replace(' ', '+')}", headers)
    assert answer.status == 303
    assert answer.headers["location"] == location
    assert str(escape(title)) in home(live)


def test_a_form_post_from_another_site_is_refused_and_adds_nothing(live: LiveServer) -> None:
    """A browser old enough to send no Sec-Fetch-Site or Origin still names the page in Referer."""
    title = unique("Forged")
    answer = call(live, "POST", "/todos", f"title={title}", {**BROWSER, "Referer": "https://evil.example/todos"})
    assert answer.status == 403
    assert "came from another site" in answer.text
    assert title not in home(live)


def test_a_form_toggles_a_todo_on_and_off(live: LiveServer) -> None:
    todo_id = add(live, unique("Toggle me"))
    assert call(live, "POST", f"/todos/{todo_id}/toggle", "done=on", BROWSER).status == 303
    done = item(home(live), todo_id) or ""
    assert 'class="todo done"' in done and " checked>" in done
    # An unchecked checkbox is simply absent: the browser posts an empty form.
    assert call(live, "POST", f"/todos/{todo_id}/toggle", "", BROWSER).status == 303
    undone = item(home(live), todo_id) or ""
    assert 'class="todo"' in undone and " checked>" not in undone


def test_a_form_renames_a_todo(live: LiveServer) -> None:
    todo_id = add(live, unique("Old name"))
    new = unique("New name")
    answer = call(live, "POST", f"/todos/{todo_id}/rename", f"title={new.replace(' ', '+')}", BROWSER)
    assert (answer.status, answer.headers["location"]) == (303, "/")
    assert f'value="{new}"' in (item(home(live), todo_id) or "")


def test_a_form_deletes_a_todo(live: LiveServer) -> None:
    todo_id = add(live, unique("Delete me"))
    assert item(home(live), todo_id)
    assert call(live, "POST", f"/todos/{todo_id}/delete", "", BROWSER).status == 303
    assert item(home(live), todo_id) is None


def test_a_form_clears_the_completed_todos(live: LiveServer) -> None:
    finished, open_ = add(live, unique("Finished")), add(live, unique("Still open"))
    assert call(live, "POST", f"/todos/{finished}/toggle", "done=on", BROWSER).status == 303
    assert call(live, "POST", "/todos/clear-completed", "", BROWSER).status == 303
    page = home(live)
    assert item(page, finished) is None and item(page, open_)
    assert not any(row["done"] for row in db_rows(live))


@pytest.mark.parametrize(
    ("submitted", "message"),
    [
        pytest.param("", "Title can't be blank.", id="empty title"),
        pytest.param("   ", "Title can't be blank.", id="whitespace-only title"),
        pytest.param('<i>"x"</i> ' + "a" * 200, "Title must be at most", id="211-character title with markup"),
    ],
)
def test_an_invalid_form_rerenders_the_page_with_the_error_and_the_value(
    live: LiveServer, submitted: str, message: str
) -> None:
    before = db_rows(live)
    answer = call(live, "POST", "/todos", urlencode({"title": submitted}), BROWSER)
    assert answer.status == 422 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    # The whole page, so the person can fix the value and submit again without JavaScript.
    assert page.startswith("<!doctype html>") and "<h1>Todos</h1>" in page and '<ul id="todo-list"' in page
    assert message in html.unescape(page)
    assert f'value="{escape(submitted)}"' in page and 'aria-invalid="true"' in page
    assert db_rows(live) == before


def test_an_invalid_rename_without_javascript_gets_an_error_page(live: LiveServer) -> None:
    todo_id = add(live, unique("Keep my name"))
    before = db_rows(live)
    # `required` on the input lets whitespace through; the server says what is wrong.
    answer = call(live, "POST", f"/todos/{todo_id}/rename", "title=+++", BROWSER)
    assert answer.status == 422 and answer.headers["content-type"].startswith("text/html")
    assert "Title can't be blank." in html.unescape(answer.text)
    assert '<a href="/">' in answer.text
    assert db_rows(live) == before


# -- Datastar actions and JSON clients ----------------------------------------------------------


def events(text: str) -> list[tuple[str, list[str]]]:
    """(event type, data lines) of an SSE body."""
    parsed = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        assert lines[0].startswith("event: "), block
        parsed.append((lines[0][len("event: ") :], [line[len("data: ") :] for line in lines[1:]]))
    return parsed


def test_a_datastar_post_resets_the_title_and_clears_the_error(live: LiveServer) -> None:
    title = unique("From Datastar")
    answer = call(live, "POST", "/todos", json.dumps({"title": title}), {**JSON, **DATASTAR})
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/event-stream")
    sent = events(answer.text)
    assert ("datastar-patch-signals", ['signals {"title":""}']) in sent
    assert (
        "datastar-patch-elements",
        ['elements <p id="new-todo-title-error" class="field-error" aria-live="polite"></p>'],
    ) in sent
    # Shared truth never travels in the response: the new todo reaches pages through the stream.
    assert title not in answer.text
    todo_id = next(row["id"] for row in db_rows(live) if row["title"] == title)

    toggled = call(live, "POST", f"/todos/{todo_id}/toggle", json.dumps({"done": True}), {**JSON, **DATASTAR})
    assert (toggled.status, toggled.text) == (204, "")
    assert next(row["done"] for row in db_rows(live) if row["id"] == todo_id) == 1


@pytest.mark.parametrize(
    ("path", "body", "errors"),
    [
        pytest.param("/todos", {"title": " "}, {"title": "Title can't be blank."}, id="blank title"),
        pytest.param("/todos", {}, {"title": "Title is required."}, id="missing title"),
        pytest.param(
            "/todos/{id}/toggle",
            {"done": "maybe"},
            {"done": "Done must be true or false (got 'maybe')."},
            id="done: maybe",
        ),
    ],
)
def test_a_json_client_gets_422_with_the_errors_by_field(
    live: LiveServer, path: str, body: dict[str, object], errors: dict[str, str]
) -> None:
    todo_id = add(live, unique("JSON"))
    headers = {**JSON, "Accept": "application/json"}
    answer = call(live, "POST", path.format(id=todo_id), json.dumps(body), headers)
    assert answer.status == 422 and answer.headers["content-type"] == "application/json"
    assert json.loads(answer.text) == {"errors": errors}


def test_a_json_client_gets_204_on_success(live: LiveServer) -> None:
    title = unique("API")
    answer = call(live, "POST", "/todos", json.dumps({"title": title}), {**JSON, "Accept": "application/json"})
    assert (answer.status, answer.text) == (204, "")
    assert any(row["title"] == title for row in db_rows(live))


# -- publish after commit, end to end ------------------------------------------------------------


def test_only_a_committed_command_publishes_and_repaints(live: LiveServer) -> None:
    live.wait_for(lambda s: s["streams"] == 0, what="earlier streams to close")

    def is_list(event: Event) -> bool:
        return 'id="todo-list"' in event.elements

    with SSEClient(live.url + "/todos/live") as stream:
        stream.wait_for(is_list)
        live.wait_for(lambda s: s["streams"] == 1, what="the stream to register")
        base = live.stats()
        seen = len(stream.events)

        # Refused by the command after BEGIN: rolled back, nothing published.
        assert call(live, "POST", "/todos/999999/toggle", '{"done": true}', JSON).status == 404
        # Refused by validation: no transaction at all.
        assert call(live, "POST", "/todos", '{"title": ""}', JSON).status == 422
        refused = live.stats()
        assert refused["published"] == base["published"]
        # The only commits are the refused toggle's audit records (started, then failed);
        # the refused validation wrote nothing at all.
        assert refused["store"]["commits"] == base["store"]["commits"] + 2
        assert refused["store"]["rollbacks"] == base["store"]["rollbacks"] + 1

        title = unique("Published")
        assert call(live, "POST", "/todos", json.dumps({"title": title}), JSON).status == 204
        # The publish ran after the commit and before the response left.
        assert live.stats()["published"] == base["published"] + 1
        stream.wait_for(lambda e: title in e.elements, start=seen)
        # One publish, one wake of this (only) stream; every frame of that wake has arrived.
        live.wait_for(lambda s: s["live"]["wakes"] == base["live"]["wakes"] + 1, what="the one wake")
        new_lists = [e for e in stream.events[seen:] if is_list(e)]
        assert len(new_lists) == 1 and title in new_lists[0].elements
        # The refused commands made no frame: the first new frame already holds the new todo.
        assert all(title in e.elements or 'id="todo-status"' in e.elements for e in stream.events[seen:])


# -- the CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tenancy", "prefix"), [("off", ""), ("db", "/w/<workspace>")])
def test_flask_routes_lists_every_todos_route(tmp_path: Path, tenancy: str, prefix: str) -> None:
    env = {**os.environ, "ORION_DB": str(tmp_path / "routes.sqlite"), "ORION_TENANCY": tenancy}
    flask = Path(sys.executable).with_name("flask")
    done = subprocess.run(
        [str(flask), "routes"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    listed = set()
    for line in done.stdout.splitlines():
        found = re.match(r"^\S+\s+([A-Z][A-Z, ]*?)\s+(/\S*)\s*$", line)
        if found:
            for method in found.group(1).split(", "):
                listed.add((method, found.group(2)))
    expected = {
        (method, prefix + path)
        for method, path in [
            ("GET", "/"),
            ("GET", "/todos/live"),
            ("POST", "/todos"),
            ("POST", "/todos/<id:todo_id>/toggle"),
            ("POST", "/todos/<id:todo_id>/rename"),
            ("POST", "/todos/<id:todo_id>/delete"),
            ("DELETE", "/todos/<id:todo_id>"),
            ("POST", "/todos/clear-completed"),
        ]
    }
    assert expected <= listed, f"missing {expected - listed} in:\n{done.stdout}"
