"""The Redis bus (rung 2): the in-process bus's calls, shared by several processes.

    bus = RedisBus("redis://127.0.0.1:6379/0", prefix="orion")

Same surface as ``Bus`` (``publish``, ``subscribe``, ``topic``, ``wake_all``,
``subscriber_count``, ``published``, ``topics``, ``EVERYTHING``); feature code cannot tell
them apart. How it works:

- ``publish(topic)`` never waits on Redis: it adds the topic to a pending set and returns.
  A sender greenlet PUBLISHes what is pending to the channel ``<prefix>:<topic>``, several
  topics in one round trip. Events carry no state, so two pending publishes of one topic
  are sent once.
- A listener greenlet holds one ``PSUBSCRIBE <prefix>:*`` per process and runs this
  process's callbacks for every message, **its own publishes included**. There is one
  delivery path: a lone process behaves like each of many, and a publish reaches local
  viewers when it reaches remote ones. It costs one loopback round trip per publish
  (bench/RESULTS-redis.md measures it).
- A lost connection is retried with backoff (50 ms doubling to 2 s, jittered). Once the
  PSUBSCRIBE is confirmed again, every local subscriber is woken once (``wake_all``): events
  carry no state, so a wake is a re-read, and whatever was published while the listener was
  away is in the store by then. Publishes made while Redis is away wait in the pending set
  (one entry per distinct topic; past ``MAX_PENDING`` they collapse into one "wake everyone"
  broadcast) and go out when it is back. A silent connection is PINGed; no answer within
  ``ping_every`` seconds counts as lost.

Redis pub/sub channels are not scoped by database number (``SELECT``): the prefix is what
keeps two apps on one Redis apart. Tenant prefixes are already in the topics (``BoundBus``).

Why gevent's socket: redis-py opens stdlib sockets. Under gunicorn's gevent worker they are
patched, but a process that is not (the test runner, a CLI command, a jobs worker) would
block its whole thread in the listener's ``recv``. The connection classes below open gevent
sockets, so the bus cooperates with the hub whether or not the process was patched.
"""

from __future__ import annotations

import logging
import random
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.socket
from redis.connection import Connection, UnixDomainSocketConnection, parse_url
from redis.exceptions import RedisError

from .bus import EVERYTHING, Bus, Callback, Unsubscribe, _check_topic

log = logging.getLogger("orion.bus")

#: Distinct topics kept while Redis is away; past this they become one "wake everyone".
MAX_PENDING = 10_000
#: The payload of a broadcast that wakes every subscriber of every process.
WAKE_ALL = b"wake-all"
_RESPONSE_TIMEOUT = 5.0


