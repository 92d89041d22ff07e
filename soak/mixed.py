"""mixed: many viewers and a steady command load for ten minutes; nothing leaks, nothing fails.

    .venv/bin/python -m soak.run --only mixed [--quick]

5,000 viewers (quick: 300) hold ``/todos/live`` open while a second load-client process sends
20 commands a second (adds, renames, toggles, deletes; every one names a todo that exists) for
10 minutes (quick: 60 s). The viewers and the commands live in two processes so a command's
latency is not the viewers' decompression queue. Every 10 s (quick: 5 s) we read the worker's
RSS, open fds, streams and bus subscribers, and both clients' CPU. At the end every viewer must
still be connected and show what a fresh connection shows (the final list).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

from soak import common
from soak.loadclient import Driver, seed

ROWS = 50
RATE = 20.0
# One viewer in this many decodes every frame; the rest only hash what they receive (one
# decoded viewer with the same digest vouches for them): 5,000 viewers decompressing 20 full
# lists a second would need more CPU than the machine has, and measure the client, not orion.
FULL_EVERY = 25


def run(quick: bool = False, *, viewers: int | None = None, seconds: float | None = None) -> dict[str, Any]:
    n = viewers or (300 if quick else 5000)
    duration = seconds or (60.0 if quick else 600.0)
    every = 5.0 if quick else 10.0
    # The production heartbeat: with a command every 50 ms, streams write anyway.
    env = {"ORION_HEARTBEAT": "15"}
    with common.tmpdir("mixed") as work, common.serve(work / "app.sqlite", env) as server:
        seed(server.url, ROWS)
        worker = common.worker(server)
        with (
            Driver(server.url, log=str(work / "viewers.log")) as viewers_client,
            Driver(server.url, log=str(work / "poster.log")) as poster,
        ):
            opened = viewers_client.call("open", group="viewers", n=n, timeout=120.0, full_every=FULL_EVERY)
            sampler = Sampler(server, worker, [viewers_client.pid, poster.pid], every)
            start = sampler.take()
            sampler.start()
            commands = poster.call(
                "commands", limit=duration + 300, rate=RATE, seconds=duration, first_new_id=ROWS + 1, base_rows=ROWS
            )
            sampler.stop()
            end = sampler.take()
            final = settle(viewers_client, n)
        alive = server.proc is not None and server.proc.poll() is None and worker.is_running()
    return report(quick, n, duration, every, opened, commands, start, end, sampler.samples, final, alive)


def settle(driver: Driver, n: int, timeout: float = 60.0) -> dict[str, Any]:
    """The final check, retried while the last fan-out may still be reaching the viewers."""
    deadline = time.monotonic() + timeout
    while True:
        final = driver.call("final", group="viewers")
        if final["current"] == n or final["connected"] < n or time.monotonic() > deadline:
            return final
        time.sleep(1.0)


class Sampler(threading.Thread):
    """Every ``every`` seconds: the worker's RSS, fds, streams, subscribers; the clients' CPU."""

    def __init__(self, server: common.LiveServer, worker: Any, clients: list[int], every: float) -> None:
        super().__init__(daemon=True)
        self.server, self.worker, self.every = server, worker, every
        self.clients = [psutil.Process(pid) for pid in clients]
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()
        self.t0 = time.monotonic()
        self._cpu: tuple[float, list[float], float] | None = None

    def take(self) -> dict[str, Any]:
        stats = self.server.stats()
        now = time.monotonic()
        server_cpu = _cpu(self.worker)
        client_cpu = [_cpu(c) for c in self.clients]
        sample: dict[str, Any] = {
            "t": round(now - self.t0, 1),
            "rss_mb": round(self.worker.memory_info().rss / 2**20, 1),
            "fds": self.worker.num_fds(),
            "streams": stats["streams"],
            "subscribers": stats["subscribers"],
        }
        if self._cpu is not None:  # CPU share since the previous sample (1.0 = one core)
            t, clients, server = self._cpu
            dt = max(now - t, 1e-6)
            sample["server_cpu"] = round((server_cpu - server) / dt, 2)
            sample["client_cpu"] = [round((c - p) / dt, 2) for c, p in zip(client_cpu, clients, strict=True)]
        self._cpu = (now, client_cpu, server_cpu)
        return sample

    def run(self) -> None:
        while not self.halt.wait(self.every):
            try:
                self.samples.append(self.take())
            except Exception:  # the worker is gone: the report shows where the samples stop
                break

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=self.every + 5)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def growth(samples: list[dict[str, Any]], warmup: float, window: float) -> dict[str, Any]:
    """Mean RSS over the first ``window`` seconds after ``warmup`` and over the last ``window``
    seconds, and the growth between them in %. The warm-up is when caches, compressor windows
    and SQLite's page cache fill to their sizes; growth after it would be a leak."""
    if not samples:
        return {"first_mb": None, "last_mb": None, "pct": None}
    t_end = samples[-1]["t"]
    first = [s["rss_mb"] for s in samples if warmup <= s["t"] <= warmup + window] or [samples[0]["rss_mb"]]
    last = [s["rss_mb"] for s in samples if s["t"] >= t_end - window]
    a, b = sum(first) / len(first), sum(last) / len(last)
    return {"first_mb": round(a, 1), "last_mb": round(b, 1), "pct": round(100 * (b - a) / a, 2)}


