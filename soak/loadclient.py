"""The soak's load client: SSE viewers, storms, slow clients and commands, in a gevent process of its own.

    driver = Driver(server.url)          # starts ``python -m soak.loadclient`` and talks to it
    driver.call("open", group="legit", n=200)
    driver.call("update", group="legit", todo_id=1, title="Water the plants 0001")
    driver.close()

Everything that opens sockets runs here, in one gevent process, so that the server's worker
is measured from outside and the client's own CPU is not the server's. Each viewer is a raw
socket: it sends ``GET /todos/live`` with ``Accept-Encoding: br``, undoes the chunked coding
itself (http.client is far too slow for thousands of connections) and decompresses each chunk
with its own ``brotli.Decompressor``. The server writes one frame per chunk, so a chunk's
decoded text is a whole frame: the client keeps the last one holding the todo list, and notes
when a frame carrying the marker it waits for arrives.

The driver speaks JSON lines: one request ``{"op": ..., **args}`` on the child's stdin, one
answer on its stdout. Ops: ``open`` (viewers of a group, with their time to a first complete
frame), ``update`` (rename one todo, time its arrival at every viewer of a group), ``kill``
(close a group's sockets with RST), ``storm`` (reconnects at a given rate, each timed to its
first complete frame), ``slowloris`` / ``slowloris_report``, ``deaf`` (SSE clients that never
read), ``commands`` (a steady mix of add/rename/toggle/delete), ``final`` (is every viewer
still connected and showing what a fresh connection shows), ``ports`` and ``close``.
"""

from __future__ import annotations

if __name__ == "__main__":  # the child: gevent must patch before anything imports socket
    from gevent import monkey

    monkey.patch_all()

import hashlib
import json
import random
import resource
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import brotli  # type: ignore[import-untyped]
import gevent
import gevent.event
import gevent.lock
import gevent.pool

from bench.chunked import Chunked

LIST = b'id="todo-list"'  # the todo list region: a frame holding it is a complete render
LIST_END = b"</ul>"
REQUEST = (
    "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
    "Accept-Encoding: br\r\nDatastar-Request: true\r\n\r\n"
)


# -- small helpers shared with the parent (pure, no sockets) --


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: list[float], digits: int = 1) -> dict[str, Any]:
    """count, p50, p95, p99, max of ``values`` (rounded)."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, digits)

    return {
        "count": len(values),
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values) if values else None),
    }


def list_html(frame: bytes) -> bytes:
    """The todo list's HTML inside a decoded frame (its ``data: elements`` lines, joined)."""
    start = frame.find(b"data: elements <ul " + LIST)
    if start < 0:
        return b""
    end = frame.find(b"\n\n", start)
    lines = frame[start : end if end >= 0 else len(frame)].split(b"\n")
    return b"\n".join(line[len(b"data: elements ") :] for line in lines if line.startswith(b"data: elements "))


