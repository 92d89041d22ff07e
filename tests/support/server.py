"""Start the app under real gunicorn with the gevent worker on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """One app process: ``url``, ``stats()``, ``request()``, ``stop()``."""

    def __init__(
        self, db: Path, *, env: dict[str, str] | None = None, port: int | None = None, app: str = "wsgi:app"
    ) -> None:
        self.app = app  # what gunicorn serves: a test may serve create_app() plus a blueprint of its own
        self.db = db
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = db.parent / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "ORION_ENV": "production",
            "ORION_DB": str(db),
            "ORION_HEARTBEAT": "1",
            "ORION_STATS": "1",
            "SECRET_KEY": "test-secret",
            # The self-host mode (one local identity, no sign-in) unless a test asks for accounts.
            "ORION_AUTH": "local",
            # One store with the todos at "/" unless a test asks for a file per workspace.
            "ORION_TENANCY": "off",
            "ORION_AUDIT_JSONL": str(db.parent / f"audit-{db.stem}.jsonl"),
            "ORION_IDENTITY_FILE": str(db.parent / "identity.json"),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> LiveServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    "gunicorn.conf.py",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    self.app,
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/_orion/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_orion/stats", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def wait_for(self, predicate: Any, timeout: float = 5.0, what: str = "condition") -> dict[str, Any]:
        """Poll stats until ``predicate(stats)`` holds; return them."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while not predicate(stats):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; stats: {stats}")
            time.sleep(0.05)
            stats = self.stats()
        return stats

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not stop within {timeout}s of signal {sig}:\n{self.log()}") from None
