"""HTTP/1.1 chunked transfer coding, parsed as bytes arrive: what every load client reads.

The bench client's two engines and the soak's load client each hold thousands of SSE
responses and cannot afford ``http.client`` for them; they share this one small parser.
It imports nothing heavier than the standard library, so any process may use it.
"""

from __future__ import annotations

from collections.abc import Callable


class Chunked:
    """One response body's framing state: ``feed`` it what ``recv`` returned."""

    __slots__ = ("need", "pending", "skip")

    def __init__(self) -> None:
        self.need = 0  # payload bytes left in the current chunk
        self.skip = 0  # CRLF bytes left after a chunk's payload
        self.pending = b""  # an incomplete chunk-size line

    def feed(
        self,
        data: bytes,
        t: float,
        on_payload: Callable[[bytes, float], None],
        on_chunk_end: Callable[[float], None],
    ) -> None:
        """Consume ``data`` (read at time ``t``): hand each payload piece to ``on_payload`` and
        call ``on_chunk_end`` after each chunk's last byte. The last (empty) chunk ends it."""
        buf = self.pending + data if self.pending else data
        self.pending = b""
        pos, end = 0, len(buf)
        while pos < end:
            if self.need:
                take = min(self.need, end - pos)
                on_payload(buf[pos : pos + take], t)
                self.need -= take
                pos += take
                if not self.need:
                    self.skip = 2
                    on_chunk_end(t)
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
