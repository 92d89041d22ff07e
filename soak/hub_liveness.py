"""hub_liveness: another process holds SQLite's write lock for seconds; the hub must not stall.

orion serves viewers (SSE streams on /todos/live) and a steady stream of commands (``POST
/todos/<id>/rename`` on a 50-row list) while a second process, plain ``sqlite3``, takes ``BEGIN IMMEDIATE`` on the same
file, writes a few MB and holds the lock for ``hold`` seconds, several times (as a jobs
worker, a CLI or a backup tool would). What a user would notice is measured from outside
and from inside:

* **Inside**: the stall watchdog (app/belt/stalls.py) ticks on the hub every 20 ms; its
  ``lag_max_ms`` (worst tick lateness of the last 10 s, in ``/_orion/stats``) is polled every
  second, and with ``ORION_STALL_MS`` set low every block past it is a *stall* with its
  culprit's stack (``stall_worst_ms``, ``last_stall``). That is the hub's max lateness: no
  extra hook is needed.
* **Outside**: ``GET /_orion/health`` every 50 ms (its worst latency), the gap between bytes
  on each SSE stream (heartbeats every 0.5 s while nothing changes), and every command's
  status and latency: while the lock is held commands wait (the wait for the lock runs on
  gevent's thread pool) and answer once it is released, or 503 after the busy timeout.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak import common

ITEM = "hub_liveness"
JSON = {"Content-Type": "application/json"}
HEARTBEAT = 0.5
ROWS = 50  # the todo list's size (workload T)
STALL_MS = 50
TARGET_MS = 100.0


@dataclass
class Watch:
    """What the outside observers saw (threads append; read after they stop)."""

    stop: threading.Event = field(default_factory=threading.Event)
    health_ms: list[float] = field(default_factory=list)
    health_errors: int = 0
    command_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    stream_gaps: list[float] = field(default_factory=list)  # worst gap between bytes, per stream
    streams_closed: int = 0
    lag_max_ms: float = 0.0
    wal_max_mb: float = 0.0
    refusal: str = ""  # the first 5xx a command got, status and body
    lock: threading.Lock = field(default_factory=threading.Lock)


def _health(port: int, w: Watch) -> None:
    """A load balancer's probe every 50 ms: its worst latency."""
    while not w.stop.is_set():
        started = time.monotonic()
        try:
            status, _ = common.http("GET", f"http://127.0.0.1:{port}/_orion/health", timeout=10)
            ok = status == 200
        except OSError:
            ok = False
        with w.lock:
            w.health_ms.append((time.monotonic() - started) * 1000)
            w.health_errors += 0 if ok else 1
        w.stop.wait(0.05)


def _commands(port: int, prefix: str, w: Watch, pause: float, ids: list[int]) -> None:
    """A person editing the list: renames one of ``ids`` at a time, ``pause`` between them.

    Renames, not adds: the list stays at its 50 rows (workload T), so what the hub spends
    is the lock's doing, not a region that grows by a row per command.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    n = 0
    try:
        while not w.stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                path = f"/todos/{ids[n % len(ids)]}/rename"
                conn.request("POST", path, json.dumps({"title": f"{prefix}-{n}"}), JSON)
                response = conn.getresponse()
                body = response.read()
                status = response.status
                if status >= 500 and not w.refusal:
                    w.refusal = f"{status} {body.decode(errors='replace').strip()[:200]}"
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
            with w.lock:
                w.statuses[status] = w.statuses.get(status, 0) + 1
                w.command_ms.append((time.monotonic() - started) * 1000)
            w.stop.wait(pause)
    finally:
        conn.close()


def _viewer(port: int, w: Watch, ready: threading.Barrier) -> None:
    """One open page's stream, read raw: the worst gap between bytes arriving."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    worst = 0.0
    try:
        # Brotli, as browsers ask: the bytes stay small, so this thread keeps up (a viewer that
        # falls too far behind is dropped by design, and would measure our client, not the hub).
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "br", "Datastar-Request": "true"}
        conn.request("GET", "/todos/live", headers=headers)
        response = conn.getresponse()
        ready.wait()
        last = time.monotonic()
        while not w.stop.is_set():
            if not response.read1(65536):
                with w.lock:
                    w.streams_closed += 1
                break
            now = time.monotonic()
            worst = max(worst, now - last)
            last = now
    except (OSError, http.client.HTTPException, threading.BrokenBarrierError):
        if not w.stop.is_set():
            with w.lock:
                w.streams_closed += 1
    finally:
        with w.lock:
            w.stream_gaps.append(worst * 1000)
        conn.close()


