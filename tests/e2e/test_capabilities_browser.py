"""Capabilities repaint live in real browsers: flip a flag in one tab, upgrade the plan in
another, and watch a second open tab follow with no reload and no client code of ours."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import SELF_HOST, Pages
from tests.support.server import LiveServer
from tests.support.stripe import StripeStandIn

pytestmark = pytest.mark.e2e

#: The issue's bound: a gated region follows within a second.
FOLLOW = 1_000
SECRET = "whsec_browser_test"


def wait_streams(server: LiveServer, count: int) -> None:
    server.wait_for(lambda s: s["streams"] == count, timeout=5, what=f"{count} open stream(s)")


def test_flipping_a_flag_shows_and_hides_the_stats_line_in_another_tab(
    start_server: Callable[..., LiveServer], pages: Pages
) -> None:
    server = start_server(env=SELF_HOST)
    todos = pages.open(server.url)
    admin = pages.open(server.url + "/admin/flags")
    wait_streams(server, 2)
    stats = todos.locator("#todo-stats")
    expect(stats).to_be_hidden()

    admin.get_by_role("button", name="Turn todos.stats on").click()
    expect(stats).to_be_visible(timeout=FOLLOW)
    expect(stats).to_have_text("0% done: 0 of 0 completed")
    # The admin's own page repainted too: the button now turns it off.
    admin.get_by_role("button", name="Turn todos.stats off").click()
    expect(stats).to_be_hidden(timeout=FOLLOW)

    # Rolled out to 0% but targeted at this viewer: on for them alone.
    admin.get_by_role("spinbutton", name="Rollout percent of todos.stats").fill("0")
    admin.locator("#flag-0-p").get_by_role("button", name="Set").click()
    admin.get_by_role("textbox", name="On for (todos.stats)").fill("role:owner")
    admin.locator("#flag-0-g").get_by_role("button", name="Save").click()
    admin.get_by_role("button", name="Turn todos.stats on").click()
    expect(stats).to_be_visible(timeout=FOLLOW)
    pages.assert_clean()


def test_upgrading_shows_the_export_link_in_the_other_open_tab(
    start_server: Callable[..., LiveServer], pages: Pages
) -> None:
    with StripeStandIn(webhook_secret=SECRET) as stripe:
        server = start_server(
            env={
                **SELF_HOST,
                "ORION_BILLING": "stripe",
                "ORION_STRIPE_SECRET": "sk_test_browser",
                "ORION_STRIPE_WEBHOOK_SECRET": SECRET,
                "ORION_STRIPE_PRICES": "pro=price_pro",
                "ORION_STRIPE_API": stripe.url,
            }
        )
        stripe.app_url = server.url
        todos = pages.open(server.url)
        billing = pages.open(server.url + "/billing")
        wait_streams(server, 2)
        export = todos.get_by_role("link", name="Export (CSV)")
        expect(export).to_have_count(0)
        expect(billing.locator(".plan")).to_have_text("free")

        # Upgrade: the button goes to the (stand-in) checkout, which "pays" and sends the
        # customer back; the webhook lands, and both tabs follow.
        billing.get_by_role("button", name="Upgrade to Pro").click()
        billing.wait_for_url("**/billing?checkout=done")
        expect(billing.get_by_role("status")).to_contain_text("Thank you")
        expect(billing.locator(".plan")).to_have_text("pro", timeout=FOLLOW)
        expect(export).to_be_visible(timeout=FOLLOW)
        assert stripe.webhooks == [(200, "applied: account local is on pro\n")]
        pages.assert_clean()
