"""The raw-gevent floor: the same bytes to the same sockets, with no framework at all.

    python -m bench.floor --port 8100 --events bench/out/capture-T.json                # shared
    python -m bench.floor --port 8100 --events bench/out/capture-B.json --mode per-connection

The issue defines the floor as "a minimal gevent server writing the same pre-compressed bytes to
the same sockets with no framework". A gevent ``StreamServer`` that speaks just enough HTTP/1.1
for the load client, for both workloads:

* ``GET /todos/live`` or ``GET /board/live`` (any path ending in ``/live``) answers the headers
  orion sends (``Content-Encoding: br`` when asked for, chunked), then the first frame, then
  one chunk per update. Each connection is one greenlet woken by a flag, like an orion stream.
* ``POST /todos/<id>/rename`` with ``{"title": ...}`` or ``POST /board/step`` with
  ``{"marker": ...}`` looks the marker up among the events orion actually sent in the same
  benchmark (decoded by the load client's viewer 0 and saved to ``--events``), hands the event
  to every connection and wakes them, then answers 204. No SQL, no model, no render, no WSGI.
* ``GET /stats`` answers ``{"pid", "streams", "compressions"}``.

Two ways to compress, ``--mode``:

* ``shared`` (the floor): **each event is compressed once**. Connections that have received the
  same bytes so far share one brotli stream (a *group*): every connection opened before the
  first update gets the very same first frame and then the very same bytes per event, so one
  ``process() + flush()`` per event serves them all and each connection only ``send``s. A
  connection opened after an update starts a new group (its first frame: the initial one plus
  the latest event).
* ``per-connection``: one ``brotli.Compressor`` per connection, each compressing every event
  itself; what orion did before it shared compressors, kept as a second reference.

Both at orion's settings: quality 5, and the window orion picks for the stream (`window`).
A client that does not accept ``br`` gets the events uncompressed. No heartbeats: a benchmark
round lasts far less than the 15 s orion waits between them.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402  (gevent must patch before anything imports socket)
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import brotli  # type: ignore[import-untyped]  # noqa: E402
import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.server  # noqa: E402

from bench.capture import load_events, window  # noqa: E402

QUALITY = 5  # app.belt.sse.StreamEncoder's default


MODES = ("shared", "per-connection")


def headers(encoding: str) -> bytes:
    coding = b"Content-Encoding: br\r\n" if encoding == "br" else b""
    return (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/event-stream\r\n"
        b"Cache-Control: no-cache\r\n"
        b"X-Accel-Buffering: no\r\n"
        b"Vary: Accept-Encoding\r\n" + coding + b"Transfer-Encoding: chunked\r\n\r\n"
    )


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (empty data would end the response: callers never pass it)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class Compressions:
    """How many times the floor compressed something: per event in shared mode, per delivery
    in per-connection mode."""

    count = 0


def compress(compressor: brotli.Compressor, raw: bytes) -> bytes:
    Compressions.count += 1
    return compressor.process(raw) + compressor.flush()  # type: ignore[no-any-return]


class Connection:
    """One viewer: its socket, its wake flag, and what is waiting to be written to it."""

    __slots__ = ("compressor", "pending", "sock", "wake")

    def __init__(self, sock: socket.socket, compressor: brotli.Compressor | None) -> None:
        self.sock = sock
        self.compressor = compressor  # its own, in per-connection mode only
        self.wake = gevent.event.Event()
        # Framed bytes to write, in order (a shared stream must never skip any), or, in
        # per-connection mode, the newest raw event (coalesced: each event is a whole region).
        self.pending: list[bytes] = []

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        if self.compressor is not None:
            out = compress(self.compressor, pending[-1])
            self.sock.sendall(chunk(out))
        else:
            self.sock.sendall(b"".join(pending))


class Group:
    """Connections sharing one brotli stream: they have all received the same bytes so far."""

    def __init__(self, first_frame: list[bytes]) -> None:
        self.compressor = brotli.Compressor(quality=QUALITY, lgwin=window(first_frame))
        self.head = b"".join(chunk(compress(self.compressor, raw)) for raw in first_frame)
        self.members: set[Connection] = set()
        self.closed = False  # an update went out: a newcomer could not decode what follows


class Floor:
    def __init__(self, initial: list[bytes], updates: dict[str, bytes], mode: str) -> None:
        if mode not in MODES:
            raise SystemExit(f"--mode {mode!r}: use one of {MODES}.")
        self.initial = initial
        self.updates = updates
        self.mode = mode
        self.latest: bytes | None = None  # the last event sent: part of a late joiner's first frame
        self.groups: list[Group] = []  # shared mode: the brotli streams connections share
        self.own: set[Connection] = set()  # per-connection mode: each with its own compressor
        self.plain: set[Connection] = set()  # clients that did not accept br

    def first_frame(self) -> list[bytes]:
        return self.initial + ([self.latest] if self.latest is not None else [])

    def handle(self, sock: socket.socket, _address: object) -> None:
        try:
            head, body = _read_request(sock)
            lines = head.split(b"\r\n")
            method, path, _ = lines[0].decode("latin-1").split(" ", 2)
            if method == "GET" and path.endswith("/live"):
                self.stream(sock, "br" if _accepts_br(lines[1:]) else "identity")
            elif method == "POST":
                signals = json.loads(body)
                marker = signals.get("marker") or signals.get("title")
                raw = self.updates.get(marker)
                if raw is None:
                    _answer(sock, 404, f"no captured event for {marker!r}".encode())
                    return
                self.publish(raw)
                _answer(sock, 204, b"")
            elif method == "GET" and path == "/stats":
                stats = {"pid": os.getpid(), "streams": self.streams(), "compressions": Compressions.count}
                _answer(sock, 200, json.dumps(stats).encode(), b"application/json")
            else:
                _answer(sock, 404, b"not here")
        except (OSError, ValueError, KeyError, AttributeError):
            pass
        finally:
            sock.close()

    def publish(self, raw: bytes) -> None:
        """Hand ``raw`` to every connection: compressed once per group, or raw to each."""
        self.latest = raw
        for group in self.groups:
            group.closed = True
            framed = chunk(compress(group.compressor, raw))
            for connection in group.members:
                connection.pending.append(framed)
                connection.wake.set()
        for connection in self.own:  # each compresses it itself, when its greenlet runs
            connection.pending.append(raw)
            connection.wake.set()
        framed = chunk(raw)
        for connection in self.plain:
            connection.pending.append(framed)
            connection.wake.set()

    def stream(self, sock: socket.socket, encoding: str) -> None:
        group: Group | None = None
        if encoding == "br" and self.mode == "shared":
            if not self.groups or self.groups[-1].closed:
                self.groups.append(Group(self.first_frame()))
            group = self.groups[-1]
            connection = Connection(sock, None)
            first = group.head
            members = group.members
        elif encoding == "br":
            frame = self.first_frame()
            connection = Connection(sock, brotli.Compressor(quality=QUALITY, lgwin=window(frame)))
            first = b"".join(chunk(compress(connection.compressor, raw)) for raw in frame)
            members = self.own
        else:
            connection = Connection(sock, None)
            first = b"".join(chunk(raw) for raw in self.first_frame())
            members = self.plain
        members.add(connection)
        try:
            sock.sendall(headers(encoding) + first)
            while True:
                connection.wake.wait()
                connection.wake.clear()
                connection.flush()
        finally:
            members.discard(connection)
            if group is not None and not group.members and group.closed:
                self.groups.remove(group)

    def streams(self) -> int:
        return len(self.own) + len(self.plain) + sum(len(g.members) for g in self.groups)


def _accepts_br(header_lines: list[bytes]) -> bool:
    for line in header_lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"accept-encoding":
            return b"br" in value.lower()
    return False


def _read_request(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed before the request was complete")
        data += more
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return head, body


def _answer(sock: socket.socket, status: int, body: bytes, kind: bytes = b"text/plain") -> None:
    reason = {200: b"OK", 204: b"No Content", 404: b"Not Found"}[status]
    head = b"HTTP/1.1 %d %s\r\nConnection: close\r\n" % (status, reason)
    if status != 204:
        head += b"Content-Type: %s\r\nContent-Length: %d\r\n" % (kind, len(body))
    sock.sendall(head + b"\r\n" + body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", required=True, help="the capture bench.client wrote")
    parser.add_argument("--mode", default="shared", choices=MODES, help="compress once per event, or per connection")
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    initial, updates = load_events(args.events)
    floor = Floor(initial, updates, args.mode)
    server = gevent.server.StreamServer(("127.0.0.1", args.port), floor.handle, backlog=2048)
    server.start()
    sys.stdout.write(json.dumps({"event": "listening", "pid": os.getpid(), "port": args.port}) + "\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
