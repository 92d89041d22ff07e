"""What observability costs, and how fast a stall is caught.

    python -m bench.observe            # about 30 s; writes bench/out/observe.json

1. **Per-request overhead of tracing + the canonical line.** One process, no sockets: the same
   Flask app (belt.install) is called through WSGI with the observe middleware on and with it
   unwrapped (and the store's query timer off), on a route that returns a string and on a
   route that runs three store queries. The difference is what a request pays for its span,
   its line (built, redacted, JSON-encoded, written to /dev/null) and the query timing.
2. **Stall detection latency.** The watchdog (threshold 100 ms and the default 200 ms) against
   blocks of 150 ms to 1 s made with an unpatched ``time.sleep`` on the hub: how long after the
   block began the thread noticed it (``detected_ms``), and how long after the block ended the
   report was made on the hub.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent
from flask import Flask
from werkzeug.test import EnvironBuilder

from app import belt
from app.belt import canon, health, observe, stalls, trace
from app.belt.store import Store

OUT = Path(__file__).parent / "out" / "observe.json"


def _app(folder: str) -> Flask:
    app = Flask(__name__, root_path=str(Path(belt.__file__).parents[1]))
    belt.settings(app, {"ORION_DB": os.path.join(folder, "b.sqlite"), "SECRET_KEY": "x", "ORION_ENV": "production"})
    store = belt.Store(app.config["ORION_DB"])
    belt.install(app, store, belt.Bus())
    store.exec("CREATE TABLE t (v INTEGER)")
    counter = iter(range(10**9))

    @app.get("/plain")
    def plain() -> str:
        return "ok"

    @app.get("/query")
    def query() -> str:
        n = next(counter)  # distinct parameters: real queries, not memo hits
        for k in range(3):
            store.query("SELECT count(*) FROM t WHERE v > ?", (n * 3 + k,))
        return "ok"

    return app


def _per_request_us(wsgi: Any, path: str, n: int, environ: dict[str, Any] | None = None) -> float:
    base = environ if environ is not None else EnvironBuilder(path=path).get_environ()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    started = time.perf_counter()
    for _ in range(n):
        body = wsgi(dict(base), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - started) / n * 1e6


def middleware_alone(n: int = 20_000, rounds: int = 5) -> dict[str, Any]:
    """The middleware around a bare WSGI callable: the span, the line, JSON, the rings."""

    class Runtime:  # what the middleware reads of the runtime
        flags = None
        entitlements = None

    def bare(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    canon.sink = lambda text: None
    wrapped = observe.Middleware(bare, Runtime())  # type: ignore[arg-type]
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/plain"}
    costs = [
        _per_request_us(wrapped, "/plain", n, env) - _per_request_us(bare, "/plain", n, env) for _ in range(rounds)
    ]
    # One timed query inside a request: the query log, the line's counters, a child span.
    store = type("S", (), {"tenant": None})()
    with trace.span("request"):
        started = time.perf_counter()
        for _ in range(n):
            health.QUERIES.observe(store, "query", "SELECT 1", 0.0001)  # type: ignore[arg-type]
        per_query = (time.perf_counter() - started) / n * 1e6
    return {
        "per_request_us_min": round(min(costs), 1),
        "per_request_us_median": round(statistics.median(costs), 1),
        "per_query_us": round(per_query, 2),
    }


def overhead(n: int = 20_000, rounds: int = 5) -> dict[str, Any]:
    devnull = open(os.devnull, "w")  # held for the whole run
    canon.sink = lambda text: devnull.write(text + "\n")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        app = _app(folder)
        observed, timer = app.wsgi_app, Store.on_timed
        plain_wsgi = observed.app  # type: ignore[attr-defined]
        for path in ("/plain", "/query"):
            on, off = [], []
            for _ in range(rounds):  # interleaved, so drift in the machine's load hits both alike
                Store.on_timed = None
                off.append(_per_request_us(plain_wsgi, path, n))
                Store.on_timed = timer
                on.append(_per_request_us(observed, path, n))
            out[path] = {
                "off_us": round(min(off), 1),
                "on_us": round(min(on), 1),
                "overhead_us": round(min(on) - min(off), 1),  # best of each: the least noisy pair
            }
        belt.runtime(app).store.close()
    devnull.close()
    return out


def detection(
    thresholds: tuple[float, ...] = (0.1, 0.2), blocks: tuple[float, ...] = (0.15, 0.3, 0.5, 1.0), repeats: int = 8
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for threshold in thresholds:
        reported: list[tuple[stalls.Stall, float]] = []

        def on_stall(stall: stalls.Stall, into: list[tuple[stalls.Stall, float]] = reported) -> None:
            into.append((stall, time.perf_counter()))

        dog = stalls.Watchdog(threshold=threshold, on_stall=on_stall)
        dog.start()
        rows = []
        for block in blocks:
            if block <= threshold:
                continue
            detected, after_end = [], []
            for _ in range(repeats):
                gevent.sleep(0.1)
                reported.clear()
                time.sleep(block)  # blocks the hub: this process is not monkey-patched
                ended = time.perf_counter()
                deadline = ended + 2
                while not reported and time.perf_counter() < deadline:
                    gevent.sleep(0.001)
                if reported:
                    stall, at = reported[0]
                    detected.append(stall.detected_ms)
                    after_end.append((at - ended) * 1000)
            rows.append(
                {
                    "block_ms": block * 1000,
                    "caught": f"{len(detected)}/{repeats}",
                    "detected_ms_min": round(min(detected), 1),
                    "detected_ms_median": round(statistics.median(detected), 1),
                    "detected_ms_max": round(max(detected), 1),
                    "reported_after_end_ms_max": round(max(after_end), 1),
                }
            )
        dog.stop()
        out[f"threshold_{int(threshold * 1000)}ms"] = {
            "check_ms": dog.check * 1000,
            "tick_ms": dog.tick * 1000,
            "blocks": rows,
        }
    return out


def main() -> None:
    result = {
        "load_before": os.getloadavg(),
        "middleware": middleware_alone(),
        "overhead": overhead(),
        "detection": detection(),
        "load_after": os.getloadavg(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
