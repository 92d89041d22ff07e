"""Live regions: the parts of a page that re-render themselves when the store changes.

A **region** is ``model(ctx) -> data`` plus ``view(data) -> Html`` plus what wakes it
(``topics`` on the bus, ``watch`` Watchables). A **stream** is one SSE connection that carries
all the regions of a page (browsers allow only 6 HTTP/1.1 connections per origin).

Viewers whose streams would be byte for byte the same (same regions, user, tenant and URL)
share a **lane** (``lane.py``): on every wake it recomputes each region's model once; equal
to what it last sent, nothing is sent; otherwise the render is taken from the shared render
cache (renders equal distinct models, not viewers) or made once, one
``datastar-patch-elements`` event is compressed once, and every stream in the lane writes the
same bytes. Reads inside models are memoized by store generation, so even viewers in different
lanes waking on one publish run one query.

Wakes coalesce: a wake is a flag, not a queue, so a burst of publishes makes one frame. A
viewer whose socket is slow catches up on the compressed entries it missed (a few dozen bytes
each); one too far behind, or whose socket took nothing for ``ORION_SEND_TIMEOUT`` seconds, is
dropped and its client reconnects to a fresh render.
"""

from __future__ import annotations

import _socket
import json
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
from flask import Response, request
from markupsafe import Markup

from . import canon, dev, sse
from . import lane as lanes
from .bus import Watchable
from .ctx import Ctx
from .html import html
from .lane import Lane
from .runtime import Runtime, request_ctx, runtime

log = logging.getLogger("orion.live")

Model = Any
View = Callable[[Any], Markup]
WatchSpec = Watchable | Callable[[Ctx], Watchable]

_RENDER_CACHE_SIZE = 64
_GOODBYE = sse.comment("server stopping, reconnect").encode()
# Types whose identity implies their content (a list could be mutated in place and reused).
_IMMUTABLE = (tuple, frozenset, str, bytes, int, float)


@dataclass(eq=False)
class Region:
    """One live part of a page, identified in the DOM by ``id``."""

    id: str
    model: Callable[[Ctx], Model]
    view: View
    topics: tuple[str, ...] = ()
    watch: tuple[WatchSpec, ...] = ()
    #: Called with the stream's ctx when a stream carrying this region opens, and again in
    #: its ``finally`` when it closes (a presence store's join and leave).
    on_open: Callable[[Ctx], None] | None = None
    on_close: Callable[[Ctx], None] | None = None
    #: False when the model reads something of the connection's own beyond the store, the
    #: user, the tenant and the URL (a header, ``ctx.request_id``): see ``lane.key``.
    shared: bool = True
    _renders: OrderedDict[Hashable, bytes] = field(default_factory=OrderedDict, repr=False)
    _last: tuple[Any, bytes] | None = field(default=None, repr=False)

    def render(self, ctx: Ctx) -> Markup:
        """The region's HTML for ``ctx`` now (what a page GET embeds)."""
        return self.view(self.model(ctx))

    def event(self, model: Model, stats: Any = None) -> bytes:
        """The patch-elements event for ``model``, shared by every viewer with an equal one."""
        # Fast path: memoized reads hand every viewer of one fan-out the very same object,
        # so most lookups need neither a hash nor a comparison of the whole model.
        last = self._last
        if (
            last is not None
            and isinstance(model, _IMMUTABLE)
            and (last[0] is model or (type(model) is tuple and type(last[0]) is tuple and model == last[0]))
        ):
            # A per-viewer tuple around shared parts ((rows, perms)) compares equal cheaply:
            # tuple equality checks identity element by element before values.
            if stats is not None:
                stats.render_hits += 1
            return last[1]
        event = self._shared_event(model, stats)
        self._last = (model, event)
        return event

    def _shared_event(self, model: Model, stats: Any) -> bytes:
        try:
            cached = self._renders.get(model)
        except TypeError:  # an unhashable model (a dict, a list) renders per viewer
            return self._render_event(model, stats)
        if cached is not None:
            self._renders.move_to_end(model)
            if stats is not None:
                stats.render_hits += 1
            return cached
        event = self._render_event(model, stats)
        self._renders[model] = event
        if len(self._renders) > _RENDER_CACHE_SIZE:
            self._renders.popitem(last=False)
        return event

    def _render_event(self, model: Model, stats: Any) -> bytes:
        if stats is not None:
            stats.renders += 1
        return sse.patch_elements(self.view(model)).encode()


