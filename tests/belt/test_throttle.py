"""app.belt.throttle: a doubling delay after `free` failures, capped at 15 minutes, reset on success."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.belt.store import Store
from app.belt.throttle import MAX_DELAY, Throttle

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0
KEY = ["account:ann@example.com"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db.sqlite")
    s.migrate("orion", ROOT / "migrations")
    yield s
    s.close()


@pytest.fixture
def now() -> list[float]:
    return [T0]


def failures(store: Store, key: str) -> int:
    row = store.one("SELECT failures FROM _orion_throttle WHERE key = ?", (key,))
    return 0 if row is None else int(row["failures"])


def test_eleven_bad_attempts_climb_a_doubling_ladder(store: Store, now: list[float]) -> None:
    throttle = Throttle(store, free=3, clock=lambda: now[0])
    waits = []
    last_fail = now[0]
    for _ in range(11):
        wait = throttle.retry_after(KEY)
        waits.append(wait)
        if wait > 0:
            # Refused attempts (hammering while we must wait) are not failures.
            for _ in range(5):
                now[0] += wait / 10
                assert throttle.retry_after(KEY) == pytest.approx(wait - (now[0] - last_fail))
            now[0] = last_fail + wait
            assert throttle.retry_after(KEY) == 0
        throttle.fail(KEY)  # allowed, and the password was wrong
        last_fail = now[0]
    assert waits == [0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128]
    assert failures(store, KEY[0]) == 11
    assert throttle.retry_after(KEY) == 256


DELAYS = {
    "no failure": (0, 0),
    "within the free ones": (4, 0),
    "the first past free": (5, 1),
    "then doubling": (6, 2),
    "and doubling": (7, 4),
    "2 ** 9 = 512 s": (14, 512),
    "2 ** 10 s is over the cap": (15, MAX_DELAY),
    "a hundred failures": (100, MAX_DELAY),
    "beyond float range (2.0 ** 1100 overflows)": (1105, MAX_DELAY),
    "a million failures": (1_000_000, MAX_DELAY),
}


@pytest.mark.parametrize(("count", "expected"), DELAYS.values(), ids=DELAYS.keys())
def test_the_delay_doubles_up_to_fifteen_minutes(count: int, expected: float) -> None:
    assert Throttle(None, free=5).delay(count) == expected  # type: ignore[arg-type]


def test_a_key_with_thousands_of_failures_waits_the_cap_instead_of_crashing(store: Store, now: list[float]) -> None:
    throttle = Throttle(store, free=5, clock=lambda: now[0])
    store.exec("INSERT INTO _orion_throttle (key, failures, last_at) VALUES (?, ?, ?)", (KEY[0], 5000, now[0]))
    assert throttle.retry_after(KEY) == MAX_DELAY
    now[0] += MAX_DELAY
    assert throttle.retry_after(KEY) == 0


def test_a_success_resets_the_ladder(store: Store, now: list[float]) -> None:
    throttle = Throttle(store, free=1, clock=lambda: now[0])
    for _ in range(4):
        now[0] += throttle.retry_after(KEY)
        throttle.fail(KEY)
    assert throttle.retry_after(KEY) == 8
    throttle.reset(KEY)
    assert failures(store, KEY[0]) == 0
    assert throttle.retry_after(KEY) == 0
    throttle.fail(KEY)
    assert throttle.retry_after(KEY) == 1  # back at the first rung, not the ninth


def test_keys_are_independent_and_the_longest_wait_wins(store: Store, now: list[float]) -> None:
    throttle = Throttle(store, free=0, clock=lambda: now[0])
    account, address = "account:ann", "ip:192.0.2.1"
    throttle.fail([account, address])
    throttle.fail([address])
    throttle.fail([address])
    assert throttle.retry_after([account]) == 2
    assert throttle.retry_after([address]) == 8
    assert throttle.retry_after([account, address]) == 8
    assert throttle.retry_after(["account:bob"]) == 0
    throttle.reset([account])
    assert throttle.retry_after([account]) == 0
    assert throttle.retry_after([address]) == 8


def test_waiting_out_the_delay_always_lets_the_next_attempt_through(store: Store, now: list[float]) -> None:
    throttle = Throttle(store, free=2, clock=lambda: now[0])
    for _ in range(6):
        throttle.fail(KEY)
    wait = throttle.retry_after(KEY)
    assert wait == 16
    now[0] += wait - 0.001
    assert throttle.retry_after(KEY) > 0
    now[0] += 0.001
    assert throttle.retry_after(KEY) == 0
