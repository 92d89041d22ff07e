"""kill9: SIGKILL the server mid-burst, again and again; no acknowledged write may be lost.

Each iteration starts orion (real gunicorn, one gevent worker) on the same SQLite file,
fires a burst of ``POST /todos`` with unique titles from several client threads, and at a
random moment SIGKILLs the worker and the master together (nothing runs after: no atexit,
no close, no checkpoint). Then it opens the file with plain ``sqlite3``: ``PRAGMA
integrity_check`` must say ``ok`` and every title the server acknowledged (a 2xx came
back) must be there. Titles whose answer never arrived may or may not be there: their
requester was never told either way.

The promise under test is app/belt/store.py's: with WAL and ``synchronous=NORMAL`` a commit
survives a crash of the process (the WAL is in the OS page cache), and with the write queue
on (ORION_WRITE_QUEUE=1) a command answers only after its group commit. Both modes run.
"""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak import common

ITEM = "kill9"
JSON = {"Content-Type": "application/json"}


@dataclass
class Burst:
    """What one burst's clients saw: titles acknowledged, and other answers by status."""

    acknowledged: list[str] = field(default_factory=list)
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, title: str, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                self.acknowledged.append(title)


@dataclass
class Iteration:
    acknowledged: int
    present: int
    lost: list[str]
    integrity: str
    sent: int
    errors_5xx: int
    seconds: float


def _client(port: int, prefix: str, burst: Burst, stop: threading.Event) -> None:
    """Post unique titles on one keep-alive connection until the server dies or ``stop``."""
    n = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while not stop.is_set():
            title = f"{prefix}-{n}"
            n += 1
            with burst.lock:
                burst.sent += 1
            try:
                conn.request("POST", "/todos", json.dumps({"title": title}), JSON)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                return  # killed mid-request: this title is unacknowledged
            burst.answered(title, response.status)
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    finally:
        conn.close()


def check_file(db: Path, acknowledged: list[str]) -> tuple[str, int, list[str]]:
    """Open the killed server's file as a new process would: (integrity, present, lost)."""
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())
        titles = {r[0] for r in conn.execute("SELECT title FROM todos")}
    present = sum(1 for t in acknowledged if t in titles)
    lost = [t for t in acknowledged if t not in titles]
    return integrity, present, lost


def iterate(
    db: Path, env: dict[str, str], *, clients: int, kill_after: tuple[float, float], rng: random.Random
) -> Iteration:
    """One start → burst → SIGKILL → check round on ``db``."""
    started = time.monotonic()
    server = common.start(db, env)
    burst = Burst()
    stop = threading.Event()
    run = uuid.uuid4().hex[:8]
    threads = [
        threading.Thread(target=_client, args=(server.port, f"k9-{run}-{i}", burst, stop), daemon=True)
        for i in range(clients)
    ]
    try:
        for t in threads:
            t.start()
        time.sleep(rng.uniform(*kill_after))
        common.kill9(server)
    finally:
        stop.set()
        if server.proc is not None and server.proc.poll() is None:  # an exception before the kill
            common.kill9(server)
        for t in threads:
            t.join(timeout=15)
    integrity, present, lost = check_file(db, burst.acknowledged)
    return Iteration(
        acknowledged=len(burst.acknowledged),
        present=present,
        lost=lost,
        integrity=integrity,
        sent=burst.sent,
        errors_5xx=sum(n for s, n in burst.statuses.items() if s >= 500),
        seconds=time.monotonic() - started,
    )


def campaign(iterations: int, *, write_queue: bool, clients: int = 6, seed: int = 9) -> dict[str, Any]:
    """``iterations`` kills on one persistent file; the totals for one store mode."""
    rng = random.Random(seed)
    env = {"ORION_AUTH": "local", "ORION_WRITE_QUEUE": "1" if write_queue else "0"}
    rounds: list[Iteration] = []
    with common.tmpdir(ITEM) as d:
        db = d / "kill9.sqlite"
        for _ in range(iterations):
            rounds.append(iterate(db, env, clients=clients, kill_after=(0.15, 0.8), rng=rng))
        with closing(sqlite3.connect(db)) as conn:
            rows = conn.execute("SELECT count(*) FROM todos").fetchone()[0]
    lost = [t for r in rounds for t in r.lost]
    seconds = [r.seconds for r in rounds]
    return {
        "mode": "write queue (group commit)" if write_queue else "one commit per command",
        "kills": len(rounds),
        "sent": sum(r.sent for r in rounds),
        "acknowledged": sum(r.acknowledged for r in rounds),
        "present": sum(r.present for r in rounds),
        "lost": len(lost),
        "lost_examples": lost[:5],
        "integrity_ok": sum(1 for r in rounds if r.integrity == "ok"),
        "integrity_bad": [r.integrity for r in rounds if r.integrity != "ok"][:3],
        "errors_5xx": sum(r.errors_5xx for r in rounds),
        "rows_at_end": rows,
        "seconds_per_iteration_mean": round(sum(seconds) / len(seconds), 2),
        "seconds_per_iteration_max": round(max(seconds), 2),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """kill -9 loop: 100 SIGKILLs one commit per command + 50 with the write queue (quick: 5 + 5).

    About 2.5 s an iteration (most of it gunicorn booting), so ~6 minutes in full.
    """
    n, queued = (5, 5) if quick else (100, 50)
    modes = [campaign(n, write_queue=False), campaign(queued, write_queue=True)]
    kills = sum(m["kills"] for m in modes)
    lost = sum(m["lost"] for m in modes)
    ok = sum(m["integrity_ok"] for m in modes)
    acknowledged = sum(m["acknowledged"] for m in modes)
    errors = sum(m["errors_5xx"] for m in modes)
    met = lost == 0 and ok == kills and errors == 0
    figure = (
        f"{kills} SIGKILLs mid-burst, {acknowledged:,} acknowledged writes, {lost} lost, "
        f"integrity_check ok {ok}/{kills}"
    )
    lines = [
        "Each iteration: start orion (gunicorn + gevent worker, ORION_AUTH=local) on one SQLite file "
        "kept across iterations, 6 client threads post unique todos on keep-alive connections, "
        "SIGKILL worker and master together 0.15–0.8 s into the burst, then open the file with "
        "sqlite3: `PRAGMA integrity_check` and every acknowledged (2xx) title looked up.",
        "",
        "| store mode | kills | sent | acknowledged | lost | integrity ok | 5xx | s/iteration (mean / max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in modes:
        lines.append(
            f"| {m['mode']} | {m['kills']} | {m['sent']:,} | {m['acknowledged']:,} | {m['lost']} | "
            f"{m['integrity_ok']}/{m['kills']} | {m['errors_5xx']} | "
            f"{m['seconds_per_iteration_mean']} / {m['seconds_per_iteration_max']} |"
        )
    lines += [
        "",
        "Unacknowledged titles (in flight at the kill) may or may not be present; the requester "
        "was never answered. synchronous=NORMAL in WAL: a commit is in the OS page cache before "
        "the answer leaves, so a process kill cannot lose it (only an OS crash could).",
    ]
    return common.result(
        ITEM,
        title="kill -9 during command bursts",
        figure=figure,
        target="0 acknowledged writes lost, integrity_check ok on every kill, no 5xx",
        met=met,
        numbers={
            "kills": kills,
            "acknowledged": acknowledged,
            "lost": lost,
            "integrity_ok": ok,
            "errors_5xx": errors,
            "modes": modes,
        },
        details="\n".join(lines),
    )


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