def _stats(server: common.LiveServer, w: Watch) -> None:
    """The hub's own view (worst watchdog lateness), and how big the WAL grows."""
    wal = Path(f"{server.db}-wal")
    while not w.stop.wait(1.0):
        _read_stats(server, w)
        size = wal.stat().st_size / 2**20 if wal.exists() else 0.0
        with w.lock:
            w.wal_max_mb = max(w.wal_max_mb, size)


def _read_stats(server: common.LiveServer, w: Watch) -> dict[str, Any]:
    s = common.stats(server)
    obs = s.get("observe", s)
    with w.lock:
        w.lag_max_ms = max(w.lag_max_ms, float(obs.get("lag_max_ms", 0.0)))
    return obs


def stall_reports(log: str) -> list[dict[str, Any]]:
    """The stall events the server logged (one JSON line each, app/belt/observe.py)."""
    out = []
    for line in log.splitlines():
        if line.startswith("{") and '"kind":"stall"' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _worst_by_culprit(stalls: list[dict[str, Any]]) -> dict[str, float]:
    """Worst stall per place the hub was stuck (the innermost frame: the library call itself)."""
    worst: dict[str, float] = {}
    for s in stalls:
        where = s["stack"][-1] if s.get("stack") else s.get("culprit", "?")
        worst[where] = max(worst.get(where, 0.0), float(s.get("duration_ms", 0.0)))
    return {k: round(v, 1) for k, v in sorted(worst.items(), key=lambda kv: -kv[1])[:5]}


def _in_sqlite(stall: dict[str, Any]) -> bool:
    """Was the hub stuck inside a SQLite call of the store (not in Python code the CPU starved)?"""
    stack = stall.get("stack") or []
    return bool(stack) and "app/belt/store.py" in stack[-1]


def hold_lock(db: Path, seconds: float, rows: int) -> dict[str, float]:
    """Another process's transaction: ``BEGIN IMMEDIATE``, write ``rows`` × 2 KB, hold, COMMIT.

    It leaves checkpointing to others (``wal_autocheckpoint=0``, as a backup tool such as
    Litestream does), so its megabytes stay in the WAL for orion's writer to checkpoint.
    """
    with closing(sqlite3.connect(db, isolation_level=None, timeout=30)) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE IF NOT EXISTS soak_other (id INTEGER PRIMARY KEY, body BLOB)")
        started = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        got = time.monotonic()
        conn.executemany("INSERT INTO soak_other (body) VALUES (?)", ((b"x" * 2048,) for _ in range(rows)))
        time.sleep(max(0.0, seconds - (time.monotonic() - got)))
        conn.execute("COMMIT")
        return {"waited_s": got - started, "held_s": time.monotonic() - got}


