"""The raw-gevent floor: the same bytes to the same sockets, with no framework at all.

    python -m bench.floor --port 8100 --events bench/out/capture-1000.json

A gevent ``StreamServer`` that speaks just enough HTTP/1.1 for the load client:

* ``GET /todos/live`` answers the headers orion sends (``Content-Encoding: br``, chunked), then
  the first frame, then one chunk per update. Like orion it keeps **one brotli.Compressor per
  connection** (quality 5, lgwin 16: `app.belt.sse.StreamEncoder`'s defaults), flushed after
  every event, and each connection is one greenlet woken by a flag, so what is left is the
  irreducible cost of the design: a greenlet switch, a streaming compression and a ``send``.
* ``POST /todos/<id>/rename`` with ``{"title": ...}`` looks the title up among the events that
  orion actually sent in the same benchmark (decoded by the load client's viewer 0 and saved to
  ``--events``), sets every connection's pending event to it and wakes them, then answers 204.
  No SQL, no model, no render, no Flask/WSGI: the raw event text is ready-made.
* ``GET /stats`` answers ``{"pid", "streams"}``.

No heartbeats: a benchmark round lasts far less than the 15 s orion waits between them.
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

from bench.capture import load_events  # noqa: E402

QUALITY, LGWIN = 5, 16  # app.belt.sse.StreamEncoder's defaults
HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Vary: Accept-Encoding\r\n"
    b"Content-Encoding: br\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


class Connection:
    __slots__ = ("compressor", "pending", "sock", "wake")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.compressor = brotli.Compressor(quality=QUALITY, lgwin=LGWIN)
        self.wake = gevent.event.Event()
        self.pending = b""

    def send(self, raw: bytes) -> None:
        compressor = self.compressor
        out = compressor.process(raw) + compressor.flush()
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(out), out))


class Floor:
    def __init__(self, initial: list[bytes], updates: dict[str, bytes]) -> None:
        self.initial = initial
        self.updates = updates
        self.connections: set[Connection] = set()

    def handle(self, sock: socket.socket, _address: object) -> None:
        try:
            head, body = _read_request(sock)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, path, _ = request_line.split(" ", 2)
            if method == "GET" and path == "/todos/live":
                self.stream(sock)
            elif method == "POST" and path.startswith("/todos/") and path.endswith("/rename"):
                title = json.loads(body)["title"]
                raw = self.updates.get(title)
                if raw is None:
                    _answer(sock, 404, f"no captured event for {title!r}".encode())
                    return
                for connection in self.connections:
                    connection.pending = raw
                    connection.wake.set()
                _answer(sock, 204, b"")
            elif method == "GET" and path == "/stats":
                stats = {"pid": os.getpid(), "streams": len(self.connections)}
                _answer(sock, 200, json.dumps(stats).encode(), b"application/json")
            else:
                _answer(sock, 404, b"not here")
        except (OSError, ValueError, KeyError):
            pass
        finally:
            sock.close()

    def stream(self, sock: socket.socket) -> None:
        connection = Connection(sock)
        self.connections.add(connection)
        try:
            sock.sendall(HEADERS)
            for raw in self.initial:
                connection.send(raw)
            while True:
                connection.wake.wait()
                connection.wake.clear()
                raw, connection.pending = connection.pending, b""
                if raw:
                    connection.send(raw)
        finally:
            self.connections.discard(connection)


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
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    initial, updates = load_events(args.events)
    floor = Floor(initial, updates)
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
