"""/admin over real sockets (ORION_AUTH=accounts): admins only; the open tab is saved per admin
and survives a reload; a tab switch repaints the open panel's stream; traces, logs and
analytics panels show what the seams recorded.

One server for the module: the first sign-up owns the app, the second is a member.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.accounts import ACCOUNTS, BROWSER, HTML, call, serving, set_role_in_db, sign_up, text_of
from tests.support.server import LiveServer
from tests.support.sse import SSEClient

PASSWORD = "correct horse battery"


@dataclass
class Site:
    server: LiveServer
    owner: str
    member: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serving(tmp_path_factory.mktemp("dashboard"), ACCOUNTS) as server:
        owner = sign_up(server, "owner@example.com", PASSWORD)
        member = sign_up(server, "member@example.com", PASSWORD)
        yield Site(server, owner, member)


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"orion_session={token}"}


def panels(page: str) -> list[str]:
    return re.findall(r'<section id="panel-([a-z]+)"', page)


def switch(site: Site, token: str, tab: str) -> None:
    answer = call(site.server, "POST", "/admin/tab", {"tab": tab}, BROWSER, token=token)
    assert answer.status == 303, answer.text[:300]


def test_only_admins_open_the_dashboard(site: Site) -> None:
    server = site.server
    assert call(server, "GET", "/admin", headers=HTML).headers["location"] == "/signin?next=/admin"
    refused = call(server, "GET", "/admin", headers=HTML, token=site.member)
    assert refused.status == 403 and "Only admins can see the admin dashboard" in refused.text
    assert call(server, "POST", "/admin/tab", {"tab": "logs"}, BROWSER, token=site.member).status == 403
    with SSEClient(server.url + "/admin/live/health", headers=cookie(site.member)) as stream:
        stream.wait_for(lambda e: "Access revoked" in e.elements)
        stream.wait_closed()
    assert "dash-health" not in "".join(e.elements for e in stream.events if "revoked" not in e.elements)


def test_the_open_tab_is_saved_per_admin_and_survives_a_reload(site: Site, tmp_path: Path) -> None:
    server = site.server
    page = call(server, "GET", "/admin", headers=HTML, token=site.owner).text
    assert panels(page) == ["health"] and 'aria-current="page" class="current" data-tab="health"' in page
    assert "Event-loop lag" in page and "Open streams" in page
    switch(site, site.owner, "audit")
    page = call(server, "GET", "/admin", headers=HTML, token=site.owner).text
    assert panels(page) == ["audit"]  # only the open panel is in the page
    assert "dashboard.tab" in page  # the switch itself was a journaled command
    # Another admin has a dashboard state of their own.
    other = sign_up(server, "second-admin@example.com", PASSWORD)
    set_role_in_db(server, "second-admin@example.com", "admin")
    assert panels(call(server, "GET", "/admin", headers=HTML, token=other).text) == ["health"]
    assert call(server, "POST", "/admin/tab", {"tab": "nope"}, BROWSER, token=site.owner).status == 422


def test_a_tab_switch_repaints_the_open_panel_stream(site: Site) -> None:
    switch(site, site.owner, "health")
    with SSEClient(site.server.url + "/admin/live/health", headers=cookie(site.owner)) as stream:
        first = stream.wait_for(lambda e: 'id="dash-shell"' in e.elements)
        assert 'id="panel-health"' in first.elements
        stream.wait_for(lambda e: 'id="dash-health"' in e.elements)
        switch(site, site.owner, "traces")
        shell = stream.wait_for(lambda e: 'id="panel-traces"' in e.elements, start=len(stream.events))
        # The new container opens the traces panel's own stream (Datastar aborts this one).
        assert "@get(&#39;/admin/live/traces&#39;" in shell.elements or "@get('/admin/live/traces'" in shell.elements
        assert (
            "requestCancellation: &#39;cleanup&#39;" in shell.elements
            or "requestCancellation: 'cleanup'" in shell.elements
        )


def test_a_request_can_be_followed_to_its_span_tree(site: Site) -> None:
    server = site.server
    call(server, "GET", "/", headers=HTML, token=site.owner)
    line = _last_line(server, "/")
    tree = call(server, "GET", f"/admin/traces/{line['trace_id']}", headers=HTML, token=site.owner)
    assert tree.status == 200
    assert "GET /" in tree.text and "sql query" in tree.text and line["trace_id"] in tree.text
    # The audit journal's request id finds the same trace.
    assert call(server, "GET", f"/admin/traces/{line['request_id']}", headers=HTML, token=site.owner).status == 200
    missing = call(server, "GET", "/admin/traces/" + "f" * 32, headers=HTML, token=site.owner)
    assert missing.status == 404 and "not in memory" in missing.text
    # Shown in the Traces tab (saved like the tab).
    switch(site, site.owner, "traces")
    assert call(server, "POST", "/admin/trace", {"trace": line["trace_id"]}, BROWSER, token=site.owner).status == 303
    page = call(server, "GET", "/admin", headers=HTML, token=site.owner).text
    assert f'data-trace="{line["trace_id"]}"' in page and "span-tree" in page


def test_the_logs_tab_filters_the_canonical_lines(site: Site) -> None:
    server = site.server
    call(server, "GET", "/no-such-page", headers=HTML, token=site.owner)
    _last_line(server, "/no-such-page")
    switch(site, site.owner, "logs")
    answer = call(
        server, "POST", "/admin/logs", {"q": "status>=400 route!=/admin/live/<tab>"}, BROWSER, token=site.owner
    )
    assert answer.status == 303
    page = call(server, "GET", "/admin", headers=HTML, token=site.owner).text
    assert panels(page) == ["logs"] and 'value="status&gt;=400 route!=/admin/live/&lt;tab&gt;"' in page
    lines = page.split('id="logs-lines"', 1)[1]
    assert "/no-such-page" in lines and "404" in lines
    assert "owner@example.com" not in lines  # lines hold user ids, and emails are masked anyway


def test_the_analytics_tab_counts_sign_ups(site: Site) -> None:
    switch(site, site.owner, "analytics")
    deadline = time.monotonic() + 5
    while True:
        text = text_of(call(site.server, "GET", "/admin", headers=HTML, token=site.owner).text)
        if "signed_up 3 3" in text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "signed_up 3 3" in text, text[:2000]
    assert "Funnel" in text and "Weekly retention" in text


def _last_line(server: LiveServer, path: str) -> dict[str, object]:
    deadline = time.monotonic() + 3
    while True:
        lines = [json.loads(raw) for raw in server.log().splitlines() if raw.startswith('{"ts"')]
        found = [line for line in lines if line.get("path") == path]
        if found or time.monotonic() > deadline:
            assert found, f"no canonical line for {path}"
            return found[-1]
        time.sleep(0.05)
