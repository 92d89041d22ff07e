"""The development guards in a real browser: the error overlay (region oracle and failing
commands) appears in development and never in production, and the debug panel outlines
what a patch changed."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Pages
from tests.support.server import LiveServer

pytestmark = pytest.mark.e2e

LIVE = 2_000
OVERLAY = "#orion-error-overlay"
#: On a loaded machine the hub can stall past the default 200 ms, and in development the stall
#: banner then covers the page: these tests are about the other guards.
CALM = {"ORION_STALL_MS": "5000"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LiveServer]]:
    """The test app (create_app() plus tests/support/dev_app.py's pages), once per ORION_ENV."""
    started: dict[str, LiveServer] = {}
    folder = tmp_path_factory.mktemp("dev-e2e")
    try:
        for env in ("development", "production"):
            started[env] = LiveServer(
                folder / f"{env}.sqlite", env={"ORION_ENV": env, **CALM}, app="tests.support.dev_app:app"
            ).start()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def serve(servers: dict[str, LiveServer]) -> Callable[[str], LiveServer]:
    return servers.__getitem__


def poke(page: Page, server: LiveServer) -> None:
    server.wait_for(lambda s: s["streams"] == 1, timeout=5, what="this page's stream (only)")
    wakes = server.stats()["live"]["wakes"]
    page.get_by_role("button", name="Poke").click()
    # The publish has reached the stream once the wake is counted.
    server.wait_for(lambda s: s["live"]["wakes"] > wakes, timeout=5, what="the stream to wake")


@pytest.mark.parametrize("env", ["development", "production"])
def test_an_impure_view_raises_the_overlay_only_in_development(
    env: str, serve: Callable[[str], LiveServer], pages: Pages
) -> None:
    server = serve(env)
    page = pages.open(server.url + "/devcheck/impure")
    poke(page, server)
    if env == "development":
        overlay = page.locator(OVERLAY)
        expect(overlay).to_be_visible(timeout=LIVE)
        expect(overlay).to_contain_text("The view is not a pure function of its model")
        expect(overlay).to_contain_text("Region 'impure'")
        overlay.get_by_role("button", name="Dismiss").click()
        expect(overlay).to_have_count(0)
    else:
        page.wait_for_timeout(500)
        expect(page.locator(OVERLAY)).to_have_count(0)
    pages.assert_clean()


def test_a_pure_view_stays_silent_in_development(serve: Callable[[str], LiveServer], pages: Pages) -> None:
    server = serve("development")
    page = pages.open(server.url + "/devcheck/pure")
    unchanged = server.stats()["live"]["unchanged"]
    poke(page, server)
    page.get_by_role("button", name="Poke").click()
    server.wait_for(
        lambda s: s["live"]["unchanged"] >= unchanged + 2, timeout=5, what="two unchanged wakes (oracle ran)"
    )
    page.wait_for_timeout(300)
    expect(page.locator(OVERLAY)).to_have_count(0)
    pages.assert_clean()


@pytest.mark.parametrize("env", ["development", "production"])
def test_a_failing_command_shows_its_stack_only_in_development(
    env: str, serve: Callable[[str], LiveServer], pages: Pages
) -> None:
    server = serve(env)
    page = pages.open(server.url + "/devcheck/pure")
    if env == "production":
        # The Datastar client logs the 500 it got; the page shows nothing of it.
        pages.allow(lambda text: "500" in text)
    page.get_by_role("button", name="Boom").click()
    if env == "development":
        overlay = page.locator(OVERLAY)
        expect(overlay).to_be_visible(timeout=LIVE)
        expect(overlay).to_contain_text("ZeroDivisionError: the handler divided by zero")
        expect(overlay).to_contain_text("POST /devcheck/boom")
    else:
        page.wait_for_timeout(700)
        expect(page.locator(OVERLAY)).to_have_count(0)
        assert "ZeroDivisionError" not in page.content()
    pages.assert_clean()


def test_the_debug_panel_outlines_what_a_change_elsewhere_patched(
    start_server: Callable[..., LiveServer], pages: Pages
) -> None:
    server = start_server(env={"ORION_AUTH": "local", "ORION_ENV": "development", **CALM})
    page = pages.open(server.url)
    server.wait_for(lambda s: s["streams"] == 1, timeout=5, what="the page's stream")
    expect(page.locator("#orion-debug-panel")).to_have_count(0)
    page.keyboard.press("Alt+d")
    panel = page.locator("#orion-debug-panel")
    expect(panel).to_have_text("patches: 0")

    # A change made elsewhere (an API client): the list that changed is outlined, for 700 ms.
    req = urllib.request.Request(
        server.url + "/todos",
        data=json.dumps({"title": "Seen by the panel"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 204
    patched = page.locator('#todo-list[data-orion-patched="1"], #todo-list [data-orion-patched="1"]')
    expect(patched.first).to_be_attached(timeout=LIVE)
    expect(page.locator('#todo-new [data-orion-patched="1"]')).to_have_count(0)  # only what changed
    expect(page.get_by_role("checkbox", name="Done: Seen by the panel")).to_be_visible()
    expect(panel).not_to_have_text("patches: 0")
    expect(page.locator("[data-orion-patched]")).to_have_count(0, timeout=LIVE)  # the outline fades

    page.keyboard.press("Alt+d")
    expect(panel).to_have_count(0)
    pages.assert_clean()
