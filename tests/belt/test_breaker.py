"""app.belt.breaker: every transition with an injected clock; one probe among a hundred callers."""

from __future__ import annotations

from collections.abc import Iterator

import gevent
import gevent.event
import pytest
from greenlet import GreenletExit

from app.belt.breaker import BREAKERS, Breaker, Breakers, CircuitOpen, breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Down(Exception):
    pass


class BadRequest(Exception):
    """What a 4xx looks like to the caller: the dependency answered; we asked wrongly."""


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def b(clock: Clock) -> Breaker:
    return Breaker("payments", threshold=3, cooloff=30, clock=clock, is_failure=lambda e: not isinstance(e, BadRequest))


class Dependency:
    def __init__(self) -> None:
        self.calls = 0
        self.failing = False

    def __call__(self) -> str:
        self.calls += 1
        if self.failing:
            raise Down("connection refused")
        return "ok"


def fail(b: Breaker, times: int) -> None:
    dep = Dependency()
    dep.failing = True
    for _ in range(times):
        with pytest.raises(Down):
            b.call(dep)


def test_consecutive_failures_open_it_at_the_threshold(b: Breaker) -> None:
    fail(b, 2)
    assert (b.state, b.failures, b.available()) == ("closed", 2, True)
    fail(b, 1)
    assert (b.state, b.failures, b.available()) == ("open", 3, False)


def test_a_success_resets_the_count(b: Breaker) -> None:
    fail(b, 2)
    assert b.call(Dependency()) == "ok"
    fail(b, 2)
    assert b.state == "closed" and b.failures == 2


def test_open_fails_fast_without_calling_and_counts_rejections(b: Breaker, clock: Clock) -> None:
    fail(b, 3)
    dep = Dependency()
    clock.now += 10
    for _ in range(5):
        with pytest.raises(CircuitOpen) as refused:
            b.call(dep)
    assert dep.calls == 0 and b.rejections == 5
    assert refused.value.retry_in == pytest.approx(20)
    assert "payments dependency is unavailable" in str(refused.value) and "in 20 s" in str(refused.value)


def test_after_the_cooloff_exactly_one_probe_goes_through(b: Breaker, clock: Clock) -> None:
    fail(b, 3)
    clock.now += 30
    assert b.state == "half-open" and b.available()
    calls = 0

    def slow() -> str:
        nonlocal calls
        calls += 1
        gevent.sleep(0.02)  # the probe is in flight while the others arrive
        return "ok"

    outcomes: list[str] = []

    def caller() -> None:
        try:
            outcomes.append(b.call(slow))
        except CircuitOpen:
            outcomes.append("fast")

    gevent.joinall([gevent.spawn(caller) for _ in range(100)])
    assert calls == 1
    assert outcomes.count("ok") == 1 and outcomes.count("fast") == 99
    assert b.state == "closed" and b.failures == 0


def test_a_failed_probe_opens_it_again_and_restarts_the_cooloff(b: Breaker, clock: Clock) -> None:
    fail(b, 3)
    clock.now += 30
    fail(b, 1)  # the probe
    assert b.state == "open" and not b.available()
    clock.now += 29
    with pytest.raises(CircuitOpen):
        b.call(Dependency())
    clock.now += 1
    assert b.call(Dependency()) == "ok" and b.state == "closed"


def test_errors_the_caller_marks_as_not_failures_never_trip_it(b: Breaker) -> None:
    def bad_request() -> None:
        raise BadRequest("400: no such price")

    for _ in range(10):
        with pytest.raises(BadRequest):
            b.call(bad_request)
    assert b.state == "closed" and b.failures == 0 and b.calls == 10
    fail(b, 2)
    with pytest.raises(BadRequest):
        b.call(bad_request)  # an answer, even a refusal, means the dependency is up
    assert b.failures == 0


