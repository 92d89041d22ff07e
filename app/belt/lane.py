"""Lanes: viewers whose streams are byte for byte the same share one model pass and one compressor.

A **lane** is the part of a live stream that does not depend on who reads it: it watches the
regions' topics, recomputes their models on a wake, renders what changed, compresses it once
and keeps the result as an **entry**. Every viewer in the lane (a ``live.Stream``, one HTTP
response each) writes the entries it has not written yet to its own socket. A thousand viewers
of one page cost one model pass, one render and one brotli call per change, plus a thousand
writes of the same few dozen bytes: the per-connection compressor, which dominated the fan-out
(~140 µs per viewer per change at quality 5), runs once per lane instead of once per viewer,
and its memory (~800 KiB of brotli state) is paid once per lane, not per connection.

Who may share a lane. Two viewers share one only when their streams would be identical, so a
lane is keyed by everything a model may read (``key`` below): the regions, the authorize
check, the content coding, the store and tenant, the user (``auth.User`` is a frozen value:
masquerade and role included) and the stream's URL with its query (Datastar sends the page's
signals there). A region whose model reads anything else per connection (a header, a cookie,
``ctx.request_id``) says ``shared=False`` and its streams get lanes of their own.

Joining. A lane's first entry is its **opening**: the greeting comment and a complete render.
A viewer arriving while the lane has sent nothing else (heartbeats aside) joins it and starts
from the opening, so a crowd arriving between two changes (a deploy's reconnect storm) costs
one render and one compression. After the first change the lane is closed to newcomers, who
open a new one: a newcomer must start from a complete render, never replay a history.

Slow viewers. Each viewer keeps its own position; the lane keeps the entries not yet written
by its slowest viewer, up to ``BACKLOG`` bytes. A viewer further behind than that is dropped
(its client reconnects to a fresh render), and so is one whose write has been blocked for
``send_timeout`` seconds (a client that stopped reading): one stuck socket never holds memory
or the others back.

Ending alone. A viewer that must end on its own words while the lane goes on (access revoked,
the server stopping) ends its copy of the stream with ``StreamEncoder.farewell``: stored brotli
blocks after the shared state, which any decoder reads whatever came before.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from . import dev, sse
from .auth import current_user
from .bus import Watchable, subscribe_all

if TYPE_CHECKING:
    from .ctx import Ctx
    from .live import Region, Stream
    from .runtime import Runtime

log = logging.getLogger("orion.live")

#: Compressed bytes a lane keeps for its slowest viewer; a viewer further behind is dropped.
BACKLOG = 512 * 1024
#: A lane takes newcomers while it has sent only its opening and at most this many heartbeats.
JOINABLE_HEARTBEATS = 64
_UNSEEN = object()
#: What every stream opens with (so the headers leave and proxies see a live stream).
GREETING = sse.comment("orion live").encode()

Entry = tuple[bytes, int, bool]  # (bytes to write, uncompressed length, is a frame)


def key(ctx: Ctx, regions: Sequence[Region], encoding: str, authorize: Callable[[Ctx], bool] | None) -> Hashable:
    """What two viewers must have in common to be sent the very same bytes."""
    # Identity is resolved lazily (on first use by a model); a key must never be made before
    # it is, or a signed-in viewer would share the lane of an anonymous one.
    current_user(ctx)
    request = ctx.request
    if request is not None:
        # The raw path and query, as sent: Datastar puts the page's signals in the query.
        where: Hashable = (request.path, request.query_string)
    else:
        where = None
    shared = all(r.shared for r in regions)
    return (
        tuple(regions),
        authorize,
        encoding,
        ctx.store,
        ctx.tenant,
        ctx.user,
        where,
        None if shared else object(),  # never equal to another stream's: a lane of its own
    )


def window(size: int) -> int:
    """brotli's lgwin for a stream whose first frame is ``size`` bytes: a window that fits the
    regions twice over (they grow), within brotli's 16 to 24: a 28 KB list keeps brotli's
    64 KiB default, a 100 KB board gets 256 KiB and still sees its previous frame."""
    return max(16, min(24, (2 * size + 1024).bit_length()))


class Lane:
    """The shared half of every stream in it: one model pass, one render, one compression."""

    def __init__(self, rt: Runtime, lane_key: Hashable, ctx: Ctx, regions: Sequence[Region], encoding: str) -> None:
        self.rt = rt
        self.key = lane_key
        self.ctx = ctx  # the first viewer's: equal, for every model, to every member's (see `key`)
        self.regions = tuple(regions)
        self.encoding = encoding
        self.encoder: sse.StreamEncoder | None = None
        self.entries: deque[Entry] = deque()
        self.base = 0  # the position of entries[0]
        self.retained = 0  # bytes held in entries
        self.members: set[Stream] = set()
        self.joinable = True
        self.heartbeats = 0
        self.closed = False
        #: Set when a model or view failed: what each member writes before its stream ends.
        self.failure: bytes | None = None
        self.wake = gevent.event.Event()
        self.written = time.monotonic()
        self.seen: dict[str, Any] = {}
        self.dev_html: dict[str, str] = {}  # development: what each region last rendered
        self.dev_reported: set[str] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._greenlet: gevent.Greenlet | None = None

    @property
    def end(self) -> int:
        """The position after the last entry."""
        return self.base + len(self.entries)

    # lifecycle

    def open(self) -> None:
        """Subscribe, render the opening (raising what a model raises) and start conducting."""
        self.ctx.store.leases += 1  # tenancy never closes a store a lane is reading
        self._unsubscribe = subscribe_all(self._watchables(), self.wake.set)
        try:
            frame = self._frame()
            self.encoder = sse.StreamEncoder(self.encoding, lgwin=window(len(frame)))
            self._append(GREETING + frame, is_frame=bool(frame))
        except BaseException:
            self.close()
            raise
        self._greenlet = gevent.spawn(self._conduct)

    def close(self) -> None:
        """Stop watching and conducting (the last member left, or the lane failed)."""
        if self.closed:
            return
        self.closed = True
        self.joinable = False
        if self.rt.lanes.get(self.key) is self:
            del self.rt.lanes[self.key]
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.ctx.store.leases -= 1
        self.entries.clear()
        self.wake.set()  # the conductor sees `closed` and returns

    def join(self, member: Stream) -> int:
        """Add ``member``; return the position it starts from (the opening)."""
        self.members.add(member)
        return self.base

    def leave(self, member: Stream) -> None:
        self.members.discard(member)
        if not self.members:
            self.close()

    # reading

    def read(self, pos: int) -> tuple[bytes, int, int, int] | None:
        """What a member at ``pos`` has not written yet: (bytes, uncompressed length, entries,
        frames); None when those entries are gone (the member fell more than BACKLOG behind)."""
        if pos < self.base:
            return None
        start = pos - self.base
        if start >= len(self.entries):
            return b"", 0, 0, 0
        if start == len(self.entries) - 1:
            data, raw, is_frame = self.entries[start]
            return data, raw, 1, int(is_frame)
        chunk = list(itertools.islice(self.entries, start, None))
        return (
            b"".join(e[0] for e in chunk),
            sum(e[1] for e in chunk),
            len(chunk),
            sum(1 for e in chunk if e[2]),
        )

    def farewell(self, text: bytes) -> bytes:
        """The bytes ending one member's copy of the stream with ``text`` (see the module doc)."""
        assert self.encoder is not None
        return self.encoder.farewell(text)

    # conducting

    def _conduct(self) -> None:
        rt = self.rt
        while not self.closed:
            if self.wake.wait(timeout=max(0.0, self.written + rt.heartbeat - time.monotonic())):
                rt.live.wakes += 1
            self.wake.clear()
            if self.closed:
                return
            try:
                frame = self._frame()
            except Exception as exc:
                self._fail(exc)
                return
            if frame:
                self._append(frame, is_frame=True)
            elif time.monotonic() - self.written >= rt.heartbeat:
                # The heartbeat is how a WSGI server notices a dead client: sent whenever the
                # lane wrote nothing for that long, however often wakes came.
                self.heartbeats += 1
                self._append(sse.comment("hb").encode(), is_frame=False)
            else:
                # Nothing to send, but what woke the lane (a grant revoked, a workspace
                # deleted) may end some viewers: each checks its own access on every wake.
                for member in tuple(self.members):
                    member.wake.set()

    def _append(self, raw: bytes, *, is_frame: bool) -> None:
        assert self.encoder is not None
        data = self.encoder.encode(raw)
        if self.entries and (is_frame or self.heartbeats > JOINABLE_HEARTBEATS):
            self.joinable = False
        self.entries.append((data, len(raw), is_frame))
        self.retained += len(data)
        self.written = now = time.monotonic()
        self._trim()
        timeout = self.rt.send_timeout
        for member in tuple(self.members):
            member.wake.set()
            if member.blocked_since and now - member.blocked_since > timeout:
                member.abort(f"its socket accepted nothing for {timeout:g} s")

    def _trim(self) -> None:
        """Drop the entries every member has written, then any beyond BACKLOG."""
        if self.joinable:
            return  # newcomers start from the opening
        low = min((m.pos for m in self.members), default=self.end)
        while self.entries and (self.base < low or self.retained > BACKLOG):
            data, _raw, _frame = self.entries.popleft()
            self.retained -= len(data)
            self.base += 1

    def _fail(self, exc: BaseException) -> None:
        """A model or view failed: members say so (in development, on the page) and end; their
        clients reconnect to a new lane for a fresh complete render."""
        names = [r.id for r in self.regions]
        log.exception("live regions %s failed", names, exc_info=exc)
        failure = b""
        if self.rt.development:
            failure = dev.exception_overlay_event(exc, f"live regions {names}").encode()
        self.failure = failure
        members = tuple(self.members)
        self.close()
        for member in members:
            member.wake.set()

    def _watchables(self) -> list[Watchable]:
        """What wakes this lane: each distinct topic once, then every watched thing."""
        topics = dict.fromkeys(t for r in self.regions for t in r.topics)
        watchables: list[Watchable] = [self.ctx.bus.topic(t) for t in topics]
        for r in self.regions:
            for spec in r.watch:
                watchables.append(spec if isinstance(spec, Watchable) else spec(self.ctx))
        return watchables

    def _frame(self) -> bytes:
        """The events for every region whose model changed (counting the SQL the models ran)."""
        stats = self.ctx.store.stats
        before = stats.queries
        try:
            return self._render_changed()
        finally:
            self.rt.live.queries += stats.queries - before

    def _render_changed(self) -> bytes:
        chunks = []
        for r in self.regions:
            model = r.model(self.ctx)
            seen = self.seen.get(r.id, _UNSEEN)
            if seen is model or (seen is not _UNSEEN and seen == model):
                self.rt.live.unchanged += 1
                if self.rt.development:
                    chunks.append(self._oracle(r, model))
                continue
            self.seen[r.id] = model
            chunks.append(r.event(model, self.rt.live))
            if self.rt.development:
                self.dev_html[r.id] = str(r.view(model))
        return b"".join(chunks)

    def _oracle(self, r: Region, model: Any) -> bytes:
        """Development only: an equal model must render the same HTML, or the view is impure."""
        again = str(r.view(model))
        if self.dev_html.get(r.id, again) == again or r.id in self.dev_reported:
            return b""
        self.dev_reported.add(r.id)
        message = dev.impure_message(r.id)
        log.error(message)
        return dev.overlay_event("The view is not a pure function of its model", message, where=r.id).encode()
