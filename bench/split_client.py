"""The load client of ``bench/redis_fanout.py``: N viewers split over several servers.

    python -m bench.split_client --urls http://127.0.0.1:8001,http://127.0.0.1:8002 \\
        --viewers 1000 --post http://127.0.0.1:8001 --updates 30

It reuses ``bench/client.py`` (its raw-socket viewers with their own chunked parser and brotli
decoder, the poster, the marker titles and the percentiles). Viewer ``i`` connects to server
``i % len(urls)``; every update is posted to ``--post``. It runs the whole round by itself
(connect, warm up, measure, close) and prints one JSON line: the usual figures plus the last
arrival per server, so the cost of the hop to the other process shows on its own.
"""

from gevent import monkey

monkey.patch_all()  # before anything imports socket (bench/client.py does the same)

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
import gevent.lock  # noqa: E402

from bench.client import Round, Viewer, marker, percentile, post_rename, summary  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", required=True, help="comma-separated servers the viewers connect to")
    parser.add_argument("--post", required=True, help="the server the updates are posted to")
    parser.add_argument("--viewers", type=int, required=True)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args(argv)

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    servers = [urlsplit(u) for u in args.urls.split(",")]
    post = urlsplit(args.post)
    n = args.viewers
    rnd = Round(n)
    viewers = [Viewer(i, rnd, capture=False) for i in range(n)]
    group = [i % len(servers) for i in range(n)]

    started = time.monotonic()
    gate = gevent.lock.BoundedSemaphore(args.batch)
    greenlets = []
    for viewer in viewers:
        gate.acquire()
        where = servers[group[viewer.index]]
        greenlets.append(gevent.spawn(viewer.run, where.hostname, where.port, "/todos/live"))
        gevent.spawn(lambda v=viewer: (v.ready.wait(), gate.release()))
    for viewer in viewers:
        viewer.ready.wait()
    failed = sum(1 for v in viewers if v.closed)
    connect_s = time.monotonic() - started

    timeout = max(15.0, n * 0.005)
    per_update: list[dict[str, Any]] = []
    for k in range(args.warmup + args.updates):
        gevent.sleep(args.pause)
        rnd.start(k)
        status = post_rename(post.hostname or "127.0.0.1", post.port or 80, k % args.rows + 1, marker(k))
        answered = time.monotonic()
        rnd.all_in.wait(timeout)
        if k < args.warmup:
            continue
        arrived = [(t - rnd.t0) * 1000 if t is not None else None for t in rnd.arrivals]
        got = [a for a in arrived if a is not None]
        per_server = [
            max((a for i, a in enumerate(arrived) if group[i] == s and a is not None), default=None)
            for s in range(len(servers))
        ]
        per_update.append(
            {
                "status": status,
                "command_ms": (answered - rnd.t0) * 1000,
                "missed": n - len(got),
                "first_ms": min(got) if got else None,
                "p50_ms": percentile(got, 50),
                "last_ms": max(got) if got else None,
                "last_per_server_ms": per_server,
            }
        )

    complete = [u for u in per_update if not u["missed"]]
    result = {
        "viewers": n,
        "servers": len(servers),
        "connect_seconds": round(connect_s, 2),
        "failed_connections": failed,
        "updates": len(per_update),
        "missed": sum(u["missed"] for u in per_update),
        "bad_status": [u["status"] for u in per_update if u["status"] not in (200, 204)],
        "last_ms": summary([u["last_ms"] for u in complete]),
        "first_ms": summary([u["first_ms"] for u in complete]),
        "p50_ms": summary([u["p50_ms"] for u in complete]),
        "command_ms": summary([u["command_ms"] for u in per_update]),
        "last_per_server_ms": [
            summary([u["last_per_server_ms"][s] for u in complete if u["last_per_server_ms"][s] is not None])
            for s in range(len(servers))
        ],
        # The raw values, so that several rounds can be pooled.
        "per_update": per_update,
    }
    for viewer in viewers:
        viewer.close()
    gevent.joinall(greenlets, timeout=10)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
