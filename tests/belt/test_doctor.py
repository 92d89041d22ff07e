"""app.belt.doctor and `flask orion doctor`: each deployment mistake is named with its fix,
and the command exits 1 while any remains; `flask orion dev` serves in development, reloading."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.belt import Store, doctor
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The files doctor reads, copied from this repo."""
    for rel in ("gunicorn.conf.py", ".flaskenv", "scripts/install_datastar.py", "app/static/datastar.js"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tmp_path / rel)
    return tmp_path


def fails(findings: list[doctor.Finding]) -> list[doctor.Finding]:
    return [f for f in findings if not f.ok]


def test_this_repos_gunicorn_settings_pass(project: Path) -> None:
    assert not fails(doctor.check_gevent(project, {}))
    assert not fails(doctor.check_workers(project, {}))


@pytest.mark.parametrize(
    ("edit", "fix"),
    [
        (lambda t: t.replace("preload_app = False", "preload_app = True"), "set `preload_app = False`"),
        (lambda t: t.replace('worker_class = "gevent"', 'worker_class = "sync"'), 'set `worker_class = "gevent"`'),
        (lambda t: "from app import create_app\n" + t, "import the app only inside the hooks"),
    ],
)
def test_gevent_must_patch_before_the_app_is_imported(project: Path, edit: object, fix: str) -> None:
    conf = project / "gunicorn.conf.py"
    conf.write_text(edit(conf.read_text()))  # type: ignore[operator]
    [problem] = fails(doctor.check_gevent(project, {}))
    assert fix in problem.fix


def test_the_flask_cli_must_not_import_wsgi(project: Path) -> None:
    (project / ".flaskenv").write_text("FLASK_APP=wsgi:app\n")
    [problem] = fails(doctor.check_gevent(project, {}))
    assert problem.fix == "set `FLASK_APP=app:create_app` in .flaskenv"


def test_inside_a_worker_the_patch_itself_is_checked(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "in_gunicorn", lambda: True)
    [finding] = doctor.check_gevent(project, {})
    assert not finding.ok  # this test process is not patched (Playwright's needs it so)
    assert "sockets are not patched" in finding.what


def test_more_than_one_worker_needs_a_shared_bus(project: Path) -> None:
    [problem] = fails(doctor.check_workers(project, {"ORION_WORKERS": "3"}))
    assert "3 gunicorn workers on the in-process bus" in problem.what and "ORION_BUS=redis" in problem.fix
    assert not fails(doctor.check_workers(project, {"ORION_WORKERS": "3", "ORION_BUS": "redis"}))


def test_the_store_needs_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    from app.belt.runtime import Runtime

    store = Store(str(tmp_path / "ok.sqlite"))
    impatient = Store(str(tmp_path / "impatient.sqlite"), busy_timeout_ms=0)
    try:
        assert not fails(doctor.check_store(Runtime(store=store, bus=None)))  # type: ignore[arg-type]
        [problem] = fails(doctor.check_store(Runtime(store=impatient, bus=None)))  # type: ignore[arg-type]
        assert "busy_timeout is 0 ms" in problem.what
    finally:
        store.close()
        impatient.close()


@pytest.mark.parametrize(("seconds", "ok"), [(15, True), (1, True), (0, False), (90, False)])
def test_the_heartbeat_stays_under_the_proxies_idle_timeout(seconds: float, ok: bool) -> None:
    finding = doctor.check_heartbeat(seconds)
    assert finding.ok is ok
    if not ok:
        assert finding.fix == "set ORION_HEARTBEAT=15 (or unset it: 15 is the default)"


def test_the_datastar_client_must_be_there_and_match_its_hash(project: Path) -> None:
    assert doctor.check_datastar(project, "/static/datastar.js").ok
    client = project / "app/static/datastar.js"
    client.write_bytes(client.read_bytes() + b"\n// tampered")
    tampered = doctor.check_datastar(project, "/static/datastar.js")
    assert not tampered.ok and "delete app/static/datastar.js, then run `make setup`" in tampered.fix
    client.unlink()
    missing = doctor.check_datastar(project, "/static/datastar.js")
    assert not missing.ok and "is missing" in missing.what
    assert doctor.check_datastar(project, "https://cdn.example/datastar.js").warning


def run_doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "ORION_DB": str(tmp_path / "doctor.sqlite"), "ORION_TENANCY": "off", **env}
    return subprocess.run(
        [sys.executable, "-m", "flask", "orion", "doctor"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_flask_orion_doctor_exits_1_and_prints_each_fix(tmp_path: Path) -> None:
    good = run_doctor(tmp_path, ORION_HEARTBEAT="15")
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.rstrip().endswith("All good.")
    bad = run_doctor(tmp_path, ORION_HEARTBEAT="120", ORION_WORKERS="2")
    assert bad.returncode == 1
    assert "FAIL  heartbeat: ORION_HEARTBEAT=120 s" in bad.stdout
    assert "fix: set ORION_HEARTBEAT=15" in bad.stdout
    assert "FAIL  workers: 2 gunicorn workers on the in-process bus" in bad.stdout
    assert "2 problems found." in bad.stdout


def test_flask_orion_dev_serves_in_development_and_reloads(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ORION_DB": str(tmp_path / "dev.sqlite"),
        "ORION_TENANCY": "off",
        "ORION_AUTH": "local",
        "ORION_IDENTITY_FILE": str(tmp_path / "identity.json"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "orion", "dev", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_orion/dev", timeout=2) as r:
                    first = r.read1().decode()  # the live-reload stream exists only in development
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "flask orion dev did not serve"
                time.sleep(0.2)
        assert "location.reload()" in first
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/patterns", timeout=5) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=20)[0]
    assert "orion dev: http://127.0.0.1:" in out
    assert "GET /patterns -> 200 in" in out  # the readable access line
    assert "Listening at" in out and "gevent" in out.lower()
