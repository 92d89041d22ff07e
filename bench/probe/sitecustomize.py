"""Log the garbage collector's pauses of a benchmarked process (the app itself is not touched).

``bench.run`` puts this folder on the servers' PYTHONPATH with ``BENCH_GC_LOG=<prefix>``; Python
imports ``sitecustomize`` at start-up, and every collection of generation 1 or 2, or any that took
over a millisecond, is appended to ``<prefix>.<pid>`` as ``monotonic generation ms collected``.
The pid is read at each collection, so a forked gunicorn worker writes to a file of its own.
``BENCH_GC_THRESHOLD=a,b,c`` also sets ``gc.set_threshold(a, b, c)`` (the orion server only).
"""

import gc
import os
import time
from typing import TextIO

_PREFIX = os.environ.get("BENCH_GC_LOG")


class _Log:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pid = 0
        self.file: TextIO | None = None
        self.start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.start = time.perf_counter()
            return
        ms = (time.perf_counter() - self.start) * 1000
        generation = info["generation"]
        if generation == 0 and ms < 1:
            return
        if self.file is None or self.pid != os.getpid():
            self.pid = os.getpid()
            self.file = open(f"{self.prefix}.{self.pid}", "a", buffering=1)
        self.file.write(f"{time.monotonic():.4f} {generation} {ms:.3f} {info['collected']}\n")


if _PREFIX:
    gc.callbacks.append(_Log(_PREFIX))

# ``bench.run --server-gc 100000,50,100``: try collector thresholds on orion without editing it.
_THRESHOLD = os.environ.get("BENCH_GC_THRESHOLD")
if _THRESHOLD:
    gc.set_threshold(*(int(x) for x in _THRESHOLD.split(",")))
