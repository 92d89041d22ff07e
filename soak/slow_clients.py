"""slow_clients: slowloris and never-reading SSE clients must not hurt the viewers who read.

    .venv/bin/python -m soak.run --only slow_clients [--quick]

Legitimate viewers of ``/todos/live`` are timed from a rename to its arrival at the last of
them, first alone, then while the worker also holds

- slowloris connections: each sends its request line and headers one byte every 3 s and never
  finishes; when the server drops one, the attacker opens another, so the pressure lasts the
  whole phase. gunicorn's async worker reads every request, the first one included, under
  ``gevent.Timeout(keepalive)`` (gunicorn/workers/base_async.py), so ``keepalive`` is the
  header deadline (gunicorn.conf.py);
- SSE clients that connect with a tiny ``SO_RCVBUF`` and never read a byte: once the socket
  buffers are full the worker's write to them blocks, and the stream must be dropped after
  ``ORION_SEND_TIMEOUT`` seconds (app/belt/live.py) rather than hold its memory forever.

Meanwhile random-title renames (incompressible text) keep every stream writing. We report the
legitimate p99 before and during, the worker's RSS growth, how long slow clients were held,
and that the worker stayed up and every legitimate viewer still shows the current list.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from soak import common
from soak.loadclient import Driver, connections, percentile, seed, summary, wait_until

ROWS = 50
SEND_TIMEOUT = 10.0  # ORION_SEND_TIMEOUT's default in app/belt/live.py
HEADER_DEADLINE = 2.0  # gunicorn.conf.py: keepalive bounds the read of every request's head
NOISE_RATE = 20.0  # random-title renames per second, before and during the attack
# One legitimate viewer in this many decodes every frame; the others only count and hash their
# bytes and are timed by the offset where the decoded ones found the marker (soak/loadclient.py):
# a thousand viewers decompressing 20 lists a second would measure the client's CPU, not orion.
FULL_EVERY = 10


def run(
    quick: bool = False,
    *,
    viewers: int | None = None,
    loris: int = 2000,
    deaf: int = 100,
    send_timeout: float = SEND_TIMEOUT,
    send_buffer: int | None = None,
) -> dict[str, Any]:
    n = viewers or (200 if quick else 1000)
    updates = 10 if quick else 20
    during_s = 25.0 if quick else 40.0
    env = {"ORION_HEARTBEAT": "5", "ORION_SEND_TIMEOUT": str(send_timeout)}
    if send_buffer is not None:
        env["ORION_SEND_BUFFER"] = str(send_buffer)
    with common.tmpdir("slow") as work, common.serve(work / "app.sqlite", env) as server:
        seed(server.url, ROWS)
        worker = common.worker(server)
        # The legitimate viewers and the attackers live in two processes, so that the attack's
        # own CPU (thousands of reconnects a second) does not delay the viewers' reads.
        with (
            Driver(server.url, log=str(work / "viewers.log")) as driver,
            Driver(server.url, log=str(work / "attacker.log")) as attacker,
        ):
            opened = driver.call("open", group="legit", n=n, full_every=FULL_EVERY)
            # The same background renames run before and during (until stopped), so the two
            # p99s differ only by the slow clients.
            attacker.call("noise", rate=NOISE_RATE, seconds=600.0, rows=ROWS)
            before = measure(driver, updates, "before", pause=0.5)
            rss_before = rss(worker)

            t_attack = time.monotonic()
            sampler = Sampler(server, worker, t_attack)
            sampler.start()
            attacker.call("slowloris", n=loris, seconds=during_s)
            deaf_open = attacker.call("deaf", n=deaf)
            sampler.watch(set(deaf_open["ports"]))
            during = measure(driver, updates, "during", pause=max(0.2, (during_s - 10) / updates - 0.1))
            newcomers = driver.call("storm", total=20, rate=5.0, marker=during["title"], timeout=15.0)
            remaining = t_attack + during_s + HEADER_DEADLINE + 1 - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            # The never-reading clients are dropped once their buffers are full and the send
            # timeout has passed: give them that long (the noise keeps writing meanwhile).
            wait_until(lambda: sampler.deaf_gone_at is not None, timeout=2 * send_timeout + 40)
            loris_report = attacker.call("slowloris_report")
            noise = attacker.call("noise_report", stop=True)
            sampler.stop()
            final = driver.call("final", group="legit")
        alive = server.proc is not None and server.proc.poll() is None and worker.is_running()
        log = server.log()
    return report(
        quick,
        n,
        loris,
        deaf,
        send_timeout,
        opened,
        before,
        during,
        newcomers,
        rss_before,
        sampler,
        deaf_open,
        loris_report,
        noise,
        final,
        alive,
        log,
    )


def measure(driver: Driver, updates: int, phase: str, pause: float = 0.2) -> dict[str, Any]:
    """``updates`` renames of todo 1, each timed to its arrival at the last legitimate viewer."""
    lasts: list[float] = []
    missed = 0
    statuses: list[int] = []
    title = ""
    for k in range(updates):
        time.sleep(pause)
        title = f"Slow {phase} {k:03d} {uuid.uuid4().hex[:6]}"
        answer = driver.call("update", group="legit", todo_id=1, title=title)
        statuses.append(answer["status"])
        missed += answer["viewers"] - answer["delivered"]
        if answer["last_ms"] is not None:
            lasts.append(answer["last_ms"])
    bad = [s for s in statuses if s not in (200, 204)]
    return {"last_ms": summary(lasts), "missed": missed, "bad_status": bad, "title": title}


def rss(worker: Any) -> float:
    return round(float(worker.memory_info().rss) / 2**20, 1)


class Sampler(threading.Thread):
    """Every 0.5 s: the worker's RSS, streams and how many never-reading clients it still holds."""

    def __init__(self, server: common.LiveServer, worker: Any, t0: float) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.worker = worker
        self.samples: list[dict[str, Any]] = []
        self.deaf_ports: set[int] = set()
        self.t0 = t0
        self.deaf_peak = 0
        self.deaf_gone_at: float | None = None
        self.halt = threading.Event()

    def watch(self, ports: set[int]) -> None:
        self.deaf_ports = ports

    def run(self) -> None:
        while not self.halt.wait(0.5):
            try:
                held = connections(self.worker, self.deaf_ports) if self.deaf_ports else 0
                sample = {
                    "t": round(time.monotonic() - self.t0, 1),
                    "rss_mb": rss(self.worker),
                    "fds": self.worker.num_fds(),
                    "streams": self.server.stats()["streams"],
                    "deaf_held": held,
                }
            except Exception:  # the worker is gone: the report says so
                break
            self.samples.append(sample)
            if self.deaf_ports:
                self.deaf_peak = max(self.deaf_peak, held)
                if held == 0 and self.deaf_peak and self.deaf_gone_at is None:
                    self.deaf_gone_at = sample["t"]

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


