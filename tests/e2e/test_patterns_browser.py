"""The vendored patterns at work on /patterns, in real browsers: presence across two people,
the combobox by keyboard, server-driven tabs, the modal, the inline editor's two checks, a toast."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Pages
from tests.support.accounts import sign_up
from tests.support.server import LiveServer

pytestmark = pytest.mark.e2e

#: How soon (ms) a change made in one browser must show in another.
LIVE = 2_000
#: A closed tab is noticed at the stream's next heartbeat (1 s in tests); its write fails then.
GONE = 5_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One self-host server for the tests that need no second person (each makes its own pages)."""
    server = LiveServer(tmp_path_factory.mktemp("patterns-e2e") / "app.sqlite").start()
    try:
        yield server
        server.wait_for(lambda s: s["streams"] == 0, timeout=3.5, what="every page's stream closed")
    finally:
        server.stop()


def avatars(page: Page) -> list[str]:
    return page.locator("#patterns-presence .avatar .visually-hidden").all_inner_texts()


def test_presence_shows_two_viewers_and_drops_one_when_its_tab_closes(
    start_server: Callable[..., LiveServer], pages: Pages
) -> None:
    server = start_server(env={"ORION_AUTH": "accounts"})
    ann = sign_up(server, "ann@example.com", "ann password 1", name="Ann")
    bob = sign_up(server, "bob@example.com", "bob password 1", name="Bob")

    a = pages.open(server.url + "/patterns", session=ann)
    expect(a.locator("#patterns-presence")).to_contain_text("1 here", timeout=LIVE)
    b = pages.open(server.url + "/patterns", session=bob)
    for page in (a, b):
        expect(page.locator("#patterns-presence")).to_contain_text("2 here", timeout=LIVE)
        assert avatars(page) == ["Ann", "Bob"]
    expect(a.get_by_role("list", name="Who is here").get_by_title("Bob")).to_have_text(re.compile("B"))

    b.close()
    expect(a.locator("#patterns-presence")).to_contain_text("1 here", timeout=GONE)
    assert avatars(a) == ["Ann"]
    pages.assert_clean()


def test_the_combobox_finds_options_in_sqlite_and_is_driven_by_keyboard(demo: LiveServer, pages: Pages) -> None:
    server = demo
    page = pages.open(server.url + "/patterns")
    server.wait_for(lambda s: s["streams"] == 1, timeout=5, what="this page's stream (only)")
    box = page.get_by_role("combobox", name="City")
    expect(box).to_have_attribute("aria-expanded", "false")
    box.press_sequentially("pa", delay=30)
    listbox = page.get_by_role("listbox", name="City")
    expect(listbox.get_by_role("option")).to_have_text(["Paris", "São Paulo"], timeout=LIVE)
    expect(box).to_have_attribute("aria-expanded", "true")

    box.press("ArrowDown")
    expect(box).to_have_attribute("aria-activedescendant", "city-opt-0")
    expect(listbox.get_by_role("option", name="Paris")).to_have_attribute("aria-selected", "true")
    box.press("ArrowDown")
    expect(box).to_have_attribute("aria-activedescendant", "city-opt-1")
    box.press("ArrowDown")  # the last option stays active
    expect(box).to_have_attribute("aria-activedescendant", "city-opt-1")
    box.press("Enter")
    expect(box).to_have_value("São Paulo")
    expect(listbox).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "false")
    expect(box).to_be_focused()

    box.fill("")
    box.press_sequentially("zz", delay=30)
    expect(listbox).to_contain_text("No match for “zz”", timeout=LIVE)
    box.press("Escape")
    expect(listbox).to_be_hidden()
    pages.assert_clean()