class _GeventConnection(Connection):
    """redis-py's TCP connection on a gevent socket (see the module docstring)."""

    def _connect(self) -> socket.socket:
        sock = gevent.socket.create_connection((self.host, self.port), timeout=self.socket_connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.socket_keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in self.socket_keepalive_options.items():
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
        sock.settimeout(self.socket_timeout)
        return sock  # type: ignore[no-any-return]


class _GeventUnixConnection(UnixDomainSocketConnection):
    """redis-py's Unix-socket connection on a gevent socket."""

    def _connect(self) -> socket.socket:
        sock = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.socket_connect_timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        sock.settimeout(self.socket_timeout)
        return sock  # type: ignore[no-any-return]


def _connection_factory(url: str) -> Callable[[], Any]:
    """A callable that makes a new (unconnected) connection to ``url``.

    Typed ``Any``: redis-py's connection methods carry no annotations.
    """
    try:
        kwargs: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ValueError(f"ORION_REDIS_URL={url!r} is not a Redis URL ({exc}); e.g. redis://127.0.0.1:6379/0") from None
    kind = kwargs.pop("connection_class", None)
    if kind is None:
        cls: type[Any] = _GeventConnection
    elif kind is UnixDomainSocketConnection:
        cls = _GeventUnixConnection
    else:
        raise ValueError(
            f"ORION_REDIS_URL={url!r}: the bus speaks redis:// and unix:// only. For TLS, keep Redis on "
            "a private network or loopback, or tunnel it (stunnel, spiped) and point the URL at the tunnel."
        )
    kwargs.update(socket_timeout=_RESPONSE_TIMEOUT, socket_connect_timeout=_RESPONSE_TIMEOUT)
    return lambda: cls(**kwargs)


class RedisBus(Bus):
    """A bus whose publishes reach the subscribers of every process sharing one Redis.

    ``close()`` (run by ``Runtime.shutdown``) sends what is still pending (for up to
    ``timeout`` seconds), then stops both greenlets and closes both connections. The
    greenlets start with the first ``publish`` or ``subscribe``, so a process that never
    uses the bus (``flask routes``) never connects.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "orion",
        ping_every: float = 5.0,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        super().__init__()
        if not prefix:
            raise ValueError("ORION_REDIS_PREFIX names this app's channels on a shared Redis: set it to e.g. 'orion'.")
        self.url = url
        self.prefix = prefix
        self.ping_every = ping_every
        self.backoff = backoff
        self._new_connection = _connection_factory(url)
        self._channel_prefix = f"{prefix}:".encode()
        # PSUBSCRIBE takes a glob: escape what the prefix could hold of one.
        self._pattern = re.sub(rb"([*?\[\]\\])", rb"\\\1", self._channel_prefix) + b"*"
        self._pending: dict[str, None] = {}
        self._pending_wake_all = False
        self._wanted = gevent.event.Event()
        self._in_flight = 0
        self._greenlets: list[gevent.Greenlet] = []
        self._closed = False
        self._outage_logged = False
        #: The listener holds a confirmed subscription now.
        self.connected = False
        #: Subscriptions confirmed after the first one (each woke every local subscriber).
        self.reconnects = 0
        #: PUBLISH commands Redis acknowledged; messages the listener delivered.
        self.sent = 0
        self.received = 0

    # -- the Bus surface --

    def publish(self, topic: str) -> None:
        """Queue ``topic`` for every process's subscribers (this one's included); never blocks."""
        _check_topic(topic)
        self.published += 1
        if self._closed:
            log.warning("publish of %r after the Redis bus closed: dropped", topic)
            return
        self._start()
        if not self._pending_wake_all:
            self._pending[topic] = None
            if len(self._pending) > MAX_PENDING:
                self._collapse()
        self._wanted.set()

    def subscribe(self, topic: str, callback: Callback) -> Unsubscribe:
        self._start()
        return super().subscribe(topic, callback)

    def close(self, timeout: float = 1.0) -> None:
        """Send what is pending (up to ``timeout`` s), stop the greenlets, close the connections."""
        if self._closed:
            return
        self._closed = True
        if self._greenlets:
            deadline = time.monotonic() + timeout
            sender = self._greenlets[1]
            while (self._pending or self._pending_wake_all or self._in_flight) and not sender.dead:
                if time.monotonic() > deadline:
                    unsent = len(self._pending)
                    log.warning("closing the Redis bus with %d topic(s) unsent: Redis did not answer", unsent)
                    break
                gevent.sleep(0.005)
        gevent.killall(self._greenlets, block=True, timeout=2)
        self.connected = False

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "connected": self.connected,
            "reconnects": self.reconnects,
            "sent": self.sent,
            "received": self.received,
            "pending": len(self._pending),
        }

    # -- the two greenlets --

    def _start(self) -> None:
        if not self._greenlets and not self._closed:
            self._greenlets = [gevent.spawn(self._listen), gevent.spawn(self._send)]

    def _listen(self) -> None:
        """Hold the subscription; deliver every message; on reconnect, wake everyone once."""
        delay = self.backoff[0]
        first = True
        while True:
            conn = self._new_connection()
            try:
                conn.connect()
                conn.send_command("PSUBSCRIBE", self._pattern)
                # push_request: pub/sub replies are "push" messages to redis-py; without it they
                # go to its logging push handler instead of being returned.
                reply = conn.read_response(push_request=True)
                if not (isinstance(reply, list) and reply[0] == b"psubscribe"):
                    raise RedisError(f"unexpected answer to PSUBSCRIBE: {reply!r}")
                self.connected = True
                delay = self.backoff[0]
                if self._outage_logged:
                    log.info("Redis bus at %s is back; waking every local subscriber", self._where())
                    self._outage_logged = False
                if not first:
                    self.reconnects += 1
                first = False
                # Anything published while we were not subscribed is in the store: re-read it all.
                self.wake_all()
                self._read(conn)
            except (RedisError, OSError) as exc:
                if not self._outage_logged:
                    log.warning("Redis bus at %s unreachable (%s); retrying with backoff", self._where(), exc)
                    self._outage_logged = True
            finally:
                self.connected = False
                conn.disconnect()
            gevent.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter, not a secret)
            delay = min(delay * 2, self.backoff[1])

    def _read(self, conn: Any) -> None:
        awaiting_pong = False
        while True:
            if conn.can_read(timeout=self.ping_every):
                reply = conn.read_response(push_request=True)
                kind = reply[0] if isinstance(reply, list) and reply else None
                if kind == b"pmessage":
                    self.received += 1
                    self._on_message(reply[2], reply[3])
                elif kind == b"pong" or reply == b"PONG":  # the shape differs between versions
                    awaiting_pong = False
            elif awaiting_pong:
                raise RedisError(f"no answer to PING within {self.ping_every}s")
            else:
                conn.send_command("PING")
                awaiting_pong = True

    def _on_message(self, channel: bytes, data: bytes) -> None:
        if data == WAKE_ALL:
            self.wake_all()
            return
        topic = channel[len(self._channel_prefix) :].decode(errors="replace")
        if topic:
            self._deliver(topic)

    def _send(self) -> None:
        """PUBLISH what is pending, in one round trip; keep it pending while Redis is away."""
        delay = self.backoff[0]
        conn: Any = None
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                batch, self._pending = self._pending, {}
                wake, self._pending_wake_all = self._pending_wake_all, False
                commands: list[tuple[Any, ...]] = [("PUBLISH", self._channel(t), b"") for t in batch]
                if wake:
                    commands = [("PUBLISH", self._channel(EVERYTHING), WAKE_ALL)]
                if not commands:
                    continue
                self._in_flight = len(commands)
                try:
                    if conn is None:
                        conn = self._new_connection()
                        conn.connect()
                    conn.send_packed_command(conn.pack_commands(commands))
                    for _ in commands:
                        conn.read_response()
                    self.sent += len(commands)
                    delay = self.backoff[0]
                except (RedisError, OSError):
                    # The listener logs the outage; here we only keep what is unsent.
                    if conn is not None:
                        conn.disconnect()
                        conn = None
                    self._requeue(batch, wake)
                    gevent.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311
                    delay = min(delay * 2, self.backoff[1])
                finally:
                    self._in_flight = 0
        finally:
            if conn is not None:
                conn.disconnect()

    def _requeue(self, batch: dict[str, None], wake: bool) -> None:
        if wake or self._pending_wake_all:
            self._pending_wake_all = True
            self._pending.clear()
        else:
            batch.update(self._pending)
            self._pending = batch
            if len(self._pending) > MAX_PENDING:
                self._collapse()
        self._wanted.set()

    def _collapse(self) -> None:
        log.warning("more than %d distinct topics waiting for Redis: sending one wake-everyone instead", MAX_PENDING)
        self._pending.clear()
        self._pending_wake_all = True

    def _channel(self, topic: str) -> bytes:
        return self._channel_prefix + topic.encode()

    def _where(self) -> str:
        # The URL without its password, for logs.
        return re.sub(r"//[^@/]*@", "//***@", self.url)

    def __repr__(self) -> str:
        return f"<RedisBus {self._where()} prefix={self.prefix!r} connected={self.connected}>"