def rst(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (SO_LINGER 0), as a killed tab or a dropped network does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# -- the child: viewers and the ops --


class Viewer:
    """One SSE connection: chunked decoding, brotli, one decoded frame per chunk."""

    __slots__ = (
        "chunks",
        "closed",
        "decompressor",
        "digest",
        "error",
        "first",
        "frame",
        "history",
        "last_list",
        "light",
        "on_frame",
        "opening",
        "payload",
        "sock",
        "t_connect",
        "t_first",
        "want",
    )

    def __init__(self, on_frame: Callable[[Viewer, bytes, float], None] | None = None, light: bool = False) -> None:
        self.sock: socket.socket | None = None
        self.decompressor = brotli.Decompressor()
        # Every payload byte goes through a digest; a light viewer stops decompressing after its
        # first complete frame. Two viewers with equal digests received the very same brotli
        # stream, so one decoded viewer vouches for every light one with its digest: thousands
        # of viewers cost the client a recv and a hash each, not a decompression of every frame.
        self.digest = hashlib.blake2b(digest_size=16)
        self.light = light
        self.payload = 0  # brotli bytes received (chunk framing excluded)
        self.opening = b""  # the digest at the first complete frame: equal openings, one lane
        self.history: list[tuple[int, float]] | None = None  # a light viewer's (payload, t) per chunk
        self.chunks = Chunked()  # the response body's framing
        self.frame: list[bytes] = []  # the current chunk's decoded pieces
        self.first = gevent.event.Event()  # set at the first complete frame (or on failure)
        self.t_connect = 0.0
        self.t_first: float | None = None
        self.last_list = b""  # the last frame that held the todo list
        self.want = b""  # a marker the first complete frame must hold (storms)
        self.on_frame = on_frame
        self.closed = False
        self.error: str | None = None

    def connect(self, host: str, port: int, path: str, rcvbuf: int = 0) -> socket.socket:
        self.t_connect = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connect, so the window the server sees is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(30)
        sock.connect((host, port))
        sock.settimeout(None)
        sock.sendall(REQUEST.format(path=path, host=host, port=port).encode())
        self.sock = sock
        return sock

    def run(self, host: str, port: int, path: str) -> None:
        try:
            sock = self.connect(host, port, path)
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed before the response headers")
                head += data
            head, rest = head.split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 200") or b"content-encoding: br" not in head.lower():
                raise ConnectionError(f"unexpected response: {head[:200]!r}")
            if rest:
                self.feed(rest, time.monotonic())
            while True:
                data = sock.recv(262144)
                if not data:
                    break
                self.feed(data, time.monotonic())
        except (OSError, ValueError, brotli.error) as exc:
            if not self.closed:
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.closed = True
            self.first.set()  # never leave anyone waiting on a dead viewer

    def feed(self, data: bytes, t: float) -> None:
        """Consume received bytes: chunk sizes, payloads, the CRLF after each payload."""
        self.chunks.feed(data, t, self.on_payload, self.chunk_done)

    def on_payload(self, piece: bytes, t: float) -> None:
        self.digest.update(piece)
        self.payload += len(piece)
        if not self.light or self.t_first is None:
            out = self.decompressor.process(piece)
            # brotli 1.2 may keep output back until asked again (google/brotli#1396).
            while more := self.decompressor.process(b""):
                out += more
            if out:
                self.frame.append(out)

    def chunk_done(self, t: float) -> None:
        if self.history is not None:
            self.history.append((self.payload, t))
        if self.light and self.t_first is not None:
            return  # a light viewer decodes nothing after its first frame
        frame = b"".join(self.frame)
        self.frame = []
        if LIST not in frame:
            return
        self.last_list = frame
        if self.t_first is None and LIST_END in frame and (not self.want or self.want in frame):
            self.t_first = t
            self.opening = self.digest.copy().digest()
            self.first.set()
        if self.on_frame is not None:
            self.on_frame(self, frame, t)

    def hang_up(self) -> None:
        """Close with RST: the server learns of it only when it next writes (a heartbeat)."""
        self.closed = True
        if self.sock is not None:
            rst(self.sock)


class Round:
    """The marker every viewer of a group waits for now, and when it reached each.

    Decoding viewers see the marker in a frame and note where their brotli stream was then
    (``offsets``, by opening). A light viewer with the same opening received the same stream,
    so the marker reached it when its own payload count passed that offset: its chunk history
    says when.
    """

    def __init__(self) -> None:
        self.marker = b""
        self.t0 = 0.0
        self.arrivals: dict[int, float] = {}
        self.offsets: dict[bytes, int] = {}
        self.expected = 0
        self.done = gevent.event.Event()

    def start(self, marker: str, expected: int) -> None:
        self.marker = marker.encode()
        self.arrivals = {}
        self.offsets = {}
        self.expected = expected
        self.done.clear()
        self.t0 = time.monotonic()

    def on_frame(self, viewer: Viewer, frame: bytes, t: float) -> None:
        if self.marker and self.marker in frame and id(viewer) not in self.arrivals:
            self.arrivals[id(viewer)] = t
            self.offsets.setdefault(viewer.opening, viewer.payload)
            if len(self.arrivals) >= self.expected:
                self.done.set()

    def passed(self, viewer: Viewer) -> bool:
        """Has this light viewer received the bytes up to the marker's offset (or gone)?"""
        offset = self.offsets.get(viewer.opening)
        return viewer.closed or (offset is not None and viewer.payload >= offset)

    def light_arrival(self, viewer: Viewer) -> float | None:
        offset = self.offsets.get(viewer.opening)
        if offset is None or viewer.history is None:
            return None
        return next((t for payload, t in viewer.history if payload >= offset), None)


class Client:
    """The child's state: groups of viewers, slow connections, the server's address."""

    def __init__(self, url: str, path: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = path
        self.groups: dict[str, list[Viewer]] = {}
        self.rounds: dict[str, Round] = {}
        self.greenlets: list[gevent.Greenlet] = []
        self.loris_stop = 0.0
        self.loris_held: list[float] = []  # how long each dropped slowloris connection was held
        self.loris_open = 0
        self.loris_peak = 0
        self.loris_failed = 0
        self.loris_survived = 0
        self.noise: dict[str, int] = {}
        self.noise_stop = False
        self.deaf: list[socket.socket] = []
        self.next_id = 0  # the id the next added todo gets (set by ``commands``)
        self.added: list[int] = []

    # - viewers -

    def op_open(
        self, group: str, n: int, batch: int = 200, timeout: float = 30.0, full_every: int = 1
    ) -> dict[str, Any]:
        """Open ``n`` viewers, ``batch`` at a time; each waits for its first complete frame.
        Only every ``full_every``-th one decodes every frame; the others are light (see Viewer)."""
        rnd = self.rounds.setdefault(group, Round())
        viewers = [Viewer(rnd.on_frame, light=i % full_every != 0) for i in range(n)]
        self.groups.setdefault(group, []).extend(viewers)
        started = time.monotonic()
        gate = gevent.lock.BoundedSemaphore(batch)
        for viewer in viewers:
            gate.acquire()
            self.greenlets.append(gevent.spawn(viewer.run, self.host, self.port, self.path))
            gevent.spawn(_release_after_first, viewer, gate, timeout)
        for viewer in viewers:
            viewer.first.wait(timeout)
        ttff = [(v.t_first - v.t_connect) * 1000 for v in viewers if v.t_first is not None]
        failed = [v for v in viewers if v.t_first is None]
        return {
            "opened": n - len(failed),
            "failed": len(failed),
            "errors": sorted({v.error or "no first frame" for v in failed})[:5],
            "seconds": round(time.monotonic() - started, 2),
            "ttff_ms": summary(ttff),
        }

    def op_update(self, group: str, todo_id: int, title: str, timeout: float = 30.0) -> dict[str, Any]:
        """Rename a todo to ``title`` and time its arrival at every open viewer of ``group``."""
        viewers = [v for v in self.groups.get(group, []) if not v.closed]
        light = [v for v in viewers if v.light]
        rnd = self.rounds[group]
        for viewer in light:
            viewer.history = []
        rnd.start(title, len(viewers) - len(light))
        status, command_ms = post(self.host, self.port, f"/todos/{todo_id}/rename", {"title": title})
        rnd.done.wait(timeout)
        deadline = rnd.t0 + timeout
        while not all(rnd.passed(v) for v in light) and time.monotonic() < deadline:
            gevent.sleep(0.005)
        arrivals = list(rnd.arrivals.values())
        for viewer in light:
            t = rnd.light_arrival(viewer)
            if t is not None:
                arrivals.append(t)
            viewer.history = None
        got = [(t - rnd.t0) * 1000 for t in arrivals]
        rnd.marker = b""
        return {
            "status": status,
            "command_ms": round(command_ms, 1),
            "viewers": len(viewers),
            "delivered": len(got),
            "last_ms": round(max(got), 1) if got else None,
            "each_ms": summary(got),
        }

    def op_kill(self, group: str) -> dict[str, Any]:
        """Hang up every viewer of ``group`` at once, with RST."""
        viewers = self.groups.pop(group, [])
        for viewer in viewers:
            viewer.hang_up()
        return {"killed": len(viewers)}

    def op_storm(self, total: int, rate: float, marker: str, timeout: float = 10.0) -> dict[str, Any]:
        """``total`` fresh connections at ``rate`` per second, each timed to a first complete
        frame that holds ``marker`` (the latest title), then hung up with RST (a reload)."""
        results: list[float | None] = []
        errors: dict[str, int] = {}
        stale = 0

        def one() -> None:
            nonlocal stale
            viewer = Viewer()
            viewer.want = marker.encode()
            reader = gevent.spawn(viewer.run, self.host, self.port, self.path)
            viewer.first.wait(timeout)
            if viewer.t_first is not None:
                results.append((viewer.t_first - viewer.t_connect) * 1000)
            else:
                results.append(None)
                if viewer.last_list:  # a complete frame came, but without the latest title
                    stale += 1
                why = viewer.error or ("stale first frame" if viewer.last_list else "no first frame")
                errors[why] = errors.get(why, 0) + 1
            viewer.hang_up()
            reader.join(timeout=1)

        started = time.monotonic()
        pool = gevent.pool.Pool(None)
        for i in range(total):
            # Pace against the start time (not sleep-per-connect), so slow connects do not
            # stretch the window: connection i starts at i / rate.
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            pool.spawn(one)
        spawned = time.monotonic() - started
        pool.join()
        ok = [r for r in results if r is not None]
        return {
            "total": total,
            "rate": rate,
            "ok": len(ok),
            "failed": total - len(ok),
            "stale": stale,
            "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
            "spawn_seconds": round(spawned, 2),
            "seconds": round(time.monotonic() - started, 2),
            "ttff_ms": summary(ok),
            "over_1s": sum(1 for r in ok if r > 1000),
        }

    def op_final(self, group: str, timeout: float = 30.0) -> dict[str, Any]:
        """Is every viewer of ``group`` still connected, showing what a fresh connection shows?"""
        fresh = Viewer()
        reader = gevent.spawn(fresh.run, self.host, self.port, self.path)
        fresh.first.wait(timeout)
        expected = list_html(fresh.last_list)
        fresh.hang_up()
        reader.join(timeout=1)
        viewers = self.groups.get(group, [])
        # The last changes may still be on their way to the slowest viewers when the fresh one
        # has its first frame: give every viewer until ``timeout`` to show the same list.
        deadline = time.monotonic() + timeout
        while True:
            connected = [v for v in viewers if not v.closed]
            decoded = [v for v in connected if not v.light and list_html(v.last_list) == expected]
            vouched = {v.digest.digest() for v in decoded}
            light = [v for v in connected if v.light and v.digest.digest() in vouched]
            if len(decoded) + len(light) == len(connected) or time.monotonic() > deadline:
                break
            gevent.sleep(0.1)
        return {
            "viewers": len(viewers),
            "connected": len(connected),
            "current": len(decoded) + len(light),
            "decoded": len(decoded),
            "light_vouched": len(light),
            "light": sum(1 for v in viewers if v.light),
            "reference_bytes": len(expected),
            "errors": sorted({v.error or "closed" for v in viewers if v.closed})[:5],
        }

    # - slow clients -

    def op_slowloris(self, n: int, seconds: float, interval: float = 3.0, rate: float = 500.0) -> dict[str, Any]:
        """Keep ``n`` slowloris connections going for ``seconds``: each sends its request one
        byte every ``interval`` seconds, never finishing, and opens a new one when dropped."""
        self.loris_stop = time.monotonic() + seconds
        started = time.monotonic()
        for i in range(n):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            self.greenlets.append(gevent.spawn(self._loris_slot, interval))
        return {"started": n, "seconds": round(time.monotonic() - started, 2)}

    def _loris_slot(self, interval: float) -> None:
        while time.monotonic() < self.loris_stop:
            if not self._loris_once(interval):
                gevent.sleep(interval)  # could not connect: back off as a real client would

    def _loris_once(self, interval: float) -> bool:
        request = f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nX-Slow: " + "a" * 4000
        try:
            sock = socket.create_connection((self.host, self.port), timeout=10)
        except OSError:
            self.loris_failed += 1
            return False
        opened = time.monotonic()
        self.loris_open += 1
        self.loris_peak = max(self.loris_peak, self.loris_open)
        sock.settimeout(interval)
        dropped = True
        try:
            for ch in request:
                if time.monotonic() >= self.loris_stop:
                    dropped = False  # the attack ended before the server dropped us
                    break
                sock.send(ch.encode())
                try:
                    sock.recv(4096)
                except TimeoutError:
                    continue  # still waiting for the rest: send the next byte
                break  # the server hung up (b"") or answered (an error page): dropped either way
        except OSError:  # a reset: dropped
            pass
        self.loris_open -= 1
        if dropped:
            self.loris_held.append(time.monotonic() - opened)
        else:
            self.loris_survived += 1
        rst(sock)
        return True

    def op_slowloris_report(self) -> dict[str, Any]:
        return {
            "dropped": len(self.loris_held),
            "held_s": summary(self.loris_held, 2),
            "open_now": self.loris_open,
            "peak_open": self.loris_peak,
            "connect_failed": self.loris_failed,
            "outlived_attack": self.loris_survived,
        }

    def op_deaf(self, n: int, rcvbuf: int = 1024) -> dict[str, Any]:
        """Open ``n`` SSE clients with a tiny receive buffer that never read a byte."""
        ports = []
        failed = 0
        for _ in range(n):
            viewer = Viewer()
            try:
                sock = viewer.connect(self.host, self.port, self.path, rcvbuf=rcvbuf)
            except OSError:
                failed += 1
                continue
            self.deaf.append(sock)
            ports.append(sock.getsockname()[1])
        return {"opened": len(ports), "failed": failed, "ports": ports}

    # - commands -

    def op_commands(
        self, rate: float, seconds: float, first_new_id: int, base_rows: int, seed: int = 7
    ) -> dict[str, Any]:
        """A steady mix of commands for ``seconds``: renames and toggles of the first
        ``base_rows`` todos, adds, and deletes of the oldest added todo (never the newest, so
        the next id stays max + 1 and every command names a todo that exists)."""
        rng = random.Random(seed)
        self.next_id = self.next_id or first_new_id  # a later call goes on where the last left off
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        kinds: dict[str, int] = {}
        pool = gevent.pool.Pool(None)
        lock = gevent.lock.Semaphore()  # adds and deletes in order: the ids are predicted

        def one(kind: str, path: str, body: dict[str, Any]) -> None:
            status, ms = post(self.host, self.port, path, body)
            latencies.append(ms)
            statuses[str(status)] = statuses.get(str(status), 0) + 1

        def ordered(kind: str, path: str, body: dict[str, Any]) -> None:
            with lock:
                one(kind, path, body)

        started = time.monotonic()
        i = 0
        while time.monotonic() - started < seconds:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            i += 1
            roll = rng.random()
            todo = rng.randint(1, base_rows)
            body: dict[str, Any]
            if roll < 0.4:
                kind, path, body = "rename", f"/todos/{todo}/rename", {"title": f"Soak rename {i} of row {todo}"}
            elif roll < 0.7:
                kind, path, body = "toggle", f"/todos/{todo}/toggle", {"done": rng.random() < 0.5}
            elif roll < 0.85 or len(self.added) < 2:
                kind, path, body = "add", "/todos", {"title": f"Soak added {i}"}
                self.added.append(self.next_id)
                self.next_id += 1
                pool.spawn(ordered, kind, path, body)
                kinds[kind] = kinds.get(kind, 0) + 1
                continue
            else:
                kind, path, body = "delete", f"/todos/{self.added.pop(0)}/delete", {}
                pool.spawn(ordered, kind, path, body)
                kinds[kind] = kinds.get(kind, 0) + 1
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
            pool.spawn(one, kind, path, body)
        pool.join()
        elapsed = time.monotonic() - started
        errors = sum(n for s, n in statuses.items() if s not in ("200", "204"))
        return {
            "sent": i,
            "seconds": round(elapsed, 1),
            "rate": round(i / elapsed, 1),
            "kinds": kinds,
            "statuses": statuses,
            "errors": errors,
            "latency_ms": summary(latencies),
        }

    def op_noise(self, rate: float, seconds: float, rows: int, title_chars: int = 200) -> dict[str, Any]:
        """In the background for ``seconds``: rename todos 2..``rows`` to random titles at
        ``rate`` per second. Random text does not compress, so each frame costs every viewer
        real bytes: a client that never reads fills its socket buffers within seconds."""
        rng = random.Random(11)
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "

        self.noise_stop = False

        def loop() -> None:
            started = time.monotonic()
            i = 0
            while time.monotonic() - started < seconds and not self.noise_stop:
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    gevent.sleep(delay)
                i += 1
                title = "".join(rng.choice(alphabet) for _ in range(title_chars)).strip() or "x"
                status, _ms = post(self.host, self.port, f"/todos/{rng.randint(2, rows)}/rename", {"title": title})
                self.noise[str(status)] = self.noise.get(str(status), 0) + 1

        self.greenlets.append(gevent.spawn(loop))
        return {"started": True}

    def op_noise_report(self, stop: bool = False) -> dict[str, Any]:
        self.noise_stop = self.noise_stop or stop
        return {"statuses": dict(self.noise)}

    def op_ports(self, group: str) -> dict[str, Any]:
        return {"ports": [v.sock.getsockname()[1] for v in self.groups.get(group, []) if v.sock and not v.closed]}

    def op_close(self) -> dict[str, Any]:
        for viewers in self.groups.values():
            for viewer in viewers:
                viewer.hang_up()
        for sock in self.deaf:
            rst(sock)
        gevent.killall(self.greenlets, timeout=5)
        return {"closed": True}


def _release_after_first(viewer: Viewer, gate: gevent.lock.BoundedSemaphore, timeout: float) -> None:
    viewer.first.wait(timeout)
    gate.release()


def post(host: str, port: int, path: str, body: dict[str, Any]) -> tuple[int, float]:
    """POST a Datastar JSON action on a fresh connection: (status, milliseconds to the status line)."""
    data = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Datastar-Request: true\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode() + data
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=60) as sock:
            sock.sendall(request)
            response = b""
            while b"\r\n" not in response:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                response += chunk
    except OSError:
        return 0, (time.monotonic() - t0) * 1000
    ms = (time.monotonic() - t0) * 1000
    try:
        return int(response.split(b" ", 2)[1]), ms
    except (IndexError, ValueError):
        return 0, ms


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    url, path = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/todos/live"
    client = Client(url, path)
    while True:
        # sys.stdin is not patched by gevent: read it on a thread so the sockets keep reading.
        line = gevent.get_hub().threadpool.apply(sys.stdin.readline)
        if not line.strip():
            client.op_close()
            return
        request = json.loads(line)
        op = request.pop("op")
        try:
            answer = getattr(client, f"op_{op}")(**request)
        except Exception as exc:  # report it to the driver rather than die silently
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps({"op": op, **answer}) + "\n")
        sys.stdout.flush()
        if op == "close":
            return


