"""The admin dashboard (/admin) in a real browser: server-driven tabs, one panel (and one panel
stream) at a time, the open tab kept across a reload, and panels that repaint as things land.
The self-host identity owns the app, so it is an admin."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Pages
from tests.support.accounts import HTML, JSON, call
from tests.support.server import LiveServer

pytestmark = pytest.mark.e2e

LIVE = 3_000


def tab(page: Page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()


def stream_lines(server: LiveServer, path: str) -> list[dict[str, object]]:
    """The canonical lines of finished streams at ``path`` (a stream's line is written as it ends)."""
    lines = [json.loads(raw) for raw in server.log().splitlines() if raw.startswith('{"ts"')]
    return [line for line in lines if line["kind"] == "stream" and line["path"] == path]


def wait(predicate: object, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_tabs_switch_panels_and_streams_and_survive_a_reload(server: LiveServer, pages: Pages) -> None:
    page = pages.open(server.url + "/admin")
    panel = page.locator("section.dash-panel")
    expect(panel).to_have_count(1)
    expect(panel).to_have_attribute("data-tab", "health")
    expect(page.locator("#dash-health")).to_contain_text("Event-loop lag")
    server.wait_for(lambda s: s["observe"]["streams_by_route"] == {"/admin/live/<tab>": 1}, what="the panel stream")

    # Switch: the old panel leaves the DOM, its stream is closed, the new panel's opens.
    tab(page, "Traces")
    expect(page.locator("#panel-traces")).to_be_visible(timeout=LIVE)
    expect(page.locator("#panel-health")).to_have_count(0)
    expect(panel).to_have_count(1)
    expect(page.get_by_role("button", name="Traces", exact=True)).to_have_attribute("aria-current", "page")
    wait(lambda: stream_lines(server, "/admin/live/health"), what="the health stream's line (it ended)")
    [ended] = stream_lines(server, "/admin/live/health")
    assert ended["outcome"] == "aborted"  # the browser aborted it when its container was removed
    server.wait_for(lambda s: s["streams"] == 1, what="one open stream: the traces panel's")

    # Live: a request made elsewhere shows up in the traces list, and its span tree opens.
    assert call(server, "POST", "/todos", json.dumps({"title": "watched"}), JSON).status == 204
    row = page.locator("#dash-traces tr", has_text="POST /todos")
    expect(row.first).to_be_visible(timeout=LIVE)
    row.first.get_by_role("button", name="show").click()
    tree = page.locator(".span-tree")
    expect(tree).to_contain_text("command todos.add", timeout=LIVE)
    expect(tree).to_contain_text("sql exec")

    # The open tab is server-side state: a reload opens Traces again, with the tree shown.
    page.reload()
    expect(panel).to_have_attribute("data-tab", "traces")
    expect(page.locator(".span-tree")).to_contain_text("command todos.add")

    # Logs: filter the canonical lines; the filter is saved too.
    tab(page, "Logs")
    expect(page.locator("#panel-logs")).to_be_visible(timeout=LIVE)
    call(server, "GET", "/no-such-page", headers=HTML)
    page.get_by_label("Filter").fill("status=404")
    page.get_by_role("button", name="Apply").click()
    lines = page.locator("#logs-lines tbody tr")
    expect(lines.first).to_contain_text("/no-such-page", timeout=LIVE)
    expect(lines).to_have_count(1)

    # Analytics repaints as tracked events are flushed.
    tab(page, "Analytics")
    counts = page.locator("#dash-analytics table").first
    expect(counts).to_contain_text("todo_added", timeout=LIVE)
    call(server, "POST", "/todos", json.dumps({"title": "one more"}), JSON)
    expect(counts.locator("tr", has_text="todo_added")).to_contain_text("2", timeout=LIVE)

    # Audit and Flags render what exists (the journal, the declared flags), Jobs its queue.
    tab(page, "Audit")
    expect(page.locator("#dash-audit")).to_contain_text("todos.add", timeout=LIVE)
    tab(page, "Flags")
    expect(page.locator("#dash-flags")).to_contain_text("Evaluated", timeout=LIVE)
    tab(page, "Jobs")
    expect(page.locator("#dash-jobs")).to_contain_text("queued", timeout=LIVE)
    expect(panel).to_have_count(1)
    pages.assert_clean()
