"""Storms and slow clients at small scale: the short version of soak/disconnect_storm.py,
soak/slow_clients.py and soak/mixed.py (the full runs: ``make soak``).

Each runs the real app under gunicorn and a load client in its own process, and asserts what a
user would notice: every reconnect gets the current list, slow clients are dropped and never
lock anyone out, nothing fails, and every viewer ends up showing the same list as a fresh page.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from soak import common, disconnect_storm, mixed, slow_clients
from soak.loadclient import Driver, seed
from tests.support.server import ROOT, free_port


def test_a_disconnect_storm_is_cleaned_up_and_every_reconnect_gets_the_current_list() -> None:
    result = disconnect_storm.run(quick=True)
    numbers = result["numbers"]
    assert numbers["open"]["failed"] == 0, numbers["open"]
    # Streams, bus subscriptions and fds went back to where they were before the viewers came
    # (the wait gives up after 30 s, far beyond the 1 s heartbeat: None means never).
    assert None not in numbers["recovery_s"].values(), numbers["recovery_s"]
    assert numbers["after_recovery"]["streams"] == numbers["baseline"]["streams"]
    storm = numbers["storm"]
    assert storm["ok"] == storm["total"], storm  # each first frame held the renamed todo
    assert storm["stale"] == 0
    assert None not in numbers["after_storm_s"].values(), numbers["after_storm_s"]
    assert numbers["worker_alive"]


def test_slow_clients_are_dropped_and_readers_keep_their_updates() -> None:
    # A smaller send buffer and timeout than the defaults, so the never-reading clients fill
    # their buffers and are dropped within the test's time.
    result = slow_clients.run(quick=True, viewers=100, loris=500, deaf=30, send_timeout=5, send_buffer=16384)
    numbers = result["numbers"]
    loris = numbers["slowloris_report"]
    assert loris["dropped"] > 0 and loris["open_now"] == 0, loris
    # The header deadline is 2 s (keepalive); 10x that proves nothing waits for the client.
    assert loris["held_s"]["max"] <= 20, loris
    assert numbers["never_reading_left"] == 0, (
        f"the worker still holds {numbers['never_reading_left']} SSE clients that never read "
        f"(ORION_SEND_TIMEOUT in app/belt/live.py should drop them): {numbers['samples'][-3:]}"
    )
    assert numbers["before"]["missed"] == 0 and numbers["during"]["missed"] == 0
    assert not numbers["before"]["bad_status"] and not numbers["during"]["bad_status"]
    assert numbers["newcomers"]["failed"] == 0, numbers["newcomers"]
    assert numbers["final"]["connected"] == numbers["viewers"] == numbers["final"]["current"], numbers["final"]
    assert numbers["worker_alive"] and numbers["worker_boots"] == 1


def test_mixed_load_has_no_errors_and_every_viewer_ends_current() -> None:
    result = mixed.run(viewers=100, seconds=20)
    numbers = result["numbers"]
    assert numbers["commands"]["errors"] == 0, numbers["commands"]["statuses"]
    assert numbers["commands"]["sent"] > 100
    assert numbers["final"] == {**numbers["final"], "connected": 100, "current": 100}
    assert numbers["streams_min_max"] == [100, 100]
    low, high = numbers["fds_min_max"]
    assert high - low <= 10, numbers["samples"]  # one fd per connection: no leak, no pile-up
    assert numbers["worker_alive"]


def test_a_worker_full_of_slowloris_still_lets_a_new_viewer_in(tmp_path: Path) -> None:
    """With every connection slot taken by slowloris clients, a new viewer waits only until
    the header deadline frees a slot (it is queued in the listen backlog meanwhile)."""
    server = common.start(tmp_path / "app.sqlite", {"ORION_WORKER_CONNECTIONS": "40"})
    try:
        seed(server.url, 3)
        with Driver(server.url) as driver:
            # The attack outlasts the newcomers' patience: only the deadline lets them in.
            driver.call("slowloris", n=60, seconds=120.0, rate=200.0)
            newcomers = driver.call("storm", total=4, rate=1.0, marker="Buy milk and bread 3", timeout=20.0)
            assert newcomers["ok"] == 4, newcomers
            assert driver.call("slowloris_report")["peak_open"] >= 40
    finally:
        server.stop()


def test_gunicorn_refuses_to_start_without_a_header_deadline(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--keep-alive", "0"]
    command += ["--bind", f"127.0.0.1:{free_port()}", "wsgi:app"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "keepalive = 0" in done.stderr and "slowloris" in done.stderr, done.stderr