def report(
    quick: bool,
    n: int,
    duration: float,
    every: float,
    opened: dict[str, Any],
    commands: dict[str, Any],
    start: dict[str, Any],
    end: dict[str, Any],
    samples: list[dict[str, Any]],
    final: dict[str, Any],
    alive: bool,
) -> dict[str, Any]:
    # Quick (60 s): 20 s of warm-up, 15 s windows; full (600 s): one minute of each.
    warmup, window = min(60.0, duration / 3), min(60.0, duration / 4)
    rss = growth(samples, warmup, window)
    lat = commands["latency_ms"]
    fds = [s["fds"] for s in samples] or [end["fds"]]
    streams = [s["streams"] for s in samples] or [end["streams"]]
    subs = [s["subscribers"] for s in samples] or [end["subscribers"]]
    server_cpu = [s["server_cpu"] for s in samples if "server_cpu" in s]
    client_cpu = [max(s["client_cpu"]) for s in samples if "client_cpu" in s]
    all_there = final["connected"] == n and final["current"] == n
    flat = max(fds) - min(fds) <= max(10, n // 100) and min(streams) == max(streams) == n
    met = (
        commands["errors"] == 0
        and opened["failed"] == 0
        and rss["pct"] is not None
        and rss["pct"] < 5.0
        and all_there
        and flat
        and alive
    )
    figure = (
        f"{n:,} viewers, {commands['sent']:,} commands in {commands['seconds']:g} s: p50/p95/p99 "
        f"{lat['p50']}/{lat['p95']}/{lat['p99']} ms, {commands['errors']} errors; RSS {rss['pct']:+}% "
        f"(after warm-up, first vs last {window:g} s); fds {min(fds)}–{max(fds)}; "
        f"{final['current']:,}/{n:,} viewers current at the end"
    )
    details = f"""
Orion under gunicorn (one gevent worker), heartbeat 15 s, a todo list of {ROWS} rows. {opened["opened"]:,} viewers of
`/todos/live` opened in {opened["seconds"]} s (first frame p50 {opened["ttff_ms"]["p50"]} / max
{opened["ttff_ms"]["max"]} ms), held by one load-client process (`soak/loadclient.py`); a second one sent
{commands["rate"]:g} commands/s for {duration:g} s: {commands["kinds"]}, statuses {commands["statuses"]}.
**Command latency** (POST to status line, fresh connection each): p50 {lat["p50"]} / p95 {lat["p95"]} /
p99 {lat["p99"]} / max {lat["max"]} ms; {commands["errors"]} errors.
**Worker RSS:** {start["rss_mb"]} MB at the start (viewers open), {end["rss_mb"]} MB at the end; after a
{warmup:g} s warm-up (caches and compressor windows filling), the mean of the first {window:g} s {rss["first_mb"]} MB vs
the last {window:g} s {rss["last_mb"]} MB: {rss["pct"]:+}% (sampled every {every:g} s, {len(samples)} samples).
**Open fds** min/max {min(fds)}/{max(fds)}; streams {min(streams)}/{max(streams)};
bus subscribers {min(subs)}/{max(subs)} (the stats do not count greenlets; each connection holds one greenlet
and one fd, so fds stand for them).
**CPU** (1.0 = one core): worker mean {_mean(server_cpu)}, busiest load client mean {_mean(client_cpu)}.
**At the end** {final["connected"]:,}/{n:,} viewers were connected and {final["current"]:,} showed exactly the list a
fresh connection gets ({final["decoded"]:,} decoding every frame; the other {final["light_vouched"]:,} received
byte for byte the same brotli stream as one of those); the worker {"stayed up" if alive else "DIED"}.
"""
    return common.result(
        "mixed",
        title=f"Mixed soak: {n:,} viewers and {RATE:g} commands/s for {duration / 60:g} min",
        figure=figure,
        target=(
            "0 errors; RSS growth < 5% after warm-up (first vs last minute); fds and greenlets flat; "
            "every viewer current at the end"
        ),
        met=met,
        numbers={
            "quick": quick,
            "viewers": n,
            "duration_s": duration,
            "open": opened,
            "commands": commands,
            "start": start,
            "end": end,
            "rss_growth": rss,
            "fds_min_max": [min(fds), max(fds)],
            "streams_min_max": [min(streams), max(streams)],
            "subscribers_min_max": [min(subs), max(subs)],
            "server_cpu_mean": _mean(server_cpu),
            "client_cpu_mean": _mean(client_cpu),
            "final": final,
            "worker_alive": alive,
            "samples": samples,
        },
        details=details,
    )


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
