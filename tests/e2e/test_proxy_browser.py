"""deploy/nginx.conf in front of the app, with a real browser: HTTP/2 is what lets one
browser keep many tabs live. Over HTTP/1.1 Chromium opens at most 6 connections per origin,
and each open tab holds one stream; over h2 all of them share one connection.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.support.proxy import Proxy, missing_tools
from tests.support.server import LiveServer

pytestmark = pytest.mark.e2e

TABS = 8  # more than HTTP/1.1's 6 connections per origin
LIVE = 5_000


def test_eight_tabs_of_one_browser_stay_live_through_the_proxy_over_http2(
    start_server: Callable[..., LiveServer], browser: Browser, tmp_path: Path
) -> None:
    problem = missing_tools()
    if problem:
        pytest.fail(problem)
    app = start_server(env={"ORION_PROXIES": "1"})
    folder = tmp_path / "nginx"
    folder.mkdir()
    proxy = Proxy(folder, app.port).start()
    errors: list[str] = []
    context = browser.new_context(ignore_https_errors=True)  # the test's self-signed certificate
    try:
        tabs = []
        for _ in range(TABS):
            tab = context.new_page()
            tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.goto(proxy.https_url)
            tabs.append(tab)
        protocol = tabs[0].evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
        assert protocol == "h2"
        app.wait_for(lambda s: s["streams"] == TABS, timeout=10, what=f"{TABS} streams, one per tab")

        box = tabs[0].get_by_role("textbox", name="New todo")
        box.fill("Seen in every tab")
        box.press("Enter")
        for tab in tabs:
            expect(tab.get_by_role("checkbox", name="Done: Seen in every tab", exact=True)).to_be_visible(timeout=LIVE)
        assert not errors, errors
    finally:
        context.close()  # before the proxy goes, so no tab logs a dropped stream
        app.wait_for(lambda s: s["streams"] == 0, timeout=8, what="streams closed with the tabs")
        proxy.stop()
