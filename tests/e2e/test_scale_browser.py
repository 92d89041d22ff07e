"""Rung 2 in real browsers: two app processes (gunicorn + gevent each) share one SQLite file
and one real redis-server; a person on process A and a person on process B see each other's
changes, and a Redis crash mid-session leaves B's screen current once Redis is back.

A stream also re-reads its regions at every heartbeat, which would repaint B with no bus at
all: the servers beat every 30 s here, so only the Redis bus can make the deadlines. The test
closes its pages and stops its servers itself, so that nothing waits for a heartbeat to
notice the pages left.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Pages
from tests.support.redis import RedisServer
from tests.support.server import LiveServer

pytestmark = pytest.mark.e2e

#: How soon (ms) a change made on one process must show in a browser on the other.
LIVE = 5_000
#: After Redis comes back (its listener's backoff tops out at 2 s), plus the repaint.
RECOVER = 15_000


def add(page: Page, title: str) -> None:
    box = page.get_by_role("textbox", name="New todo")
    box.fill(title)
    box.press("Enter")
    expect(box).to_have_value("", timeout=LIVE)  # the command answered: the input was reset


def todo(page: Page, title: str) -> Locator:
    return page.get_by_role("checkbox", name=f"Done: {title}", exact=True)


def test_browsers_on_two_processes_stay_in_sync_through_a_redis_crash(
    redis_server: RedisServer, start_server: Callable[..., LiveServer], pages: Pages, tmp_path: Path
) -> None:
    db = tmp_path / "app.sqlite"
    env = {"ORION_BUS": "redis", "ORION_REDIS_URL": redis_server.url, "ORION_HEARTBEAT": "30"}
    a = start_server(env={**env, "ORION_AUDIT_JSONL": str(tmp_path / "audit-a.jsonl")}, db=db)
    b = start_server(env={**env, "ORION_AUDIT_JSONL": str(tmp_path / "audit-b.jsonl")}, db=db)
    on_a, on_b = pages.open(a.url), pages.open(b.url)
    for server in (a, b):
        server.wait_for(lambda s: s["streams"] == 1, timeout=5, what="the page's stream open")

    add(on_a, "Added on A")
    expect(todo(on_b, "Added on A")).to_be_visible(timeout=LIVE)
    todo(on_b, "Added on A").check()
    expect(todo(on_a, "Added on A")).to_be_checked(timeout=LIVE)

    redis_server.kill()
    add(on_a, "Added while Redis was down")  # commands go on: publishing never waits on Redis
    redis_server.start()
    expect(todo(on_b, "Added while Redis was down")).to_be_visible(timeout=RECOVER)
    expect(on_b.locator("#todo-status")).to_contain_text("1 of 2 remaining", timeout=LIVE)

    add(on_b, "Added on B after the crash")
    expect(todo(on_a, "Added on B after the crash")).to_be_visible(timeout=LIVE)
    pages.assert_clean()
    pages.close()
    for server in (a, b):
        assert server.stop() == 0
