"""The benchmark's peers: the same two workloads served the way two other stacks recommend.

- ``flask-sse``: Flask + Flask-SSE (Redis pub/sub) under gunicorn's gevent worker, with its
  own ``redis-server`` (`bench.peers.flask_sse_app`);
- ``datastar-starlette``: datastar-py on Starlette under uvicorn (`bench.peers.starlette_app`).

Both read and write a SQLite file holding orion's data (`bench.peers.data`), render with
orion's own markup (`bench.workloads`), send plain (``identity``) event streams, and count their
renders and SQL statements at ``GET /_peer/stats``.

Their dependencies are not the app's: ``pip install --target .cache/peers -r
bench/requirements-peers.txt`` (``make bench`` does it); `start` puts that folder first on the
server's ``PYTHONPATH``.

>>> peer = start("datastar-starlette", "B", Path("/tmp/peer"))   # doctest: +SKIP
>>> peer.url, peer.stats()                                       # doctest: +SKIP
('http://127.0.0.1:40211', {'renders': 0, 'queries': 0, 'command_queries': 0})
>>> peer.stop()                                                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peers.data import seed

ROOT = Path(__file__).resolve().parents[2]
DEPS = ROOT / ".cache" / "peers"
PEERS: tuple[str, ...] = ("flask-sse", "datastar-starlette")
WORKLOADS = ("T", "B")
#: Connections each server is configured to hold (the bench goes to 10,000 viewers).
MAX_CONNECTIONS = 12_000


@dataclass
class Peer:
    """A running peer server."""

    name: str
    workload: str
    url: str
    #: The process serving the connections (gunicorn's worker, the uvicorn process): for psutil.
    pid: int
    #: Other processes the peer needs (redis-server, gunicorn's master), reported separately.
    extra_pids: list[int]
    #: What the load client must ask for: the peers do not compress.
    encoding: str
    log_path: Path
    proc: subprocess.Popen[bytes]
    redis: Any = None  # tests.support.redis.RedisServer for flask-sse
    _stopped: bool = field(default=False, repr=False)

    def stats(self) -> dict[str, Any]:
        """``GET /_peer/stats``: cumulative ``renders``, ``queries`` (and ``command_queries``)."""
        # Generous: a peer that renders per viewer blocks its loop for seconds per update at 10k.
        with urllib.request.urlopen(self.url + "/_peer/stats", timeout=120) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server (quickly: open streams are cut) and its Redis."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            # gunicorn: SIGINT is its quick shutdown; uvicorn: SIGINT is its Ctrl-C.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.redis is not None:
            self.redis.stop()


def start(name: str, workload: str, folder: Path, *, rows: int = 50, env: dict[str, str] | None = None) -> Peer:
    """Start peer ``name`` on a free port with a fresh, seeded SQLite file in ``folder``.

    Returns once the server answers. ``workload`` ("T" or "B") is recorded; each peer serves
    both. ``env`` is added to the server's environment (e.g. a GC probe's ``PYTHONPATH``, which
    is appended after the peers' own).
    """
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; the peers are {', '.join(PEERS)}.")
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; use one of {', '.join(WORKLOADS)}.")
    if not (DEPS / "flask_sse.py").exists() or not (DEPS / "datastar_py").exists():
        raise RuntimeError(
            f"the peers' dependencies are missing from {DEPS}: run "
            f"'{sys.executable} -m pip install --target .cache/peers -r bench/requirements-peers.txt' "
            "in the repository (make bench does it)."
        )
    from tests.support.server import free_port

    folder.mkdir(parents=True, exist_ok=True)
    db = folder / f"{name}-{workload}.sqlite"
    for old in folder.glob(f"{db.name}*"):
        old.unlink()
    seed(db, rows)
    port = free_port()
    extra = dict(env or {})
    paths = [str(DEPS), str(ROOT), extra.pop("PYTHONPATH", "")]
    environ = {**os.environ, **extra, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PEER_DB": str(db)}
    log_path = folder / f"{name}-{workload}.log"
    redis = None
    if name == "flask-sse":
        from tests.support.redis import RedisServer

        redis = RedisServer(folder)
        # One Redis connection per viewer (Flask-SSE subscribes each stream on its own).
        redis.binary_args = ["--maxclients", str(MAX_CONNECTIONS + 1000)]
        redis.start()
        environ["PEER_REDIS_URL"] = redis.url
        command = _gunicorn(port)
    else:
        command = _uvicorn(port)
    with open(log_path, "ab") as log:
        # cwd=folder: gunicorn would otherwise load the repository's own gunicorn.conf.py.
        proc = subprocess.Popen(command, cwd=folder, env=environ, stdout=log, stderr=subprocess.STDOUT)
    peer = Peer(name, workload, f"http://127.0.0.1:{port}", proc.pid, [], "identity", log_path, proc, redis)
    try:
        _wait_ready(peer)
        if name == "flask-sse":
            peer.pid, master = _gunicorn_worker(proc.pid), proc.pid
            peer.extra_pids = [master, redis.proc.pid] if redis and redis.proc else [master]
    except BaseException:
        peer.stop()
        raise
    return peer


def _gunicorn(port: int) -> list[str]:
    """Flask-SSE's recommended server: gunicorn with the gevent worker, one process."""
    return [
        sys.executable, "-m", "gunicorn",
        "--worker-class", "gevent",
        "--workers", "1",
        "--worker-connections", str(MAX_CONNECTIONS),
        "--bind", f"127.0.0.1:{port}",
        "--backlog", "4096",
        "--timeout", "120",
        "--graceful-timeout", "5",
        "bench.peers.flask_sse_app:app",
    ]  # fmt: skip


def _uvicorn(port: int) -> list[str]:
    """uvicorn, one process, uvloop + httptools (its "standard" extras), no access log."""
    return [
        sys.executable, "-m", "uvicorn",
        "bench.peers.starlette_app:app",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--loop", "uvloop",
        "--http", "httptools",
        "--no-access-log",
        "--log-level", "warning",
        "--limit-concurrency", str(MAX_CONNECTIONS + 1000),
        "--backlog", "4096",
        "--timeout-graceful-shutdown", "3",
    ]  # fmt: skip


def _wait_ready(peer: Peer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.proc.poll() is not None:
            raise RuntimeError(f"peer {peer.name} exited with {peer.proc.returncode}:\n{peer.log()[-3000:]}")
        try:
            peer.stats()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"peer {peer.name} did not answer within {timeout}s:\n{peer.log()[-3000:]}")


def _gunicorn_worker(master: int) -> int:
    """The pid of gunicorn's one worker (the process that serves; the master only supervises)."""
    import psutil  # type: ignore[import-untyped]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = psutil.Process(master).children()
        if children:
            return int(children[0].pid)
        time.sleep(0.05)
    raise RuntimeError(f"gunicorn master {master} has no worker")