# -- the parent's side --


class Driver:
    """Starts the load client process and calls its ops, one JSON line each way."""

    def __init__(self, url: str, path: str = "/todos/live", log: str | None = None) -> None:
        from tests.support.server import ROOT

        self.log = open(log, "ab") if log else subprocess.DEVNULL  # closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "soak.loadclient", url, path],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, op: str, limit: float = 900.0, **args: Any) -> dict[str, Any]:
        """Run one op in the client; a client silent for ``limit`` seconds is killed, so a
        soak run never hangs on it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        # One answer per request, so Python's buffer is empty here and select sees the pipe.
        ready, _, _ = select.select([self.proc.stdout], [], [], limit)
        if not ready:
            self.proc.kill()
            raise RuntimeError(f"the load client did not answer {op!r} within {limit:g} s (killed)")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the load client exited (code {self.proc.poll()}) during {op!r}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load client op {op!r} failed: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("close")
            except (RuntimeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        if self.log is not subprocess.DEVNULL:
            self.log.close()  # type: ignore[union-attr]

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def seed(url: str, rows: int) -> None:
    """Add ``rows`` todos through the app's own command (so each is journaled and published)."""
    from soak.common import http

    for i in range(rows):
        status, body = http(
            "POST",
            url + "/todos",
            json.dumps({"title": f"Buy milk and bread {i + 1}"}).encode(),
            {"Content-Type": "application/json", "Datastar-Request": "true"},
        )
        if status not in (200, 204):
            raise RuntimeError(f"seeding todo {i + 1} answered {status}: {body[:200]!r}")