def region(
    id: str,
    *,
    model: Callable[[Ctx], Model],
    view: View,
    topics: Sequence[str] = (),
    watch: Sequence[WatchSpec] = (),
    on_open: Callable[[Ctx], None] | None = None,
    on_close: Callable[[Ctx], None] | None = None,
    shared: bool = True,
) -> Region:
    """Declare a live region.

    ``view(model)`` must return one element whose ``id`` is ``id`` (Datastar morphs by id).
    The model should be hashable (tuples, frozen dataclasses, sqlite3 rows) so that viewers
    with equal models share one render; an unhashable model still works, rendered per viewer.
    ``on_open(ctx)`` runs when a viewer's stream opens and ``on_close(ctx)`` when it ends,
    however it ends (the presence pattern joins and leaves there).
    Viewers with the same user, tenant and stream URL share one model pass and one compressed
    stream (``lane``); a model that reads anything else of its connection says ``shared=False``.
    """
    if not id or not id.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"A region id is letters, digits, '-' and '_' (got {id!r}).")
    if isinstance(topics, str):
        raise TypeError(f"topics is a list of topic names; write topics=[{topics!r}].")
    return Region(
        id=id,
        model=model,
        view=view,
        topics=tuple(topics),
        watch=tuple(watch),
        on_open=on_open,
        on_close=on_close,
        shared=shared,
    )


class Stream:
    """One viewer's SSE connection: writes its lane's entries, and ends on its own terms.

    The lane (``lane.Lane``) does the work every viewer of the same page shares: models,
    renders, compression. The stream does what is this viewer's alone: its ``on_open`` and
    ``on_close`` hooks, its authorization and tenant checks on every wake, its position in the
    lane, and its ending (revoked, server stopping, too slow).
    """

    # Thousands are open at once: slots keep each one small (RSS per connection is a target).
    __slots__ = (
        "aborted",
        "authorize",
        "blocked_since",
        "ctx",
        "encoding",
        "ending",
        "lane",
        "pos",
        "regions",
        "rt",
        "sent",
        "socket",
        "wake",
    )

    def __init__(
        self,
        rt: Runtime,
        ctx: Ctx,
        regions: Sequence[Region],
        encoding: str,
        authorize: Callable[[Ctx], bool] | None,
    ) -> None:
        self.rt = rt
        self.ctx = ctx
        self.regions = tuple(regions)
        self.encoding = encoding
        self.authorize = authorize
        self.wake = gevent.event.Event()
        self.ending = False
        self.lane: Lane | None = None
        self.pos = 0  # the lane position this viewer has written up to
        self.socket: socket.socket | None = None
        self.sent = 0  # patch frames sent: the stream's canonical line reports them
        #: When the write in progress began (0: none): the lane drops a viewer stuck too long.
        self.blocked_since = 0.0
        self.aborted: str | None = None

    def end(self) -> None:
        """Ask the stream to send its final event and close (shutdown, revocation)."""
        self.ending = True
        self.wake.set()

    def abort(self, why: str) -> None:
        """Drop a viewer whose socket stopped taking bytes: its blocked write fails at once."""
        if self.aborted:
            return
        self.aborted = why
        log.info("dropping a live stream of %s: %s", [r.id for r in self.regions], why)
        sock = self.socket
        if sock is not None:
            # Shut the connection down under gevent's feet: gevent's own shutdown() would cancel
            # the blocked write with EBADF, which gunicorn logs as a socket error; on the bare
            # descriptor, the pending write wakes to EPIPE, which it ignores.
            try:
                raw = _socket.socket(fileno=sock.fileno())
                try:
                    raw.shutdown(socket.SHUT_RDWR)
                finally:
                    raw.detach()
            except OSError:
                pass
        self.wake.set()

    def events(self) -> Iterator[bytes]:
        rt, ctx = self.rt, self.ctx
        canon.streaming()  # its canonical line is written when it ends
        rt.streams.add(self)
        rt.live.streams_opened += 1
        ctx.store.leases += 1  # tenancy never closes a store a stream is reading
        if rt.stopping:
            # Opened after shutdown began: say goodbye at once, or the drain waits its whole timeout.
            self.ending = True
        opened: list[Region] = []
        try:
            self._open(opened)
            if self.ending:
                yield self._alone(_GOODBYE)
                self._no_keepalive()
                return
            if self._refused():
                yield self._alone(self._revoked())
                return
            try:
                lane = self._join()
            except Exception as exc:
                # A model or view failed: say so (in development, on the page), then end the
                # stream; the client reconnects for a fresh complete render.
                log.exception("live stream %s failed", [r.id for r in self.regions])
                canon.failed(exc)
                overlay = b""
                if rt.development:
                    overlay = dev.exception_overlay_event(exc, f"live regions {[r.id for r in self.regions]}").encode()
                yield self._alone(overlay)
                return
            opening = True
            while True:
                # Before writing anything new, this viewer's own checks: a revoked viewer never
                # receives the frame the lane made for the others.
                if self.aborted:
                    canon.add(dropped=self.aborted)
                    return
                if self.ending:
                    # Shutdown: say so, then close cleanly; the client reconnects (retry: 'always').
                    yield self._counted(lane.farewell(_GOODBYE), len(_GOODBYE), 1)
                    self._no_keepalive()
                    return
                if lane.failure is not None:
                    yield lane.farewell(lane.failure)
                    return
                if not opening and self._refused():  # (the opening was checked before joining)
                    # Severed: the viewer sees why in place of each region, then the stream ends.
                    yield lane.farewell(self._revoked())
                    return
                got = lane.read(self.pos)
                if got is None:
                    canon.add(dropped="backlog")
                    yield lane.farewell(sse.comment("too far behind, reconnect").encode())
                    return
                data, raw, entries, frames = got
                if data:
                    self.pos = lane.end
                    self.sent += frames
                    self._counted(data, raw, entries)
                    self.blocked_since = time.monotonic()
                    yield data
                    self.blocked_since = 0.0
                opening = False
                self.wake.wait()
                self.wake.clear()
        finally:
            canon.add(regions=[r.id for r in self.regions], events=self.sent)
            if self.lane is not None:
                self.lane.leave(self)
            self._close(opened)
            ctx.store.leases -= 1
            rt.streams.discard(self)

    def _join(self) -> Lane:
        """Join the lane of viewers identical to this one, opening one if none takes newcomers."""
        rt = self.rt
        lane_key = lanes.key(self.ctx, self.regions, self.encoding, self.authorize)
        lane = rt.lanes.get(lane_key)
        if lane is None or not lane.joinable:
            lane = Lane(rt, lane_key, self.ctx, self.regions, self.encoding)
            lane.open()
            rt.lanes[lane_key] = lane
        self.lane = lane
        self.pos = lane.join(self)
        return lane

    def _refused(self) -> bool:
        """This viewer may no longer see these regions, or its workspace is gone."""
        return (self.authorize is not None and not self.authorize(self.ctx)) or self._tenant_gone()

    def _alone(self, text: bytes) -> bytes:
        """A whole stream of its own, greeting and ``text``: for endings before any lane."""
        encoder = sse.StreamEncoder(self.encoding)
        raw = lanes.GREETING + text
        return self._counted(encoder.encode(raw) + encoder.close(), len(raw), 1)

    def _counted(self, data: bytes, raw: int, entries: int) -> bytes:
        """``data``, counted in the fan-out figures (``/_orion/stats``)."""
        live = self.rt.live
        live.events += entries
        live.raw_bytes += raw
        live.wire_bytes += len(data)
        return data

    def _open(self, opened: list[Region]) -> None:
        """Run each region's ``on_open``; ``opened`` records whose ``on_close`` is owed."""
        for r in self.regions:
            if r.on_open is not None:
                r.on_open(self.ctx)
            opened.append(r)

    def _close(self, opened: list[Region]) -> None:
        for r in reversed(opened):
            if r.on_close is None:
                continue
            try:
                r.on_close(self.ctx)
            except Exception:  # one failing hook must not keep the others (or the cleanup) from running
                log.exception("on_close of region %r failed", r.id)

    def _tenant_gone(self) -> bool:
        """The workspace this stream reads was deleted (perhaps by another process, the CLI):
        checked on every wake and heartbeat, so its viewers are cut off within one heartbeat."""
        tenants = self.rt.tenants
        return bool(self.ctx.tenant and tenants is not None and not tenants.exists(self.ctx.tenant))

    def _no_keepalive(self) -> None:
        """Stop reading the connection so the server closes it after this response.

        A stream's HTTP/1.1 connection would otherwise sit in gunicorn's keep-alive wait
        after the final event, and a graceful shutdown would wait those seconds for it.
        Shutting down only the read side leaves the final chunk free to be written.
        """
        sock = self.socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def _revoked(self) -> bytes:
        parts = [
            sse.patch_elements(
                html(
                    '<div id="{}" class="revoked" role="status">Access revoked. '
                    '<a href="">Reload</a> to sign in again.</div>',
                    r.id,
                )
            ).encode()
            for r in self.regions
        ]
        return b"".join(parts)


