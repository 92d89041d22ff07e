"""Graceful shutdown under real gunicorn with 500 open streams.

On SIGTERM: every stream gets its final event and closes, commands in flight finish, the
store closes, the process exits in a few seconds, far under gunicorn's graceful_timeout
(10 s); every write acknowledged before is in the database after; the clients reconnect
to the next server and all of them see the same, latest state.
"""

from __future__ import annotations

import http.client
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from tests.support.herd import Herd
from tests.support.server import LiveServer

STREAMS = 500
GOODBYE = b": server stopping, reconnect"


class Writers:
    """Threads posting todos until the server goes away; what was acknowledged, and when."""

    def __init__(self, server: LiveServer, count: int) -> None:
        self.server = server
        self.acked: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(count)]
        for thread in self.threads:
            thread.start()

    def _run(self, n: int) -> None:
        for i in range(100_000):
            if self.stop.is_set():
                return
            title = f"writer {n} todo {i}"
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
            try:
                conn.request("POST", "/todos", json.dumps({"title": title}), {"Content-Type": "application/json"})
                status = conn.getresponse().status
            except (OSError, http.client.HTTPException):
                return  # the server stopped accepting: this writer is done
            finally:
                conn.close()
            if status == 204:
                with self.lock:
                    self.acked.append(title)
            time.sleep(0.01)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


def stored_titles(db: Path) -> set[str]:
    with closing(sqlite3.connect(db, timeout=5)) as conn:
        return {row[0] for row in conn.execute("SELECT title FROM todos")}


def test_sigterm_with_500_streams_exits_in_seconds_loses_no_write_and_clients_converge(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    db = tmp_path / "app.sqlite"
    server = start_server(db=db)
    herd = Herd(server.port)
    try:
        herd.open(STREAMS)
        herd.wait(lambda data, _: b'id="todo-list"' in data, timeout=60, what="a first frame")
        server.wait_for(lambda s: s["streams"] == STREAMS, timeout=10, what=f"{STREAMS} streams")

        writers = Writers(server, count=4)
        time.sleep(0.5)  # commands in flight when the signal lands
        assert server.proc is not None
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0
        took = time.monotonic() - sent
        writers.join()
        print(f"SIGTERM with {STREAMS} streams open -> exit in {took:.2f} s; {len(writers.acked)} writes acknowledged")
        assert took < 8, f"exit took {took:.1f}s: something held the drain toward graceful_timeout (10 s)"
        herd.wait(lambda data, closed: GOODBYE in data and closed, timeout=5, what="the final event, then EOF")

        # Nothing acknowledged was lost.
        assert writers.acked, "no write was acknowledged before the signal"
        missing = set(writers.acked) - stored_titles(db)
        assert not missing, f"{len(missing)} acknowledged writes are not in the database: {sorted(missing)[:5]}"

        # The clients reconnect to the next server (same port, same file) and converge.
        restarted = LiveServer(db, port=server.port).start()
        again = Herd(restarted.port)
        try:
            again.open(STREAMS)
            last = writers.acked[-1].encode()
            again.wait(lambda data, _: last in data and b"</ul>" in data, timeout=60, what="the latest state")
            # Each client's first frame (one HTTP chunk: every region of the page, perhaps with
            # the heartbeats its lane sent before it joined) is the same.
            start = b"event: datastar-patch-elements"
            chunks = [bytes(d[d.index(start) :].split(b"\r\n", 1)[0]) for d in again.received]
            frames = {b"".join(e for e in c.split(b"\n\n") if e and not e.startswith(b":")) for c in chunks}
            assert len(frames) == 1, "the reconnected clients do not all show the same state"
            restarted.wait_for(lambda s: s["streams"] == STREAMS, timeout=10, what="every client reconnected")
        finally:
            again.close()
            restarted.stop()
    finally:
        herd.close()