def test_tabs_are_server_state_in_the_url_and_follow_the_arrow_keys(demo: LiveServer, pages: Pages) -> None:
    server = demo
    page = pages.open(server.url + "/patterns")
    panel = page.get_by_role("tabpanel")
    expect(page.get_by_role("tab", name="The loop")).to_have_attribute("aria-selected", "true")

    page.get_by_role("tab", name="Seams").click()
    expect(page.get_by_role("tab", name="Seams")).to_have_attribute("aria-selected", "true", timeout=LIVE)
    expect(panel).to_contain_text("Each seam is small")
    assert page.url.endswith("/patterns?tab=seams")

    page.get_by_role("tab", name="Seams").press("ArrowRight")
    expect(page.get_by_role("tab", name="Cities")).to_have_attribute("aria-selected", "true", timeout=LIVE)
    expect(panel).to_contain_text("51 cities")  # rendered from SQLite by the server
    expect(page.get_by_role("tab", name="Cities")).to_be_focused()

    page.reload()  # the server renders the same tab from the URL
    expect(page.get_by_role("tab", name="Cities")).to_have_attribute("aria-selected", "true")
    pages.assert_clean()


def test_the_modal_body_is_served_when_asked_and_removed_when_closed(demo: LiveServer, pages: Pages) -> None:
    server = demo
    page = pages.open(server.url + "/patterns")
    expect(page.get_by_role("dialog")).to_have_count(0)
    page.get_by_role("link", name="About these patterns").click()
    dialog = page.get_by_role("dialog", name="About these patterns")
    expect(dialog).to_be_visible(timeout=LIVE)
    expect(dialog).to_contain_text("rendered by the server when you asked for it")
    assert page.evaluate("document.querySelector('dialog').matches(':modal')")
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)

    page.get_by_role("link", name="About these patterns").click()  # and again
    expect(dialog).to_be_visible(timeout=LIVE)
    dialog.get_by_role("button", name="Close").click()
    expect(page.locator("dialog")).to_have_count(0)
    pages.assert_clean()


def test_inline_edit_checks_in_the_browser_then_on_the_server_then_repaints_everyone(
    demo: LiveServer, pages: Pages
) -> None:
    server = demo
    a, b = pages.open(server.url + "/patterns"), pages.open(server.url + "/patterns")
    server.wait_for(lambda s: s["streams"] == 2, timeout=5, what="the two pages' streams (only)")
    editor = a.locator("#demo-name")
    field = a.get_by_role("textbox", name="Display name")
    expect(field).to_be_hidden()
    a.get_by_role("button", name="Edit Display name").click()
    expect(field).to_be_visible()
    expect(field).to_be_focused()

    # 1. The browser's own check, surfaced through a signal: nothing is sent.
    field.fill("")
    a.get_by_role("button", name="Save").click()
    check = a.locator("#demo-name-form-name-check")
    expect(check).not_to_be_empty()
    expect(field).to_have_attribute("aria-invalid", "true")
    field.fill("Grace")  # typing keeps the message current: valid now, so it clears
    expect(check).to_be_empty()

    # 2. The server's check, for what the browser cannot know.
    field.fill("root")
    a.get_by_role("button", name="Save").click()
    expect(a.locator("#demo-name-form-name-error")).to_have_text(
        "'root' is reserved; pick another display name.", timeout=LIVE
    )
    expect(b.locator("#demo-name .value")).to_have_text("Ada Lovelace")

    # 3. A good value: the editor closes and every viewer sees it.
    field.fill("Grace Hopper")
    field.press("Enter")
    expect(editor.locator(".value")).to_have_text("Grace Hopper", timeout=LIVE)
    expect(field).to_be_hidden()
    expect(a.locator("#demo-name-form-name-error")).to_be_empty()
    expect(b.locator("#demo-name .value")).to_have_text("Grace Hopper", timeout=LIVE)
    pages.assert_clean()


def test_a_toast_reaches_only_the_requester(demo: LiveServer, pages: Pages) -> None:
    server = demo
    a, b = pages.open(server.url + "/patterns"), pages.open(server.url + "/patterns")
    a.get_by_role("button", name="Say hello").click()
    expect(a.get_by_role("status").filter(has_text="Hello!")).to_be_visible(timeout=LIVE)
    b.wait_for_timeout(300)
    expect(b.locator(".toast")).to_have_count(0)
    pages.assert_clean()
