"""The example app plus one route that tracks a burst of events (bench/analytics.py only)."""

from __future__ import annotations

import gevent

from app import create_app
from app.belt import analytics

app = create_app()


@app.post("/_bench/burst/<int:n>")
def burst(n: int) -> tuple[str, int]:
    # As if n/50 requests each tracked 50 events: the hub switches between the slices.
    for i in range(n):
        analytics.track("bench_burst", {"i": i}, subject=str(i % 500))
        if i % 50 == 49:
            gevent.sleep(0)
    return "", 204
