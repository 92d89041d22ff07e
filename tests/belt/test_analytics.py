"""app.belt.analytics: track() buffers, one flush writes a batch; funnels and cohorts in SQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from app import belt
from app.belt import analytics

MIGRATIONS = Path(belt.__file__).parents[2] / "migrations"
DAY = 86400
MONDAY = 1_795_392_000.0  # 2026-11-23, a Monday, 00:00 UTC


@pytest.fixture
def store(tmp_path: Path) -> Iterator[belt.Store]:
    s = belt.Store(tmp_path / "a.sqlite")
    s.migrate("orion", MIGRATIONS)
    yield s
    s.close()


@pytest.fixture
def capture(store: belt.Store) -> Iterator[analytics.Analytics]:
    a = analytics.Analytics(interval=0.05)
    a.bind(store)
    yield a
    a.close()


def events(store: belt.Store) -> list[tuple[str, str | None, dict[str, object]]]:
    rows = store.query("SELECT name, subject, props FROM _orion_events ORDER BY id")
    return [(r["name"], r["subject"], json.loads(r["props"])) for r in rows]


def test_track_only_buffers_and_the_flusher_writes_off_the_hub(store: belt.Store, capture: analytics.Analytics) -> None:
    before = (store.stats.writes, store.stats.commits)
    for n in range(1200):
        capture.track("todo_added", {"n": n}, subject=n % 7)
    assert len(capture.buffer) == 1200 and capture.flushed == 0  # nothing written yet
    heard: list[int] = []
    stop = capture.subscribe(lambda: heard.append(capture.flushed))
    deadline = time.monotonic() + 2
    while capture.flushed < 1200 and time.monotonic() < deadline:
        gevent.sleep(0.01)  # the hub stays free: the flusher waits for a pool thread
    stop()
    # One transaction per 500 events (a multi-row INSERT each), written by a pool thread
    # through the flusher's own connection, never the store's writer.
    assert capture.flushed == 1200 and capture.flushes == 3 and heard == [500, 1000, 1200]
    assert (store.stats.writes, store.stats.commits) == before
    rows = events(store)
    assert len(rows) == 1200 and rows[0] == ("todo_added", "0", {"n": 0}) and rows[-1][2] == {"n": 1199}


def test_the_subject_is_an_opaque_user_id_never_an_address(capture: analytics.Analytics) -> None:
    capture.development = True
    for bad in ("203.0.113.7", "2001:db8::1", "ann@example.com"):
        with pytest.raises(ValueError, match="opaque user id"):
            capture.track("signed_up", subject=bad)
    with pytest.raises(ValueError, match="lower-case letters"):
        capture.track("Signed Up", subject="7")
    capture.development = False  # production drops and counts: a command never fails over analytics
    capture.track("signed_up", subject="203.0.113.7")
    capture.track("signed_up", {"blob": "x" * 5000}, subject="7")
    assert capture.dropped == 2 and capture.buffer == []


def test_closing_the_store_flushes_what_is_buffered(tmp_path: Path) -> None:
    s = belt.Store(tmp_path / "b.sqlite")
    s.migrate("orion", MIGRATIONS)
    a = analytics.Analytics(interval=60)
    a.bind(s)
    a.track("signed_up", subject="1")
    s.close()
    assert a.flushed == 1 and a._flusher is None
    s2 = belt.Store(tmp_path / "b.sqlite")
    try:
        assert events(s2) == [("signed_up", "1", {})]
    finally:
        s2.close()


def test_events_are_append_only(store: belt.Store, capture: analytics.Analytics) -> None:
    capture.track("signed_up", subject="1")
    capture.flush()
    with pytest.raises(Exception, match="append-only"):
        store.exec("UPDATE _orion_events SET subject = '2'")
    store.exec("DELETE FROM _orion_events WHERE subject = '1'")  # erasure stays possible


def put(store: belt.Store, rows: list[tuple[float, str, str]]) -> None:
    with store.tx():
        for at, name, subject in rows:
            store.exec("INSERT INTO _orion_events (at, name, subject) VALUES (?, ?, ?)", (at, name, subject))


def test_a_funnel_counts_each_step_in_order_within_the_window(store: belt.Store) -> None:
    put(
        store,
        [
            (MONDAY, "signed_up", "a"),
            (MONDAY + 3600, "todo_added", "a"),
            (MONDAY + 7200, "todo_completed", "a"),
            (MONDAY, "signed_up", "b"),
            (MONDAY + 2 * DAY, "todo_added", "b"),
            (MONDAY, "signed_up", "c"),
            (MONDAY + 9 * DAY, "todo_added", "c"),  # outside 7 days
            (MONDAY, "todo_completed", "d"),
            (MONDAY + 60, "signed_up", "d"),  # completed before signing up
            (MONDAY, "todo_added", "e"),  # never signed up
        ],
    )
    steps = analytics.funnel(store, ["signed_up", "todo_added", "todo_completed"], within_days=7)
    assert [(s.name, s.subjects) for s in steps] == [("signed_up", 4), ("todo_added", 2), ("todo_completed", 1)]
    assert steps[1].share_of(steps[0].subjects) == 0.5
    assert [s.subjects for s in analytics.funnel(store, ["signed_up", "todo_added"], within_days=10)] == [4, 3]


def test_weekly_retention_cohorts(store: belt.Store) -> None:
    put(
        store,
        [
            # Week of Nov 23: a and b sign up; a comes back in week 1 and week 2, b in week 2.
            (MONDAY + DAY, "signed_up", "a"),
            (MONDAY + 8 * DAY, "todo_added", "a"),
            (MONDAY + 15 * DAY, "todo_added", "a"),
            (MONDAY + 2 * DAY, "signed_up", "b"),
            (MONDAY + 16 * DAY, "todo_added", "b"),
            # Week of Nov 30: c signs up and never returns.
            (MONDAY + 7 * DAY, "signed_up", "c"),
        ],
    )
    cohorts = analytics.retention(store, start="signed_up", weeks=3)
    assert [(c.week, c.size, c.returned) for c in cohorts] == [
        ("2026-11-23", 2, (2, 1, 2)),
        ("2026-11-30", 1, (1, 0, 0)),
    ]
    assert cohorts[0].share(1) == 0.5
    counted = analytics.counts(store)
    assert counted == (("signed_up", 3, 3), ("todo_added", 3, 2))
