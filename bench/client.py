"""The load client: N real SSE viewers and the poster, in one process of their own.

    python -m bench.client --url http://127.0.0.1:8000 --viewers 1000 --updates 30
    python -m bench.client --url http://127.0.0.1:8001 --viewers 100 --workload B --encoding identity

Two workloads (``bench/workloads.py``): **T** (``GET /todos/live``; an update renames one row
to a title holding the marker) and **B** (``GET /board/live``; an update is ``POST /board/step``
with the marker, which the board carries as ``data-frame="<marker>"``).

Two engines run the viewers, with the same rules and the same messages (``--engine``): **epoll**
(the default: one thread, every socket non-blocking in one ``select.epoll``, each viewer a small
state machine; about half the client CPU per delivery of the other) and **gevent** (a greenlet
per viewer, the process monkey-patched; what the client was first).

Each viewer is a raw socket: it sends ``GET <path>`` with ``Accept-Encoding: br`` (or
``identity``, for the peers, which do not compress), parses the chunked transfer coding itself
(http.client is far too slow for thousands of connections) or, for a response that is not
chunked, takes the raw stream until the server closes it, feeds the bytes to its own
``brotli.Decompressor`` (br only) and looks for the current update's marker in the decoded
bytes. An update has arrived once the event holding its marker is complete (its blank line
came in: the board's marker is in its first tag, ~100 KB before its end); the time is taken
when ``recv`` returned those bytes, before they are searched, so the client's own CPU shows up
as little as possible in the latencies.

The poster lives here too, so that ``time.monotonic()`` before the POST and at each arrival come
from one clock. Each update posts a unique marker and waits until every viewer has it (or a
timeout), then pauses. The ``done`` message also carries ``client_cpu_s``: this process's CPU
seconds (user + system) over the measured updates.

The process talks to ``bench.run`` in JSON lines: it prints ``{"event": "connected"}`` once every
viewer has its first complete frame, then obeys ``warm`` (warm-up updates, not measured), ``go``
(the measured updates, answered with their summary) and ``close`` on stdin. Between the steps the
runner reads the server's counters, CPU time and memory.
"""

import argparse
import sys

from gevent import monkey

#: The engine when ``--engine`` is not given: ``epoll`` (one thread, ``select.epoll``) or
#: ``gevent`` (a greenlet per viewer, the process monkey-patched).
DEFAULT_ENGINE = "epoll"
ENGINES = ("epoll", "gevent")


