"""A real SSE client: one HTTP connection, brotli/gzip decoded as bytes arrive, events parsed.

It reads on a background thread (the test process is not gevent-patched), so a test can
wait for "an event whose elements contain X" with a timeout.
"""

from __future__ import annotations

import codecs
import http.client
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import brotli


@dataclass
class Event:
    type: str
    data: list[str] = field(default_factory=list)
    id: str | None = None

    def lines(self, key: str) -> list[str]:
        prefix = key + " "
        return [line[len(prefix) :] for line in self.data if line.startswith(prefix)]

    @property
    def elements(self) -> str:
        return "\n".join(self.lines("elements"))


class SSEClient:
    def __init__(self, url: str, *, encoding: str = "br", headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.conn.request(
            "GET",
            path,
            headers={
                "Accept": "text/event-stream",
                "Accept-Encoding": encoding,
                "Datastar-Request": "true",
                **(headers or {}),
            },
        )
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        enc = self.response.getheader("Content-Encoding", "identity")
        self.encoding = enc
        if enc == "br":
            decompressor = brotli.Decompressor()

            def drain(chunk: bytes) -> bytes:
                # brotli 1.2 may hand back only part of the output (~32 KiB) and keep the rest
                # until asked again (google/brotli#1396): ask until it has nothing left.
                out = decompressor.process(chunk)
                while more := decompressor.process(b""):
                    out += more
                return out

            self._decoder: Callable[[bytes], bytes] = drain
        elif enc == "gzip":
            self._decoder = zlib.decompressobj(wbits=31).decompress
        else:
            self._decoder = lambda b: b
        self.events: list[Event] = []
        self.comments: list[str] = []
        self.wire_bytes = 0
        self.closed = False
        self._cond = threading.Condition()
        self._buffer = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    break
                self.wire_bytes += len(chunk)
                self._feed(self._utf8.decode(self._decoder(chunk)))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _feed(self, text: str) -> None:
        self._buffer += text
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            event: Event | None = None
            for line in block.split("\n"):
                if line.startswith(":"):
                    with self._cond:
                        self.comments.append(line[1:].strip())
                    continue
                key, _, value = line.partition(": ")
                if key == "event":
                    event = Event(value)
                elif key == "data" and event is not None:
                    event.data.append(value)
                elif key == "id" and event is not None:
                    event.id = value
            if event is not None:
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 5.0, start: int = 0) -> Event:
        """The first event (from index ``start``) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[start:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    shown = [e.elements[:120] for e in self.events[-5:]]
                    raise AssertionError(f"no matching event within {timeout}s (closed={self.closed}); last: {shown}")
                self._cond.wait(remaining)

    def wait_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"stream still open after {timeout}s")
                self._cond.wait(remaining)

    def close(self) -> None:
        """Hang up abruptly (as a closed tab does) and wait for the reader to stop."""
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        self.response.close()
        self.conn.close()

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
