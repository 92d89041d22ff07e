"""Hub liveness while passwords hash: a greenlet ticks every 50 ms during ten sign-ins.

    python -m bench.hub_stall

Prints the worst gap between ticks (the goal: never more than 100 ms) and writes it to
bench/out/hub_stall.json. A hash run on the hub would show a ~300 ms gap per hash.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import gevent

from app.belt.passwords import hash_password, verify_password


def main() -> None:
    encoded = hash_password("correct horse battery staple")
    gaps: list[float] = []
    running = True

    def tick() -> None:
        last = time.perf_counter()
        while running:
            gevent.sleep(0.05)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = gevent.spawn(tick)
    start = time.perf_counter()
    attempts = ["correct horse battery staple", "wrong"] * 5
    gevent.joinall([gevent.spawn(verify_password, p, encoded) for p in attempts], raise_error=True)
    elapsed = time.perf_counter() - start
    running = False
    ticker.join()
    worst = max(gaps)
    result = {
        "sign_ins": len(attempts),
        "seconds": round(elapsed, 2),
        "ticks": len(gaps),
        "worst_gap_ms": round(worst * 1000, 1),
        "goal_ms": 100,
        "met": worst <= 0.100,
        "load_average": os.getloadavg(),
    }
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "hub_stall.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
