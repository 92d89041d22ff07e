"""The load client: N real SSE viewers and the poster, in one gevent process of their own.

    python -m bench.client --url http://127.0.0.1:8000 --viewers 1000 --updates 30
    python -m bench.client --url http://127.0.0.1:8001 --viewers 100 --workload B --encoding identity

Two workloads (``bench/workloads.py``): **T** (``GET /todos/live``; an update renames one row
to a title holding the marker) and **B** (``GET /board/live``; an update is ``POST /board/step``
with the marker, which the board carries as ``data-frame="<marker>"``).

Each viewer is a raw gevent socket: it sends ``GET <path>`` with ``Accept-Encoding: br`` (or
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

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402  (gevent must patch before anything imports socket)
import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import brotli  # type: ignore[import-untyped]  # noqa: E402
import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.lock  # noqa: E402

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
    if out.find(b"\n\n", start) >= 0:
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


class Viewer:
    """One SSE connection: chunked decoding (or a raw stream), brotli (or none), marker search."""

    __slots__ = (
        "armed",
        "capture",
        "chunk_out",
        "chunked",
        "closed",
        "decompressor",
        "error",
        "index",
        "marks",
        "need",
        "payload",
        "pending",
        "ready",
        "round",
        "seen_k",
        "skip",
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
        self.need = 0  # payload bytes left in the current chunk
        self.skip = 0  # CRLF bytes left after a chunk's payload
        self.pending = b""  # an incomplete chunk-size line
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
        lower = head.lower()
        encoded = b"content-encoding:" in lower and b"content-encoding: identity" not in lower
        if self.decompressor is not None:
            good = b"content-encoding: br" in lower
        else:
            good = not encoded
        if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) or not good:
            raise ConnectionError(f"unexpected response: {head[:300]!r}")
        self.chunked = b"transfer-encoding: chunked" in lower

    def feed_raw(self, data: bytes, t: float) -> None:
        """Consume a stream that is not chunked: every byte is payload."""
        self.wire += len(data)
        self.on_payload(data, t)

    def feed(self, data: bytes, t: float) -> None:
        """Consume received bytes: chunk sizes, payloads, the CRLF after each payload."""
        self.wire += len(data)
        buf = self.pending + data if self.pending else data
        self.pending = b""
        pos, end = 0, len(buf)
        while pos < end:
            if self.need:
                take = min(self.need, end - pos)
                self.on_payload(buf[pos : pos + take], t)
                self.need -= take
                pos += take
                if not self.need:
                    self.skip = 2
                    self.on_chunk_end()
                continue
            if self.skip:
                take = min(self.skip, end - pos)
                self.skip -= take
                pos += take
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                self.pending = buf[pos:]
                return
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if size == 0:  # the last chunk: the server ended the stream
                return
            self.need = size

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

    def on_chunk_end(self) -> None:
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
    body = json.dumps(signals).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nDatastar-Request: true\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
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
        per_update.append(
            {
                "k": k,
                "t0": rnd.t0,
                "status": status,
                "command_ms": (answered - rnd.t0) * 1000,
                "delivered": len(latencies),
                "missed": len(viewers) - len(latencies),
                "first_ms": min(latencies) if latencies else None,
                "p50_ms": percentile(latencies, 50),
                "last_ms": max(latencies) if latencies else None,
            }
        )
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
    args = parser.parse_args(argv)

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    n = args.viewers
    workload = WORKLOADS[args.workload]
    path = args.path or workload.path
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
                first = viewers[0]
                with open(args.capture, "w", encoding="utf-8") as f:
                    json.dump(
                        {
                            "chunks": [c.decode() for c in first.capture or []],
                            "markers": {workload.marker(i): i for i in range(k)},
                        },
                        f,
                    )
            for viewer in viewers:
                viewer.close()
            gevent.joinall(greenlets, timeout=10)
            say(event="closed")
            return
        else:
            say(event="error", message=f"unknown command {command!r}")


if __name__ == "__main__":
    main()
