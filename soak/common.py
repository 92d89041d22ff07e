"""What every soak item needs: a real server, its worker process, and the machine's facts.

The items measure the app the way it runs in production (real gunicorn, one gevent worker,
a real SQLite file), so they reuse the test suite's ``LiveServer`` rather than an in-process
app. The worker is found as the gunicorn master's child: RSS and open fds are read from it
(the master holds nothing of interest), and a kill -9 must reach both.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from tests.support.server import ROOT, LiveServer, free_port

__all__ = [
    "ROOT",
    "LiveServer",
    "free_port",
    "http",
    "kill9",
    "machine",
    "result",
    "serve",
    "start",
    "stats",
    "tmpdir",
    "worker",
    "worker_facts",
]


def start(db: Path, env: dict[str, str] | None = None, *, port: int | None = None, app: str = "wsgi:app") -> LiveServer:
    """Start orion under real gunicorn (gevent worker) on a free port, serving ``db``.

    ``env`` is added to LiveServer's production defaults (ORION_AUTH=local, ORION_STATS=1,
    no tenancy): an item only states what it changes.
    """
    return LiveServer(db, env=env, port=port, app=app).start()


@contextmanager
def serve(db: Path, env: dict[str, str] | None = None, *, app: str = "wsgi:app") -> Iterator[LiveServer]:
    """``start()`` as a context: the server is stopped (SIGTERM, then SIGKILL) whatever happens."""
    server = start(db, env, app=app)
    try:
        yield server
    finally:
        try:
            server.stop()
        except AssertionError:  # did not drain in time: it was killed; the item reports its own figures
            pass


@contextmanager
def tmpdir(prefix: str) -> Iterator[Path]:
    """A scratch directory for an item's SQLite files and server logs (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix=f"orion-soak-{prefix}-") as d:
        yield Path(d)


def stats(server: LiveServer) -> dict[str, Any]:
    """``/_orion/stats`` as JSON (the server must run with ORION_STATS=1, LiveServer's default)."""
    return server.stats()


def worker(server: LiveServer, timeout: float = 5.0) -> psutil.Process:
    """The gevent worker: the gunicorn master's (only) child process."""
    assert server.proc is not None, "server not started"
    master = psutil.Process(server.proc.pid)
    deadline = time.monotonic() + timeout
    while True:
        children = master.children()
        if children:
            return children[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn master {master.pid} has no worker after {timeout}s")
        time.sleep(0.05)


def worker_facts(server: LiveServer) -> dict[str, Any]:
    """The worker's pid, resident memory (MB) and open file descriptors (sockets included)."""
    w = worker(server)
    return {"pid": w.pid, "rss_mb": round(w.memory_info().rss / 2**20, 1), "fds": w.num_fds()}


def kill9(server: LiveServer) -> None:
    """SIGKILL the worker AND the master at once: a power cut as far as the process can tell.

    The worker goes first so the master cannot fork a replacement between the two signals.
    """
    assert server.proc is not None, "server not started"
    pids = [c.pid for c in psutil.Process(server.proc.pid).children(recursive=True)] + [server.proc.pid]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait(timeout=10)
    for pid in pids[:-1]:  # the worker is the master's child, reaped by init once the master is gone
        try:
            psutil.Process(pid).wait(timeout=10)
        except psutil.NoSuchProcess:
            pass


def http(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One request with urllib: (status, body); an HTTP error status is returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare figures: cores, RAM, kernel, Python, date."""
    return {
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def result(
    item: str, *, title: str, figure: str, target: str, met: bool, numbers: dict[str, Any], details: str
) -> dict[str, Any]:
    """An item's result in the shape soak/run.py writes and RELIABILITY.md renders."""
    out = {
        "item": item,
        "title": title,
        "figure": figure,
        "target": target,
        "met": bool(met),
        "numbers": numbers,
        "details": details.strip(),
    }
    json.dumps(out)  # fail here, in the item, if a number is not JSON
    return out
