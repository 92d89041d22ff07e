"""gunicorn settings for orion: one gevent worker per node (DESIGN.md §5).

One worker holds thousands of SSE connections; the in-process bus and the single SQLite
writer live in it. More workers need the Redis bus (ORION_BUS=redis); starting more on the
in-process bus is refused at boot with that fix. Never preload the app: gevent must patch
before the app (and sqlite3, sockets) are imported.
"""

import os

bind = os.environ.get("ORION_BIND", "127.0.0.1:8000")
worker_class = "gevent"
workers = int(os.environ.get("ORION_WORKERS", "1"))
worker_connections = int(os.environ.get("ORION_WORKER_CONNECTIONS", "10000"))
preload_app = False
# Streams never finish on their own: the SIGTERM hook ends them at once, so this is only
# the time in-flight commands get. Keep systemd's TimeoutStopSec above it.
graceful_timeout = 10
timeout = 30
# An idle keep-alive connection holds a worker's drain until it times out: keep it short
# (a proxy in front keeps its own keep-alive with browsers).
# It is also the header deadline: gunicorn's async workers read every request line and its
# headers, the first request's included, under gevent.Timeout(keepalive) and close the
# connection silently when it fires (gunicorn/workers/base_async.py, ggevent.timeout_ctx).
# A slowloris client that dribbles its headers is dropped after `keepalive` seconds, so it
# never holds one of the worker_connections slots for long (soak/slow_clients.py measures
# it). With keepalive = 0 there is no deadline at all: on_starting refuses that.
keepalive = 2
# Header limits (a slowloris sends many, slowly).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = os.environ.get("ORION_ACCESS_LOG")  # journald keeps stdout; None = off
errorlog = "-"


def on_starting(server):
    # Checked here, in the master, without importing the app: the app must be imported
    # only in the worker, after gevent has patched the standard library.
    if server.cfg.keepalive <= 0:
        raise SystemExit(
            f"orion: refusing to start with keepalive = {server.cfg.keepalive}: gunicorn's gevent worker "
            "then reads request headers with no deadline, so a client that sends them one byte at a "
            "time (slowloris) holds a connection slot forever. Set keepalive to a few seconds (it is "
            "also the header deadline); a proxy in front keeps its own keep-alive with browsers."
        )
    if server.cfg.workers > 1 and os.environ.get("ORION_BUS", "local") == "local":
        raise SystemExit(
            f"orion: refusing to start {server.cfg.workers} workers on the in-process bus: a "
            "command in one worker would never repaint viewers connected to another, and each "
            "would open its own SQLite writer. Run one gevent worker per node (it holds "
            "thousands of connections), or set ORION_BUS=redis and ORION_REDIS_URL to share "
            "one bus between processes."
        )


def post_worker_init(worker):
    from app.belt.backpressure import install as cap_send_buffers
    from app.belt.boot import gunicorn_post_worker_init

    # A fixed kernel send buffer per connection (ORION_SEND_BUFFER): a client that stops
    # reading blocks the worker's write after ~64 KiB instead of ~1.6 MB, so the stream's send
    # timeout can drop it (app/belt/backpressure.py).
    cap_send_buffers(worker)
    gunicorn_post_worker_init(worker)


def worker_exit(server, worker):
    from app.belt.boot import gunicorn_worker_exit

    gunicorn_worker_exit(server, worker)
