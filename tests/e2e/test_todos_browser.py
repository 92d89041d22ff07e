"""The todos page in real browsers: what a person sees in one window after acting in another.

Each "browser" is its own Playwright context (separate cookies, cache and connections)
against the app under real gunicorn + gevent.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import SELF_HOST, Pages
from tests.support.server import LiveServer

pytestmark = pytest.mark.e2e

#: How soon (ms) a change made in one browser must show in another.
LIVE = 2_000
#: How soon (ms) a page must be live and current again after the server restarted.
RECONNECT = 10_000
SCREENSHOT = Path("/tmp/orion-e2e.png")


def wait_streams(server: LiveServer, count: int) -> None:
    """Wait until ``count`` pages hold an open stream, so what follows tests live updates."""
    server.wait_for(lambda s: s["streams"] == count, timeout=5, what=f"{count} open stream(s)")


def new_todo(page: Page) -> Locator:
    return page.get_by_role("textbox", name="New todo")


def add(page: Page, title: str) -> None:
    box = new_todo(page)
    box.fill(title)
    box.press("Enter")


def done_box(page: Page, title: str) -> Locator:
    """The checkbox of the todo titled ``title``: how a person (and a screen reader) finds it."""
    return page.get_by_role("checkbox", name=f"Done: {title}", exact=True)


def status(page: Page) -> Locator:
    return page.locator("#todo-status")


def titles(page: Page) -> list[str]:
    """The titles in the list, top to bottom (they are inputs: the text is their value)."""
    return [str(v) for v in page.locator("#todo-list input[name=title]").evaluate_all("els => els.map(e => e.value)")]


def post(server: LiveServer, path: str, signals: dict[str, object]) -> int:
    req = urllib.request.Request(
        server.url + path,
        data=json.dumps(signals).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Datastar-Request": "true"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return int(r.status)


def test_two_browsers_stay_in_sync(server: LiveServer, pages: Pages) -> None:
    a, b = pages.open(server.url), pages.open(server.url)
    wait_streams(server, 2)
    expect(b.get_by_text("Nothing to do.")).to_be_visible()

    add(a, "Buy milk")
    expect(new_todo(a)).to_have_value("", timeout=LIVE)
    expect(done_box(b, "Buy milk")).to_be_visible(timeout=LIVE)
    expect(status(b)).to_contain_text("1 of 1 remaining", timeout=LIVE)
    expect(b.get_by_text("Nothing to do.")).to_have_count(0)

    done_box(a, "Buy milk").check()
    expect(done_box(b, "Buy milk")).to_be_checked(timeout=LIVE)
    expect(status(b)).to_contain_text("0 of 1 remaining", timeout=LIVE)

    # Rename: the title is an input; select it all, type over it, Enter.
    title_a = a.get_by_role("textbox", name=re.compile(r"^Title of todo \d+$"))
    title_a.click()
    title_a.press("ControlOrMeta+a")
    title_a.press_sequentially("Buy oat milk")
    title_a.press("Enter")
    expect(done_box(b, "Buy oat milk")).to_be_visible(timeout=LIVE)
    expect(b.get_by_role("textbox", name=re.compile(r"^Title of todo \d+$"))).to_have_value("Buy oat milk")
    expect(done_box(b, "Buy oat milk")).to_be_checked()

    a.get_by_role("button", name="Delete Buy oat milk").click()
    expect(done_box(b, "Buy oat milk")).to_have_count(0, timeout=LIVE)
    expect(b.get_by_text("Nothing to do.")).to_be_visible(timeout=LIVE)
    expect(status(b)).to_contain_text("0 of 0 remaining", timeout=LIVE)

    for title in ("Walk the dog", "Pay rent", "Call mum"):
        add(a, title)
        expect(done_box(b, title)).to_be_visible(timeout=LIVE)
    done_box(a, "Pay rent").check()
    expect(done_box(b, "Pay rent")).to_be_checked(timeout=LIVE)
    expect(status(b)).to_contain_text("2 of 3 remaining", timeout=LIVE)
    screenshot_side_by_side(pages, a, b)

    a.get_by_role("button", name="Clear completed").click()
    expect(done_box(b, "Pay rent")).to_have_count(0, timeout=LIVE)
    expect(status(b)).to_contain_text("2 of 2 remaining", timeout=LIVE)
    expect(b.get_by_role("button", name="Clear completed")).to_have_count(0)
    assert titles(b) == titles(a) == ["Walk the dog", "Call mum"]
    pages.assert_clean()


def screenshot_side_by_side(pages: Pages, a: Page, b: Page) -> None:
    """Both browsers in one picture (for a person to look at; nothing asserts on it)."""
    import base64

    shots = [base64.b64encode(p.screenshot(full_page=True)).decode() for p in (a, b)]
    board = pages.open("about:blank")
    board.set_viewport_size({"width": 1460, "height": 660})
    board.set_content(
        '<body style="margin:0;display:flex;gap:20px;background:#888">'
        + "".join(f'<img src="data:image/png;base64,{s}">' for s in shots)
        + "</body>"
    )
    board.screenshot(path=SCREENSHOT, full_page=True)
    board.context.close()


def test_a_bad_title_shows_an_inline_error_and_adds_nothing(server: LiveServer, pages: Pages) -> None:
    a, b = pages.open(server.url), pages.open(server.url)
    wait_streams(server, 2)
    error = a.locator("#new-todo-title-error")
    expect(error).to_be_empty()

    new_todo(a).press("Enter")  # empty
    expect(error).to_have_text("Title can't be blank.", timeout=LIVE)
    add(a, "   ")
    expect(error).to_have_text("Title can't be blank.", timeout=LIVE)
    expect(error).to_be_visible()

    # maxlength=200 stops typing, so put 201 characters in the way a paste-and-script would.
    new_todo(a).evaluate(
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})) }", "x" * 201
    )
    new_todo(a).press("Enter")
    expect(error).to_have_text(re.compile("at most 200 characters"), timeout=LIVE)
    expect(b.get_by_text("Nothing to do.")).to_be_visible()

    add(a, "Buy milk")
    expect(error).to_be_empty(timeout=LIVE)
    expect(new_todo(a)).to_have_value("")
    # Only the valid one ever reached the store: the other browser sees exactly one todo.
    expect(status(b)).to_contain_text("1 of 1 remaining", timeout=LIVE)
    assert titles(b) == ["Buy milk"]
    pages.assert_clean()


def test_the_page_works_without_javascript(server: LiveServer, pages: Pages) -> None:
    page = pages.open(server.url, javascript=False)
    expect(page.get_by_text("Nothing to do.")).to_be_visible()

    page.get_by_role("textbox", name="New todo").fill("Buy milk")
    with page.expect_navigation():
        page.get_by_role("button", name="Add").click()
    expect(done_box(page, "Buy milk")).to_be_visible()
    expect(status(page)).to_contain_text("1 of 1 remaining")
    assert page.url.rstrip("/") == server.url  # a 303 back to the page, not a command URL

    done_box(page, "Buy milk").check()
    with page.expect_navigation():
        page.locator("li.todo").get_by_role("button", name="Save").click()
    expect(done_box(page, "Buy milk")).to_be_checked()
    expect(status(page)).to_contain_text("0 of 1 remaining")

    done_box(page, "Buy milk").uncheck()  # an unchecked box sends nothing: that means "not done"
    with page.expect_navigation():
        page.locator("li.todo").get_by_role("button", name="Save").click()
    expect(done_box(page, "Buy milk")).not_to_be_checked()
    expect(status(page)).to_contain_text("1 of 1 remaining")

    # The 422 is the point here; Chromium logs any 4xx document as a console error.
    pages.allow(lambda text: "status of 422" in text)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Add").click()
    assert answer.value.status == 422
    expect(page.locator("#new-todo-title-error")).to_have_text("Title can't be blank.")
    expect(page.get_by_role("textbox", name="New todo")).to_have_attribute("aria-invalid", "true")
    expect(done_box(page, "Buy milk")).to_be_visible()  # the re-rendered page still has the list
    pages.assert_clean()


def test_without_javascript_fixing_a_bad_title_lands_back_on_the_page(server: LiveServer, pages: Pages) -> None:
    page = pages.open(server.url, javascript=False)
    pages.allow(lambda text: "status of 422" in text)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Add").click()
    assert answer.value.status == 422

    page.get_by_role("textbox", name="New todo").fill("Buy milk")
    with page.expect_navigation():
        page.get_by_role("button", name="Add").click()
    expect(done_box(page, "Buy milk")).to_be_visible(timeout=LIVE)
    expect(page.locator("#new-todo-title-error")).to_be_empty()
    pages.assert_clean()


def restart_noise(text: str) -> bool:
    """What Chromium and Datastar log while the server is away: expected during a restart."""
    return (
        "net::ERR_" in text
        or text in ("network error", "Failed to fetch")
        or text.startswith("Datastar failed to reach")
    )


#: An open page must not make a restart wait for gunicorn's graceful timeout (10 s); 3 s
#: keeps these tests short and still tells "finished on its own" from "killed at the timeout".
QUICK_STOP = {**SELF_HOST, "GUNICORN_CMD_ARGS": "--graceful-timeout 3"}


def test_the_page_is_live_and_current_after_a_server_restart(
    start_server: Callable[..., LiveServer], pages: Pages, tmp_path: Path
) -> None:
    db = tmp_path / "restart.sqlite"
    first = start_server(db=db, env=QUICK_STOP)
    page = pages.open(first.url)
    wait_streams(first, 1)
    pages.allow(restart_noise)
    new_todo(page).fill("Half typed")  # what the person was writing survives the restart

    first.stop()
    second = LiveServer(db, port=first.port, env=SELF_HOST).start()
    try:
        # A change made while the page may still be reconnecting: its first frame shows it.
        assert post(second, "/todos", {"title": "Made during the restart"}) == 200
        expect(done_box(page, "Made during the restart")).to_be_visible(timeout=RECONNECT)
        # And the page is live again, not just current once.
        wait_streams(second, 1)
        assert post(second, "/todos", {"title": "Made after the restart"}) == 200
        expect(done_box(page, "Made after the restart")).to_be_visible(timeout=LIVE)
        expect(status(page)).to_contain_text("2 of 2 remaining")
        expect(new_todo(page)).to_have_value("Half typed")
        pages.assert_clean()
    finally:
        pages.close()
        second.stop()


def test_an_open_page_does_not_hold_up_a_restart(
    start_server: Callable[..., LiveServer], pages: Pages, tmp_path: Path
) -> None:
    """The page's reconnect can reach the stopping worker (over an idle keep-alive connection,
    or just before gunicorn closes the listener): that stream must end at once too."""
    db = tmp_path / "deploy.sqlite"
    server = start_server(db=db, env=QUICK_STOP)
    page = pages.open(server.url)
    wait_streams(server, 1)
    pages.allow(restart_noise)
    add(page, "Just before the deploy")
    expect(done_box(page, "Just before the deploy")).to_be_visible(timeout=LIVE)

    server.stop()
    # The worker finished on its own and its exit hook closed the store (a clean SQLite
    # close removes the WAL file); a killed worker leaves both undone.
    assert "Worker exiting" in server.log(), "the worker was killed at the graceful timeout"
    assert not Path(f"{db}-wal").exists(), "the store was not closed: the WAL file is still there"
    pages.assert_clean()
