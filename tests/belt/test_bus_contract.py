"""One contract, two buses: the in-process Bus and the RedisBus (against a real redis-server).

Feature code must not be able to tell them apart. The Redis bus delivers asynchronously
(publish → Redis → this process's listener), so every assertion waits for delivery: after
``settle(bus)`` every earlier publish has been delivered (one publisher connection and one
subscriber connection keep Redis's order).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest

from app.belt.bus import EVERYTHING, Bus, Topic, Watchable
from app.belt.ctx import BoundBus
from app.belt.redis_bus import RedisBus
from app.belt.store import Store
from tests.support.redis import RedisServer

_prefixes = itertools.count()


@pytest.fixture(params=["local", "redis"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "local":
        yield Bus()
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    redis_bus = RedisBus(redis.url, prefix=f"contract{next(_prefixes)}")
    # Connected first, as in a server that has been up a moment: a Redis bus wakes the
    # subscribers it already has once its subscription is confirmed (see test_redis_bus.py).
    redis_bus.subscribe("_start", lambda: None)()
    wait_until(lambda: redis_bus.connected)
    try:
        yield redis_bus
    finally:
        redis_bus.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db.sqlite")
    s.exec("CREATE TABLE items (name TEXT)")
    yield s
    s.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = gevent.get_hub().loop.now() + timeout
    while not predicate():
        if gevent.get_hub().loop.now() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        gevent.sleep(0.005)


def settle(bus: Bus) -> None:
    """Return once every publish made so far has been delivered to this process."""
    heard: list[int] = []
    stop = bus.subscribe("_settle", lambda: heard.append(1))
    try:
        bus.publish("_settle")
        wait_until(lambda: bool(heard))
    finally:
        stop()


def test_publish_wakes_the_subscribers_of_that_topic_only(bus: Bus) -> None:
    heard: list[str] = []
    bus.subscribe("todos", lambda: heard.append("a"))
    bus.subscribe("todos", lambda: heard.append("b"))
    bus.subscribe("users", lambda: heard.append("users"))
    bus.publish("todos")
    settle(bus)
    assert heard == ["a", "b"]
    assert bus.published == 2  # "todos" and settle's own


def test_unsubscribe_stops_the_wakes_and_is_idempotent(bus: Bus) -> None:
    heard: list[str] = []
    stop = bus.subscribe("todos", lambda: heard.append("x"))
    bus.publish("todos")
    settle(bus)
    stop()
    stop()
    bus.publish("todos")
    settle(bus)
    assert heard == ["x"]
    assert bus.subscriber_count() == 0
    assert bus.topics() == []


def test_the_same_callback_twice_is_two_subscriptions(bus: Bus) -> None:
    heard: list[str] = []

    def callback() -> None:
        heard.append("x")

    first = bus.subscribe("todos", callback)
    bus.subscribe("todos", callback)
    first()
    bus.publish("todos")
    settle(bus)
    assert heard == ["x"]


def test_everything_hears_every_topic(bus: Bus) -> None:
    heard: list[str] = []
    bus.subscribe(EVERYTHING, lambda: heard.append("all"))
    bus.subscribe("todos", lambda: heard.append("todos"))
    bus.publish("todos")
    settle(bus)
    bus.publish("users")
    settle(bus)
    assert heard.count("todos") == 1
    assert heard.count("all") >= 2  # EVERYTHING also hears settle's own publishes


def test_a_raising_subscriber_is_logged_and_the_others_still_run(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    heard: list[str] = []

    def broken() -> None:
        raise RuntimeError("subscriber exploded")

    bus.subscribe("todos", lambda: heard.append("before"))
    bus.subscribe("todos", broken)
    bus.subscribe("todos", lambda: heard.append("after"))
    with caplog.at_level(logging.ERROR, logger="orion.bus"):
        bus.publish("todos")  # does not raise into the publisher
        settle(bus)
    assert heard == ["before", "after"]
    assert "subscriber exploded" in caplog.text


def test_a_subscriber_may_unsubscribe_itself_during_delivery(bus: Bus) -> None:
    heard: list[str] = []
    stops = []

    def once() -> None:
        heard.append("once")
        stops[0]()

    stops.append(bus.subscribe("todos", once))
    bus.subscribe("todos", lambda: heard.append("other"))
    bus.publish("todos")
    settle(bus)
    bus.publish("todos")
    settle(bus)
    assert heard == ["once", "other", "other"]
    assert bus.subscriber_count("todos") == 1


def test_subscriber_count_and_topics_count_this_processs_subscriptions(bus: Bus) -> None:
    stops = [bus.subscribe("todos", lambda: None), bus.subscribe("todos", lambda: None)]
    stops.append(bus.subscribe("users", lambda: None))
    assert bus.subscriber_count("todos") == 2
    assert bus.subscriber_count("nobody") == 0
    assert bus.subscriber_count() == 3
    assert bus.topics() == ["todos", "users"]
    for stop in stops:
        stop()
    assert bus.subscriber_count() == 0


def test_a_topic_is_a_watchable(bus: Bus) -> None:
    topic = bus.topic("todos")
    assert isinstance(topic, Topic)
    assert isinstance(topic, Watchable)
    heard: list[str] = []
    stop = topic.subscribe(lambda: heard.append("x"))
    bus.publish("todos")
    settle(bus)
    stop()
    bus.publish("todos")
    settle(bus)
    assert heard == ["x"]


def test_wake_all_wakes_every_subscription_of_this_process_once(bus: Bus) -> None:
    heard: list[str] = []
    bus.subscribe("todos", lambda: heard.append("todos-1"))
    bus.subscribe("todos", lambda: heard.append("todos-2"))
    bus.subscribe("users", lambda: heard.append("users"))
    bus.subscribe(EVERYTHING, lambda: heard.append("all"))
    settle(bus)  # the Redis bus's first subscription woke everyone once already
    heard.clear()
    bus.wake_all()
    assert sorted(heard) == ["all", "todos-1", "todos-2", "users"]


@pytest.mark.parametrize("topic", ["", None, 7, b"todos"])
def test_an_invalid_topic_is_refused_with_the_value(bus: Bus, topic: object) -> None:
    with pytest.raises(ValueError, match=r"A topic is a non-empty string"):
        bus.subscribe(topic, lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"A topic is a non-empty string"):
        bus.publish(topic)  # type: ignore[arg-type]
    assert bus.subscriber_count() == 0


def test_a_bound_publish_is_delivered_after_commit_and_the_subscriber_sees_the_write(bus: Bus, store: Store) -> None:
    bound = BoundBus(bus, store)
    seen: list[list[str]] = []
    bus.subscribe("items", lambda: seen.append([r["name"] for r in store.query("SELECT name FROM items")]))
    with store.tx():
        store.exec("INSERT INTO items VALUES ('milk')")
        bound.publish("items")
        assert seen == []
    settle(bus)
    assert seen == [["milk"]]


def test_a_bound_publish_is_dropped_when_the_tx_rolls_back(bus: Bus, store: Store) -> None:
    bound = BoundBus(bus, store)
    heard: list[str] = []
    bus.subscribe("items", lambda: heard.append("x"))
    with pytest.raises(RuntimeError), store.tx():
        store.exec("INSERT INTO items VALUES ('milk')")
        bound.publish("items")
        raise RuntimeError("abort")
    settle(bus)
    assert heard == []
    assert bus.published == 1  # settle's own only


def test_tenant_prefixes_keep_topics_apart(bus: Bus, store: Store) -> None:
    tenant_a = BoundBus(bus, store, prefix="acme:")
    tenant_b = BoundBus(bus, store, prefix="globex:")
    heard: list[str] = []
    tenant_a.subscribe("items", lambda: heard.append("a"))
    tenant_b.topic("items").subscribe(lambda: heard.append("b"))
    tenant_a.publish("items")
    settle(bus)
    assert heard == ["a"]
    assert bus.topics() == ["acme:items", "globex:items"]


def test_a_burst_of_publishes_ends_with_at_least_one_wake_after_the_last(bus: Bus) -> None:
    """Wakes may coalesce (they carry no state); the last publish is never lost."""
    heard: list[int] = []
    bus.subscribe("todos", lambda: heard.append(len(heard)))
    for _ in range(200):
        bus.publish("todos")
    settle(bus)
    assert 1 <= len(heard) <= 200