def report(
    quick: bool,
    n: int,
    loris: int,
    deaf: int,
    send_timeout: float,
    opened: dict[str, Any],
    before: dict[str, Any],
    during: dict[str, Any],
    newcomers: dict[str, Any],
    rss_before: float,
    sampler: Sampler,
    deaf_open: dict[str, Any],
    loris_report: dict[str, Any],
    noise: dict[str, Any],
    final: dict[str, Any],
    alive: bool,
    log: str,
) -> dict[str, Any]:
    p99_before, p99_during = before["last_ms"]["p99"], during["last_ms"]["p99"]
    rss_peak = max([s["rss_mb"] for s in sampler.samples] or [rss_before])
    rss_end = sampler.samples[-1]["rss_mb"] if sampler.samples else rss_before
    held = loris_report["held_s"]
    deaf_left = sampler.samples[-1]["deaf_held"] if sampler.samples else deaf
    # Holds: within 2x the quiet figure, or within 100 ms of it (small figures are noise).
    holds = p99_before is not None and p99_during is not None and p99_during <= max(2 * p99_before, p99_before + 100)
    loris_ok = held["max"] is not None and held["max"] <= HEADER_DEADLINE + 1.5 and loris_report["open_now"] == 0
    deaf_ok = deaf_left == 0 and sampler.deaf_gone_at is not None
    newcomers_ok = newcomers["failed"] == 0
    viewers_ok = final["connected"] == n and final["current"] == n and not during["missed"] and not before["missed"]
    met = holds and loris_ok and deaf_ok and newcomers_ok and viewers_ok and alive and rss_peak <= rss_before * 1.5 + 50
    worker_restarts = log.count("Booting worker")
    figure = (
        f"legit p99 {p99_before} → {p99_during} ms with {loris:,} slowloris + {deaf} never-reading clients; "
        f"slowloris held ≤ {held['max']} s; never-reading dropped "
        + (f"after {sampler.deaf_gone_at} s" if deaf_ok else f"NO ({deaf_left} still held)")
        + f"; RSS {rss_before} → peak {rss_peak} MB; worker up"
        + ("" if alive else " NO")
    )
    details = f"""
Orion under gunicorn (one gevent worker, `worker_connections` 10,000, `keepalive` {HEADER_DEADLINE:g} s),
`ORION_SEND_TIMEOUT={send_timeout:g}`, heartbeat 5 s; {opened["opened"]:,} legitimate viewers of `/todos/live`
(load client `soak/loadclient.py`, own process; the attackers in a second one). Each figure: a rename of todo 1,
timed from the POST to its arrival at the last legitimate viewer (one in {FULL_EVERY} decodes every frame; the
others are timed by the byte offset where those found the new title in the same brotli stream).
**Before:** publish → last viewer p50 {before["last_ms"]["p50"]} / p99 {p99_before} ms over
{before["last_ms"]["count"]} updates.
**Attack** (for the whole phase): {loris:,} slowloris connections kept open (one header byte every 3 s; a
dropped one is replaced at once; peak {loris_report["peak_open"]:,} open at once, {loris_report["dropped"]:,} drops,
{loris_report["connect_failed"]} connects refused), {deaf_open["opened"]} SSE clients with `SO_RCVBUF` 1 KiB that never
read, and, as before the attack, {NOISE_RATE:g} random-title renames per second (incompressible, so every
stream keeps writing; statuses {noise["statuses"]}).
**During:** publish → last viewer p50 {during["last_ms"]["p50"]} / p99 {p99_during} ms, {during["missed"]} missed.
Slowloris connections were held p50 {held["p50"]} / max {held["max"]} s (the header deadline is gunicorn's
`keepalive`, {HEADER_DEADLINE:g} s). Never-reading clients held by the worker: peak {sampler.deaf_peak}, all
dropped {sampler.deaf_gone_at} s after they connected (send timeout {send_timeout:g} s once the buffers are full).
New viewers connecting during the attack: {newcomers["ok"]}/{newcomers["total"]} got a current first frame,
p50 {newcomers["ttff_ms"]["p50"]} / max {newcomers["ttff_ms"]["max"]} ms.
Worker RSS {rss_before} MB before, peak {rss_peak} MB, {rss_end} MB at the end; it stayed
{"up" if alive else "DOWN"} ({worker_restarts} worker boot(s) in the log); at the end {final["connected"]}/{n}
legitimate viewers were connected and {final["current"]} showed the current list.
"""
    if not holds:
        details += f"""
**Why the legitimate p99 did not hold, and the next step.** The attack is a connection flood as much as a
slowloris: each of the {loris:,} connections is dropped at the {HEADER_DEADLINE:g} s header deadline and replaced
at once ({loris_report["dropped"]:,} drops in the phase, about {loris / HEADER_DEADLINE:,.0f} new connections a
second), and the one worker's core accepts, parses and times out every one of them beside its viewers'
writes. Nothing is lost and no one is locked out (newcomers above), but fan-outs wait their turn. Next: in
production nginx sits in front (`deploy/nginx.conf`) and holds slow headers itself, so gunicorn never sees
them; without a proxy, a per-address connection cap at accept would turn the flood away before it costs a
greenlet.
"""
    return common.result(
        "slow_clients",
        title="Slowloris and never-reading clients",
        figure=figure,
        target=(
            "legit p99 holds (≤ 2× quiet or +100 ms), RSS bounded, slowloris dropped by the header deadline, "
            "never-reading SSE dropped by the send timeout, worker up, newcomers served"
        ),
        met=met,
        numbers={
            "quick": quick,
            "viewers": n,
            "slowloris": loris,
            "never_reading": deaf,
            "open": opened,
            "before": before,
            "during": during,
            "newcomers": newcomers,
            "rss_mb": {"before": rss_before, "peak": rss_peak, "end": rss_end},
            "slowloris_report": loris_report,
            "never_reading_opened": deaf_open["opened"],
            "never_reading_peak_held": sampler.deaf_peak,
            "never_reading_dropped_after_s": sampler.deaf_gone_at,
            "never_reading_left": deaf_left,
            "noise": noise,
            "final": final,
            "worker_alive": alive,
            "worker_boots": worker_restarts,
            "samples": sampler.samples[:: max(1, len(sampler.samples) // 60)],
            "p99_before_ms": p99_before,
            "p99_during_ms": p99_during,
            "newcomer_p99_ms": percentile([newcomers["ttff_ms"]["max"] or 0.0], 99),
        },
        details=details,
    )


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
