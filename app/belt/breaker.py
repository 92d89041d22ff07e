"""breaker: "is this dependency worth calling right now?" — cheap, synchronous, watchable.

A circuit breaker wraps calls to one flaky dependency (a payment API, a mail relay):

* **closed**: calls go through; ``threshold`` consecutive failures open it.
* **open**: calls fail fast with ``CircuitOpen`` (no downstream call: a clock read and a
  raise) and are counted as rejections, for ``cooloff`` seconds.
* **half-open**: after the cooloff exactly one call goes through as the probe, however many
  greenlets call at once (the others fail fast). Its success closes the circuit; its failure
  opens it again and restarts the cooloff.

An exception the caller marks as not-a-failure (``is_failure=lambda exc: ...``, e.g. a 4xx:
the dependency answered, the request was wrong) never trips it and counts as an answer.
Timeouts are the caller's business (a ``gevent.Timeout`` or a socket timeout raised inside
the call is a failure like any other), and so is what to do instead (the degraded behaviour).

Breakers are named and live in a process-wide registry (``breaker(name)``), which is
Watchable; each breaker is Watchable too, so a region can show a "degraded" banner that
appears when the circuit opens and clears when it recovers, with no code in the view.
``available()`` is True when a call would be attempted now (closed, or the cooloff is over
and no probe is in flight); when the cooloff ends the watchers are woken, so a page that hid
an action while the circuit was open offers it again and the next use is the probe.

State lives in one process and changes only between greenlet switches (the checks and
transitions never yield), which is what makes "exactly one probe" hold without a lock. Call
breakers from greenlets, not from pool threads.

>>> clock = [0.0]
>>> b = Breaker("demo", threshold=2, cooloff=10, clock=lambda: clock[0])
>>> def down(): raise ConnectionError("refused")
>>> for _ in range(2):
...     try: b.call(down)
...     except ConnectionError: pass
>>> b.state, b.available()
('open', False)
>>> b.call(lambda: "hi")
Traceback (most recent call last):
...
app.belt.breaker.CircuitOpen: The demo dependency is unavailable: its circuit opened after 2 consecutive ...
>>> clock[0] = 10.0
>>> b.call(lambda: "hi"), b.state
('hi', 'closed')
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gevent
from greenlet import GreenletExit

from .bus import Callback, Unsubscribe
from .watchers import Watchers

log = logging.getLogger("orion.breaker")

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
# Not evidence about the dependency: the caller is going away, not the service.
_NOT_EVIDENCE = (GreenletExit, KeyboardInterrupt, SystemExit, GeneratorExit)


class CircuitOpen(Exception):
    """Raised instead of calling a dependency whose circuit is open: nothing was sent."""

    def __init__(self, breaker: Breaker, retry_in: float) -> None:
        self.name = breaker.name
        self.retry_in = retry_in
        wait = f"in {math.ceil(retry_in)} s" if retry_in > 0 else "once the probe in flight answers"
        super().__init__(
            f"The {breaker.name} dependency is unavailable: its circuit opened after "
            f"{breaker.threshold} consecutive failures. The next attempt is allowed {wait}."
        )


@dataclass(frozen=True)
class Snapshot:
    """A breaker at one moment, for a health panel (hashable: a region's model)."""

    name: str
    state: str
    failures: int
    threshold: int
    cooloff: float
    calls: int
    rejections: int
    changed_at: float
    last_error: str | None


#: The name the belt exports it under (a health view's model is a sequence of these).
BreakerSnapshot = Snapshot


class Breaker:
    """One dependency's circuit. Use ``breaker(name, ...)`` to get the registered one."""

    def __init__(
        self,
        name: str,
        *,
        threshold: int = 5,
        cooloff: float = 30.0,
        is_failure: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold is a count of failures, at least 1 (got {threshold!r}).")
        if not cooloff > 0:
            raise ValueError(f"cooloff is a number of seconds above 0 (got {cooloff!r}).")
        self.name = name
        self.threshold = threshold
        self.cooloff = float(cooloff)
        self.is_failure = is_failure
        self.clock = clock
        self.wall = wall
        self.failures = 0  # consecutive
        self.calls = 0
        self.rejections = 0
        self.last_error: str | None = None
        self.changed_at = wall()
        self._open = False
        self._opened_at = 0.0
        self._probing = False
        self._timer: gevent.Greenlet | None = None
        self._registry: Breakers | None = None
        self.watchers = Watchers(f"breaker {name}", on_last=self._maybe_stop_timer)

    # -- the call ------------------------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` through the breaker; ``CircuitOpen`` when it is open."""
        probe = False
        if self._open:
            waited = self.clock() - self._opened_at
            if self._probing or waited < self.cooloff:
                self.rejections += 1
                raise CircuitOpen(self, 0.0 if self._probing else self.cooloff - waited)
            self._probing = probe = True  # this caller is the one probe
        self.calls += 1
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if isinstance(exc, _NOT_EVIDENCE):
                if probe:
                    self._probing = False  # the next caller probes instead
            elif self.is_failure is None or self._counts(exc):
                self._failed(exc, probe)
            else:
                self._answered(probe)
            raise
        self._answered(probe)
        return result

    def _counts(self, exc: BaseException) -> bool:
        assert self.is_failure is not None
        try:
            return bool(self.is_failure(exc))
        except Exception:
            log.exception("breaker %s: is_failure raised; counting %r as a failure", self.name, exc)
            return True

    def _answered(self, probe: bool) -> None:
        if probe:
            self._open = self._probing = False
            self.failures = 0
            self._changed(f"closed: the probe succeeded after {self.cooloff:g} s open")
        elif not self._open and self.failures:
            self.failures = 0
            self._changed(None)

    def _failed(self, exc: BaseException, probe: bool) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        if probe:
            self._probing = False
            self._trip(f"open again: the probe failed ({self.last_error})")
        elif not self._open and self.failures >= self.threshold:
            self._trip(f"open: {self.failures} consecutive failures ({self.last_error})")
        elif not self._open:
            self._changed(None)

    def _trip(self, why: str) -> None:
        self._open = True
        self._opened_at = self.clock()
        self._changed(why)
        if self._watched():
            self._start_timer()

    # -- what a page asks ----------------------------------------------------------------

    @property
    def state(self) -> str:
        """closed, open (failing fast) or half-open (the cooloff is over: one probe may go)."""
        if not self._open:
            return CLOSED
        if self._probing or self.clock() - self._opened_at >= self.cooloff:
            return HALF_OPEN
        return OPEN

    def available(self) -> bool:
        """Would a call be attempted now? (A region shows its "degraded" banner when not.)"""
        return not self._open or (not self._probing and self.clock() - self._opened_at >= self.cooloff)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            self.name,
            self.state,
            self.failures,
            self.threshold,
            self.cooloff,
            self.calls,
            self.rejections,
            self.changed_at,
            self.last_error,
        )

    def reset(self) -> None:
        """Close the circuit by hand (an operator who knows the dependency is back)."""
        if self._open or self.failures:
            self._open = self._probing = False
            self.failures = 0
            self._changed("closed by hand")

    # -- watching ------------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> Unsubscribe:
        """A breaker is Watchable: ``callback()`` when its state or failure count changes."""
        stop = self.watchers.subscribe(None, callback)
        if self._open and self._timer is None:
            self._start_timer()
        return stop

    def _changed(self, why: str | None) -> None:
        if why is not None:
            self.changed_at = self.wall()
            log.warning("breaker %s %s", self.name, why)
        self.watchers.notify()
        if self._registry is not None:
            self._registry.watchers.notify([self.name])

    def _start_timer(self) -> None:
        """Wake the watchers when the cooloff ends: the page offers the action again."""
        self._stop_timer()
        delay = max(0.0, self.cooloff - (self.clock() - self._opened_at))
        self._timer = gevent.spawn_later(delay, self._cooloff_over)

    def _cooloff_over(self) -> None:
        self._timer = None
        if self._open:
            self._changed(None)

    def _watched(self) -> bool:
        return bool(len(self.watchers) or (self._registry is not None and len(self._registry.watchers)))

    def _maybe_stop_timer(self) -> None:
        if not self._watched():
            self._stop_timer()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.kill(block=False)

    def __repr__(self) -> str:
        return f"<Breaker {self.name!r} {self.state} failures={self.failures}>"


class Breakers:
    """The process-wide registry of named breakers; Watchable (any breaker's change)."""

    def __init__(self) -> None:
        self._breakers: dict[str, Breaker] = {}
        self.watchers = Watchers("breakers", on_last=self._idle)

    def get(self, name: str, **options: Any) -> Breaker:
        """The breaker named ``name``, made with ``options`` the first time it is asked for."""
        existing = self._breakers.get(name)
        if existing is not None:
            for key, value in options.items():
                if key in ("threshold", "cooloff") and getattr(existing, key) != value:
                    raise ValueError(
                        f"breaker {name!r} already exists with {key}={getattr(existing, key)!r}, "
                        f"not {value!r}: one dependency, one breaker, one setting."
                    )
            return existing
        created = Breaker(name, **options)
        created._registry = self
        self._breakers[name] = created
        self.watchers.notify([name])
        return created

    def find(self, name: str) -> Breaker | None:
        return self._breakers.get(name)

    def all(self) -> tuple[Breaker, ...]:
        return tuple(self._breakers[name] for name in sorted(self._breakers))

    def snapshots(self) -> tuple[Snapshot, ...]:
        """Every breaker's snapshot, by name (a health panel's model)."""
        return tuple(b.snapshot() for b in self.all())

    def remove(self, name: str) -> None:
        """Forget a breaker (tests)."""
        gone = self._breakers.pop(name, None)
        if gone is not None:
            gone._registry = None
            gone._stop_timer()
            self.watchers.notify([name])

    def subscribe(self, callback: Callback) -> Unsubscribe:
        stop = self.watchers.subscribe(None, callback)
        for each in self._breakers.values():
            if each._open and each._timer is None:
                each._start_timer()
        return stop

    def _idle(self) -> None:
        for each in self._breakers.values():
            each._maybe_stop_timer()


#: The registry of this process.
BREAKERS = Breakers()


def breaker(name: str, **options: Any) -> Breaker:
    """The registered breaker for dependency ``name`` (created with ``options`` once).

    ``threshold`` consecutive failures open it for ``cooloff`` seconds; ``is_failure(exc)``
    says which exceptions count (default: all).
    """
    return BREAKERS.get(name, **options)
