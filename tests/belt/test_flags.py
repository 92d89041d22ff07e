"""app.belt.flags: cached rows, deterministic FNV-1a rollout, targets, Watchable, never raises."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from app.belt.bus import Bus
from app.belt.flags import BUCKETS, Flag, FlagError, Flags, UnknownFlag, bucket, evaluate, fnv1a_32
from app.belt.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db.sqlite")
    s.migrate("orion", ROOT / "migrations")
    yield s
    s.close()


@pytest.fixture
def flags(store: Store) -> Flags:
    f = Flags(store, Bus())
    f.declare({"beta": "a beta feature", "other": "another one"})
    return f


def wait_until(predicate: Any, timeout: float = 2.0) -> None:
    deadline = gevent.get_hub().loop.now() + timeout
    while not predicate():
        assert gevent.get_hub().loop.now() < deadline, "timed out"
        gevent.sleep(0.005)


# -- the hash and the buckets -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [("", 0x811C9DC5), ("a", 0xE40C292C), ("foobar", 0xBF9CF968)],
    ids=["empty", "a", "foobar"],
)
def test_fnv1a_32_known_answers(data: str, expected: int) -> None:
    assert fnv1a_32(data) == expected
    assert fnv1a_32(data.encode()) == expected


def test_buckets_are_frozen_across_processes_and_releases() -> None:
    # If these move, every rollout in production reshuffles: someone at 10% loses the feature.
    assert bucket("todos.stats", "ann") == fnv1a_32("todos.stats:ann") % BUCKETS
    assert [bucket("todos.stats", k) for k in ("ann", "bob", "42", "local")] == [7246, 4486, 7377, 8726]


def test_a_key_enabled_at_p_stays_enabled_at_every_higher_p() -> None:
    keys = [f"user-{i}" for i in range(5_000)]
    previous: set[str] = set()
    for percent in range(0, 101, 5):
        flag = Flag("beta", enabled=True, percent=percent)
        now = {k for k in keys if evaluate(flag, k)[0]}
        assert previous <= now, f"keys dropped going up to {percent}%"
        previous = now
    assert previous == set(keys)


@functools.cache
def checkout_buckets() -> list[int]:
    return [bucket("checkout.v2", f"user-{i}") for i in range(100_000)]


@pytest.mark.parametrize("percent", [1, 10, 25, 50, 75, 90, 99])
def test_the_enabled_share_over_100k_keys_is_within_half_a_percent(percent: int) -> None:
    buckets = checkout_buckets()
    share = 100 * sum(1 for b in buckets if b < percent * 100) / len(buckets)
    assert abs(share - percent) <= 0.5, share


def test_two_flags_buckets_for_the_same_key_are_uncorrelated() -> None:
    keys = [f"{i}@example.com" for i in range(100_000)]
    a = [bucket("search.new", k) < 5_000 for k in keys]
    b = [bucket("checkout.v2", k) < 5_000 for k in keys]
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y) / len(keys)
    assert abs(both - 0.25) <= 0.01, both  # independent: P(a and b) = P(a) P(b)
    c = [bucket("search.old", k) < 1_000 for k in keys]
    d = [bucket("search.new", k) < 3_000 for k in keys]
    assert abs(sum(1 for x, y in zip(c, d, strict=True) if x and y) / len(keys) - 0.03) <= 0.005


def test_enabled_uses_the_same_buckets(flags: Flags) -> None:
    flags.set("beta", enabled=True, percent=30)
    for i in range(1_000):
        key = f"user-{i}"
        assert flags.enabled("beta", key) is (bucket("beta", key) < 3_000)
        assert flags.enabled("beta", {"key": key, "role": "member"}) is (bucket("beta", key) < 3_000)


# -- evaluation order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "context", "expected"),
    [
        (Flag("f", enabled=False, on_for=("role:admin",)), {"key": "1", "role": "admin"}, (False, "off")),
        (Flag("f", enabled=True, percent=0, on_for=("role:admin",)), {"key": "1", "role": "admin"}, (True, "on_for")),
        (
            Flag("f", enabled=True, on_for=("role:admin",), off_for=("key:1",)),
            {"key": "1", "role": "admin"},
            (False, "off_for"),
        ),
        (Flag("f", enabled=False, off_for=("key:1",)), "1", (False, "off_for")),
        (Flag("f", enabled=True, percent=100), None, (True, "on")),
        (Flag("f", enabled=True, percent=50), None, (False, "percent")),
        (Flag("f", enabled=True, percent=0), "anyone", (False, "percent")),
        (Flag("f", enabled=True, percent=0, on_for=("key:7",)), 7, (True, "on_for")),
        (Flag("f", enabled=True, percent=0, on_for=("group:beta",)), {"group": ["alpha", "beta"]}, (True, "on_for")),
        (Flag("f", enabled=True, percent=0, on_for=("group:beta",)), {"group": "alphabeta"}, (False, "percent")),
    ],
    ids=[
        "off-beats-on_for",
        "on_for-beats-percent",
        "off_for-beats-on_for",
        "off_for-when-off",
        "100-percent-without-key",
        "partial-without-key-is-off",
        "zero-percent",
        "int-key",
        "list-attribute",
        "no-substring-match",
    ],
)
def test_evaluation_order(flag: Flag, context: Any, expected: tuple[bool, str]) -> None:
    assert evaluate(flag, context) == expected


# -- never raises -----------------------------------------------------------------------------


def test_an_unknown_flag_answers_its_default_and_is_reported_once(
    flags: Flags, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "orion.flags"):
        assert flags.enabled("betta", "ann") is False
        assert flags.enabled("betta", "bob") is False
        assert flags.enabled("betta", "bob", default=True) is True
    assert flags.errors == 3
    reports = [r.getMessage() for r in caplog.records]
    assert reports == ["unknown flag 'betta' (did you mean 'beta'?): answering False"]


def test_a_broken_row_answers_the_default_until_it_is_fixed(
    store: Store, flags: Flags, caplog: pytest.LogCaptureFixture
) -> None:
    flags.declare({"risky": "declared on"}, default=True)
    store.exec("UPDATE _orion_flags SET enabled = 0, on_for = '[\"not a token\"' WHERE name = 'risky'")
    flags.invalidate()
    flag = flags.get("risky")
    assert flag is not None and flag.error is not None and "broken" in flag.error
    with caplog.at_level(logging.WARNING, "orion.flags"):
        assert flags.enabled("risky", "ann") is True  # its declared default, not a crash
    assert "risky" in caplog.text
    flags.set("risky", on_for=[])
    assert flags.get("risky").error is None  # type: ignore[union-attr]
    assert flags.enabled("risky", "ann") is False


@pytest.mark.parametrize("context", [object(), 3.5, b"bytes", ["a", "b"]], ids=["object", "float", "bytes", "list"])
def test_a_malformed_context_answers_the_default(flags: Flags, context: Any) -> None:
    flags.set("beta", enabled=True, percent=50)
    assert flags.enabled("beta", context) is False
    assert flags.errors == 1


def test_on_evaluate_sees_every_answer_and_cannot_break_it(flags: Flags) -> None:
    seen: list[tuple[Any, ...]] = []
    flags.on_evaluate = lambda *args: seen.append(args)
    flags.set("beta", enabled=True, on_for=["role:admin"], percent=0)
    assert flags.enabled("beta", {"key": "1", "role": "admin"}) is True
    assert flags.enabled("nope") is False
    assert seen == [("beta", {"key": "1", "role": "admin"}, True, "on_for"), ("nope", None, False, "unknown")]

    def broken(*args: Any) -> None:
        raise RuntimeError("the experimentation platform is down")

    flags.on_evaluate = broken
    assert flags.enabled("beta", {"key": "1", "role": "admin"}) is True


# -- changing flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"percent": -1}, "percent"),
        ({"percent": 101}, "percent"),
        ({"percent": 100.5}, "percent"),
        ({"percent": math.nan}, "percent"),
        ({"percent": math.inf}, "percent"),
        ({"percent": "50"}, "percent"),
        ({"percent": True}, "percent"),
        ({"on_for": "admin"}, "on_for"),
        ({"on_for": "role:"}, "on_for"),
        ({"on_for": ":admin"}, "on_for"),
        ({"on_for": "Role:admin"}, "on_for"),
        ({"on_for": ["role:a b"]}, "on_for"),
        ({"on_for": [42]}, "on_for"),
        ({"off_for": "key:1 nonsense"}, "off_for"),
        ({"off_for": " ".join(f"key:{i}" for i in range(101))}, "off_for"),
    ],
    ids=[
        "percent-below-0",
        "percent-above-100",
        "percent-100.5",
        "percent-nan",
        "percent-inf",
        "percent-string",
        "percent-bool",
        "token-without-colon",
        "token-without-value",
        "token-without-attr",
        "token-upper-case-attr",
        "token-with-space",
        "token-not-text",
        "off_for-malformed",
        "too-many-tokens",
    ],
)
def test_a_bad_change_is_refused_and_writes_nothing(
    store: Store, flags: Flags, changes: dict[str, Any], field: str
) -> None:
    before = store.query("SELECT * FROM _orion_flags ORDER BY name")
    with pytest.raises(FlagError) as refused:
        flags.set("beta", **changes)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}") or "percent" in str(refused.value)
    assert [dict(r) for r in store.query("SELECT * FROM _orion_flags ORDER BY name")] == [dict(r) for r in before]


def test_an_unknown_flag_cannot_be_set(flags: Flags) -> None:
    with pytest.raises(UnknownFlag, match=r"There is no flag 'bta' \(did you mean 'beta'\?\)"):
        flags.set("bta", enabled=True)


def test_declare_keeps_state_and_follows_the_codes_description(store: Store, flags: Flags) -> None:
    flags.set("beta", enabled=True, percent=20)
    flags.declare({"beta": "a better description"})
    flag = flags.get("beta")
    assert flag is not None
    assert (flag.enabled, flag.percent, flag.description) == (True, 20.0, "a better description")
    with pytest.raises(FlagError, match="is not a flag name"):
        flags.declare({"Bad Name": ""})


def test_tokens_are_normalised(flags: Flags) -> None:
    flags.set("beta", on_for="role:admin, key:42  role:admin", off_for=["tenant:acme"])
    flag = flags.get("beta")
    assert flag is not None and flag.on_for == ("role:admin", "key:42") and flag.off_for == ("tenant:acme",)


def test_a_change_rolled_back_with_its_transaction_never_happened(store: Store, flags: Flags) -> None:
    fired: list[str] = []
    stop = flags.watch("beta").subscribe(lambda: fired.append("beta"))
    with pytest.raises(RuntimeError), store.tx():
        flags.set("beta", enabled=True)
        raise RuntimeError("the command failed after the flag write")
    assert flags.enabled("beta", "ann") is False and fired == []
    stop()


# -- cached and Watchable ---------------------------------------------------------------------


def test_enabled_never_queries_while_watched(store: Store, flags: Flags) -> None:
    stop = flags.subscribe(lambda: None)
    flags.set("beta", enabled=True, percent=50)
    queries = store.stats.queries + store.stats.memo_hits
    for i in range(2_000):
        flags.enabled("beta", f"user-{i}")
        flags.enabled("other", {"key": str(i), "role": "member"})
    assert store.stats.queries + store.stats.memo_hits == queries
    stop()


def test_watchers_of_a_flag_wake_on_its_change_only(flags: Flags) -> None:
    woke: list[str] = []
    stops = [
        flags.watch("beta").subscribe(lambda: woke.append("beta")),
        flags.watch("other").subscribe(lambda: woke.append("other")),
        flags.subscribe(lambda: woke.append("any")),
    ]
    flags.set("beta", enabled=True)
    assert sorted(woke) == ["any", "beta"]
    for stop in stops:
        stop()
    assert len(flags.watchers) == 0


def test_another_process_change_is_seen_through_the_bus(tmp_path: Path, store: Store, flags: Flags) -> None:
    bus = flags.bus
    assert bus is not None
    other_store = Store(store.path)  # a second process: its own connections, the same file
    try:
        other = Flags(other_store, bus)
        woke: list[str] = []
        stop = other.watch("beta").subscribe(lambda: woke.append("beta"))
        assert bus.subscriber_count("flags") == 1  # held while watched
        flags.set("beta", enabled=True)
        wait_until(lambda: woke == ["beta"])
        assert other.enabled("beta", "ann") is True
        stop()
        assert bus.subscriber_count("flags") == 0  # an idle process holds no subscription
    finally:
        other_store.close()


def test_unwatched_caches_refresh_after_the_ttl(store: Store, flags: Flags) -> None:
    now = [0.0]
    other_store = Store(store.path)
    try:
        other = Flags(other_store, None, ttl=5.0, clock=lambda: now[0])  # no bus at all
        assert other.enabled("beta", "ann") is False
        flags.set("beta", enabled=True)
        now[0] = 4.9
        assert other.enabled("beta", "ann") is False  # cached: no query within the ttl
        now[0] = 5.1
        assert other.enabled("beta", "ann") is True
    finally:
        other_store.close()
