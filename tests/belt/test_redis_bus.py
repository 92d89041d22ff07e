"""app.belt.redis_bus against a real redis-server: across processes, outages, shutdown.

Two RedisBus objects on one Redis stand for two processes: each has its own connections,
its own listener and its own local subscribers, exactly as two gunicorn workers would.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest

from app.belt import redis_bus
from app.belt.redis_bus import RedisBus
from tests.support.redis import RedisServer

_prefixes = itertools.count()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = gevent.get_hub().loop.now() + timeout
    while not predicate():
        if gevent.get_hub().loop.now() > deadline:
            raise AssertionError(f"{what}: not true within {timeout}s")
        gevent.sleep(0.005)


@pytest.fixture
def buses(redis_server: RedisServer) -> Iterator[Callable[..., RedisBus]]:
    """Open connected Redis buses ("processes") sharing the test's Redis; all closed after."""
    opened: list[RedisBus] = []
    prefix = f"app{next(_prefixes)}"

    def open_bus(**kwargs: object) -> RedisBus:
        kwargs.setdefault("prefix", prefix)
        bus = RedisBus(redis_server.url, **kwargs)  # type: ignore[arg-type]
        opened.append(bus)
        bus.subscribe("_start", lambda: None)()
        wait_until(lambda: bus.connected, what="bus connected")
        return bus

    yield open_bus
    for bus in opened:
        bus.close()


def test_a_publish_in_one_process_wakes_the_subscribers_of_every_process(buses: Callable[..., RedisBus]) -> None:
    a, b = buses(), buses()
    heard: list[str] = []
    a.subscribe("todos", lambda: heard.append("a"))
    b.subscribe("todos", lambda: heard.append("b"))
    b.subscribe("users", lambda: heard.append("b-users"))
    a.publish("todos")
    wait_until(lambda: sorted(heard) == ["a", "b"], what="both processes woken")
    assert a.published == 1 and b.published == 0
    assert a.sent == 1


def test_the_prefix_keeps_two_apps_on_one_redis_apart(buses: Callable[..., RedisBus]) -> None:
    one, two = buses(prefix="one"), buses(prefix="two")
    heard: list[str] = []
    two.subscribe("todos", lambda: heard.append("two"))
    one.subscribe("todos", lambda: heard.append("one"))
    one.publish("todos")
    wait_until(lambda: heard == ["one"])
    gevent.sleep(0.1)
    assert heard == ["one"]


def test_the_prefix_is_a_literal_not_a_pattern(buses: Callable[..., RedisBus]) -> None:
    star, plain = buses(prefix="a*"), buses(prefix="ab")
    heard: list[str] = []
    star.subscribe("todos", lambda: heard.append("star"))
    plain.subscribe("todos", lambda: heard.append("plain"))
    plain.publish("todos")
    wait_until(lambda: heard == ["plain"])
    gevent.sleep(0.1)
    assert heard == ["plain"]


def test_publish_never_waits_on_redis_even_when_it_is_down(
    buses: Callable[..., RedisBus], redis_server: RedisServer
) -> None:
    bus = buses()
    redis_server.kill()
    ran: list[str] = []
    gevent.spawn(lambda: ran.append("other greenlet"))
    for i in range(1000):
        bus.publish(f"topic-{i % 10}")
    # No publish yielded to the hub: the greenlet spawned before them has not run yet.
    assert ran == []
    assert bus.stats()["pending"] == 10  # coalesced per topic, kept for when Redis is back
    gevent.sleep(0)
    assert ran == ["other greenlet"]


def test_after_redis_comes_back_every_subscriber_is_woken_once_with_no_publish(
    buses: Callable[..., RedisBus], redis_server: RedisServer
) -> None:
    bus = buses(backoff=(0.02, 0.2))
    heard: list[str] = []
    bus.subscribe("todos", lambda: heard.append("todos"))
    bus.subscribe("users", lambda: heard.append("users"))
    redis_server.kill()
    wait_until(lambda: not bus.connected, what="the outage noticed")
    gevent.sleep(0.3)  # a few failed attempts, with backoff
    assert heard == []
    redis_server.start()
    wait_until(lambda: bus.connected and len(heard) == 2, what="reconnected and woken")
    assert sorted(heard) == ["todos", "users"]
    assert bus.reconnects == 1


