"""app.belt.passwords: scrypt (n=2**17, r=8, p=1) on a thread pool, never on the hub.

Each hash costs ~0.3 s of CPU, so this file hashes 11 times in all (fixture 1, salts 1,
right 1, timing 4, hub 4); the other tests are refused before any hashing.
"""

from __future__ import annotations

import re
import time

import gevent
import pytest

from app.belt.passwords import MAX_LENGTH, hash_password, needs_rehash, verify_password

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def encoded() -> str:
    return hash_password(PASSWORD)


def test_the_encoding_is_scrypt_n_r_p_salt_hash(encoded: str) -> None:
    assert re.fullmatch(r"scrypt\$131072\$8\$1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", encoded)
    assert not needs_rehash(encoded)


def test_each_hash_has_its_own_salt(encoded: str) -> None:
    again = hash_password(PASSWORD)
    assert again.split("$")[4] != encoded.split("$")[4]
    assert again.split("$")[5] != encoded.split("$")[5]


def test_the_right_password_verifies(encoded: str) -> None:
    assert verify_password(PASSWORD, encoded) is True


def test_an_unknown_user_costs_as_much_as_a_wrong_password(encoded: str) -> None:
    def timed(stored: str | None) -> float:
        start = time.perf_counter()
        assert verify_password("wrong horse battery staple", stored) is False
        return time.perf_counter() - start

    # Interleaved, and the faster of each pair: a load spike from another process on the
    # machine then slows one sample, not one side of the comparison.
    wrong, unknown = [], []
    for _ in range(2):
        wrong.append(timed(encoded))
        unknown.append(timed(None))
    ratio = min(unknown) / min(wrong)
    print(f"\nverify, wrong password: {wrong}; unknown user: {unknown}; ratio {ratio:.2f}")
    assert 0.5 <= ratio <= 2.0


MALFORMED = {
    "empty": "",
    "another scheme": "bcrypt$2b$12$abcdefghijklmnopqrstuv",
    "too few fields": "scrypt$131072$8$1$c2FsdA",
    "too many fields": "scrypt$131072$8$1$c2FsdA$aGFzaA$extra",
    "n is not a number": "scrypt$lots$8$1$c2FsdA$aGFzaA",
    "salt of an impossible base64 length": "scrypt$131072$8$1$A$aGFzaA",
}


@pytest.mark.parametrize("stored", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_stored_hash_verifies_nothing(stored: str) -> None:
    assert verify_password(PASSWORD, stored) is False


REHASH = {
    "today's parameters": ("scrypt$131072$8$1$c2FsdA$aGFzaA", False),
    "a smaller n": ("scrypt$16384$8$1$c2FsdA$aGFzaA", True),
    "another r": ("scrypt$131072$4$1$c2FsdA$aGFzaA", True),
    "another scheme": ("pbkdf2_sha256$600000$c2FsdA$aGFzaA", True),
}


@pytest.mark.parametrize(("stored", "expected"), REHASH.values(), ids=REHASH.keys())
def test_needs_rehash(stored: str, expected: bool) -> None:
    assert needs_rehash(stored) is expected


LONG = {
    "one past the limit": "x" * (MAX_LENGTH + 1),
    "a megabyte": "x" * 1_000_000,
    "a megabyte of multibyte characters": "é" * 1_000_000,
}


@pytest.mark.parametrize("password", LONG.values(), ids=LONG.keys())
def test_an_overlong_password_is_refused_before_any_hashing(password: str, encoded: str) -> None:
    with pytest.raises(ValueError, match=rf"at most {MAX_LENGTH} characters \(got {len(password):,}\)"):
        hash_password(password)
    start = time.perf_counter()
    assert verify_password(password, encoded) is False
    assert verify_password(password, None) is False
    assert time.perf_counter() - start < 0.05  # one hash would be ~0.3 s


def test_hashing_does_not_block_the_hub(encoded: str) -> None:
    gaps: list[float] = []
    running = True

    def tick() -> None:
        last = time.perf_counter()
        while running:
            gevent.sleep(0.05)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = gevent.spawn(tick)
    start = time.perf_counter()
    # Ten sign-ins at once (the figure), half of them right.
    attempts = [PASSWORD, "a"] * 5
    workers = [gevent.spawn(verify_password, password, encoded) for password in attempts]
    gevent.joinall(workers, raise_error=True)
    elapsed = time.perf_counter() - start
    running = False
    ticker.join()
    print(f"\n10 concurrent verifies: {elapsed:.2f} s; {len(gaps)} ticks, max gap {max(gaps) * 1000:.0f} ms")
    assert [w.value for w in workers] == [True, False] * 5
    assert len(gaps) >= 5
    # One hash takes ~0.3 s: a gap under that proves no hash ran on the hub. (The measured
    # figure, ~50-60 ms on a quiet machine, is in bench/hub_stall.py's output, not asserted.)
    assert max(gaps) < 0.25