def _engine(argv: list[str]) -> str:
    """``--engine`` from the command line, read before anything imports socket."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--engine", choices=ENGINES, default=DEFAULT_ENGINE)
    return str(pre.parse_known_args(argv)[0].engine)


# gevent must patch before anything imports socket; the epoll engine needs the real socket and
# select modules (gevent's patch removes select.epoll). Imported as a module (split_client), the
# client is patched as it always was.
if __name__ != "__main__" or _engine(sys.argv[1:]) == "gevent":
    monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import brotli  # type: ignore[import-untyped]  # noqa: E402
import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.lock  # noqa: E402

from bench.chunked import Chunked  # noqa: E402
from bench.workloads import board_marker  # noqa: E402
from bench.workloads import todos_marker as marker  # noqa: E402  (the name split_client imports)


@dataclass(frozen=True)
class Workload:
    """What a viewer opens, how an update is posted, and what the client looks for."""

    path: str
    #: The first frame is complete once this arrived (the region's id).
    ready: bytes
    #: Update ``k``'s marker, as the POST sends it.
    marker: Callable[[int], str]
    #: The bytes that prove update ``k`` arrived, found in the decoded stream.
    needle: Callable[[int], bytes]


WORKLOADS = {
    "T": Workload("/todos/live", b'id="todo-list"', marker, lambda k: marker(k).encode()),
    "B": Workload("/board/live", b'id="board"', board_marker, lambda k: f'data-frame="{board_marker(k)}"'.encode()),
}


def after_needle(needle: bytes, tail: bytes, out: bytes) -> int:
    """The index in ``out`` just past ``needle``, or -1. ``needle`` may straddle ``tail`` (the
    previous output's end) and ``out``; ``out`` is never copied whole (a board frame is
    ~100 KB, for each of thousands of viewers)."""
    i = out.find(needle)
    if i >= 0:
        return i + len(needle)
    if not tail:
        return -1
    joined = tail + out[: len(needle) - 1]
    i = joined.find(needle)
    return -1 if i < 0 else i + len(needle) - len(tail)


def event_ends(tail: bytes, out: bytes, start: int) -> bool:
    """Whether the SSE event in progress ends (a blank line) in ``out`` from ``start``.

    An update counts as arrived when its whole event has, not when its marker has: the
    board's marker is in its first tag, 100 KB before the frame's end.
    """
    if out.rfind(b"\n\n", start) >= 0:  # from the end: the blank line closes the chunk
        return True
    return start == 0 and out[:1] == b"\n" and tail.endswith(b"\n")


class Round:
    """The update every viewer is waiting for now."""

    def __init__(self, viewers: int, workload: Workload = WORKLOADS["T"]) -> None:
        self.viewers = viewers
        self.workload = workload
        self.k = -1
        self.marker = b""
        self.t0 = 0.0
        self.arrivals: list[float | None] = []
        self.got = 0
        self.all_in = gevent.event.Event()

    def start(self, k: int) -> None:
        self.k = k
        self.marker = self.workload.needle(k)
        self.arrivals = [None] * self.viewers
        self.got = 0
        self.all_in.clear()
        self.t0 = time.monotonic()

    def arrived(self, index: int, t: float) -> None:
        self.arrivals[index] = t
        self.got += 1
        if self.got == self.viewers:
            self.all_in.set()


def check_head(head: bytes, br: bool) -> bool:
    """Refuse a response that is not a 200 in the encoding asked for; whether it is chunked."""
    lower = head.lower()
    encoded = b"content-encoding:" in lower and b"content-encoding: identity" not in lower
    good = b"content-encoding: br" in lower if br else not encoded
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) or not good:
        raise ConnectionError(f"unexpected response: {head[:300]!r}")
    return b"transfer-encoding: chunked" in lower


class Viewer:
    """One SSE connection: chunked decoding (or a raw stream), brotli (or none), marker search."""

    __slots__ = (
        "armed",
        "capture",
        "chunk_out",
        "chunked",
        "chunks",
        "closed",
        "decompressor",
        "error",
        "index",
        "marks",
        "payload",
        "ready",
        "round",
        "seen_k",
        "sock",
        "tail",
        "wire",
    )

    def __init__(self, index: int, rnd: Round, capture: bool, encoding: str = "br") -> None:
        self.index = index
        self.round = rnd
        self.sock: socket.socket | None = None
        # identity: no decompressor at all (a brotli.Decompressor holds its window, ~100s of KB).
        self.decompressor = brotli.Decompressor() if encoding == "br" else None
        self.chunked = True
        self.chunks = Chunked()  # the response body's framing
        self.tail = b""  # the end of the previous output, for a marker split across reads
        self.seen_k = -1
        self.armed = -3  # the target whose needle arrived, its event not yet complete
        self.ready = gevent.event.Event()
        self.wire = 0  # every byte received after the headers (chunk framing included)
        self.payload = 0  # brotli bytes only
        # (k, wire, payload) at each marker: the differences are the bytes each update cost.
        self.marks: list[tuple[int, int, int]] = []
        self.capture: list[bytes] | None = [] if capture else None
        self.chunk_out: list[bytes] = []
        self.closed = False
        self.error: str | None = None

    def run(self, host: str, port: int, path: str) -> None:
        try:
            sock = socket.create_connection((host, port), timeout=60)
            sock.settimeout(None)
            self.sock = sock
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
                f"Accept-Encoding: {'br' if self.decompressor else 'identity'}\r\n"
                "Datastar-Request: true\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed before the response headers")
                head += data
            head, rest = head.split(b"\r\n\r\n", 1)
            self.check_head(head)
            # uvicorn chunks; a WSGI stream without Content-Length is chunked by gunicorn too,
            # but an HTTP/1.0-style raw stream (read until close) is valid HTTP as well.
            feed = self.feed if self.chunked else self.feed_raw
            if rest:
                feed(rest, time.monotonic())
            # Drop every reference to received bytes before waiting again: a frame held by
            # this frame's locals while it waits is ~100 KB per viewer (identity, board).
            del head, rest
            recv = sock.recv
            while data := recv(262144):
                feed(data, time.monotonic())
                del data
        except (OSError, ValueError, brotli.error) as exc:
            if not self.closed:
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.closed = True
            self.ready.set()  # never leave the connect loop waiting on a dead viewer

    def check_head(self, head: bytes) -> None:
        """Refuse a response that is not a 200 in the encoding asked for; note its framing."""
        self.chunked = check_head(head, self.decompressor is not None)

    def feed_raw(self, data: bytes, t: float) -> None:
        """Consume a stream that is not chunked: every byte is payload."""
        self.wire += len(data)
        self.on_payload(data, t)

    def feed(self, data: bytes, t: float) -> None:
        """Consume received bytes: chunk sizes, payloads, the CRLF after each payload."""
        self.wire += len(data)
        self.chunks.feed(data, t, self.on_payload, self.on_chunk_end)

    def on_payload(self, data: bytes, t: float) -> None:
        self.payload += len(data)
        decompressor = self.decompressor
        if decompressor is None:
            out = data
        else:
            out = decompressor.process(data)
            # brotli 1.2's process() may stop at ~32 KiB of output and keep the rest until it is
            # called again (google/brotli#1396 and the PRs around it): drain it, or an event's
            # tail would wait for the next chunk.
            while more := decompressor.process(b""):
                out += more
        if self.capture is not None:
            self.chunk_out.append(out)
        if not out:
            return
        self.watch(out, t)
        self.tail = out[-64:]

    def watch(self, out: bytes, t: float) -> None:
        """Look for the current target in decoded bytes: the first frame (the region's id),
        then each update's marker; a target is reached when its event is complete."""
        rnd = self.round
        ready = self.ready.is_set()
        if ready and self.seen_k == rnd.k:
            return
        target = rnd.k if ready else -2
        start = 0
        if self.armed != target:
            start = after_needle(rnd.marker if ready else rnd.workload.ready, self.tail, out)
            if start < 0:
                return
            self.armed = target
        if not event_ends(self.tail, out, start):
            return
        if not ready:
            self.ready.set()
            return
        self.seen_k = rnd.k
        self.marks.append((rnd.k, self.wire, self.payload))
        rnd.arrived(self.index, t)

    def on_chunk_end(self, t: float) -> None:
        if self.capture is not None:
            self.capture.append(b"".join(self.chunk_out))
            self.chunk_out = []

    def close(self) -> None:
        self.closed = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


def post_rename(host: str, port: int, todo_id: int, title: str) -> int:
    """POST /todos/<id>/rename as a Datastar action; returns the HTTP status."""
    return post_signals(host, port, f"/todos/{todo_id}/rename", {"title": title})


def post_step(host: str, port: int, marker: str) -> int:
    """POST /board/step (workload B) as a Datastar action; returns the HTTP status."""
    return post_signals(host, port, "/board/step", {"marker": marker})


def post_update(workload: str, host: str, port: int, k: int, rows: int) -> int:
    """Post update ``k`` of ``workload``: T renames row ``k % rows + 1``, B steps the board."""
    if workload == "B":
        return post_step(host, port, board_marker(k))
    return post_rename(host, port, k % rows + 1, marker(k))


def post_signals(host: str, port: int, path: str, signals: dict[str, Any]) -> int:
    """POST ``signals`` as JSON with ``Datastar-Request: true``; returns the HTTP status."""
    request = signals_request(host, port, path, signals)
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        response = b""
        while b"\r\n" not in response:
            data = sock.recv(4096)
            if not data:
                break
            response += data
    try:
        return int(response.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def signals_request(host: str, port: int, path: str, signals: dict[str, Any]) -> bytes:
    """The bytes of ``post_signals``'s request."""
    body = json.dumps(signals).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nDatastar-Request: true\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def update_request(workload: str, host: str, port: int, k: int, rows: int) -> bytes:
    """The bytes ``post_update`` sends for update ``k``."""
    if workload == "B":
        return signals_request(host, port, "/board/step", {"marker": board_marker(k)})
    return signals_request(host, port, f"/todos/{k % rows + 1}/rename", {"title": marker(k)})


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "min": min(values) if values else None,
    }


def run_updates(
    viewers: list[Viewer],
    rnd: Round,
    host: str,
    port: int,
    ks: range,
    rows: int,
    pause: float,
    timeout: float,
    workload: str = "T",
) -> dict[str, Any]:
    """Post one update per ``k`` and time its arrival at every viewer."""
    per_update: list[dict[str, Any]] = []
    all_ms: list[float] = []
    for k in ks:
        gevent.sleep(pause)
        rnd.start(k)
        status = post_update(workload, host, port, k, rows)
        answered = time.monotonic()
        rnd.all_in.wait(timeout)
        latencies = [(t - rnd.t0) * 1000 for t in rnd.arrivals if t is not None]
        all_ms.extend(latencies)
        per_update.append(update_record(k, rnd.t0, status, answered, len(viewers), latencies))
    return round_summary(viewers, ks, per_update, all_ms)


def update_record(
    k: int, t0: float, status: int, answered: float, viewers: int, latencies: list[float]
) -> dict[str, Any]:
    """One update's line of ``per_update``."""
    return {
        "k": k,
        "t0": t0,
        "status": status,
        "command_ms": (answered - t0) * 1000,
        "delivered": len(latencies),
        "missed": viewers - len(latencies),
        "first_ms": min(latencies) if latencies else None,
        "p50_ms": percentile(latencies, 50),
        "last_ms": max(latencies) if latencies else None,
    }


def round_summary(
    viewers: list[Any], ks: range, per_update: list[dict[str, Any]], all_ms: list[float]
) -> dict[str, Any]:
    """The ``done`` figures of a run of updates (either engine's viewers: their ``marks``)."""
    lasts = [u["last_ms"] for u in per_update if u["last_ms"] is not None and not u["missed"]]
    # Bytes per update, from each viewer's own counters: what arrived between two markers.
    wire: list[float] = []
    payload: list[float] = []
    wanted = set(ks)
    for viewer in viewers:
        previous = None
        for k, w, p in viewer.marks:
            if previous is not None and k in wanted and k == previous[0] + 1:
                wire.append(w - previous[1])
                payload.append(p - previous[2])
            previous = (k, w, p)
    return {
        "updates": len(per_update),
        "deliveries": sum(u["delivered"] for u in per_update),
        "missed": sum(u["missed"] for u in per_update),
        "bad_status": [u["status"] for u in per_update if u["status"] not in (200, 204)],
        "last_ms": summary(lasts),
        "all_ms": summary(all_ms),
        "first_ms": summary([u["first_ms"] for u in per_update if u["first_ms"] is not None]),
        "command_ms": summary([u["command_ms"] for u in per_update]),
        "wire_bytes_per_update": summary(wire),
        "payload_bytes_per_update": summary(payload),
        "per_update": per_update,
    }


def _release_when_ready(viewer: Viewer, gate: gevent.lock.BoundedSemaphore) -> None:
    viewer.ready.wait()
    gate.release()


def cpu_seconds() -> float:
    """This process's CPU time so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def say(**message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def read_command() -> str:
    # sys.stdin is not patched by gevent: read it on a thread so the viewers keep reading.
    line: str = gevent.get_hub().threadpool.apply(sys.stdin.readline)
    return line.strip()


def write_capture(path: str, first: Any, workload: Workload, k: int) -> None:
    """Viewer 0's decoded chunks and the markers of updates 0..k-1, as JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "chunks": [c.decode() for c in first.capture or []],
                "markers": {workload.marker(i): i for i in range(k)},
            },
            f,
        )


