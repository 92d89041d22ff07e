"""Shared fixtures: a live gunicorn/gevent server per test, and the leak check."""

from __future__ import annotations

import gc
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest

from app.belt.store import open_stores
from tests.support.redis import INSTALL_HINT, RedisServer
from tests.support.server import LiveServer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start one or more real servers (gunicorn, gevent worker) on free loopback ports."""
    servers: list[LiveServer] = []

    def start(env: dict[str, str] | None = None, db: Path | None = None) -> LiveServer:
        server = LiveServer(db or tmp_path / f"app-{len(servers)}.sqlite", env=env)
        servers.append(server)
        return server.start()

    yield start
    try:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                # Leak check across the process boundary: every stream a test opened is
                # gone once its client went away (heartbeat is 1 s in tests).
                server.wait_for(
                    lambda s: s["streams"] == 0 and s["subscribers"] == 0,
                    timeout=3.5,
                    what="streams and subscriptions back to zero after the test",
                )
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of the test's own, on a free port (the Redis bus, rung 2)."""
    if not shutil.which("redis-server"):
        pytest.fail(INSTALL_HINT)  # never skipped: rung 2 must be shown working
    redis = RedisServer(tmp_path).start()
    try:
        yield redis
    finally:
        redis.stop()


def _greenlets() -> set[int]:
    return {id(o) for o in gc.get_objects() if isinstance(o, gevent.Greenlet) and not o.dead}


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """No store, connection or greenlet a test opened in this process outlives it."""
    stores_before = set(map(id, open_stores()))
    greenlets_before = _greenlets()
    yield
    deadline = time.monotonic() + 1
    while True:
        leaked_stores = [s for s in open_stores() if id(s) not in stores_before]
        leaked_greenlets = _greenlets() - greenlets_before
        if not leaked_stores and not leaked_greenlets:
            return
        if time.monotonic() > deadline:
            break
        gevent.sleep(0.02)
    for store in leaked_stores:
        store.close()
    assert not leaked_stores, f"the test left stores open: {leaked_stores}"
    assert not leaked_greenlets, f"the test left {len(leaked_greenlets)} greenlet(s) running"
