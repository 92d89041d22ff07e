"""A test app: the example app plus one route that blocks the gevent hub on purpose.

Served only by tests of stall attribution (``LiveServer(..., app="tests.support.stall_app:app")``).
``time.sleep`` is patched by gevent in the worker, so the route takes the original: a blocking
call the hub cannot switch away from, like a slow C call or a CPU-bound loop.
"""

from __future__ import annotations

from gevent.monkey import get_original

from app import create_app

app = create_app()
_blocking_sleep = get_original("time", "sleep")


@app.get("/_test/block/<int:ms>")
def block(ms: int) -> str:
    _blocking_sleep(ms / 1000)  # the culprit the stall report must name
    return f"blocked the hub for {ms} ms\n"
