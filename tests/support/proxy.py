"""deploy/nginx.conf run for real: rendered into a folder of its own, on free loopback ports,
with a throwaway self-signed certificate, in front of a LiveServer."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.server import ROOT, free_port

SITE = ROOT / "deploy" / "nginx.conf"
INSTALL_HINT = (
    "{0} is missing: the proxy test runs the real one. Install it with 'apt-get install -y {1}' "
    "(make system and .ci/run do it when run as root)."
)


def missing_tools() -> str | None:
    for tool, package in (("nginx", "nginx"), ("openssl", "openssl"), ("curl", "curl")):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            return INSTALL_HINT.format(tool, package)
    return None


class Proxy:
    """nginx with deploy/nginx.conf in front of ``upstream_port``: ``https_url``, ``stop()``."""

    def __init__(self, folder: Path, upstream_port: int) -> None:
        self.folder = folder
        self.https_port = free_port()
        self.http_port = free_port()
        self.https_url = f"https://127.0.0.1:{self.https_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._render(upstream_port)

    def _render(self, upstream_port: int) -> None:
        folder = self.folder
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        site = SITE.read_text()
        for old, new in {
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream_port};",
            "    listen 80;\n": f"    listen 127.0.0.1:{self.http_port};\n",
            "    listen [::]:80;\n": "",
            "    listen 443 ssl http2;\n": f"    listen 127.0.0.1:{self.https_port} ssl http2;\n",
            "    listen [::]:443 ssl http2;\n": "",
            "/etc/letsencrypt/live/example.com/fullchain.pem": str(cert),
            "/etc/letsencrypt/live/example.com/privkey.pem": str(key),
        }.items():
            assert old in site, f"deploy/nginx.conf no longer has {old!r}: update tests/support/proxy.py"
            site = site.replace(old, new)
        (folder / "orion.conf").write_text(site)
        temp = "\n".join(
            f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (folder / "nginx.conf").write_text(
            f"worker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} warn;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n    access_log {folder / 'access.log'};\n{temp}\n    include {folder / 'orion.conf'};\n}}\n"
        )

    def start(self, timeout: float = 10.0) -> Proxy:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = str(self.folder / "nginx.conf")
        args = [nginx, "-e", str(self.folder / "error.log"), "-p", str(self.folder), "-c", conf]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx -t refused the rendered config:\n{check.stderr}"
        self.proc = subprocess.Popen([*args, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown: open streams are cut
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
