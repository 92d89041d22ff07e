"""Running under gunicorn as deployed: one gevent worker, graceful SIGTERM, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.server import ROOT, LiveServer, free_port
from tests.support.sse import SSEClient


def test_sigterm_ends_every_stream_at_once_and_the_worker_exits_inside_the_graceful_timeout(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "app.sqlite").start()
    clients = [SSEClient(server.url + "/todos/live") for _ in range(40)]
    try:
        for client in clients:
            client.wait_for(lambda e: "todo-list" in e.elements)
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0
        took = time.monotonic() - started
        # The streams must not hold the drain until gunicorn's graceful_timeout (10 s).
        assert took < 8, f"exit took {took:.1f}s: streams held up the graceful drain"
        for client in clients:
            client.wait_closed(timeout=2)
            assert client.comments[-1] == "server stopping, reconnect"
    finally:
        for client in clients:
            client.close()
        server.stop()


def test_more_than_one_worker_on_the_in_process_bus_is_refused_with_the_fix(tmp_path: Path) -> None:
    env = {**os.environ, "ORION_DB": str(tmp_path / "app.sqlite"), "ORION_WORKERS": "3"}
    env.pop("ORION_BUS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{free_port()}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "refusing to start 3 workers on the in-process bus" in proc.stderr
    assert "ORION_BUS=redis" in proc.stderr
    assert not (tmp_path / "app.sqlite").exists(), "the refused boot must not have opened the database"


def test_an_edited_applied_migration_stops_the_boot_naming_the_file(tmp_path: Path) -> None:
    db = tmp_path / "app.sqlite"
    env = {**os.environ, "ORION_DB": str(db)}
    code = "from app import create_app; create_app()"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    import sqlite3

    with sqlite3.connect(db) as conn:  # what an edited file looks like: its checksum no longer matches
        conn.execute("UPDATE _orion_migrations SET checksum = 'x' WHERE name = '0001_create_users.sql'")
    conn.close()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "0001_create_users.sql was edited after it was applied" in proc.stderr
    assert "new, higher-numbered migration" in proc.stderr
