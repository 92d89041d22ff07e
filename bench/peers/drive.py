"""Try one system with the load client by hand: start it, N viewers, a few updates, the figures.

    .venv/bin/python -m bench.peers.drive flask-sse --workload B --viewers 100 --updates 5
    .venv/bin/python -m bench.peers.drive datastar-starlette --workload T --viewers 1000
    .venv/bin/python -m bench.peers.drive orion --workload T --viewers 100   # br, as bench.run

A development aid, not the benchmark (``bench.run`` is): it prints the client's summary, the
renders and queries per update, and the serving process's CPU and RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench import peers
from bench.workloads import todos_seed

ROOT = peers.ROOT


def drive_client(
    url: str, args: argparse.Namespace, encoding: str, sample: Any
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Run ``bench.client``, calling ``sample()`` around the measured updates; returns its
    ``done`` message, the two samples, and a callable closing the client."""
    command = [
        sys.executable, "-m", "bench.client", "--url", url, "--viewers", str(args.viewers),
        "--updates", str(args.updates), "--warmup", str(args.warmup),
        "--workload", args.workload, "--encoding", encoding,
    ]  # fmt: skip
    if args.engine:
        command += ["--engine", args.engine]
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdin is not None and proc.stdout is not None

    def expect(event: str) -> dict[str, Any]:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"the client exited with {proc.wait()} while we waited for {event!r}")
        message: dict[str, Any] = json.loads(line)
        if message["event"] != event:
            raise RuntimeError(f"the client said {message} while we waited for {event!r}")
        return message

    def send(command: str) -> None:
        proc.stdin.write(command + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    if args.pin:  # the client on the second core (the server was pinned to the first)
        os.sched_setaffinity(proc.pid, {sorted(os.sched_getaffinity(0))[1]})
    connected = expect("connected")
    print(f"connected: {connected['seconds']:.1f}s, failed {connected['failed']} {connected['errors']}", flush=True)
    client_ps = psutil.Process(proc.pid)
    samples = {"connected": sample(), "client_rss_connected": client_ps.memory_info().rss}
    send("warm")
    expect("warm")
    samples["warm"] = sample()
    send("go")
    done = expect("done")
    samples["done"] = sample()
    done["client_rss"] = client_ps.memory_info().rss

    def close() -> None:
        send("close")
        expect("closed")
        proc.wait(timeout=30)

    return done, samples, close


def start_orion(folder: Path, workload: str) -> tuple[str, int, Any, Any]:
    """orion under real gunicorn, seeded as ``bench.run`` does (B: ``bench.board.wsgi:app``)."""
    from bench.run import ORION_APPS, orion_env, post_json
    from tests.support.server import LiveServer

    server = LiveServer(folder / "app.sqlite", env=orion_env(folder), app=ORION_APPS[workload])
    server.start(timeout=60)
    if workload == "T":
        for title in todos_seed():
            post_json(server.url + "/todos", {"title": title})
    pid = int(server.stats()["pid"])

    def stats() -> dict[str, Any]:
        s = server.stats()
        return {"renders": s["live"]["renders"], "queries": s["store"]["queries"]}

    return server.url, pid, stats, lambda: server.stop(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=[*peers.PEERS, "orion"])
    parser.add_argument("--workload", choices=peers.WORKLOADS, default="T")
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--engine", choices=("epoll", "gevent"), help="the client's engine (default: its own)")
    parser.add_argument("--pin", action="store_true", help="server on the first core, the client on the second")
    parser.add_argument("--identity", action="store_true", help="orion: ask for no compression")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix=f"peer-{args.system}-"))
    if args.system == "orion":
        url, pid, stats, stop = start_orion(folder, args.workload)
        encoding = "identity" if args.identity else "br"
    else:
        peer = peers.start(args.system, args.workload, folder)
        url, pid, stats, stop, encoding = peer.url, peer.pid, peer.stats, peer.stop, peer.encoding
    try:
        if args.pin:
            os.sched_setaffinity(pid, {sorted(os.sched_getaffinity(0))[0]})
        server = psutil.Process(pid)
        rss0 = server.memory_info().rss

        def sample() -> dict[str, Any]:
            times = server.cpu_times()
            return {"cpu": times.user + times.system, "rss": server.memory_info().rss, **stats()}

        done, samples, close = drive_client(url, args, encoding, sample)
        close()
    finally:
        stop()
    warm, end, connected = samples["warm"], samples["done"], samples["connected"]
    n = args.updates
    figures = {
        "system": args.system,
        "workload": args.workload,
        "viewers": args.viewers,
        "updates": n,
        "last_ms": {k: done["last_ms"][k] for k in ("p50", "p99", "max")},
        "missed": done["missed"],
        "bad_status": done["bad_status"],
        "wire_bytes_per_update": done["wire_bytes_per_update"]["p50"],
        "payload_bytes_per_update": done["payload_bytes_per_update"]["p50"],
        "renders_per_update": (end["renders"] - warm["renders"]) / n,
        "queries_per_update": (end["queries"] - warm["queries"]) / n,
        "server_cpu_us_per_delivery": (end["cpu"] - warm["cpu"]) / (n * args.viewers) * 1e6,
        "server_rss_per_viewer": (connected["rss"] - rss0) / args.viewers,
        "client_cpu_us_per_delivery": done["client_cpu_s"] / (n * args.viewers) * 1e6,
        "client_rss_per_viewer": samples["client_rss_connected"] / args.viewers,
    }
    print(json.dumps(figures, indent=1))
    time.sleep(0.1)


if __name__ == "__main__":
    main()
