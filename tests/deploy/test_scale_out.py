"""Rung 2, shown with the real parts: two app processes (real gunicorn + gevent) sharing one
SQLite file and one real redis-server, and a gunicorn with two workers on the Redis bus.

Each process gets its own audit mirror (ORION_AUDIT_JSONL): the table is the journal, and
each mirror is a full copy of it (see README "Scale out").

A stream also re-reads its regions at every heartbeat, so a heartbeat would repaint the other
process's viewers even with no bus at all. The servers here beat every 30 s, far above the
time a change is given to arrive: only the Redis bus can deliver it in time. So that the
end of a test does not wait for a heartbeat to notice the clients left, each test stops its
servers itself (SIGTERM ends every stream at once).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import psutil
import pytest

from tests.support.redis import RedisServer
from tests.support.server import LiveServer
from tests.support.sse import SSEClient

#: How long a change may take to reach a viewer on the other process (generous: CI is shared).
LIVE = 5.0
#: After Redis comes back: its listener's backoff tops out at 2 s, plus the repaint.
RECOVER = 15.0
HEARTBEAT = "30"


def redis_env(redis: RedisServer, name: str, tmp_path: Path) -> dict[str, str]:
    return {
        "ORION_BUS": "redis",
        "ORION_REDIS_URL": redis.url,
        "ORION_AUDIT_JSONL": str(tmp_path / f"audit-{name}.jsonl"),
        "ORION_HEARTBEAT": HEARTBEAT,
    }


def post_todo(server: LiveServer, title: str) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/todos", json.dumps({"title": title}), {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 204, (response.status, response.read()[:300])
    finally:
        conn.close()


@pytest.fixture
def pair(
    redis_server: RedisServer, start_server: Callable[..., LiveServer], tmp_path: Path
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Processes A and B: one database file, one Redis, one worker each (Redis outlives them)."""
    db = tmp_path / "app.sqlite"
    a = start_server(env=redis_env(redis_server, "a", tmp_path), db=db)
    b = start_server(env=redis_env(redis_server, "b", tmp_path), db=db)
    yield a, b
    for server in (a, b):
        assert server.stop() == 0, server.log()[-2000:]


def test_a_command_on_process_a_repaints_viewers_on_both_processes(pair: tuple[LiveServer, LiveServer]) -> None:
    a, b = pair
    with SSEClient(b.url + "/todos/live") as on_b, SSEClient(a.url + "/todos/live") as on_a:
        for viewer in (on_a, on_b):
            viewer.wait_for(lambda e: 'id="todo-list"' in e.elements)
        post_todo(a, "Posted to A")
        on_b.wait_for(lambda e: "Posted to A" in e.elements, timeout=LIVE)
        on_a.wait_for(lambda e: "Posted to A" in e.elements, timeout=LIVE)  # its own publish, via Redis
        post_todo(b, "Posted to B")
        on_a.wait_for(lambda e: "Posted to B" in e.elements, timeout=LIVE)


def test_killing_and_restarting_redis_loses_no_final_state(
    pair: tuple[LiveServer, LiveServer], redis_server: RedisServer
) -> None:
    a, b = pair
    with SSEClient(b.url + "/todos/live") as on_b:
        on_b.wait_for(lambda e: 'id="todo-list"' in e.elements)
        post_todo(a, "Before the outage")
        on_b.wait_for(lambda e: "Before the outage" in e.elements, timeout=LIVE)

        # 1. A write that publishes nothing at all (behind the app's back: a restore, a script)
        #    reaches B only through the wake-all on reconnect.
        redis_server.kill()
        with closing(sqlite3.connect(a.db, timeout=5)) as conn, conn:
            conn.execute("INSERT INTO todos (title) VALUES ('Written while Redis was down')")
        time.sleep(0.5)
        redis_server.start()
        on_b.wait_for(lambda e: "Written while Redis was down" in e.elements, timeout=RECOVER)

        # 2. A command during an outage still succeeds (publishing never waits on Redis) and
        #    its change is on B's screen once Redis is back.
        redis_server.kill()
        post_todo(a, "Posted while Redis was down")
        time.sleep(0.5)
        redis_server.start()
        last = on_b.wait_for(lambda e: "Posted while Redis was down" in e.elements, timeout=RECOVER)
        assert "Written while Redis was down" in last.elements and "Before the outage" in last.elements

        # 3. And live updates go on as before.
        post_todo(b, "After the outages")
        on_b.wait_for(lambda e: "After the outages" in e.elements, timeout=LIVE)


def worker_connections(server: LiveServer) -> dict[int, int]:
    """Established connections on the server's port, per gunicorn worker pid."""
    assert server.proc is not None
    counts = {}
    for worker in psutil.Process(server.proc.pid).children():
        counts[worker.pid] = sum(
            1
            for c in worker.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port
        )
    return counts


def test_two_workers_start_on_the_redis_bus_and_a_change_through_one_reaches_streams_on_both(
    redis_server: RedisServer, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    env = {**redis_env(redis_server, "w", tmp_path), "ORION_WORKERS": "2"}
    server = start_server(env=env, db=tmp_path / "fresh.sqlite")  # both workers migrate one new file
    assert server.proc is not None
    assert len(psutil.Process(server.proc.pid).children()) == 2
    viewers: list[SSEClient] = []
    try:
        # The kernel hands each connection to whichever worker accepts first: open streams
        # until both workers hold some.
        for _ in range(60):
            viewer = SSEClient(server.url + "/todos/live")
            viewers.append(viewer)
            viewer.wait_for(lambda e: 'id="todo-list"' in e.elements)
            held = worker_connections(server)
            if len(viewers) >= 4 and all(held.values()):
                break
        held = worker_connections(server)
        assert len(held) == 2 and all(held.values()), f"streams did not land on both workers: {held}"
        post_todo(server, "One post, every worker")
        for viewer in viewers:
            viewer.wait_for(lambda e: "One post, every worker" in e.elements, timeout=LIVE)
    finally:
        for viewer in viewers:
            viewer.close()
        assert server.stop() == 0, server.log()[-2000:]


def test_an_unknown_bus_is_refused_at_boot_with_the_choices(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.support.server import ROOT

    env = {**os.environ, "ORION_DB": str(tmp_path / "app.sqlite"), "ORION_BUS": "rabbit"}
    proc = subprocess.run(
        [sys.executable, "-c", "from app import create_app; create_app()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "ORION_BUS='rabbit' is not a bus" in proc.stderr
    assert "'redis'" in proc.stderr and "ORION_REDIS_URL" in proc.stderr
