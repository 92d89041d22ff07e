"""The architecture console in a real browser: a person picks a persona, looks around, probes
a workspace that is not theirs, and watches another person's change land live."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages
from tests.support.accounts import BROWSER, call
from tests.support.server import LiveServer

pytestmark = pytest.mark.e2e

DEMO = {"ORION_AUTH": "accounts", "ORION_TENANCY": "db", "ORION_DEMO": "1"}


def test_switch_to_alice_probe_acme_and_watch_bobs_todo_arrive(
    start_server: Callable[..., LiveServer], pages: Pages
) -> None:
    server = start_server(env=DEMO)
    console = pages.open(server.url + "/console")
    expect(console.locator("#console-you")).to_contain_text("Nobody is signed in")

    # The persona switcher signs this browser in as alice (a new session, like a sign-in).
    console.get_by_role("button", name="Sign in as Alice").click()
    expect(console.locator("#console-you")).to_contain_text("You are Alice.")
    expect(console.get_by_role("link", name="Home")).to_be_visible()

    # Her workspace: its todos, served by its own store, and the x-ray footer says so.
    console.get_by_role("link", name="Home").click()
    expect(console.get_by_role("checkbox", name="Done: Water the plants")).to_be_visible()
    xray = console.locator("#todo-xray")
    expect(xray).to_contain_text("workspace home home.sqlite")
    expect(xray).to_contain_text("role owner")
    expect(xray).to_contain_text("delete todos: allowed")

    console.get_by_role("link", name="Open the architecture console").click()
    home_count = console.locator("#store-home .count")
    expect(home_count).to_have_text("3")
    opened = console.locator("[data-open]")
    open_before = opened.inner_text()

    # acme is not hers: the gate refuses, as a toast, and no workspace store was opened.
    console.get_by_role("button", name="Probe acme").click()
    expect(console.get_by_role("alert")).to_contain_text("The gate said no: Alice is not a member of acme")
    expect(console.locator("[data-refused]")).to_have_text("1")
    expect(opened).to_have_text(open_before)

    # A second browser, signed in as bob (a member of home), adds a todo there...
    answer = call(server, "POST", "/console/persona/bob", {}, BROWSER)
    assert answer.status == 303 and answer.token
    bob = pages.open(server.url + "/w/home/", session=answer.token)
    expect(bob.locator("#todo-xray")).to_contain_text("role member")
    expect(bob.get_by_role("button", name=re.compile("^Delete "))).to_have_count(0)  # members cannot delete
    bob.get_by_role("textbox", name="New todo").fill("Buy oat milk")
    bob.get_by_role("textbox", name="New todo").press("Enter")
    expect(bob.get_by_role("checkbox", name="Done: Buy oat milk")).to_be_visible()

    # ...and alice's console follows: the fan-out over the tenant stores counts it, and the
    # store-call feed shows the insert landing in home.
    expect(home_count).to_have_text("4", timeout=3_000)
    expect(console.locator("#console-feed")).to_contain_text("INSERT INTO todos", timeout=3_000)
    pages.assert_clean()