def cut_off(bus: RedisBus, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Take ``bus``'s publisher off the network (Redis stays up for the others); returns the undo."""
    real = bus._new_connection

    def refused() -> object:
        raise ConnectionRefusedError("this process's network is down")

    monkeypatch.setattr(bus, "_new_connection", refused)
    redis_server.command("CLIENT", "KILL", "TYPE", "normal")  # every sender connection
    return lambda: monkeypatch.setattr(bus, "_new_connection", real)


def test_publishes_made_while_a_process_is_cut_off_reach_the_others_when_it_is_back(
    buses: Callable[..., RedisBus], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = buses(backoff=(0.02, 0.2)), buses()
    heard: list[str] = []
    b.subscribe("todos", lambda: heard.append("b"))
    back = cut_off(a, redis_server, monkeypatch)
    a.publish("todos")
    gevent.sleep(0.3)  # a few failed attempts, with backoff
    assert heard == []
    assert a.stats()["pending"] == 1
    back()
    wait_until(lambda: heard == ["b"], what="the queued publish delivered")
    assert b.reconnects == 0  # b never lost Redis: it was the publish, not a wake-all


def test_a_cut_publisher_connection_is_reopened_and_the_publish_sent_again(
    buses: Callable[..., RedisBus], redis_server: RedisServer
) -> None:
    a, b = buses(backoff=(0.02, 0.2)), buses()
    a.publish("warm")
    wait_until(lambda: a.sent == 1)
    heard: list[str] = []
    b.subscribe("todos", lambda: heard.append("b"))
    # Cut every non-pub/sub connection: a's sender, not the listeners.
    assert redis_server.command("CLIENT", "KILL", "TYPE", "normal").startswith(b":")
    a.publish("todos")
    wait_until(lambda: heard == ["b"], what="the publish resent on a new connection")
    assert a.connected and b.connected and b.reconnects == 0


def test_too_many_distinct_topics_while_cut_off_become_one_wake_everyone(
    buses: Callable[..., RedisBus], redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_bus, "MAX_PENDING", 3)
    a, b = buses(backoff=(0.02, 0.2)), buses()
    heard: list[str] = []
    b.subscribe("some:other-topic", lambda: heard.append("woken"))
    back = cut_off(a, redis_server, monkeypatch)
    for i in range(5):
        a.publish(f"tenant-{i}:todos")
    assert a.stats()["pending"] == 0  # collapsed into one broadcast
    back()
    wait_until(lambda: heard == ["woken"], what="the wake-everyone broadcast")
    assert b.reconnects == 0


def test_close_sends_what_is_pending_then_stops_and_disconnects(
    buses: Callable[..., RedisBus], redis_server: RedisServer
) -> None:
    a, b = buses(), buses()
    heard: list[str] = []
    b.subscribe("todos", lambda: heard.append("b"))
    a.publish("todos")
    a.close()  # before the sender ran: close flushes it
    assert a.sent == 1
    assert not a.connected
    assert all(g.dead for g in a._greenlets)
    wait_until(lambda: heard == ["b"])
    a.publish("late")  # after close: dropped with a warning, never raises
    clients = redis_server.command("CLIENT", "LIST").decode()
    assert clients.count("cmd=psubscribe") == 1  # only b's listener is left


def test_close_gives_up_on_an_absent_redis_within_its_timeout(
    buses: Callable[..., RedisBus], redis_server: RedisServer
) -> None:
    bus = buses()
    redis_server.kill()
    bus.publish("todos")
    started = gevent.get_hub().loop.now()
    bus.close(timeout=0.3)
    assert gevent.get_hub().loop.now() - started < 3
    assert all(g.dead for g in bus._greenlets)


def test_a_bus_that_is_never_used_never_connects(redis_server: RedisServer) -> None:
    bus = RedisBus(redis_server.url)
    assert bus.subscriber_count() == 0
    gevent.sleep(0.05)
    assert not bus._greenlets and not bus.connected
    bus.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("rediss://cache.internal:6380/0", "the bus speaks redis:// and unix:// only"),
        ("http://127.0.0.1:6379", "is not a Redis URL"),
    ],
)
def test_an_unusable_url_is_refused_naming_it(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        RedisBus(url)
    assert repr(url) in str(info.value)


def test_a_unix_socket_url_works(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    server = RedisServer(tmp_path)
    server.binary_args = ["--unixsocket", str(sock), "--unixsocketperm", "700"]
    server.start()
    try:
        bus = RedisBus(f"unix://{sock}?db=0", prefix="unix")
        heard: list[str] = []
        bus.subscribe("todos", lambda: heard.append("x"))
        wait_until(lambda: bus.connected)
        bus.publish("todos")
        wait_until(lambda: "x" in heard)
        bus.close()
    finally:
        server.stop()