def stream(
    regions: Sequence[Region],
    *,
    ctx: Ctx | None = None,
    authorize: Callable[[Ctx], bool] | None = None,
) -> Response:
    """The SSE response that keeps ``regions`` live for the requesting viewer."""
    rt = runtime()
    if ctx is None:
        ctx = request_ctx()
    encoding = sse.negotiate(request.headers.get("Accept-Encoding"))
    live_stream = Stream(rt, ctx, regions, encoding, authorize)
    live_stream.socket = request.environ.get("gunicorn.socket")
    headers = dict(sse.SSE_HEADERS)
    headers["Vary"] = "Accept-Encoding"
    if encoding != "identity":
        headers["Content-Encoding"] = encoding
    return Response(live_stream.events(), headers=headers, direct_passthrough=True)


def live_attrs(url: str) -> Markup:
    """The attribute that opens a page's stream, with reconnect options chosen for deploys.

    Datastar v1 retries a stream only after a network error, with backoff up to a maximum
    count, and gives up after that. A server restart closes streams cleanly, so we ask for
    ``retry: 'always'``, an unlimited count and a short ceiling: a restart, a deploy and a
    dropped network all end with the page live, and the first frame after a reconnect is a
    complete render.
    """
    options = "{retry: 'always', retryMaxCount: Infinity, retryInterval: 500, retryMaxWait: 5000}"
    action = f"@get({json.dumps(url)}, {options})"
    return html(' data-init="{}"', action)
