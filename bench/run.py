"""The todos fan-out benchmark: orion and the raw-gevent floor side by side, for each N.

    .venv/bin/python -m bench.run                      # N = 100, 1,000, 5,000 (~5 minutes)
    .venv/bin/python -m bench.run --quick              # N = 100, 1,000, fewer updates (<1 minute)
    .venv/bin/python -m bench.run --viewers 100,2000   # any list of N

For each N, twice (orion, then the floor), in this order:

1. start the server: orion under real gunicorn with its gevent worker on a fresh SQLite file
   (``tests.support.server.LiveServer``), seeded with 50 todos; or ``bench.floor``, which
   replays the exact events orion sent in step 4 of the orion round;
2. (orion) rename a row a few times with no viewer open: the SQL queries a command runs by
   itself, so that the fan-out's own queries can be told apart;
3. start ``bench.client`` in its own process: N viewers open, each gets its first frame;
4. warm-up updates (not measured), then the measured updates: the client renames one row per
   update to a unique marker title and times its arrival at every viewer;
5. between the steps, read the server process's CPU time and RSS (psutil) and, for orion,
   ``/_orion/stats``; the differences give the per-publish and per-delivery figures.

The raw results go to ``bench/out/`` (gitignored) and ``bench/RESULTS.md`` is rewritten from
them (``bench/report.py``). See ``bench/README.md`` for how to read the figures.
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
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # psutil ships no type hints

from bench import encoder, report
from tests.support.server import ROOT, LiveServer, free_port

OUT = ROOT / "bench" / "out"
PROBE = ROOT / "bench" / "probe"
ROWS = 50
CALIBRATION_POSTS = 5


def raise_nofile() -> None:
    """Lift the soft open-files limit to the hard one; the servers and the client inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


class Client:
    """``bench.client`` in its own process, driven over its stdin/stdout."""

    def __init__(
        self, url: str, viewers: int, cfg: argparse.Namespace, capture: Path | None, log: Path, name: str
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "bench.client",
            "--url",
            url,
            "--viewers",
            str(viewers),
            "--updates",
            str(cfg.updates),
            "--warmup",
            str(cfg.warmup),
            "--rows",
            str(ROWS),
            "--pause",
            str(cfg.pause),
        ]
        if capture is not None:
            command += ["--capture", str(capture)]
        self._log = open(log, "ab")
        self.name = name
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            env={**os.environ, **probe_env(name)},
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
            raise RuntimeError(f"the load client said nothing for {timeout:.0f}s (waiting for {event!r})") from None
        if not line:
            raise RuntimeError(f"the load client exited with {self.proc.wait()} (waiting for {event!r})")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") != event:
            raise RuntimeError(f"the load client said {message} while we waited for {event!r}")
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
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def snapshot(server: psutil.Process, client: Client | None, stats_url: str | None) -> dict[str, Any]:
    """CPU seconds and RSS of the server process (and the client's CPU), then the app's counters."""
    times = server.cpu_times()
    snap: dict[str, Any] = {
        "t": time.monotonic(),
        "cpu": float(times.user + times.system),
        "sys": float(times.system),
        "rss": int(server.memory_info().rss),
        "client_cpu": client.cpu() if client is not None else None,
    }
    if stats_url is not None:  # read after the CPU time, so this request is not counted twice
        snap["stats"] = get_json(stats_url)
    return snap


def drive(
    client: Client,
    server: psutil.Process,
    stats_url: str | None,
    viewers: int,
    on_go: Callable[[int], Callable[[], None]] | None = None,
) -> dict[str, Any]:
    """Steps 3-5: connect, warm up, measure; the snapshots around each step.

    ``on_go(pid)`` runs as the measured updates start and returns what to call once they are
    done (the profiler hangs there).
    """
    connect_timeout = 60 + viewers * 0.02
    update_timeout = 60 + viewers * 0.05
    connected = client.expect("connected", timeout=connect_timeout)
    if connected["failed"] > viewers // 100:
        raise RuntimeError(
            f"{connected['failed']} of {viewers} viewers could not open their stream: "
            f"{connected['errors']}; see the server log in bench/out/"
        )
    time.sleep(0.5)  # let the last first-frames leave before sampling
    s_connected = snapshot(server, client, stats_url)
    client.send("warm")
    client.expect("warm", timeout=update_timeout)
    s_warm = snapshot(server, client, stats_url)
    stop = on_go(server.pid) if on_go is not None else None
    client.send("go")
    done = client.expect("done", timeout=update_timeout * 3)
    s_done = snapshot(server, client, stats_url)
    if stop is not None:
        stop()
    return {
        "connected": connected,
        "done": done,
        "snapshots": {"connected": s_connected, "warm": s_warm, "done": s_done},
    }