def test_a_rejected_probe_answer_closes_it(b: Breaker, clock: Clock) -> None:
    fail(b, 3)
    clock.now += 30
    with pytest.raises(BadRequest):
        b.call(lambda: (_ for _ in ()).throw(BadRequest("422")))
    assert b.state == "closed"


def test_a_timeout_inside_the_call_is_a_failure(clock: Clock) -> None:
    b = Breaker("slow", threshold=1, cooloff=30, clock=clock)
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.01):
        b.call(gevent.sleep, 1)
    assert b.state == "open"


def test_a_probe_killed_midway_lets_the_next_caller_probe(b: Breaker, clock: Clock) -> None:
    fail(b, 3)
    clock.now += 30
    probe = gevent.spawn(b.call, gevent.sleep, 1)
    gevent.sleep(0)
    assert b.state == "half-open" and not b.available()  # a probe is in flight
    probe.kill(GreenletExit)
    assert b.available()
    assert b.call(Dependency()) == "ok" and b.state == "closed"


def test_a_broken_is_failure_counts_as_a_failure(clock: Clock) -> None:
    b = Breaker("x", threshold=1, cooloff=30, clock=clock, is_failure=lambda e: 1 / 0 > 0)
    fail(b, 1)
    assert b.state == "open"


def test_reset_closes_by_hand(b: Breaker) -> None:
    fail(b, 3)
    b.reset()
    assert b.state == "closed" and b.failures == 0 and b.call(Dependency()) == "ok"


@pytest.mark.parametrize(("options", "message"), [({"threshold": 0}, "threshold"), ({"cooloff": 0}, "cooloff")])
def test_nonsense_settings_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Breaker("x", **options)  # type: ignore[arg-type]


# -- watchable ------------------------------------------------------------------------------


def test_a_degraded_banner_appears_and_clears_by_itself(b: Breaker, clock: Clock) -> None:
    """What a region watching the breaker sees: a wake per change, and the model it reads."""
    banner: list[bool] = []
    stop = b.subscribe(lambda: banner.append(not b.available()))
    fail(b, 3)
    assert banner[-1] is True  # opened: the banner shows
    clock.now += 30
    assert b.call(Dependency()) == "ok"
    assert banner[-1] is False  # the probe closed it: the banner clears
    stop()
    assert b._timer is None


def test_the_cooloff_end_wakes_watchers_so_the_page_offers_the_action_again() -> None:
    b = Breaker("quick", threshold=1, cooloff=0.05)  # the real clock, for the timer
    woke = gevent.event.Event()
    fail(b, 1)
    stop = b.subscribe(woke.set)
    assert not b.available()
    assert woke.wait(1.0) and b.available() and b.state == "half-open"
    stop()


def test_the_registry_is_one_breaker_per_name_and_watchable(clock: Clock) -> None:
    registry = Breakers()
    woke: list[str] = []
    stop = registry.subscribe(lambda: woke.append("any"))
    one = registry.get("mail", threshold=2, cooloff=10, clock=clock)
    assert registry.get("mail") is one and registry.get("mail", threshold=2) is one
    with pytest.raises(ValueError, match="already exists with threshold=2"):
        registry.get("mail", threshold=5)
    assert woke == ["any"]  # registered
    fail(one, 2)
    assert len(woke) == 3  # a failure counted, then the circuit opened
    assert [s.name for s in registry.snapshots()] == ["mail"]
    snap = registry.snapshots()[0]
    assert (snap.state, snap.failures, snap.threshold, snap.last_error) == ("open", 2, 2, "Down: connection refused")
    stop()
    registry.remove("mail")


def test_breaker_registers_in_the_process_registry() -> None:
    made = breaker("test-registry-demo", threshold=2, cooloff=5)
    try:
        assert BREAKERS.find("test-registry-demo") is made
    finally:
        BREAKERS.remove("test-registry-demo")


@pytest.fixture(autouse=True)
def _no_timers() -> Iterator[None]:
    yield
    for each in BREAKERS.all():
        assert each._timer is None