# -- the epoll engine ---------------------------------------------------------------------------
#
# One thread, every socket non-blocking in one level-triggered ``select.epoll``; each viewer a
# small state machine (headers, then the body: chunked or raw, brotli or identity, the marker).
# The same rules as ``Viewer`` (``after_needle``, the event's blank line, ``Round``), without a
# greenlet switch per read: a read is ``recv_into`` one shared buffer, the chunk payloads go
# to the decompressor as views of it, and the blank line after the marker is looked for with
# ``rfind`` (the same answer as ``event_ends``'s ``find``, but from the end, where it is: a
# board frame is ~96 KB after its marker).

#: The shared receive buffer's size: one read takes at most this much (level-triggered epoll
#: reports the socket again if more is waiting).
RECV_SIZE = 262144


class LoopRound(Round):
    """``Round`` without its gevent event: the loop checks ``got`` itself."""

    def arrived(self, index: int, t: float) -> None:
        self.arrivals[index] = t
        self.got += 1


class LoopViewer:
    """One SSE connection of the epoll engine: ``Viewer``'s semantics, driven by readiness."""

    __slots__ = (
        "armed",
        "buf",
        "capture",
        "chunk_out",
        "chunked",
        "chunks",
        "closed",
        "decompressor",
        "error",
        "head",
        "inbox",
        "index",
        "loop",
        "marks",
        "payload",
        "ready",
        "round",
        "seen_k",
        "sock",
        "tail",
        "view",
        "wire",
    )

    def __init__(self, loop: "Loop", index: int, rnd: Round, capture: bool, encoding: str = "br") -> None:
        self.loop = loop
        self.buf = loop.buf
        self.view = loop.view
        self.index = index
        self.round = rnd
        self.sock: socket.socket | None = None
        self.decompressor = brotli.Decompressor() if encoding == "br" else None
        self.chunked = True
        self.head = b""
        self.inbox: list[tuple[bytes, float]] = []  # bytes read, not yet decoded, and when
        self.chunks = Chunked()
        self.tail = b""
        self.seen_k = -1
        self.armed = -3
        self.ready = False
        self.wire = 0
        self.payload = 0
        self.marks: list[tuple[int, int, int]] = []
        self.capture: list[bytes] | None = [] if capture else None
        self.chunk_out: list[bytes] = []
        self.closed = False
        self.error: str | None = None

    def open(self, host: str, port: int, path: str) -> None:
        """Connect and send the request (blocking: on loopback, with the accept queue kept
        short by the batches, both return at once), then wait for the headers in the loop."""
        try:
            sock = socket.create_connection((host, port), timeout=60)
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
                f"Accept-Encoding: {'br' if self.decompressor else 'identity'}\r\n"
                "Datastar-Request: true\r\n\r\n".encode()
            )
            sock.setblocking(False)
        except OSError as exc:
            self.fail(exc)
            return
        self.sock = sock
        self.loop.add(sock.fileno(), self.on_head)

    def fail(self, exc: BaseException | None) -> None:
        """The connection ended (``exc`` None: the server closed it)."""
        if not self.closed and exc is not None:
            self.error = f"{type(exc).__name__}: {exc}"
        self.closed = True
        sock, self.sock = self.sock, None
        if sock is not None:
            self.loop.remove(sock.fileno())
            sock.close()
        if not self.ready:
            self.ready = True  # never leave the connect loop waiting on a dead viewer
            self.loop.on_ready(self)

    def on_head(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail(exc)
            return
        if not data:
            self.fail(ConnectionError("closed before the response headers"))
            return
        head = self.head + data
        if b"\r\n\r\n" not in head:
            self.head = head
            return
        self.head = b""
        head, rest = head.split(b"\r\n\r\n", 1)
        try:
            self.chunked = check_head(head, self.decompressor is not None)
            self.loop.handlers[self.sock.fileno()] = self.on_body
            if rest:
                if self.chunked:
                    self.feed(rest, time.monotonic())
                else:
                    self.wire += len(rest)
                    self.on_payload(rest, time.monotonic())
        except (OSError, ValueError, brotli.error) as exc:
            self.fail(exc)

    def on_body(self) -> None:
        sock = self.sock
        assert sock is not None
        try:
            n = sock.recv_into(self.buf)
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail(exc)
            return
        t = time.monotonic()
        if not n:
            self.drain()
            self.fail(None)
            return
        # Decoding waits until no socket has anything to read (Loop.run): the arrival time is
        # when recv returned the bytes, and decoding one viewer's frame (brotli: ~40 µs for the
        # board) never delays reading the next viewer's.
        if not self.inbox:
            self.loop.dirty.append(self)
        self.inbox.append((bytes(self.view[:n]), t))

    def drain(self) -> None:
        """Decode what was read, with the times it was read."""
        inbox, self.inbox = self.inbox, []
        for data, t in inbox:
            if self.closed:
                return
            try:
                if self.chunked:
                    self.feed(data, t)
                else:
                    self.wire += len(data)
                    self.on_payload(data, t)
            except (ValueError, brotli.error) as exc:
                self.fail(exc)

    def feed(self, data: bytes, t: float) -> None:
        """``Viewer.feed``: chunk sizes, payloads, the CRLF after each payload."""
        self.wire += len(data)
        self.chunks.feed(data, t, self.on_payload, self.on_chunk_end)

    def on_chunk_end(self, t: float) -> None:
        if self.capture is not None:
            self.capture.append(b"".join(self.chunk_out))
            self.chunk_out = []

    def on_payload(self, data: bytes, t: float) -> None:
        self.payload += len(data)
        decompressor = self.decompressor
        if decompressor is None:
            out = bytes(data)
        else:
            out = decompressor.process(data)
            # brotli 1.2 may hold output past ~32 KiB until called again (see Viewer.on_payload).
            more = decompressor.process(b"")
            if more:
                parts = [out, more]
                while more := decompressor.process(b""):
                    parts.append(more)
                out = b"".join(parts)
        if self.capture is not None:
            self.chunk_out.append(out)
        if not out:
            return
        # Viewer.watch, inline.
        rnd = self.round
        ready = self.ready
        if not ready or self.seen_k != rnd.k:
            target = rnd.k if ready else -2
            start = 0
            if self.armed != target:
                start = after_needle(rnd.marker if ready else rnd.workload.ready, self.tail, out)
                if start < 0:
                    self.tail = out[-64:]
                    return
                self.armed = target
            if out.rfind(b"\n\n", start) >= 0 or (start == 0 and out[:1] == b"\n" and self.tail.endswith(b"\n")):
                if not ready:
                    self.ready = True
                    self.loop.on_ready(self)
                else:
                    self.seen_k = rnd.k
                    self.marks.append((rnd.k, self.wire, self.payload))
                    rnd.arrived(self.index, t)
        self.tail = out[-64:]

    def close(self) -> None:
        self.closed = True
        sock, self.sock = self.sock, None
        if sock is not None:
            self.loop.remove(sock.fileno())
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class Poster:
    """One POST in the loop: sent at once (blocking, like the viewers' requests), its status
    line read when it comes, so the viewers keep reading while the server answers."""

    def __init__(self, loop: "Loop", host: str, port: int, request: bytes) -> None:
        self.loop = loop
        self.status: int | None = None
        self.answered = 0.0
        self.response = b""
        self.deadline = time.monotonic() + 30
        self.sock: socket.socket | None = socket.create_connection((host, port), timeout=30)
        self.sock.sendall(request)
        self.sock.setblocking(False)
        loop.add(self.sock.fileno(), self.on_read)

    def on_read(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.response += data
        if data and b"\r\n" not in self.response:
            return
        self.finish()

    def finish(self) -> None:
        if self.sock is not None:
            self.loop.remove(self.sock.fileno())
            self.sock.close()
            self.sock = None
        try:
            self.status = int(self.response.split(b" ", 2)[1])
        except (IndexError, ValueError):
            self.status = 0
        self.answered = time.monotonic()

    def done(self) -> bool:
        if self.status is None and time.monotonic() >= self.deadline:
            self.finish()
        return self.status is not None


class Loop:
    """The epoll loop: file descriptor → the handler of its next readable event."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.handlers: dict[int, Callable[[], None]] = {}
        self.buf = bytearray(RECV_SIZE)
        self.view = memoryview(self.buf)
        self.opening = 0  # connections opened whose first frame has not come yet
        self.dirty: list[LoopViewer] = []  # viewers with bytes read but not yet decoded
        self.stdin = b""
        self.stdin_eof = False

    def add(self, fd: int, handler: Callable[[], None]) -> None:
        self.handlers[fd] = handler
        self.epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass

    def on_ready(self, viewer: LoopViewer) -> None:
        self.opening -= 1

    def run(self, until: Callable[[], bool], deadline: float) -> None:
        """Serve every socket until ``until()`` or ``deadline`` (``time.monotonic()``)."""
        poll = self.epoll.poll
        handlers = self.handlers
        monotonic = time.monotonic
        while not until():
            remaining = deadline - monotonic()
            if remaining <= 0:
                return
            # Read everything readable first; decode (LoopViewer.drain) only once nothing is.
            events = poll(0 if self.dirty else min(remaining, 1.0), 4096)
            if events:
                for fd, _events in events:
                    handler = handlers.get(fd)
                    if handler is not None:
                        handler()
                continue
            dirty, self.dirty = self.dirty, []
            for viewer in dirty:
                viewer.drain()

    def sleep(self, seconds: float) -> None:
        self.run(lambda: False, time.monotonic() + seconds)

    # stdin, read in the loop so the viewers keep reading while the runner thinks.

    def watch_stdin(self) -> bool:
        try:
            self.add(sys.stdin.fileno(), self.on_stdin)
        except (OSError, ValueError):  # not pollable (a regular file): read it blocking
            self.handlers.pop(sys.stdin.fileno(), None)
            return False
        return True

    def on_stdin(self) -> None:
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:
            self.stdin_eof = True
            self.remove(sys.stdin.fileno())
        self.stdin += data

    def read_command(self, pollable: bool) -> str:
        def have_line() -> bool:
            return b"\n" in self.stdin or self.stdin_eof

        while not have_line():
            if pollable:
                self.run(have_line, time.monotonic() + 3600)
            else:
                self.on_stdin()
        line, _, self.stdin = self.stdin.partition(b"\n")
        return line.decode().strip()


def open_viewers(loop: Loop, viewers: list[LoopViewer], host: str, port: int, path: str, batch: int) -> None:
    """Open every viewer, at most ``batch`` waiting for their first frame at once."""
    pending = iter(viewers)
    left = len(viewers)
    while left:
        while loop.opening < batch and left:
            viewer = next(pending)
            left -= 1
            loop.opening += 1
            viewer.open(host, port, path)
        loop.run(lambda: loop.opening < batch, time.monotonic() + 3600)
    loop.run(lambda: loop.opening == 0, time.monotonic() + 10**9)


def loop_updates(
    loop: Loop,
    viewers: list[LoopViewer],
    rnd: Round,
    host: str,
    port: int,
    ks: range,
    rows: int,
    pause: float,
    timeout: float,
    workload: str = "T",
) -> dict[str, Any]:
    """``run_updates`` for the epoll engine."""
    per_update: list[dict[str, Any]] = []
    all_ms: list[float] = []
    n = len(viewers)
    for k in ks:
        loop.sleep(pause)
        rnd.start(k)
        poster = Poster(loop, host, port, update_request(workload, host, port, k, rows))
        # run_updates waits for the POST's answer, then up to `timeout` for the viewers.
        loop.run(poster.done, time.monotonic() + 10**9)
        loop.run(lambda: rnd.got == n, poster.answered + timeout)
        latencies = [(t - rnd.t0) * 1000 for t in rnd.arrivals if t is not None]
        all_ms.extend(latencies)
        assert poster.status is not None
        per_update.append(update_record(k, rnd.t0, poster.status, poster.answered, n, latencies))
    return round_summary(viewers, ks, per_update, all_ms)


def main_epoll(args: argparse.Namespace, host: str, port: int, path: str, workload: Workload) -> None:
    """``main`` for ``--engine epoll``: the same JSON lines, one thread."""
    if monkey.is_module_patched("socket") or not hasattr(select, "epoll"):
        raise SystemExit("--engine epoll needs an unpatched process: run python -m bench.client")
    n = args.viewers
    loop = Loop()
    rnd = LoopRound(n, workload)
    viewers = [LoopViewer(loop, i, rnd, (i == 0 and bool(args.capture)), args.encoding) for i in range(n)]
    started = time.monotonic()
    open_viewers(loop, viewers, host, port, path, args.batch)
    failed = [v.error for v in viewers if v.closed]
    say(
        event="connected",
        seconds=time.monotonic() - started,
        failed=len(failed),
        errors=sorted(set(e or "closed" for e in failed))[:5],
    )

    pollable = loop.watch_stdin()
    timeout = max(15.0, n * 0.005)
    k = 0
    while True:
        command = loop.read_command(pollable)
        if command == "warm":
            ks = range(k, k + args.warmup)
            loop_updates(loop, viewers, rnd, host, port, ks, args.rows, args.pause, timeout, args.workload)
            k += args.warmup
            say(event="warm")
        elif command == "go":
            cpu_before = cpu_seconds()
            ks = range(k, k + args.updates)
            results = loop_updates(loop, viewers, rnd, host, port, ks, args.rows, args.pause, timeout, args.workload)
            results["client_cpu_s"] = cpu_seconds() - cpu_before
            k += args.updates
            results["dropped_connections"] = sum(1 for v in viewers if v.closed)
            loop.sleep(args.pause)  # let the last writes land before the runner samples
            say(event="done", **results)
        elif command in ("close", ""):
            if args.capture:
                write_capture(args.capture, viewers[0], workload, k)
            for viewer in viewers:
                viewer.close()
            say(event="closed")
            return
        else:
            say(event="error", message=f"unknown command {command!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="T")
    parser.add_argument("--encoding", choices=("br", "identity"), default="br", help="Accept-Encoding sent")
    parser.add_argument("--path", help="the stream's path (default: the workload's)")
    parser.add_argument("--viewers", type=int, required=True)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--batch", type=int, default=200, help="connections opening at once")
    parser.add_argument("--capture", help="write viewer 0's decoded chunks here (JSON)")
    parser.add_argument(
        "--engine", choices=ENGINES, default=DEFAULT_ENGINE, help="epoll: one thread; gevent: a greenlet per viewer"
    )
    args = parser.parse_args(argv)

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    n = args.viewers
    workload = WORKLOADS[args.workload]
    path = args.path or workload.path
    if args.engine == "epoll":
        main_epoll(args, host, port, path, workload)
        return
    rnd = Round(n, workload)
    viewers = [Viewer(i, rnd, (i == 0 and bool(args.capture)), args.encoding) for i in range(n)]

    # Open in a window of `batch` at a time: each waits for its first frame before the next
    # opens, so the server's accept queue never overflows.
    started = time.monotonic()
    gate = gevent.lock.BoundedSemaphore(args.batch)
    greenlets = []
    for viewer in viewers:
        gate.acquire()
        greenlets.append(gevent.spawn(viewer.run, host, port, path))
        gevent.spawn(_release_when_ready, viewer, gate)
    for viewer in viewers:
        viewer.ready.wait()
    failed = [v.error for v in viewers if v.closed]
    say(
        event="connected",
        seconds=time.monotonic() - started,
        failed=len(failed),
        errors=sorted(set(e or "closed" for e in failed))[:5],
    )

    timeout = max(15.0, n * 0.005)
    results: dict[str, Any] = {}
    k = 0
    while True:
        command = read_command()
        if command == "warm":
            ks = range(k, k + args.warmup)
            run_updates(viewers, rnd, host, port, ks, args.rows, args.pause, timeout, args.workload)
            k += args.warmup
            say(event="warm")
        elif command == "go":
            cpu_before = cpu_seconds()
            ks = range(k, k + args.updates)
            results = run_updates(viewers, rnd, host, port, ks, args.rows, args.pause, timeout, args.workload)
            # The client's own CPU over the measured updates (its pauses cost nothing).
            results["client_cpu_s"] = cpu_seconds() - cpu_before
            k += args.updates
            results["dropped_connections"] = sum(1 for v in viewers if v.closed)
            gevent.sleep(args.pause)  # let the last writes land before the runner samples
            say(event="done", **results)
        elif command in ("close", ""):
            if args.capture:
                write_capture(args.capture, viewers[0], workload, k)
            for viewer in viewers:
                viewer.close()
            gevent.joinall(greenlets, timeout=10)
            say(event="closed")
            return
        else:
            say(event="error", message=f"unknown command {command!r}")


if __name__ == "__main__":
    main()
