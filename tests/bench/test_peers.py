"""The benchmark's peers, really run: each serves both workloads to the real load client.

Each test starts one peer (gunicorn + gevent + Redis for Flask-SSE, uvicorn for Starlette) on
a fresh seeded SQLite file, opens 20 viewers with ``bench.client``, posts 3 updates, and checks
what a viewer would see: every update reached every viewer, and the last frame is exactly the
region orion renders for that state; ``/_peer/stats`` counted the renders and the queries.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import peers
from bench.workloads import board_cells, board_html, board_marker, todos_html, todos_marker, todos_seed

VIEWERS = 20
UPDATES = 3


class Client:
    """``bench.client`` in its own process, driven over its JSON lines."""

    def __init__(self, url: str, workload: str, capture: Path) -> None:
        command = [
            sys.executable, "-m", "bench.client", "--url", url, "--viewers", str(VIEWERS),
            "--updates", str(UPDATES), "--warmup", "0", "--pause", "0.05",
            "--workload", workload, "--encoding", "identity", "--capture", str(capture),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=peers.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def say(self, command: str, expect: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        message: dict[str, Any] = json.loads(self.proc.stdout.readline() or '{"event": "exited"}')
        assert message["event"] == expect, message
        return message

    def close(self) -> None:
        if self.proc.poll() is None:
            self.say("close", "closed")
            self.proc.wait(timeout=30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def expected_last_frame(workload: str) -> str:
    """The region after the 3 updates, rendered independently of the peer."""
    if workload == "B":
        return board_html(board_cells(UPDATES), board_marker(UPDATES - 1))
    titles = todos_seed()
    for k in range(UPDATES):
        titles[k % len(titles)] = todos_marker(k)  # update k renames todo k % 50 + 1
    return todos_html([{"id": i, "title": t, "done": 0} for i, t in enumerate(titles, 1)])


@pytest.mark.parametrize("workload", ["T", "B"])
@pytest.mark.parametrize("name", peers.PEERS)
def test_every_viewer_gets_every_update(name: str, workload: str, tmp_path: Path) -> None:
    if not (peers.DEPS / "datastar_py").exists():
        pytest.fail("the peers' dependencies are missing: run make bench, or pip install --target .cache/peers ...")
    peer = peers.start(name, workload, tmp_path)
    client = None
    try:
        assert peer.encoding == "identity"
        client = Client(peer.url, workload, tmp_path / "capture.json")
        connected = client.say("", "connected")
        assert connected["failed"] == 0, connected
        before = peer.stats()
        done = client.say("go", "done")
        after = peer.stats()
        client.close()

        assert done["bad_status"] == []
        assert done["deliveries"] == VIEWERS * UPDATES and done["missed"] == 0
        assert done["client_cpu_s"] > 0
        chunks = json.loads((tmp_path / "capture.json").read_text())["chunks"]
        assert expected_last_frame(workload) in chunks[-1]
        assert "event: datastar-patch-elements" in chunks[-1] or "event:datastar-patch-elements" in chunks[-1]

        renders = after["renders"] - before["renders"]
        queries = after["queries"] - before["queries"]
        if name == "flask-sse":  # one render per update, published through Redis to all
            assert renders == UPDATES
        else:  # every viewer re-reads and re-renders its region
            assert renders == UPDATES * VIEWERS
        assert queries >= renders + UPDATES  # each render's read, plus each command's own
    finally:
        if client is not None and client.proc.poll() is None:
            client.proc.kill()
            client.proc.wait()
            client.close()
        peer.stop()
