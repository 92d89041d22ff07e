"""What the capability checks cost on the render path: flags, breakers, entitlements.

    .venv/bin/python -m bench.capabilities

Each figure is the median of 7 runs of a tight loop, in microseconds per call, on this
machine, in one process (no gevent patching needed: none of these calls yields). Nothing here
is asserted; the numbers are for the README and for noticing a regression by eye.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from app.belt.breaker import Breaker, CircuitOpen
from app.belt.bus import Bus
from app.belt.entitlements import Entitlements
from app.belt.flags import Flags
from app.belt.store import Store

ROOT = Path(__file__).resolve().parents[1]


def per_call(fn: Callable[[], object], n: int = 100_000) -> float:
    """Median µs per call of ``fn`` over 7 runs of ``n`` calls."""
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    store = Store(folder / "bench.sqlite")
    store.migrate("orion", ROOT / "migrations")
    flags = Flags(store, Bus())
    flags.declare({"all": "", "half": "", "targeted": "", "killed": ""})
    flags.set("all", enabled=True)
    flags.set("half", enabled=True, percent=50)
    flags.set("targeted", enabled=True, percent=0, on_for="role:admin key:7 key:8 key:9")
    flags.set("killed", enabled=True, off_for="tenant:acme")
    stop = flags.subscribe(lambda: None)  # watched, as while a page is open: no TTL checks
    attrs = {"key": "user-12345", "user": "user-12345", "role": "member"}

    results: list[tuple[str, float]] = [
        ("flag: on for everyone", per_call(lambda: flags.enabled("all", attrs))),
        ("flag: 50% rollout (FNV-1a bucket)", per_call(lambda: flags.enabled("half", attrs))),
        ("flag: 4 on_for tokens, no match, 0%", per_call(lambda: flags.enabled("targeted", attrs))),
        ("flag: off_for kill switch checked", per_call(lambda: flags.enabled("killed", attrs))),
        ("flag: unknown name (default, reported once)", per_call(lambda: flags.enabled("nope", attrs))),
    ]
    stop()

    direct = per_call(lambda: None)
    closed = Breaker("bench-closed", threshold=5, cooloff=30)
    results.append(("breaker: closed, call through (overhead)", per_call(lambda: closed.call(lambda: None)) - direct))
    opened = Breaker("bench-open", threshold=1, cooloff=3600)
    try:
        opened.call(_fail)
    except ConnectionError:
        pass

    def rejected() -> None:
        try:
            opened.call(_fail)
        except CircuitOpen:
            pass

    results.append(("breaker: open, fail fast (raise + catch)", per_call(rejected)))
    results.append(("breaker: available()", per_call(opened.available)))

    ents = Entitlements(store, Bus(), account_of=lambda ctx: None)
    store.exec("INSERT INTO _orion_plan_capabilities (plan, capability) VALUES ('pro', 'todos.export')")
    ents.set_plan("acct-1", "pro")
    ents.entitled("acct-1", "todos.export")
    results.append(("entitlement: entitled() (cached)", per_call(lambda: ents.entitled("acct-1", "todos.export"))))
    store.close()

    print(f"# capability checks, µs per call ({platform.python_implementation()} {platform.python_version()})")
    for name, micros in results:
        print(f"{name:<48} {micros:7.2f}")


def _fail() -> None:
    raise ConnectionError("down")


if __name__ == "__main__":
    main()