def add_gc(result: dict[str, Any], server_name: str, server_pid: int, client: Client) -> None:
    """Attach the GC pauses of the server and of the client during the measured updates."""
    start, end = result["snapshots"]["warm"]["t"], result["snapshots"]["done"]["t"]
    updates = result["done"]["per_update"]
    result["gc"] = {
        "server": gc_pauses(server_name, server_pid, start, end, updates),
        "client": gc_pauses(client.name, client.proc.pid, start, end, updates),
    }


def bench_orion(
    viewers: int,
    cfg: argparse.Namespace,
    capture: Path | None,
    on_go: Callable[[int], Callable[[], None]] | None = None,
    tag: str = "",
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="orion-bench-"))
    name = f"orion-{viewers}{tag}"
    env = {
        "ORION_HEARTBEAT": "15",
        "ORION_STATS": "1",
        # The self-host identity: every request acts as the one owner, no sign-in (app/belt/auth.py).
        "ORION_AUTH": "local",
        "ORION_IDENTITY_FILE": str(work / "identity.json"),
        "ORION_AUDIT_JSONL": str(work / "audit.jsonl"),
        **probe_env(name),
    }
    if cfg.server_gc:
        env["BENCH_GC_THRESHOLD"] = cfg.server_gc
    server = LiveServer(work / "app.sqlite", env=env)
    client: Client | None = None
    try:
        server.start()
        for i in range(ROWS):
            post_json(server.url + "/todos", {"title": f"Buy milk and bread {i + 1}"})
        stats_url = server.url + "/_orion/stats"
        before = get_json(stats_url)
        for i in range(CALIBRATION_POSTS):
            post_json(server.url + f"/todos/{i + 1}/rename", {"title": f"Calibrate {i}"})
        after = get_json(stats_url)
        command_queries = (after["store"]["queries"] - before["store"]["queries"]) / CALIBRATION_POSTS
        worker = psutil.Process(after["pid"])
        time.sleep(0.3)
        s_idle = snapshot(worker, None, stats_url)
        client = Client(server.url, viewers, cfg, capture, OUT / f"client-{name}.log", f"client-{name}")
        result = drive(client, worker, stats_url, viewers, on_go)
        add_gc(result, name, worker.pid, client)
        result["snapshots"]["idle"] = s_idle
        result["command_queries"] = command_queries
        result["pid"] = worker.pid
        return result
    except BaseException:
        sys.stderr.write(f"--- orion server log (last 3000 chars) ---\n{server.log()[-3000:]}\n")
        raise
    finally:
        if client is not None:
            client.close()
        server.stop(timeout=30)
        shutil.copy(server.log_path, OUT / f"server-{name}.log")
        shutil.rmtree(work, ignore_errors=True)


def bench_floor(viewers: int, cfg: argparse.Namespace, capture: Path) -> dict[str, Any]:
    port = free_port()
    name = f"floor-{viewers}"
    log_path = OUT / f"server-{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "--port", str(port), "--events", str(capture)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, **probe_env(name)},
        )
    client: Client | None = None
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the floor server exited with {proc.wait()}: see {log_path}")
        floor = psutil.Process(json.loads(line)["pid"])
        time.sleep(0.3)
        s_idle = snapshot(floor, None, None)
        client = Client(
            f"http://127.0.0.1:{port}",
            viewers,
            cfg,
            None,
            OUT / f"client-floor-{viewers}.log",
            f"client-floor-{viewers}",
        )
        result = drive(client, floor, None, viewers)
        add_gc(result, name, floor.pid, client)
        result["snapshots"]["idle"] = s_idle
        result["pid"] = floor.pid
        return result
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def derive(raw: dict[str, Any], viewers: int) -> dict[str, Any]:
    """The figures the report shows, from one round's snapshots and the client's summary."""
    snaps = raw["snapshots"]
    idle, connected, warm, done = snaps["idle"], snaps["connected"], snaps["warm"], snaps["done"]
    measured = raw["done"]
    deliveries = measured["deliveries"] or 1
    updates = measured["updates"] or 1
    out: dict[str, Any] = {
        "viewers": viewers,
        "connected": viewers - raw["connected"]["failed"],
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
        "payload_bytes_per_update": measured["payload_bytes_per_update"]["p50"],
        "cpu_us_per_delivery": (done["cpu"] - warm["cpu"]) / deliveries * 1e6,
        "cpu_us_per_connect": (connected["cpu"] - idle["cpu"]) / max(1, viewers) * 1e6,
        "client_cpu_us_per_delivery": (done["client_cpu"] - warm["client_cpu"]) / deliveries * 1e6,
        "rss_idle": idle["rss"],
        "rss_connected": connected["rss"],
        "rss_done": done["rss"],
        "rss_per_connection": (done["rss"] - idle["rss"]) / max(1, viewers),
        "cpu_ms_per_publish": (done["cpu"] - warm["cpu"]) / updates * 1e3,
        "sys_us_per_delivery": (done["sys"] - warm["sys"]) / deliveries * 1e6,
        "gc": raw.get("gc"),
    }
    if "stats" in done:
        a, b = warm["stats"], done["stats"]
        events = b["live"]["events"] - a["live"]["events"]
        queries = (b["store"]["queries"] - a["store"]["queries"]) / updates
        out.update(
            {
                "publishes": b["published"] - a["published"],
                "renders_per_publish": (b["live"]["renders"] - a["live"]["renders"]) / updates,
                "render_hits_per_publish": (b["live"]["render_hits"] - a["live"]["render_hits"]) / updates,
                "queries_per_publish": queries,
                "command_queries": raw["command_queries"],
                "fanout_queries_per_publish": queries - raw["command_queries"],
                "memo_hits_per_publish": (b["store"]["memo_hits"] - a["store"]["memo_hits"]) / updates,
                "events_per_publish": events / updates,
                "raw_bytes_per_event": (b["live"]["raw_bytes"] - a["live"]["raw_bytes"]) / max(1, events),
                "server_wire_bytes_per_event": (b["live"]["wire_bytes"] - a["live"]["wire_bytes"]) / max(1, events),
                "streams": b["streams"],
            }
        )
    return out


