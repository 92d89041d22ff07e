"""Rung 0: the systemd units pass `systemd-analyze verify`, keep their promises on paper
(hardening, stop timeout above gunicorn's drain, restore before start), and gunicorn really
speaks sd_notify, which `Type=notify` relies on.

The units name /opt/orion (the checkout, with its venv in /opt/orion/.venv). verify checks that
every ExecStart binary exists, so the test renders them with /opt/orion replaced by this
checkout, whose .venv holds gunicorn, flask and litestream.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.server import ROOT, LiveServer

UNITS = sorted((ROOT / "systemd").glob("*.service"))
ANALYZE_HINT = (
    "systemd-analyze is missing: install it with 'apt-get install -y systemd' "
    "(make system and .ci/run do it when run as root)."
)


def directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail(ANALYZE_HINT)
    assert {u.name for u in UNITS} == {"orion.service", "orion-worker.service", "orion-litestream.service"}
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/orion", str(ROOT)))
    proc = subprocess.run(
        [analyze, "verify", "--man=no", *(str(tmp_path / u.name) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on unknown keys too, only warning: any output at all is a finding.
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


def test_the_app_unit_is_hardened_restores_first_and_outlasts_the_drain() -> None:
    unit = directives(ROOT / "systemd" / "orion.service")
    for key, value in {
        "Type": "notify",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "UMask": "0077",
        "StateDirectory": "orion",
        "RuntimeDirectory": "orion",
        "KillMode": "mixed",
    }.items():
        assert unit.get(key) == [value], f"orion.service: {key}={unit.get(key)} (want {value})"
    graceful = int(re.search(r"^graceful_timeout = (\d+)", (ROOT / "gunicorn.conf.py").read_text(), re.M)[1])  # type: ignore[index]
    assert int(unit["TimeoutStopSec"][0]) > graceful
    [pre] = unit["ExecStartPre"]
    assert "litestream restore" in pre and "-if-db-not-exists" in pre and "-if-replica-exists" in pre
    assert pre.endswith(unit["Environment"][1].removeprefix("ORION_DB="))  # restores the file the app opens
    [start] = unit["ExecStart"]
    assert "gunicorn -c gunicorn.conf.py" in start and "${RUNTIME_DIRECTORY}" in start
    worker = directives(ROOT / "systemd" / "orion-worker.service")
    assert worker["ExecStart"] == ["/opt/orion/.venv/bin/flask orion worker"]
    litestream = directives(ROOT / "systemd" / "orion-litestream.service")
    assert litestream["ExecStart"] == ["/opt/orion/.venv/bin/litestream replicate -config /etc/orion/litestream.yml"]


def test_gunicorn_tells_systemd_it_is_ready(tmp_path: Path) -> None:
    """Type=notify: the master sends READY=1 to $NOTIFY_SOCKET once it listens."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(20)
        server = LiveServer(tmp_path / "app.sqlite", env={"NOTIFY_SOCKET": str(path)}).start()
        try:
            message = notify.recv(4096).decode()
        finally:
            server.stop()
    assert "READY=1" in message.splitlines()
