"""The fan-out benchmark: workloads T and B, orion against the floor and the peers, for each N.

    .venv/bin/python -m bench.run                       # T and B x N = 100, 1k, 5k, 10k (~30 minutes)
    .venv/bin/python -m bench.run --quick               # T and B x N = 100, 1k, few updates (~4 minutes)
    .venv/bin/python -m bench.run --workloads B --viewers 100,2000 --systems orion,floor

For each workload (T: the todos list, one row renamed per update; B: a 2,500-cell board,
250 cells per step; ``bench/workloads.py``), each N and each system, one *round*:

1. start the system: **orion** under real gunicorn with its gevent worker on a fresh SQLite
   file (``wsgi:app`` for T, seeded with 50 todos through ``POST /todos``;
   ``bench.board.wsgi:app`` for B, the board slice of ``bench/board/``); the **floor**
   (``bench/floor.py``: one brotli stream shared by every connection, and a second row with one
   per connection), which replays the events orion sent in its round of the same workload;
   each **peer** (``bench/peers/``: Flask-SSE with Redis; datastar-py on Starlette);
2. (orion, peers) post a few updates with no viewer open: the SQL queries a command runs by
   itself, so that the fan-out's own can be told apart;
3. start ``bench.client`` in its own process: N viewers open, each gets its first frame;
4. warm-up updates (not measured), then the measured updates, each timed from just before its
   POST to its arrival at every viewer;
5. between the steps, read the serving process's CPU time and RSS (psutil), the client's CPU
   time, and the system's counters (orion's ``/_orion/stats``, a peer's ``stats()``).

The server gets one core and the client the other (``os.sched_setaffinity``; ``--no-pin``
leaves the scheduler free). A system that cannot start, or cannot hold an N (connections
refused, viewers missing updates), is reported as such and not tried at a larger N. One more
orion round per workload at N = 1,000 with ``Accept-Encoding: identity`` gives the memory of an
uncompressed connection. The raw results go to ``bench/out/`` (gitignored) and
``bench/RESULTS.md`` is rewritten from them (``bench/report.py``); see ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # psutil ships no type hints

from bench import encoder, report
from bench.board.feature import BOARD_SQL
from bench.capture import load_events
from bench.workloads import todos_seed
from tests.support.server import ROOT, LiveServer, free_port

OUT = ROOT / "bench" / "out"
PROBE = ROOT / "bench" / "probe"
PEERS_DIR = ROOT / ".cache" / "peers"
ROWS = 50
CALIBRATION_POSTS = 5
WORKLOADS = ("T", "B")
# orion's app plus the read-only /_bench/queries counter (bench/board/counts.py); B adds the board.
ORION_APPS = {"T": "bench.board.todos_wsgi:app", "B": "bench.board.wsgi:app"}
# The one read each workload's live region makes (app/features/todos/sql.py `all`; the board's).
MODEL_SQL = {"T": "SELECT id, title, done FROM todos ORDER BY id", "B": BOARD_SQL}
FLOORS = {"floor": "shared", "floor-per-connection": "per-connection"}
PEERS = ("flask-sse", "datastar-starlette")  # bench/peers/ (its own list wins when it imports)
FULL_N = (100, 1000, 5000, 10000)
QUICK_N = (100, 1000)
# Measured updates (and warm-ups) per N: fewer at high N so the 10k rounds fit the run's
# 30 minutes. With 5 updates, "p99" is the slowest of the 5.
FULL_UPDATES = {100: (20, 2), 1000: (15, 2), 5000: (6, 1), 10000: (5, 1)}
QUICK_UPDATES = (5, 1)
# One compressor per connection (the floor's second row) costs ~0.8 MiB and ~0.2 ms per
# connection and update on T, ~2 MiB and ~2.4 ms on the 100 KB board: 8 GiB at T's N = 10,000,
# 24 s per update at B's. It is a reference, measured where it is cheap.
PER_CONNECTION_MAX = {"T": 5000, "B": 1000}
RSS_AT = 1000  # where the uncompressed connection's memory is measured
# A system whose median publish -> last viewer passed this at some N is not tried at larger N:
# it no longer keeps viewers live, and each of its updates would cost the run as long.
GIVE_UP_MS = 10_000
HELD_P99_MS = 500


#: Open files wanted: 10,000 viewers are 10,000 sockets in the server and as many in the client,
#: and a peer holds two per viewer (its socket and its Redis connection).
NOFILE = 65536


def raise_nofile() -> None:
    """Lift the open-files limit (the servers and the client inherit it): the soft limit to the
    hard one, and the hard one to ``NOFILE`` where we may (root may, up to fs.nr_open)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NOFILE:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
            return
        except (ValueError, OSError):
            pass  # not root: the hard limit stays, and a round that needs more reports it
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Cores:
    """The server's core and the client's: the first two this process may run on, if there
    are two (``None`` each otherwise, or with ``--no-pin``)."""

    def __init__(self, enabled: bool) -> None:
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.server: int | None = cores[0] if enabled and len(cores) >= 2 else None
        self.client: int | None = cores[1] if enabled and len(cores) >= 2 else None

    def pin(self, pids: list[int], core: int | None) -> None:
        if core is None:
            return
        for pid in pids:
            try:
                os.sched_setaffinity(pid, {core})
            except OSError:  # it exited, or it is not ours to pin: left to the scheduler
                pass

    def describe(self) -> str:
        if self.server is None:
            return "not pinned (the scheduler shares the cores)"
        return (
            f"server processes pinned to CPU {self.server}, the load client to CPU {self.client} "
            "(os.sched_setaffinity, after each process started)"
        )