def rename(url: str, todo_id: int, title: str) -> int:
    """Rename one todo from the parent (urllib); returns the HTTP status."""
    from soak.common import http

    body = json.dumps({"title": title}).encode()
    headers = {"Content-Type": "application/json", "Datastar-Request": "true"}
    return http("POST", f"{url}/todos/{todo_id}/rename", body, headers)[0]


def connections(worker: Any, ports: set[int] | None = None) -> int:
    """The worker's TCP connections to clients (all, or those from ``ports``), as the kernel
    lists them: a connection reset by its client leaves this list at once, while its fd and its
    greenlet live until the worker next writes to it (so fds, not this, stand for greenlets)."""
    try:
        conns = worker.net_connections(kind="tcp")
    except Exception:  # the worker is gone
        return -1
    listening = {c.laddr.port for c in conns if c.status == "LISTEN"}
    n = 0
    for c in conns:
        if not c.raddr or c.laddr.port not in listening:
            continue
        if ports is None or c.raddr.port in ports:
            n += 1
    return n


def sample(server: Any, worker: Any) -> dict[str, Any]:
    """One reading of the worker: streams and bus subscribers (its stats), RSS, fds, connections."""
    stats = server.stats()
    return {
        "t": time.monotonic(),
        "streams": stats["streams"],
        "subscribers": stats["subscribers"],
        "rss_mb": round(worker.memory_info().rss / 2**20, 1),
        "fds": worker.num_fds(),
        "connections": connections(worker),
    }


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> float | None:
    """Seconds until ``predicate()`` held (polled every ``step``), or None after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(step)
    return None


if __name__ == "__main__":
    main()
