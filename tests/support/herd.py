"""Hundreds of SSE connections held cheaply: raw sockets, one selector, one reader thread.

No brotli (``Accept-Encoding: identity``) and no parsing beyond substring search of what
each connection received, so the test process stays light while the server does the real
work. Each event is one HTTP chunk, so a title never straddles chunk framing.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable


class Herd:
    def __init__(self, port: int, path: str = "/todos/live") -> None:
        self.port = port
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
            "Accept-Encoding: identity\r\nDatastar-Request: true\r\n\r\n"
        ).encode()
        self.received: list[bytearray] = []
        self.closed: list[bool] = []
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def open(self, count: int) -> None:
        """Open ``count`` more connections (each sends its request at once)."""
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            sock.sendall(self.request)
            sock.setblocking(False)
            with self._cond:
                index = len(self._sockets)
                self._sockets.append(sock)
                self.received.append(bytearray())
                self.closed.append(False)
                self._selector.register(sock, selectors.EVENT_READ, index)

    def _read(self) -> None:
        while not self._stop:
            # epoll takes registrations from open() while this thread waits in select().
            ready = self._selector.select(timeout=0.05) if self._sockets else []
            with self._cond:
                for key, _ in ready:
                    index = key.data
                    try:
                        data = self._sockets[index].recv(262144)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        self.received[index] += data
                    else:
                        self.closed[index] = True
                        self._selector.unregister(self._sockets[index])
                if ready:
                    self._cond.notify_all()
            if not ready:
                time.sleep(0.01)

    def wait(self, predicate: Callable[[bytearray, bool], bool], timeout: float, what: str) -> None:
        """Until ``predicate(received, closed)`` holds for every connection."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                behind = [i for i, data in enumerate(self.received) if not predicate(data, self.closed[i])]
                if not behind:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    sample = bytes(self.received[behind[0]][-300:])
                    total = len(self.received)
                    raise AssertionError(f"{len(behind)} of {total} connections lack {what}; e.g. {sample!r}")
                self._cond.wait(min(remaining, 0.1))

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        for sock in self._sockets:
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self._selector.close()
