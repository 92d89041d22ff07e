"""``flask orion doctor``: what goes wrong in deployment, checked before it does, with the fix.

Each check returns findings: ok, or a problem with the exact change that fixes it. The
checks read the same files and settings the server will (gunicorn.conf.py, the store, the
Datastar client) so that what passes here is what runs there.
"""

from __future__ import annotations

import ast
import hashlib
import os
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runtime import Runtime
from .scaffold import read_constant

#: A stream's heartbeat must stay well under the idle timeout of what sits in front
#: (nginx's proxy_read_timeout and most load balancers: 60 s).
MAX_HEARTBEAT = 30.0


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str = ""
    warning: bool = False  # worth saying, not worth failing a deploy over


def check_all(root: Path, rt: Runtime, config: dict[str, Any], env: dict[str, str] | None = None) -> list[Finding]:
    env = dict(os.environ if env is None else env)
    return [
        *check_gevent(root, env),
        *check_workers(root, env),
        *check_store(rt),
        check_heartbeat(rt.heartbeat),
        check_datastar(root, config.get("ORION_DATASTAR_URL", "/static/datastar.js")),
        *check_mode(config),
    ]


def _gunicorn_conf(root: Path, env: dict[str, str]) -> dict[str, Any]:
    """gunicorn.conf.py's settings, evaluated the way gunicorn does (with this environment)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return runpy.run_path(str(root / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def in_gunicorn() -> bool:
    """Are we inside a gunicorn worker (rather than the flask CLI)?"""
    return "gunicorn.workers.base" in sys.modules and "gunicorn" in os.path.basename(sys.argv[0] if sys.argv else "")


def check_gevent(root: Path, env: dict[str, str]) -> list[Finding]:
    """gevent must patch the standard library before the app (sqlite3, sockets) is imported."""
    if in_gunicorn():
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            return [Finding(True, "gevent: this worker's standard library is patched")]
        return [
            Finding(
                False,
                "gevent: this worker's sockets are not patched, so one slow client blocks every other",
                'run gunicorn with the gevent worker: `worker_class = "gevent"` in gunicorn.conf.py '
                "(or -k gevent), and never preload the app",
            )
        ]
    conf_path = root / "gunicorn.conf.py"
    if not conf_path.exists():
        return [
            Finding(
                False,
                "gunicorn: there is no gunicorn.conf.py",
                "copy gunicorn.conf.py from a new app "
                "(`flask orion new`): worker_class gevent, one worker, preload_app False",
            )
        ]
    conf = _gunicorn_conf(root, env)
    found = []
    if conf.get("worker_class") != "gevent":
        found.append(
            Finding(
                False,
                f"gunicorn: worker_class is {conf.get('worker_class', 'sync')!r}; "
                "each stream would hold a whole worker",
                'set `worker_class = "gevent"` in gunicorn.conf.py',
            )
        )
    if conf.get("preload_app"):
        found.append(
            Finding(
                False,
                "gunicorn: preload_app imports the app in the master, before the gevent worker patches "
                "the standard library (sqlite3 and sockets would block the hub)",
                "set `preload_app = False` in gunicorn.conf.py",
            )
        )
    early = _top_level_app_imports(conf_path)
    if early:
        found.append(
            Finding(
                False,
                f"gunicorn.conf.py imports {', '.join(early)} at the top: "
                "the master loads the app before gevent patches",
                "import the app only inside the hooks (post_worker_init, worker_exit), as the belt's hooks do",
            )
        )
    flaskenv = root / ".flaskenv"
    if flaskenv.exists() and "wsgi" in flaskenv.read_text().split("FLASK_APP=", 1)[-1].split("\n", 1)[0]:
        found.append(
            Finding(
                False,
                ".flaskenv points the flask CLI at wsgi.py, which is gunicorn's entry point",
                "set `FLASK_APP=app:create_app` in .flaskenv",
            )
        )
    if not found:
        found.append(Finding(True, "gunicorn: gevent worker, app not preloaded (gunicorn.conf.py)"))
    return found


def _top_level_app_imports(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:
        modules = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        names += [m for m in modules if m.split(".")[0] in ("app", "wsgi")]
    return names


def check_workers(root: Path, env: dict[str, str]) -> list[Finding]:
    if not (root / "gunicorn.conf.py").exists():
        return []
    workers = int(_gunicorn_conf(root, env).get("workers", 1))
    bus = env.get("ORION_BUS", "local")
    if workers > 1 and bus == "local":
        return [
            Finding(
                False,
                f"workers: {workers} gunicorn workers on the in-process bus: a change in one never repaints "
                "pages held by another, and each opens its own SQLite writer",
                "run one gevent worker per node (unset ORION_WORKERS: one holds thousands of streams), "
                "or share a bus: ORION_BUS=redis with ORION_REDIS_URL (`flask orion gen recipe redis_bus`)",
            )
        ]
    return [Finding(True, f"workers: {workers} on the {bus} bus")]


def check_store(rt: Runtime) -> list[Finding]:
    store = rt.store
    found = []
    row = store.one("PRAGMA journal_mode")
    mode = str(row[0]).lower() if row is not None else "?"
    if mode != "wal":
        found.append(
            Finding(
                False,
                f"store: journal_mode is {mode!r}, not WAL: readers would block the writer and every stream",
                f"keep {store.path} on a local disk (WAL needs shared memory: not NFS or SMB), then restart",
            )
        )
    row = store.one("PRAGMA busy_timeout")
    timeout = int(row[0]) if row is not None else 0
    if timeout < 1000:
        found.append(
            Finding(
                False,
                f"store: busy_timeout is {timeout} ms: a backup or a CLI write would fail commands at once",
                "build the store with the default busy_timeout_ms=5000: belt.Store(path)",
            )
        )
    folder = Path(store.path).parent
    if not os.access(folder, os.W_OK):
        found.append(
            Finding(
                False,
                f"store: {folder} is not writable: SQLite creates its -wal and -shm files there",
                f"give the service user write access to {folder}",
            )
        )
    if not found:
        found.append(Finding(True, f"store: WAL, busy_timeout {timeout} ms ({store.path})"))
    return found


def check_heartbeat(seconds: float) -> Finding:
    if 0 < seconds <= MAX_HEARTBEAT:
        return Finding(True, f"heartbeat: every {seconds:g} s")
    return Finding(
        False,
        f"heartbeat: ORION_HEARTBEAT={seconds:g} s; proxies drop a stream that is idle for 60 s, and a "
        "dead client is noticed only at a heartbeat",
        "set ORION_HEARTBEAT=15 (or unset it: 15 is the default)",
    )


def check_datastar(root: Path, url: str) -> Finding:
    if url != "/static/datastar.js":
        return Finding(
            True, f"datastar: pages load the client from {url} (not checked here: pin a v1 build)", warning=True
        )
    client = root / "app" / "static" / "datastar.js"
    script = root / "scripts" / "install_datastar.py"
    expected = read_constant(script, "FILE_SHA256")
    install = "run `make setup` (or `python scripts/install_datastar.py`)"
    if not client.exists():
        return Finding(False, "datastar: app/static/datastar.js is missing: no page would be live", install)
    if expected is None:
        return Finding(
            False,
            f"datastar: {script} holds no FILE_SHA256 to check the client against",
            "copy scripts/install_datastar.py from a new app (`flask orion new`)",
        )
    actual = hashlib.sha256(client.read_bytes()).hexdigest()
    if actual != expected:
        return Finding(
            False,
            f"datastar: app/static/datastar.js has SHA-256 {actual[:12]}…, not the verified {expected[:12]}…",
            f"delete app/static/datastar.js, then {install}",
        )
    return Finding(True, f"datastar: client present, SHA-256 {expected[:12]}… verified")


def check_mode(config: dict[str, Any]) -> list[Finding]:
    if config.get("ORION_ENV") == "development":
        return [
            Finding(
                True,
                "mode: ORION_ENV=development shows stack traces on the page; deploy with ORION_ENV=production",
                warning=True,
            )
        ]
    return [Finding(True, "mode: production")]


def report(findings: list[Finding]) -> tuple[str, bool]:
    """The findings as text, and whether all is well."""
    lines = []
    for f in findings:
        mark = "ok  " if f.ok and not f.warning else "note" if f.ok else "FAIL"
        lines.append(f"{mark}  {f.what}")
        if not f.ok:
            lines.append(f"      fix: {f.fix}")
    problems = sum(1 for f in findings if not f.ok)
    lines.append(f"{problems} problem{'s' if problems != 1 else ''} found." if problems else "All good.")
    return "\n".join(lines), problems == 0
