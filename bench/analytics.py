"""Does product analytics slow a command down? Command latency with capture on and off.

    python -m bench.analytics          # about two minutes; writes bench/out/analytics.json

Rounds against the real server (gunicorn, gevent worker; bench/analytics_app.py adds one
route that calls ``analytics.track`` N times: a burst). In each round a client posts todos one
after another (each command tracks ``todo_added`` itself) and measures each one's latency,
while a second client fires bursts of tracked events: 250 every 50 ms (~5,000 events/s), then
2,000 every 50 ms (as fast as it goes: ~30,000-50,000 events/s).
``ORION_ANALYTICS=1`` captures them (buffered; written by the flusher on a pool thread);
``ORION_ANALYTICS=0`` makes ``track`` a no-op. The rounds alternate, twice each per rate.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.server import LiveServer

OUT = Path(__file__).parent / "out" / "analytics.json"
COMMANDS = 1000
#: (events per burst, seconds between bursts): ~5,000 events/s (a launch) and as fast as the
#: burst client can go (~30,000-50,000 events/s, past what one SQLite writer absorbs).
RATES = ((250, 0.05), (2000, 0.05))


def _post(conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    assert response.status == 204, response.status
    return (time.perf_counter() - started) * 1000


def round_(capture: bool, burst_size: int = 250, burst_every: float = 0.05) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        server = LiveServer(
            Path(folder) / "app.sqlite",
            app="bench.analytics_app:app",
            env={"ORION_ANALYTICS": "1" if capture else "0", "ORION_HEARTBEAT": "15", "ORION_STALL_MS": "100"},
        )
        server.start()
        try:
            stop = threading.Event()
            bursts = [0]

            def burst() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                while not stop.is_set():
                    _post(conn, f"/_bench/burst/{burst_size}", {})
                    bursts[0] += 1
                    time.sleep(burst_every)
                conn.close()

            thread = threading.Thread(target=burst)
            thread.start()
            time.sleep(0.5)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            started = time.perf_counter()
            latencies = [_post(conn, "/todos", {"title": f"t{n}"}) for n in range(COMMANDS)]
            elapsed = time.perf_counter() - started
            conn.close()
            stop.set()
            thread.join()
            observed = server.stats()["observe"]
            stats, costliest = observed["analytics"], observed["costliest"]
            stall = observed["last_stall"]
        finally:
            server.stop()
    latencies.sort()
    inserts = [q["worst_ms"] for q in costliest if q["sql"].startswith("INSERT INTO _orion_events")]
    return {
        "capture": capture,
        "events_per_s_offered": round(bursts[0] * burst_size / max(elapsed, 1e-9)),
        "commands": COMMANDS,
        "bursts": bursts[0],
        "events_tracked": stats["tracked"],
        "events_written": stats["flushed"],
        "flushes": stats["flushes"],
        "worst_insert_ms": max(inserts, default=None),
        "stalls": observed["stalls"],
        "last_stall": None if stall is None else {k: stall[k] for k in ("duration_ms", "route", "culprit")},
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(latencies[int(len(latencies) * 0.95)], 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2),
        "p999_ms": round(latencies[int(len(latencies) * 0.999)], 2),
        "max_ms": round(latencies[-1], 2),
    }


def main() -> None:
    load_before = os.getloadavg()
    rounds = [round_(capture, size, every) for size, every in RATES for capture in (True, False, True, False)]
    result = {"load_before": load_before, "rounds": rounds, "load_after": os.getloadavg()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
