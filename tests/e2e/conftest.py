"""Browser fixtures: one headless Chromium per session, fresh contexts ("browsers") per test.

Playwright's sync API runs its own greenlet and event loop: this process is not
gevent-patched and must stay so (never import gevent.monkey here). The app under test runs
in its own gunicorn/gevent process (``server`` / ``start_server`` in tests/conftest.py).

Every page a test opens records its console errors and uncaught page errors; a test ends with
``pages.assert_clean()``, and the fixture checks again on the way out.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.support.server import LiveServer

CHROMIUM = os.environ.get("ORION_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.skip(
            f"no Chromium at {CHROMIUM!r}: run 'make system' (apt-get install -y chromium) "
            "or set ORION_CHROMIUM to a Chromium binary"
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@dataclass
class Pages:
    """Opens pages, each in its own context, and collects what went wrong in any of them."""

    browser: Browser
    errors: list[str] = field(default_factory=list)
    #: Console errors a test expects (e.g. "connection refused" while the server restarts).
    allowed: list[Callable[[str], bool]] = field(default_factory=list)
    _contexts: list[Any] = field(default_factory=list)

    def open(self, url: str, *, javascript: bool = True, session: str | None = None) -> Page:
        """A page in a new browser; ``session`` signs it in (the orion_session cookie)."""
        context = self.browser.new_context(java_script_enabled=javascript, viewport={"width": 720, "height": 640})
        if session is not None:
            context.add_cookies([{"name": "orion_session", "value": session, "url": url}])
        self._contexts.append(context)
        page = context.new_page()
        name = f"page {len(self._contexts)}"
        page.on("console", lambda msg: self._console(name, msg))
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: uncaught {exc}"))
        page.goto(url)
        return page

    def allow(self, predicate: Callable[[str], bool]) -> None:
        self.allowed.append(predicate)

    def _console(self, name: str, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        text, url = msg.text, msg.location.get("url") or ""
        if any(ok(text) for ok in self.allowed):
            return
        self.errors.append(f"{name}: console error {text!r} at {url}")

    def assert_clean(self) -> None:
        errors, self.errors = self.errors, []
        assert not errors, "the pages logged errors:\n" + "\n".join(errors)

    def close(self) -> None:
        for context in self._contexts:
            context.close()
        self._contexts.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed or hasattr(report, "wasxfail")
    return report


_CALL_FAILED = pytest.StashKey[bool]()


#: The self-host mode: one identity (the owner), no sign-in. These tests are about the todos
#: page; signing in is the accounts feature's to test.
SELF_HOST = {"ORION_AUTH": "local"}


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(env=SELF_HOST)


@pytest.fixture
def pages(request: pytest.FixtureRequest, browser: Browser, start_server: Any) -> Iterator[Pages]:
    """Depends on ``start_server`` so that every page closes before the servers' leak check."""
    opened = Pages(browser)
    try:
        yield opened
    finally:
        opened.close()
    # A safety net for a test that forgot ``assert_clean()``; a failed test already said why.
    if not request.node.stash.get(_CALL_FAILED, False):
        opened.assert_clean()