def py_spy_recorder(py_spy: str, output: Path) -> Callable[[int], Callable[[], None]]:
    """An ``on_go`` hook that samples the worker with py-spy until the measured updates end."""

    def start(pid: int) -> Callable[[], None]:
        proc = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(output),
            ],
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
    for line in path.read_text().splitlines():
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
            from importlib.metadata import version

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


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100 and 1,000, fewer updates")
    parser.add_argument("--viewers", help="comma-separated N (default 100,1000,5000; quick: 100,1000)")
    parser.add_argument("--updates", type=int, help="measured updates per N (default 30; quick: 10)")
    parser.add_argument("--warmup", type=int, help="warm-up updates per N (default 3; quick: 2)")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between updates")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one more orion round at N=1,000 under py-spy (must be on PATH or in $PY_SPY)",
    )
    parser.add_argument(
        "--server-gc",
        metavar="A,B,C",
        help="gc.set_threshold(A, B, C) in the orion server (an experiment; default: Python's)",
    )
    parser.add_argument("--no-report", action="store_true", help="keep bench/RESULTS.md as it is")
    cfg = parser.parse_args(argv)
    viewers = [int(v.replace(",", "").replace("_", "")) for v in (cfg.viewers or "").split(",") if v] or (
        [100, 1000] if cfg.quick else [100, 1000, 5000]
    )
    cfg.updates = cfg.updates or (10 if cfg.quick else 30)
    cfg.warmup = cfg.warmup if cfg.warmup is not None else (2 if cfg.quick else 3)

    raise_nofile()
    OUT.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.run" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    results: dict[str, Any] = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "config": {
            "rows": ROWS,
            "updates": cfg.updates,
            "warmup": cfg.warmup,
            "pause": cfg.pause,
            "quick": cfg.quick,
            "heartbeat": 15,
            "server_gc": cfg.server_gc,
        },
        "load_before": os.getloadavg(),
        "runs": [],
    }
    started = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in viewers:
        capture = OUT / f"capture-{n}.json"
        print(f"N={n}: orion ...", flush=True)
        orion_raw = bench_orion(n, cfg, capture)
        orion = derive(orion_raw, n)
        print(
            f"  orion: last p50 {_ms(orion['last_ms']['p50'])}, p99 {_ms(orion['last_ms']['p99'])}, "
            f"{orion['cpu_us_per_delivery']:.0f} µs/delivery, {orion['missed']} missed, renders/publish "
            f"{orion['renders_per_publish']:.2f}, queries/publish {orion['queries_per_publish']:.2f}",
            flush=True,
        )
        print(f"N={n}: floor ...", flush=True)
        floor_raw = bench_floor(n, cfg, capture)
        floor = derive(floor_raw, n)
        print(
            f"  floor: last p50 {_ms(floor['last_ms']['p50'])}, p99 {_ms(floor['last_ms']['p99'])}, "
            f"{floor['cpu_us_per_delivery']:.0f} µs/delivery, {floor['missed']} missed",
            flush=True,
        )
        results["runs"].append(
            {"viewers": n, "orion": orion, "floor": floor, "raw": {"orion": orion_raw, "floor": floor_raw}}
        )
        (OUT / f"results-{stamp}.json").write_text(json.dumps(results, indent=1))
    last_capture = OUT / f"capture-{viewers[-1]}.json"
    print("encoder costs on the captured events ...", flush=True)
    results["encoder"] = encoder.measure(str(last_capture))
    if cfg.profile:
        py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
        if py_spy is None:
            print("--profile: py-spy not found (pip install py-spy, or set PY_SPY); skipped", flush=True)
        else:
            n = min(1000, max(viewers))
            print(f"N={n}: orion under py-spy (timings not reported) ...", flush=True)
            output = OUT / f"profile-{n}.txt"
            bench_orion(n, cfg, None, py_spy_recorder(py_spy, output), tag="-profile")
            results["profile"] = {"viewers": n, **summarize_profile(output)}
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


if __name__ == "__main__":
    sys.exit(main())