def probe_env(name: str) -> dict[str, str]:
    """Environment that makes a process log its GC pauses to ``bench/out/gc-<name>.<pid>``."""
    prefix = OUT / f"gc-{name}"
    for old in OUT.glob(f"gc-{name}.*"):
        old.unlink()
    path = os.pathsep.join(p for p in (str(PROBE), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "BENCH_GC_LOG": str(prefix)}


def gc_pauses(name: str, pid: int, start: float, end: float, updates: list[dict[str, Any]]) -> dict[str, Any]:
    """The collections process ``pid`` logged between ``start`` and ``end`` (monotonic seconds)."""
    pauses = []
    path = OUT / f"gc-{name}.{pid}"
    if path.exists():
        for line in path.read_text().splitlines():
            t, generation, ms, _collected = line.split()
            if start <= float(t) <= end:
                pauses.append((float(t), int(generation), float(ms)))
    full = [p for p in pauses if p[1] == 2]
    # An update is hit when a full collection ended while its fan-out was still running.
    hit = sum(
        1
        for u in updates
        if u["last_ms"] is not None and any(u["t0"] <= t <= u["t0"] + u["last_ms"] / 1000 for t, _, _ in full)
    )
    return {
        "collections": len(pauses),
        "total_ms": sum(p[2] for p in pauses),
        "max_ms": max((p[2] for p in pauses), default=0.0),
        "full": len(full),
        "full_max_ms": max((p[2] for p in full), default=0.0),
        "updates_hit_by_full": hit,
    }


def post_json(url: str, signals: dict[str, Any]) -> int:
    req = urllib.request.Request(
        url,
        data=json.dumps(signals).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Datastar-Request": "true"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return int(r.status)


def post_update(url: str, workload: str, k: int, label: str) -> int:
    """One update as the load client posts it, with a marker of its own (``label``)."""
    if workload == "B":
        return post_json(url + "/board/step", {"marker": f"{label}-{k}"})
    return post_json(url + f"/todos/{k % ROWS + 1}/rename", {"title": f"{label} {k}"})


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


class Failed(Exception):
    """The system could not hold this round (connections, timeouts): reported, not raised."""


# -- the systems under test -------------------------------------------------------------------


@dataclass
class Served:
    """One running system: where it listens, the process serving it, its counters, its stop."""

    system: str
    url: str
    pid: int
    stop: Callable[[], None]
    encoding: str = "br"
    extra_pids: list[int] = field(default_factory=list)
    counters: Callable[[], dict[str, Any] | None] = lambda: None
    log: Callable[[], str] = lambda: ""


def orion_env(work: Path) -> dict[str, str]:
    """The settings every benchmark round runs orion with (its files in ``work``)."""
    return {
        "ORION_HEARTBEAT": "15",
        "ORION_STATS": "1",
        # The self-host identity: every request acts as the one owner, no sign-in (app/belt/auth.py).
        "ORION_AUTH": "local",
        "ORION_IDENTITY_FILE": str(work / "identity.json"),
        "ORION_AUDIT_JSONL": str(work / "audit.jsonl"),
        # Room for 10,000 viewers plus the poster and the stats reads (gunicorn.conf.py's
        # default is 10,000: at N = 10,000 the stats request would wait in the accept queue).
        "ORION_WORKER_CONNECTIONS": "12000",
    }


def start_orion(workload: str, work: Path, name: str, cfg: argparse.Namespace) -> Served:
    env = {**orion_env(work), **probe_env(name)}
    if cfg.server_gc:
        env["BENCH_GC_THRESHOLD"] = cfg.server_gc
    server = LiveServer(work / "app.sqlite", env=env, app=ORION_APPS[workload])

    def stop() -> None:
        try:
            server.stop(timeout=30)
        except AssertionError:
            pass
        if server.log_path.exists():
            shutil.copy(server.log_path, OUT / f"server-{name}.log")

    try:
        server.start(timeout=60)
        if workload == "T":
            for title in todos_seed(ROWS):
                post_json(server.url + "/todos", {"title": title})
        stats_url = server.url + "/_orion/stats"
        worker = int(get_json(stats_url)["pid"])
    except BaseException:
        stop()
        raise
    assert server.proc is not None
    return Served(
        "orion",
        server.url,
        worker,
        stop,
        extra_pids=[server.proc.pid],  # the gunicorn master: idle, pinned with the worker
        counters=lambda: {**get_json(stats_url), "by_sql": get_json(server.url + "/_bench/queries")},
        log=server.log,
    )


def start_floor(mode: str, capture: Path, name: str) -> Served:
    port = free_port()
    log_path = OUT / f"server-{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "--port", str(port), "--events", str(capture), "--mode", mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, **probe_env(name)},
        )

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        stop()
        raise Failed(f"the floor server exited with {proc.returncode}: see {log_path}")
    url = f"http://127.0.0.1:{port}"
    return Served(
        FLOOR_NAMES[mode],
        url,
        int(json.loads(line)["pid"]),
        stop,
        counters=lambda: get_json(url + "/stats"),
        log=lambda: log_path.read_text(errors="replace"),
    )


FLOOR_NAMES = {mode: system for system, mode in FLOORS.items()}


def peer_names() -> tuple[str, ...]:
    try:
        from bench import peers
    except Exception:  # any import failure: the peers are reported missing
        return ()
    return tuple(peers.PEERS)


def start_peer(name: str, workload: str, work: Path, probe: str) -> Served:
    """A peer from ``bench/peers/``; its dependencies live in ``.cache/peers`` (``make bench``)."""
    from bench import peers

    peer = peers.start(name, workload, work, rows=ROWS, env=probe_env(probe))
    return Served(
        name,
        peer.url,
        int(peer.pid),
        peer.stop,
        encoding=getattr(peer, "encoding", "identity"),
        extra_pids=[int(p) for p in getattr(peer, "extra_pids", ())],
        counters=peer.stats,
        log=peer.log,
    )


# -- the load client ----------------------------------------------------------------------------


class Client:
    """``bench.client`` in its own process, driven over its stdin/stdout."""

    def __init__(
        self,
        url: str,
        workload: str,
        encoding: str,
        viewers: int,
        updates: tuple[int, int],
        cfg: argparse.Namespace,
        capture: Path | None,
        name: str,
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "bench.client",
            "--url",
            url,
            "--workload",
            workload,
            "--encoding",
            encoding,
            "--viewers",
            str(viewers),
            "--updates",
            str(updates[0]),
            "--warmup",
            str(updates[1]),
            "--rows",
            str(ROWS),
            "--pause",
            str(cfg.pause),
        ]
        if capture is not None:
            command += ["--capture", str(capture)]
        self._log = open(OUT / f"client-{name}.log", "ab")
        self.name = f"client-{name}"
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            env={**os.environ, **probe_env(self.name)},
        )
        self.ps = psutil.Process(self.proc.pid)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise Failed(f"the load client said nothing for {timeout:.0f} s (waiting for {event!r})") from None
        if not line:
            raise Failed(f"the load client exited with {self.proc.wait()} (waiting for {event!r})")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") != event:
            raise Failed(f"the load client said {message} while we waited for {event!r}")
        return message

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("close")
                self.expect("closed", timeout=60)
                self.proc.wait(timeout=30)
            except (Failed, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += float(times.user + times.system)
    return total


def snapshot(served: Served, client: Client | None) -> dict[str, Any]:
    """CPU seconds and RSS of the serving process (and the others'; the client's CPU), then
    the system's counters (read last, so that request is not counted in the CPU time)."""
    server = psutil.Process(served.pid)
    times = server.cpu_times()
    snap: dict[str, Any] = {
        "t": time.monotonic(),
        "cpu": float(times.user + times.system),
        "sys": float(times.system),
        "rss": int(server.memory_info().rss),
        "extra_cpu": cpu_of(served.extra_pids),
        "client_cpu": client.cpu() if client is not None else None,
    }
    # orion's /_orion/stats reads its counters, then runs a few (memoized) queries of its own
    # for the health figures: read twice, and a window between two snapshots runs from the
    # second read of the first ("stats") to the first read of the next ("stats_end"), so the
    # snapshots' own queries fall outside every window.
    end = snap["stats_end"] = served.counters()
    snap["stats"] = served.counters() if end is not None and "store" in end else end
    return snap


# -- one round --------------------------------------------------------------------------------


@dataclass
class Round:
    workload: str
    system: str
    viewers: int
    updates: tuple[int, int]  # (measured, warm-up)
    encoding: str = "br"  # what the client asks for (a peer's own, whatever this says)
    capture: Path | None = None  # orion: where the client saves viewer 0's stream
    events: Path | None = None  # the floor: the capture it replays
    on_go: Callable[[int], Callable[[], None]] | None = None

    @property
    def name(self) -> str:
        coding = "" if self.encoding == "br" else f"-{self.encoding}"
        return f"{self.workload}-{self.system}{coding}-{self.viewers}"


def run_round(r: Round, cfg: argparse.Namespace, cores: Cores) -> dict[str, Any]:
    """Start the system, calibrate, connect, warm up, measure, stop: the raw figures, or
    ``{"error": ...}`` when it could not start or could not hold N."""
    work = Path(tempfile.mkdtemp(prefix="orion-bench-"))
    served: Served | None = None
    client: Client | None = None
    started = time.monotonic()
    try:
        try:
            served = start_system(r, work, cfg)
        except Exception as exc:  # a system that cannot start is reported, not fatal
            return {"error": f"could not start: {type(exc).__name__}: {exc}", "stage": "start"}
        cores.pin([served.pid, *served.extra_pids], cores.server)
        command_queries = calibrate(served, r)
        time.sleep(0.3)
        s_idle = snapshot(served, None)
        encoding = r.encoding if served.encoding == "br" else served.encoding
        client = Client(served.url, r.workload, encoding, r.viewers, r.updates, cfg, r.capture, r.name)
        cores.pin([client.proc.pid], cores.client)
        result = drive(client, served, r)
        start, end = result["snapshots"]["warm"]["t"], result["snapshots"]["done"]["t"]
        per_update = result["done"]["per_update"]
        result["gc"] = {
            "server": gc_pauses(r.name, served.pid, start, end, per_update),
            "client": gc_pauses(client.name, client.proc.pid, start, end, per_update),
        }
        result["snapshots"]["idle"] = s_idle
        result["command_queries"] = command_queries
        result["encoding"] = encoding
        result["pid"] = served.pid
        return result
    except Failed as exc:
        return {"error": str(exc), "stage": "load"}
    except Exception as exc:  # one broken round must not lose the others
        log = served.log()[-2000:] if served is not None else ""
        sys.stderr.write(f"--- {r.name} failed ---\n{traceback.format_exc()}\n{log}\n")
        return {"error": f"{type(exc).__name__}: {exc}", "stage": "load"}
    finally:
        if client is not None:
            client.close()
        if served is not None:
            served.stop()
        shutil.rmtree(work, ignore_errors=True)
        print(f"    ({time.monotonic() - started:.0f} s)", flush=True)


def start_system(r: Round, work: Path, cfg: argparse.Namespace) -> Served:
    if r.system == "orion":
        return start_orion(r.workload, work, r.name, cfg)
    if r.system in FLOORS:
        assert r.events is not None
        return start_floor(FLOORS[r.system], r.events, r.name)
    return start_peer(r.system, r.workload, work, r.name)


def calibrate(served: Served, r: Round) -> float | None:
    """The SQL queries one command runs with no viewer open (None for the floor)."""
    if r.system in FLOORS:
        return None
    before = snapshot(served, None)["stats"]
    for k in range(CALIBRATION_POSTS):
        post_update(served.url, r.workload, k, "Calibrate")
    after = served.counters()  # read before its own queries (see snapshot)
    if before is None or after is None:
        return None
    return (queries(after) - queries(before)) / CALIBRATION_POSTS


def queries(stats: dict[str, Any]) -> int:
    return int(stats["store"]["queries"] if "store" in stats else stats.get("queries", 0))


def renders(stats: dict[str, Any]) -> int:
    return int(stats["live"]["renders"] if "live" in stats else stats.get("renders", 0))


def drive(client: Client, served: Served, r: Round) -> dict[str, Any]:
    """Steps 3-5: connect, warm up, measure; the snapshots around each step."""
    n = r.viewers
    connected = client.expect("connected", timeout=60 + n * 0.01)
    if connected["failed"] > n // 100:
        raise Failed(f"{connected['failed']:,} of {n:,} viewers could not open their stream: {connected['errors']}")
    time.sleep(0.5)  # let the last first-frames leave before sampling
    s_connected = snapshot(served, client)
    # The client waits up to max(15 s, N x 5 ms) for each update: allow that for each, and more.
    per_update = max(15.0, n * 0.005) + 5
    client.send("warm")
    client.expect("warm", timeout=30 + r.updates[1] * per_update)
    s_warm = snapshot(served, client)
    stop = r.on_go(served.pid) if r.on_go is not None else None
    client.send("go")
    done = client.expect("done", timeout=30 + r.updates[0] * per_update)
    s_done = snapshot(served, client)
    if stop is not None:
        stop()
    return {
        "connected": connected,
        "done": done,
        "snapshots": {"connected": s_connected, "warm": s_warm, "done": s_done},
    }


def derive(raw: dict[str, Any], r: Round, raw_event_bytes: float | None) -> dict[str, Any]:
    """The figures the report shows, from one round's snapshots and the client's summary."""
    base: dict[str, Any] = {"workload": r.workload, "system": r.system, "viewers": r.viewers, "encoding": r.encoding}
    if "error" in raw:
        return {**base, "error": raw["error"], "stage": raw.get("stage")}
    snaps = raw["snapshots"]
    idle, connected, warm, done = snaps["idle"], snaps["connected"], snaps["warm"], snaps["done"]
    measured = raw["done"]
    n = r.viewers
    deliveries = measured["deliveries"] or 1
    updates = measured["updates"] or 1
    encoding = raw.get("encoding", r.encoding)  # what the stream was sent in (a peer: identity)
    payload = measured["payload_bytes_per_update"]["p50"]
    client_cpu = measured.get("client_cpu_s")
    out: dict[str, Any] = {
        **base,
        "sent_encoding": encoding,
        "connected": n - raw["connected"]["failed"],
        "connect_seconds": raw["connected"]["seconds"],
        "updates": measured["updates"],
        "deliveries": measured["deliveries"],
        "missed": measured["missed"],
        "dropped_connections": measured.get("dropped_connections", 0),
        "bad_status": measured["bad_status"],
        "last_ms": measured["last_ms"],
        "all_ms": measured["all_ms"],
        "first_ms": measured["first_ms"],
        "command_ms": measured["command_ms"],
        "wire_bytes_per_update": measured["wire_bytes_per_update"]["p50"],
        "payload_bytes_per_update": payload,
        "raw_bytes_per_event": raw_event_bytes,
        "ratio": _ratio(raw_event_bytes, payload, encoding),
        "cpu_us_per_delivery": (done["cpu"] - warm["cpu"]) / deliveries * 1e6,
        "extra_cpu_us_per_delivery": (done["extra_cpu"] - warm["extra_cpu"]) / deliveries * 1e6,
        "sys_us_per_delivery": (done["sys"] - warm["sys"]) / deliveries * 1e6,
        "cpu_ms_per_publish": (done["cpu"] - warm["cpu"]) / updates * 1e3,
        "cpu_us_per_connect": (connected["cpu"] - idle["cpu"]) / max(1, n) * 1e6,
        "client_cpu_us_per_delivery": (done["client_cpu"] - warm["client_cpu"]) / deliveries * 1e6,
        "client_cpu_s": client_cpu,
        "rss_idle": idle["rss"],
        "rss_connected": connected["rss"],
        "rss_done": done["rss"],
        "rss_per_connection": (connected["rss"] - idle["rss"]) / max(1, n),
        "rss_per_connection_after": (done["rss"] - idle["rss"]) / max(1, n),
        "gc": raw.get("gc"),
        "held": _held(n, raw, measured),
    }
    a, b = warm.get("stats"), done.get("stats_end")
    if a is not None and b is not None and r.system not in FLOORS:
        total = (queries(b) - queries(a)) / updates
        command = raw.get("command_queries")
        if "command_queries" in b:  # a peer counts its commands' own queries itself
            command = (b["command_queries"] - a["command_queries"]) / updates
        out.update(
            {
                "renders_per_update": (renders(b) - renders(a)) / updates,
                "queries_per_update": total,
                "command_queries": command,
                "fanout_queries_per_update": total - command if command is not None else None,
            }
        )
        if "live" in b:  # orion's own counters
            events = b["live"]["events"] - a["live"]["events"]
            sql = MODEL_SQL[r.workload]
            out.update(
                {
                    "region_reads_per_update": (b["by_sql"].get(sql, 0) - a["by_sql"].get(sql, 0)) / updates,
                    "render_hits_per_update": (b["live"]["render_hits"] - a["live"]["render_hits"]) / updates,
                    "memo_hits_per_update": (b["store"]["memo_hits"] - a["store"]["memo_hits"]) / updates,
                    "events_per_update": events / updates,
                    "server_raw_bytes_per_event": (b["live"]["raw_bytes"] - a["live"]["raw_bytes"]) / max(1, events),
                    "server_wire_bytes_per_event": (b["live"]["wire_bytes"] - a["live"]["wire_bytes"]) / max(1, events),
                    "streams": b["streams"],
                }
            )
    if a is not None and b is not None and r.system in FLOORS:
        out["compressions_per_update"] = (b["compressions"] - a["compressions"]) / updates
    return out


def _ratio(raw: float | None, payload: float | None, encoding: str) -> float | None:
    if encoding == "identity":
        return 1.0  # nothing compressed: what went on the wire is the raw event
    if raw is None or not payload:
        return None
    return raw / payload


def _held(n: int, raw: dict[str, Any], measured: dict[str, Any]) -> bool:
    """Whether the system held N viewers: all connected, none dropped, none missed an update."""
    return not raw["connected"]["failed"] and not measured["missed"] and not measured.get("dropped_connections")


def raw_event_size(capture: Path | None) -> float | None:
    """The mean raw (uncompressed) update event of a workload, from an orion capture."""
    if capture is None or not capture.exists():
        return None
    _initial, updates = load_events(str(capture))
    return sum(len(e) for e in updates.values()) / max(1, len(updates))


# -- profiling (--profile) -------------------------------------------------------------------


def py_spy_recorder(py_spy: str, output: Path) -> Callable[[int], Callable[[], None]]:
    """An ``on_go`` hook that samples the worker with py-spy until the measured updates end."""

    def start(pid: int) -> Callable[[], None]:
        command = [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
        proc = subprocess.Popen(
            [*command, "--nonblocking", "--output", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches before the first update

        def stop() -> None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        return stop

    return start


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """The frames the worker spent its samples in (self), and the belt's functions (inclusive)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short_frame(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    belt = [(f, n) for f, n in inclusive.most_common() if "app/" in f][:top]
    return {
        "samples": total,
        "self": [(f, n / total) for f, n in own.most_common(top)] if total else [],
        "inclusive_app": [(f, n / total) for f, n in belt] if total else [],
    }


def _short_frame(frame: str) -> str:
    """``func (/long/path/to/pkg/module.py:12)`` -> ``func (pkg/module.py:12)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("/site-packages/", str(ROOT) + "/", "/lib/python"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    from importlib.metadata import version

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("gevent", "greenlet", "brotli", "gunicorn", "flask", "psutil"):
        try:
            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    uname = os.uname()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": f"{uname.sysname} {uname.release} {uname.machine}",
        "python": sys.version.split()[0],
        "versions": versions,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


# -- the run ----------------------------------------------------------------------------------


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f} ms"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _say(d: dict[str, Any]) -> str:
    if "error" in d:
        return f"FAILED: {d['error']}"
    parts = [
        f"last p50 {_ms(d['last_ms']['p50'])} p99 {_ms(d['last_ms']['p99'])}",
        f"{d['cpu_us_per_delivery']:.0f} µs/delivery",
        f"{d['payload_bytes_per_update'] or 0:,.0f} B/update",
        f"RSS {d['rss_per_connection'] / 1024:,.0f} KiB/conn",
        f"{d['missed']} missed",
    ]
    if d.get("renders_per_update") is not None:
        reads = d.get("region_reads_per_update", d.get("fanout_queries_per_update"))
        parts.append(f"renders {d['renders_per_update']:.2f}, fan-out queries {_num(reads)}")
    return ", ".join(parts)


def plan(cfg: argparse.Namespace) -> tuple[list[str], list[int], list[str]]:
    """The workloads, the N and the systems this run covers."""
    workloads = [w.strip().upper() for w in (cfg.workloads or ",".join(WORKLOADS)).split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            raise SystemExit(f"--workloads: {w!r} is not a workload; use {','.join(WORKLOADS)}.")
    default_n = QUICK_N if cfg.quick else FULL_N
    viewers = [int(v.replace(",", "").replace("_", "")) for v in (cfg.viewers or "").split(",") if v] or list(default_n)
    # The peers are always listed: one that cannot be imported or started is reported as such.
    known = ("orion", *FLOORS, *(peer_names() or PEERS))
    systems = [s.strip() for s in cfg.systems.split(",") if s.strip()] if cfg.systems else list(known)
    for s in systems:
        if s not in known:
            raise SystemExit(f"--systems: {s!r} is not a system; use some of {','.join(known)}.")
    return workloads, viewers, systems


def updates_for(n: int, cfg: argparse.Namespace) -> tuple[int, int]:
    """(measured updates, warm-up updates) at N: --updates/--warmup, or the defaults."""
    if cfg.quick:
        default = QUICK_UPDATES
    else:
        default = next((FULL_UPDATES[k] for k in sorted(FULL_UPDATES) if n <= k), FULL_UPDATES[max(FULL_UPDATES)])
    return (cfg.updates or default[0], cfg.warmup if cfg.warmup is not None else default[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T and B at N = 100 and 1,000, few updates")
    parser.add_argument("--workloads", help="comma-separated, from T,B (default both)")
    parser.add_argument("--viewers", help="comma-separated N (default 100,1000,5000,10000; quick: 100,1000)")
    parser.add_argument("--systems", help="comma-separated, from orion,floor,floor-per-connection and the peers")
    parser.add_argument("--updates", type=int, help="measured updates per round (default: by N, 20 down to 5)")
    parser.add_argument("--warmup", type=int, help="warm-up updates per round (default: 2, 1 from N = 5,000)")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between updates")
    parser.add_argument("--no-pin", action="store_true", help="leave the server and the client unpinned")
    parser.add_argument("--profile", action="store_true", help="one more orion T round at N=1,000 under py-spy")
    parser.add_argument("--server-gc", metavar="A,B,C", help="gc.set_threshold(A, B, C) in the orion server")
    parser.add_argument("--no-report", action="store_true", help="keep bench/RESULTS.md as it is")
    cfg = parser.parse_args(argv)
    workloads, viewers, systems = plan(cfg)
    cores = Cores(not cfg.no_pin)

    raise_nofile()
    OUT.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.run" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, Any] = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "config": {
            "rows": ROWS,
            "workloads": workloads,
            "viewers": viewers,
            "systems": systems,
            "updates": {str(n): updates_for(n, cfg) for n in viewers},
            "pause": cfg.pause,
            "quick": cfg.quick,
            "heartbeat": 15,
            "server_gc": cfg.server_gc,
            "pinning": cores.describe(),
        },
        "load_before": os.getloadavg(),
        "rows": [],
        "raw": {},
        "captures": {},
    }
    started = time.monotonic()

    def record(r: Round, raw: dict[str, Any], raw_bytes: float | None) -> dict[str, Any]:
        row = derive(raw, r, raw_bytes)
        results["rows"].append(row)
        results["raw"][r.name] = raw
        print(f"  {r.system}{'' if r.encoding == 'br' else ' (' + r.encoding + ')'}: {_say(row)}", flush=True)
        (OUT / f"results-{stamp}.json").write_text(json.dumps(results, indent=1))
        return row

    for workload in workloads:
        capture: Path | None = None  # the newest orion capture of this workload
        longest: Path | None = None  # the first one: the most updates, for the encoder table
        gave_up: dict[str, str] = {}  # system -> why it is not tried at larger N
        for n in viewers:
            updates = updates_for(n, cfg)
            for system in systems:
                skip = None
                if system in gave_up:
                    skip = f"not tried: {gave_up[system]}"
                elif system == "floor-per-connection" and n > PER_CONNECTION_MAX[workload]:
                    skip = f"not run above N={PER_CONNECTION_MAX[workload]:,} (a compressor per connection: see run.py)"
                if skip is not None:
                    print(f"{workload} N={n:,}: {system} skipped ({skip})", flush=True)
                    results["rows"].append(
                        {"workload": workload, "system": system, "viewers": n, "encoding": "br", "skipped": skip}
                    )
                    continue
                print(f"{workload} N={n:,}: {system} ...", flush=True)
                r = Round(workload, system, n, updates)
                if system == "orion":
                    r.capture = OUT / f"capture-{workload}-{n}.json"
                elif system in FLOORS:
                    r.events = capture = capture or capture_round(workload, updates, cfg, cores, results)
                    if r.events is None:
                        record(r, {"error": "no orion capture to replay (orion could not run)"}, None)
                        continue
                raw = run_round(r, cfg, cores)
                if system == "orion" and "error" not in raw and r.capture is not None and r.capture.exists():
                    capture = r.capture
                    longest = longest or capture
                    results["captures"][workload] = str(capture.relative_to(ROOT))
                row = record(r, raw, raw_event_size(capture))
                if row.get("stage") == "start":
                    gave_up[system] = "it could not start"
                elif "error" in row or not row.get("held"):
                    gave_up[system] = f"it could not hold N={n:,}"
                elif (row["last_ms"]["p50"] or 0) > GIVE_UP_MS:
                    gave_up[system] = f"its median at N={n:,} was over {GIVE_UP_MS / 1000:.0f} s"
                if system == "orion" and n == RSS_AT:
                    print(f"{workload} N={n:,}: orion without compression ...", flush=True)
                    plain = Round(workload, "orion", n, QUICK_UPDATES, encoding="identity")
                    record(plain, run_round(plain, cfg, cores), raw_event_size(capture))
        if longest or capture:
            print(f"{workload}: encoder costs on the captured events ...", flush=True)
            results.setdefault("encoder", {})[workload] = encoder.measure(str(longest or capture))
    if cfg.profile:
        profile(cfg, cores, results)
    results["load_after"] = os.getloadavg()
    results["seconds"] = time.monotonic() - started
    path = OUT / f"results-{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    shutil.copy(path, OUT / "latest.json")
    print(f"raw results: {path.relative_to(ROOT)} ({results['seconds']:.0f} s)")
    if not cfg.no_report:
        report.write(results, ROOT / "bench" / "RESULTS.md")
        print("report: bench/RESULTS.md")
    return 0


def capture_round(
    workload: str, updates: tuple[int, int], cfg: argparse.Namespace, cores: Cores, results: dict[str, Any]
) -> Path | None:
    """An orion round with one viewer, only for its capture (orion was not selected, or failed)."""
    print(f"{workload}: orion with one viewer, to capture the events the floor replays ...", flush=True)
    r = Round(workload, "orion", 1, updates, capture=OUT / f"capture-{workload}-1.json")
    raw = run_round(r, cfg, cores)
    if "error" in raw or r.capture is None or not r.capture.exists():
        return None
    results["captures"][workload] = str(r.capture.relative_to(ROOT))
    return r.capture


def profile(cfg: argparse.Namespace, cores: Cores, results: dict[str, Any]) -> None:
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if py_spy is None:
        print("--profile: py-spy not found (pip install py-spy, or set PY_SPY); skipped", flush=True)
        return
    n = RSS_AT
    print(f"T N={n:,}: orion under py-spy (timings not reported) ...", flush=True)
    output = OUT / f"profile-{n}.txt"
    r = Round("T", "orion", n, updates_for(n, cfg), on_go=py_spy_recorder(py_spy, output))
    run_round(r, cfg, cores)
    results["profile"] = {"viewers": n, **summarize_profile(output)}


if __name__ == "__main__":
    sys.exit(main())
