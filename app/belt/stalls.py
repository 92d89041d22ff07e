"""Stalls: notice when something blocks the gevent hub, and name the culprit.

A greenlet switches only on I/O. A handler that computes for 300 ms, a sqlite3 call stuck on
a lock, a ``time.sleep`` that gevent did not patch: each freezes every stream of the process
for that long. The watchdog catches them in two halves:

* **On the hub**, a loop timer ticks every ``tick`` seconds and records when it last ran. How
  late each tick fires is the **event-loop lag** (the health view's first figure).
* **On a real OS thread** (``_thread``, never gevent's patched one: it must run while the hub
  is stuck), a check every ``check`` seconds asks "when did the hub last tick?". Past
  ``threshold`` the hub is blocked *now*, and the thread takes the hub thread's stack with
  ``sys._current_frames()``: the innermost frames are the culprit's. Walking outwards, it finds
  the request being served (app/belt/observe.py registers each request's frames), so the report
  names the route, the trace and the greenlet, and the request's canonical line gets a
  ``stall_ms``.

The thread only looks and writes plain attributes. Everything else (the ring, the counters, the
log line, the development banner) happens on the hub at its next tick, once the block is over
and its full length is known. A hub blocked for very long (``raw_after`` seconds: gunicorn
will kill the worker at its timeout) is also written straight to stderr from the thread, so
the culprit is known even if the hub never comes back.

Detection latency is at most ``threshold + check`` after the block began (bench/stalls.py).
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import gevent
from gevent.monkey import get_original

from .canon import Line
from .ring import Ring

log = logging.getLogger("orion.stalls")

_os_sleep: Callable[[float], None] = get_original("time", "sleep")
_os_thread: Callable[..., Any] = get_original("_thread", "start_new_thread")
_os_ident: Callable[[], int] = get_original("_thread", "get_ident")
_LIBRARIES = tuple(
    {p for key in ("stdlib", "platstdlib", "purelib", "platlib") if (p := sysconfig.get_paths().get(key))}
)

#: The requests (and streams) being served, by the id of a frame that is on their stack while
#: they run. Written on the hub by the observe middleware, read by the watchdog's thread.
ACTIVE: dict[int, Line] = {}


@dataclass(frozen=True)
class Stall:
    """One time the hub was blocked past the threshold."""

    at: float  # epoch seconds when the block began
    duration_ms: float  # how long the hub was blocked
    detected_ms: float  # how long after the block began the thread noticed it
    route: str | None  # "GET /todos/<id:todo_id>" (None: not a request: a job, a timer)
    trace_id: str | None
    greenlet: str | None
    culprit: str  # the innermost frame of the app's own code: "app/x.py:12 in slow"
    stack: tuple[str, ...]  # outermost first, as a traceback prints it

    @property
    def where(self) -> str:
        return self.route or "outside any request"


@dataclass
class StallStats:
    count: int = 0
    worst_ms: float = 0.0
    total_ms: float = 0.0


RING: Ring[Stall] = Ring(50, name="stalls")
STATS = StallStats()


class Watchdog:
    """The hub-tick watchdog (one per process). ``start()`` on the hub's thread."""

    def __init__(
        self,
        *,
        threshold: float = 0.2,
        tick: float = 0.02,
        check: float | None = None,
        raw_after: float = 2.0,
        on_stall: Callable[[Stall], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.tick = tick
        self.check = check if check is not None else min(0.05, threshold / 4)
        self.raw_after = max(raw_after, threshold)
        self.on_stall = on_stall
        self.lag_ms = 0.0
        self._lags: deque[float] = deque(maxlen=60)  # the worst lag of each of the last seconds
        self._second_worst = 0.0
        self._second = 0
        self._last = time.perf_counter()
        self._ticks = 0
        self._pending: tuple[int, float, float, Stall] | None = None  # (tick, began, detected, report)
        self._raw_reported = -1
        self._timer: Any = None
        self._running = False
        self._hub_ident = 0

    # -- the hub's half -------------------------------------------------------------------

    def start(self) -> Watchdog:
        if self._running:
            return self
        self._running = True
        self._hub_ident = _os_ident()
        self._last = time.perf_counter()
        self._timer = gevent.get_hub().loop.timer(self.tick, self.tick, ref=False)
        self._timer.start(self._on_tick)
        _os_thread(self._watch, ())
        return self

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def lag_max_ms(self, seconds: int = 10) -> float:
        """The worst tick lateness over the last ``seconds`` seconds, in milliseconds."""
        recent = list(self._lags)[-seconds:]
        return max([self._second_worst, *recent])

    def _on_tick(self) -> None:
        now = time.perf_counter()
        lag = max(0.0, now - self._last - self.tick) * 1000
        self._last = now
        self._ticks += 1
        self.lag_ms = lag
        second = int(now)
        if second != self._second:
            self._lags.append(self._second_worst)
            self._second, self._second_worst = second, 0.0
        self._second_worst = max(self._second_worst, lag)
        pending = self._pending
        if pending is not None and pending[0] < self._ticks:
            self._pending = None
            _tick, began, detected, report = pending
            stall = Stall(
                report.at,
                round((now - began) * 1000, 1),
                round((detected - began) * 1000, 1),
                report.route,
                report.trace_id,
                report.greenlet,
                report.culprit,
                report.stack,
            )
            self._report(stall)

    def _report(self, stall: Stall) -> None:
        STATS.count += 1
        STATS.total_ms += stall.duration_ms
        STATS.worst_ms = max(STATS.worst_ms, stall.duration_ms)
        RING.append(stall)
        if self.on_stall is not None:
            try:
                self.on_stall(stall)
            except Exception:
                log.exception("stall report hook failed")

    # -- the thread's half ---------------------------------------------------------------

    def _watch(self) -> None:
        while self._running:
            _os_sleep(self.check)
            now = time.perf_counter()
            last, tick = self._last, self._ticks
            blocked = now - last
            if blocked < self.threshold:
                continue
            if self._pending is None:
                try:
                    self._pending = (tick, last, now, self._capture(blocked))
                except Exception:  # the stall is still counted; only its story is lost
                    self._pending = (tick, last, now, Stall(time.time() - blocked, 0, 0, None, None, None, "?", ()))
            if blocked >= self.raw_after and self._raw_reported != tick and self._pending is not None:
                self._raw_reported = tick
                self._raw(blocked, self._pending[3])

    def _capture(self, blocked: float) -> Stall:
        frame = sys._current_frames().get(self._hub_ident)
        line = _request_of(frame)
        if line is not None:
            line.stall_ms = blocked * 1000
        summary = traceback.extract_stack(frame, limit=40) if frame is not None else []
        stack = tuple(
            f"{_short(f.filename)}:{f.lineno} in {f.name}" + (f"\n    {f.line}" if f.line else "") for f in summary
        )
        # The innermost frame of the app's own code, preferring a feature's over the belt's
        # (a slow query is the model's fault more often than the store's).
        own = [f for f in reversed(summary) if _own(f.filename)]
        pick = next((f for f in own if f"{os.sep}belt{os.sep}" not in f.filename), own[0] if own else None)
        culprit = f"{_short(pick.filename)}:{pick.lineno} in {pick.name}" if pick else "?"
        route = None
        if line is not None:
            route = f"{line.method} {line.route or line.path}"
        return Stall(
            time.time() - blocked,
            0.0,
            0.0,
            route,
            line.trace_id if line is not None else None,
            repr(line.greenlet) if line is not None and line.greenlet is not None else None,
            culprit,
            stack,
        )

    def _raw(self, blocked: float, report: Stall) -> None:
        text = (
            f"orion: the gevent hub has been blocked for {blocked:.1f} s (still blocked) by "
            f"{report.where} at {report.culprit}\n" + "\n".join(report.stack) + "\n"
        )
        try:
            os.write(2, text.encode(errors="replace"))
        except OSError:
            pass


def _request_of(frame: FrameType | None) -> Line | None:
    """The request whose frames are on this stack (walking outwards from the innermost)."""
    while frame is not None:
        line = ACTIVE.get(id(frame))
        if line is not None:
            return line
        frame = frame.f_back
    return None


def _own(filename: str) -> bool:
    return not filename.startswith(_LIBRARIES) and not filename.startswith("<")


def _short(filename: str) -> str:
    cwd = os.getcwd() + os.sep
    if filename.startswith(cwd):
        return filename[len(cwd) :]
    for prefix in _LIBRARIES:
        if filename.startswith(prefix):
            return filename[len(prefix) :].lstrip(os.sep)
    return filename
