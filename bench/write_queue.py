"""Group commit: a burst of single-row commands, write queue off vs on, synchronous=FULL.

    python -m bench.write_queue                      # 20,000 commands from 100 clients, then a sweep
    python -m bench.write_queue --commands 5000 --clients 10,100

Each "client" is a greenlet that runs commands back to back, the way request greenlets do
under load: a command is ``with store.tx(): INSERT one row; publish`` and counts as done when
``tx()`` returns, i.e. when its row is durable (with the write queue on, when its batch has
committed). Each command first yields to the hub (a request greenlet waits for its turn after
its socket read); latency runs from that yield to ``tx()`` returning. A ticker greenlet
measures how long the hub was ever blocked (every commit's fsync runs on the hub).

Writes bench/RESULTS-write-queue.md and bench/out/write_queue.json. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gevent

from app.belt import Bus
from app.belt.ctx import BoundBus
from app.belt.store import Store

OUT = Path(__file__).parent / "out"
RESULTS = Path(__file__).parent / "RESULTS-write-queue.md"


def run(commands: int, clients: int, queue: bool, folder: Path) -> dict[str, Any]:
    path = folder / f"wq-{'on' if queue else 'off'}-{clients}.sqlite"
    store = Store(path, synchronous="FULL", write_queue=queue)
    store.exec("CREATE TABLE events (id INTEGER PRIMARY KEY, client INTEGER NOT NULL, body TEXT NOT NULL)")
    bus = BoundBus(Bus(), store)
    heard = [0]
    bus.subscribe("events", lambda: heard.__setitem__(0, heard[0] + 1))
    latencies: list[float] = []
    remaining = [commands]
    gaps: list[float] = []
    ticking = [True]

    def tick() -> None:
        last = time.perf_counter()
        while ticking[0]:
            gevent.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    def client(n: int) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            t0 = time.perf_counter()
            # The next request arrives: its greenlet waits for its turn on the hub, as a request
            # greenlet does after its socket read. (Without this yield one client would run
            # every command while the others never got the hub.)
            gevent.sleep(0)
            with store.tx():
                store.exec("INSERT INTO events (client, body) VALUES (?, ?)", (n, "x" * 64))
                bus.publish("events")
            latencies.append(time.perf_counter() - t0)

    before = (store.stats.commits, store.stats.batches)
    ticker = gevent.spawn(tick)
    gevent.sleep(0.02)
    start = time.perf_counter()
    gevent.joinall([gevent.spawn(client, n) for n in range(clients)], raise_error=True)
    elapsed = time.perf_counter() - start
    ticking[0] = False
    ticker.join()
    rows = store.one("SELECT count(*) AS n FROM events")["n"]  # type: ignore[index]
    commits = store.stats.commits - before[0]
    batches = store.stats.batches - before[1]
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "queue": queue,
        "clients": clients,
        "commands": len(latencies),
        "rows": rows,
        "publishes_heard": heard[0],
        "seconds": round(elapsed, 3),
        "commands_per_s": round(len(latencies) / elapsed),
        "sqlite_commits": commits,
        "batches": batches,
        "mean_batch": round(len(latencies) / batches, 1) if batches else 1.0,
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(latencies[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
        "worst_hub_gap_ms": round((max(gaps) - 0.005) * 1000, 1) if gaps else None,
    }


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def report(main: list[dict[str, Any]], sweep: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    off, on = main
    speedup = on["commands_per_s"] / off["commands_per_s"]
    lines = [
        "# Write queue (group commit): results",
        "",
        "Written by `python -m bench.write_queue` (see its docstring). A burst of single-row commands",
        "(`with store.tx(): INSERT; publish`), `synchronous=FULL` (one fsync per SQLite commit), from",
        "greenlet clients running commands back to back. Each yields to the hub before its command",
        "(a request greenlet waits for its turn after reading its socket); latency runs from that",
        "yield to the moment `tx()` returns, so it includes the wait for the hub. With the write",
        "queue on, `tx()` returns after its batch committed: every figure here is *durable* commands.",
        "",
        f"Machine: {meta['machine']['cpus']} CPUs, Python {meta['machine']['python']}, "
        f"{meta['machine']['platform']}; load average before {meta['machine']['load_average']}, "
        f"after {meta['load_after']}. Database on {meta['folder']}.",
        "",
        f"## The burst: {off['commands']:,} commands from {off['clients']} clients",
        "",
        f"{len(meta['rounds']['off'])} rounds of each, off and on alternated; the median round of each is shown "
        f"(commands/s of every round: off {meta['rounds']['off']}, on {meta['rounds']['on']}).",
        "",
        "| write queue | durable commands/s | SQLite commits (fsyncs) | mean batch | p50 ms | p99 ms | max ms |"
        " worst hub stall ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in (off, on):
        lines.append(
            f"| {'on' if r['queue'] else 'off'} | {r['commands_per_s']:,} | {r['sqlite_commits']:,} | "
            f"{r['mean_batch']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['worst_hub_gap_ms']} |"
        )
    lines += [
        "",
        f"**{speedup:.1f}x** the durable commands per second with the queue on "
        f"(goal: at least 5x), p99 latency {on['p99_ms']} ms (goal: at most 50 ms): "
        f"{'both met' if speedup >= 5 and on['p99_ms'] <= 50 else 'NOT met'}.",
        "",
        "## By number of concurrent clients",
        "",
        "One client is one command at a time: nothing to batch, so the queue only adds a hub",
        "tick. The more commands are in flight at once, the bigger the batches.",
        "",
        "| clients | queue | commands/s | mean batch | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in sweep:
        lines.append(
            f"| {r['clients']} | {'on' if r['queue'] else 'off'} | {r['commands_per_s']:,} | "
            f"{r['mean_batch']} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    lines += [
        "",
        "## Reading it",
        "",
        "- Off, every command is its own `BEGIN IMMEDIATE … COMMIT` and its own fsync; the hub",
        "  waits for each fsync, so commands per second is about 1 / (fsync + statement time).",
        "- On, the commands of one hub tick run as savepoints of one transaction and share one",
        "  COMMIT and fsync; a command's `tx()` returns when that commit is done, so latency is one",
        "  batch cycle (every command of the tick, then one fsync), not one fsync per queued command.",
        "- The durability window with the queue on is the open batch: a crash before it commits",
        "  loses that batch (cleanly rolled back by SQLite), and none of its commands had answered.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--clients", default="100", help="clients of the main burst (first value) ")
    parser.add_argument("--sweep", default="1,10,100,1000", help="client counts of the sweep ('' for none)")
    parser.add_argument("--rounds", type=int, default=3, help="off/on rounds of the burst, alternated (median kept)")
    parser.add_argument("--dir", default=None, help="where the database lives (default: a temp dir on disk)")
    args = parser.parse_args()
    meta: dict[str, Any] = {"machine": machine()}
    folder = (
        Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="orion-wq-", dir=Path.cwd() / "bench" / "out"))
    )
    folder.mkdir(parents=True, exist_ok=True)
    meta["folder"] = str(folder)
    clients = int(args.clients.split(",")[0])
    # Off and on alternate, so a change in the machine's load hits both; the median round of
    # each (by commands/s) is the one reported.
    rounds: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for queue in (False, True):
            r = run(args.commands, clients, queue, folder)
            print(json.dumps(r))
            rounds[queue].append(r)
    main_runs = [sorted(rounds[q], key=lambda r: r["commands_per_s"])[len(rounds[q]) // 2] for q in (False, True)]
    meta["rounds"] = {("on" if q else "off"): [r["commands_per_s"] for r in rs] for q, rs in rounds.items()}
    sweep = []
    for c in [int(x) for x in args.sweep.split(",") if x]:
        for queue in (False, True):
            r = run(max(args.commands // 4, c * 5), c, queue, folder)
            print(json.dumps(r))
            sweep.append(r)
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    OUT.mkdir(exist_ok=True)
    (OUT / "write_queue.json").write_text(json.dumps({"meta": meta, "main": main_runs, "sweep": sweep}, indent=2))
    RESULTS.write_text(report(main_runs, sweep, meta))
    try:
        folder.rmdir()
    except OSError:
        pass
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
