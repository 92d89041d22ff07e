"""Install the Datastar v1 client into app/static/datastar.js, verified by hash.

The v1 client is not on the npm registry (npm carries only 0.21.4 and 1.0.0-beta.11,
which speak the older protocol). PyPI carries the v1.0.1 build inside the wheel
starhtml==0.7.0, so we download that wheel (never install it: it needs Python >= 3.12
and we only want one file), check the wheel's and the file's SHA-256, and copy the file.
Nothing downloaded is committed. Run by `make setup`; idempotent.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "starhtml==0.7.0"
WHEEL_SHA256 = "3515ac3a21f1be7ce3e724b45440ed2be20d3afcdb60f92f6ebbfaec883d3ea2"
MEMBER = "starhtml/static/js/datastar-core.js"
FILE_SHA256 = "31c8c9efb895beadeba5f73407c3ca60201dee321c5dea56c182817b475bde9f"
TARGET = Path(__file__).resolve().parent.parent / "app" / "static" / "datastar.js"
CACHE = Path(__file__).resolve().parent.parent / ".cache"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    if TARGET.exists() and sha256(TARGET.read_bytes()) == FILE_SHA256:
        return 0
    CACHE.mkdir(exist_ok=True)
    wheels = list(CACHE.glob("starhtml-0.7.0-*.whl"))
    if not wheels:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--python-version",
                    "3.12",
                    WHEEL,
                    "-d",
                    tmp,
                ],
                check=True,
            )
            for whl in Path(tmp).glob("*.whl"):
                (CACHE / whl.name).write_bytes(whl.read_bytes())
        wheels = list(CACHE.glob("starhtml-0.7.0-*.whl"))
    wheel = wheels[0]
    if sha256(wheel.read_bytes()) != WHEEL_SHA256:
        wheel.unlink()
        sys.exit(
            f"{wheel.name}: SHA-256 mismatch, refusing to install the Datastar client. "
            "The cached wheel was removed; run `make setup` again."
        )
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(MEMBER)
    if sha256(data) != FILE_SHA256:
        sys.exit(f"{MEMBER} inside {wheel.name}: SHA-256 mismatch, refusing to install it.")
    TARGET.write_bytes(data)
    print(f"installed Datastar v1.0.1 client -> {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
