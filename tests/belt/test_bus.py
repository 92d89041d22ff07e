"""app.belt.bus (and the tx-bound bus of app.belt.ctx): what only the in-process bus promises.

The behaviour both buses share (publish, unsubscribe, EVERYTHING, a raising subscriber, Topic as
a Watchable, invalid topics, publish dropped on rollback) is the contract suite's:
tests/belt/test_bus_contract.py runs it against the local bus and the Redis bus alike. Here:
delivery inside publish() itself, subscribe_all, counts, and the bound bus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.belt.bus import EVERYTHING, Bus, subscribe_all
from app.belt.ctx import BoundBus
from app.belt.store import Store


@pytest.fixture
def bus() -> Bus:
    return Bus()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db.sqlite")
    s.exec("CREATE TABLE items (name TEXT)")
    yield s
    s.close()


def test_a_subscriber_may_unsubscribe_itself_during_publish(bus: Bus) -> None:
    heard: list[str] = []
    stops = []

    def once() -> None:
        heard.append("once")
        stops[0]()

    stops.append(bus.subscribe("todos", once))
    bus.subscribe("todos", lambda: heard.append("other"))
    bus.publish("todos")
    bus.publish("todos")
    assert heard == ["once", "other", "other"]
    assert bus.subscriber_count("todos") == 1


def test_a_subscriber_may_unsubscribe_everyone_during_publish(bus: Bus) -> None:
    stops = [bus.subscribe("todos", lambda: [stop() for stop in stops]) for _ in range(3)]
    bus.publish("todos")
    assert bus.subscriber_count() == 0
    bus.publish("todos")


def test_subscriber_count_per_topic_and_in_all(bus: Bus) -> None:
    a = bus.subscribe("todos", lambda: None)
    b = bus.subscribe("todos", lambda: None)
    c = bus.subscribe("users", lambda: None)
    assert bus.subscriber_count("todos") == 2
    assert bus.subscriber_count("nobody") == 0
    assert bus.subscriber_count() == 3
    assert bus.topics() == ["todos", "users"]
    for stop in (a, b, c):
        stop()
    assert bus.subscriber_count() == 0


def test_subscribe_all_subscribes_to_each_and_undoes_all(bus: Bus) -> None:
    heard: list[str] = []
    stop = subscribe_all([bus.topic("todos"), bus.topic("users")], lambda: heard.append("x"))
    assert bus.subscriber_count() == 2
    bus.publish("todos")
    bus.publish("users")
    assert heard == ["x", "x"]
    stop()
    stop()
    assert bus.subscriber_count() == 0


def test_subscribe_all_undoes_what_it_did_when_one_subscription_fails(bus: Bus) -> None:
    class Broken:
        def subscribe(self, callback: object) -> object:
            raise RuntimeError("cannot watch")

    with pytest.raises(RuntimeError, match="cannot watch"):
        subscribe_all([bus.topic("todos"), Broken(), bus.topic("users")], lambda: None)  # type: ignore[list-item]
    assert bus.subscriber_count() == 0


def test_wake_all_wakes_every_subscription_once(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    heard: list[str] = []

    def broken() -> None:
        raise RuntimeError("subscriber exploded")

    bus.subscribe("todos", lambda: heard.append("todos-1"))
    bus.subscribe("todos", lambda: heard.append("todos-2"))
    bus.subscribe("users", lambda: heard.append("users"))
    bus.subscribe("users", broken)
    bus.subscribe(EVERYTHING, lambda: heard.append("all"))
    with caplog.at_level(logging.ERROR, logger="orion.bus"):
        bus.wake_all()
    assert sorted(heard) == ["all", "todos-1", "todos-2", "users"]
    assert "subscriber exploded" in caplog.text


# BoundBus: publishes wait for the transaction


def test_a_bound_publish_inside_tx_is_delivered_after_commit(bus: Bus, store: Store) -> None:
    bound = BoundBus(bus, store)
    seen: list[list[str]] = []
    bus.subscribe("items", lambda: seen.append([r["name"] for r in store.query("SELECT name FROM items")]))
    with store.tx():
        store.exec("INSERT INTO items VALUES ('milk')")
        bound.publish("items")
        assert seen == []
    # the subscriber re-read the store and already saw the write
    assert seen == [["milk"]]


def test_a_bound_publish_outside_tx_is_delivered_now(bus: Bus, store: Store) -> None:
    bound = BoundBus(bus, store)
    heard: list[str] = []
    bus.subscribe("items", lambda: heard.append("x"))
    bound.publish("items")
    assert heard == ["x"]


def test_a_bound_bus_scopes_topics_with_its_prefix(bus: Bus, store: Store) -> None:
    tenant_a = BoundBus(bus, store, prefix="acme:")
    tenant_b = BoundBus(bus, store, prefix="globex:")
    heard: list[str] = []
    tenant_a.subscribe("items", lambda: heard.append("a"))
    tenant_b.topic("items").subscribe(lambda: heard.append("b"))
    tenant_a.publish("items")
    assert heard == ["a"]
    assert bus.topics() == ["acme:items", "globex:items"]