def measure(
    *,
    holds: int,
    hold: float,
    viewers: int,
    commanders: int,
    rows: int,
    long_hold: float = 0.0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One run: ``holds`` external locks of ``hold`` s while viewers and commands run, then
    one of ``long_hold`` s if set (past the store's 5 s busy timeout: commands get 503)."""
    w = Watch()
    with common.tmpdir(ITEM) as d:
        db = d / "hub.sqlite"
        server_env = {"ORION_STALL_MS": str(STALL_MS), "ORION_HEARTBEAT": str(HEARTBEAT), **(env or {})}
        with common.serve(db, server_env) as server:
            for i in range(ROWS):
                common.http("POST", server.url + "/todos", json.dumps({"title": f"seed {i}"}).encode(), JSON)
            with closing(sqlite3.connect(db, timeout=10)) as conn:
                ids = [r[0] for r in conn.execute("SELECT id FROM todos ORDER BY id")]
            ready = threading.Barrier(viewers + 1)
            run = uuid.uuid4().hex[:6]
            threads = [
                threading.Thread(target=_viewer, args=(server.port, w, ready), daemon=True) for _ in range(viewers)
            ]
            for t in threads:
                t.start()
            ready.wait(timeout=30)
            threads += [threading.Thread(target=_health, args=(server.port, w), daemon=True)]
            threads += [
                threading.Thread(target=_commands, args=(server.port, f"hub-{run}-{i}", w, 0.02, ids), daemon=True)
                for i in range(commanders)
            ]
            threads += [threading.Thread(target=_stats, args=(server, w), daemon=True)]
            for t in threads[viewers:]:
                t.start()
            locks = []
            started = time.monotonic()
            for seconds in [hold] * holds + ([long_hold] if long_hold else []):
                w.stop.wait(1.5)
                locks.append(hold_lock(db, seconds, rows))
            w.stop.wait(1.5)
            w.stop.set()
            for t in threads:
                t.join(timeout=35)
            elapsed = time.monotonic() - started
            final = _read_stats(server, w)
            lock_waits = int(common.stats(server).get("store", {}).get("lock_waits", 0))
            worker_up = common.worker(server).is_running()
            stalls = stall_reports(server.log())
    statuses = dict(sorted(w.statuses.items()))
    worst_gap = max(w.stream_gaps, default=0.0)
    return {
        "holds": holds,
        "long_hold_s": long_hold,
        "first_refusal": w.refusal,
        "hold_s": hold,
        "rows_per_hold": rows,
        "viewers": viewers,
        "seconds": round(elapsed, 1),
        "hub_lag_max_ms": round(w.lag_max_ms, 1),
        "stalls_over_threshold": int(final.get("stalls", 0)),
        "stall_threshold_ms": STALL_MS,
        "stall_worst_ms": float(final.get("stall_worst_ms", 0.0)),
        "stall_culprits": _worst_by_culprit(stalls),
        "sqlite_stalls": sum(1 for s in stalls if _in_sqlite(s)),
        "sqlite_stall_worst_ms": max((float(s["duration_ms"]) for s in stalls if _in_sqlite(s)), default=0.0),
        "sqlite_stall_where": _worst_by_culprit([s for s in stalls if _in_sqlite(s)]),
        "wal_max_mb": round(w.wal_max_mb, 1),
        "health_probes": len(w.health_ms),
        "health_max_ms": round(max(w.health_ms, default=0.0), 1),
        "health_errors": w.health_errors,
        "commands": sum(statuses.values()),
        "command_statuses": {str(k): v for k, v in statuses.items()},
        "command_max_ms": round(max(w.command_ms, default=0.0), 1),
        "stream_worst_gap_ms": round(worst_gap, 1),
        "stream_lateness_ms": round(max(0.0, worst_gap - HEARTBEAT * 1000), 1),
        "streams_closed": w.streams_closed,
        "lock_waits_s": [round(x["waited_s"], 2) for x in locks],
        "store_lock_waits": lock_waits,
        "worker_up": worker_up,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Full: 6 holds of 3 s under 50 viewers; quick: 2 holds of 2 s under 10 viewers."""
    if quick:
        m = measure(holds=2, hold=2.0, viewers=10, commanders=3, rows=5000)
    else:
        m = measure(holds=6, hold=3.0, viewers=50, commanders=4, rows=10000, long_hold=6.5)
    bad = sum(v for k, v in m["command_statuses"].items() if (int(k) >= 500 and int(k) != 503) or int(k) == 0)
    hub_ms = max(m["hub_lag_max_ms"], m["stall_worst_ms"])
    met = hub_ms <= TARGET_MS and bad == 0 and m["health_errors"] == 0 and m["streams_closed"] == 0 and m["worker_up"]
    figure = (
        f"{m['holds']} × {m['hold_s']:g} s external write locks: hub max lateness {hub_ms:.0f} ms "
        f"({m['sqlite_stall_worst_ms']:.0f} ms inside a SQLite call), "
        f"/_orion/health worst {m['health_max_ms']:.0f} ms, {m['commands']} commands "
        f"({_statuses(m['command_statuses'])}), {m['viewers'] - m['streams_closed']}/{m['viewers']} streams kept open"
    )
    culprits = "; ".join(f"`{k}` {v} ms" for k, v in m["stall_culprits"].items()) or "none"
    long = ""
    if m["long_hold_s"]:
        long = f" (then once {m['long_hold_s']:g} s, past the store's 5 s busy timeout)"
    refusal = f"; first refusal: `{m['first_refusal']}`" if m["first_refusal"] else ""
    details = f"""
A separate process (plain `sqlite3`) ran `BEGIN IMMEDIATE`, inserted {m["rows_per_hold"]:,} rows of 2 KB and
held the write lock {m["hold_s"]:g} s, {m["holds"]} times{long}, while {m["viewers"]} SSE viewers stayed on
`/todos/live` (heartbeat {HEARTBEAT:g} s), a probe hit `/_orion/health` every 50 ms and {m["commands"]} commands
(`POST /todos/<id>/rename` on the {ROWS}-row list) ran throughout. Hub lateness is the stall watchdog's
(`app/belt/stalls.py`: a 20 ms hub tick, its `lag_max_ms`
polled each second, stalls over {STALL_MS} ms with their culprit via `ORION_STALL_MS={STALL_MS}`).
Stalls *inside a SQLite call* of the store are counted apart: on a shared machine the worker is also
preempted anywhere in Python code. Before the store checkpointed off the hub (A/B on a shared 2-core VM,
6 quick runs each), SQLite's automatic checkpoint of the other process's ~22 MB WAL ran inside our `COMMIT`
on the hub: stalls of 94-152 ms in `app/belt/store.py` `tx` in 5 of 6 runs; after, one 75 ms `COMMIT` stall
in 6 runs (an append to the WAL waiting behind the checkpoint thread's fsync of it, or preemption). Other
stalls on that VM (60-180 ms, in plain Python as much as in SQLite calls) showed up before and after alike,
and not in the same workload run in one process without the soak's client threads: CPU starvation.

- hub: worst tick lateness {m["hub_lag_max_ms"]} ms, {m["stalls_over_threshold"]} stalls over {STALL_MS} ms
  (worst {m["stall_worst_ms"]} ms); inside a SQLite call: {m["sqlite_stalls"]} (worst {m["sqlite_stall_worst_ms"]} ms);
  WAL peaked at {m["wal_max_mb"]} MB; worst stalls by innermost frame: {culprits}
- `/_orion/health`: {m["health_probes"]} probes, worst {m["health_max_ms"]} ms, {m["health_errors"]} errors
- commands: {_statuses(m["command_statuses"])}; slowest {m["command_max_ms"]} ms; {m["store_lock_waits"]} waited
  for the other process's lock (on gevent's thread pool, off the hub){refusal}
- streams: worst gap between bytes {m["stream_worst_gap_ms"]} ms (heartbeat {HEARTBEAT * 1000:.0f} ms),
  {m["streams_closed"]} closed
"""
    return common.result(
        ITEM,
        title="Hub liveness while another process holds the SQLite write lock",
        figure=figure,
        target=f"hub never stalls > {TARGET_MS:.0f} ms; commands wait (or 503), never 500; streams and probes answer",
        met=met,
        numbers=m,
        details=details,
    )


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{v} × {'no answer' if k == '0' else k}" for k, v in statuses.items())


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
