"""Live regions: the parts of a page that re-render themselves when the store changes.

A **region** is ``model(ctx) -> data`` plus ``view(data) -> Html`` plus what wakes it
(``topics`` on the bus, ``watch`` Watchables). A **stream** is one SSE connection that carries
all the regions of a page (browsers allow only 6 HTTP/1.1 connections per origin).

On every wake a stream recomputes each region's model. Equal to what this viewer last saw:
nothing is sent. Otherwise the render is taken from the shared render cache (renders equal
distinct models, not viewers) or made once, and one ``datastar-patch-elements`` event goes out
through this connection's compressor. Reads inside models are memoized by store generation,
so N viewers waking on one publish run one query.

Wakes coalesce: a wake is a flag, not a queue. A viewer whose socket is slow sits in its
write while later wakes only re-set the flag, so it gets fewer, later, complete frames and
its memory stays bounded.
"""

from __future__ import annotations

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
from .bus import Watchable, subscribe_all
from .ctx import Ctx
from .html import html
from .runtime import Runtime, request_ctx, runtime

log = logging.getLogger("orion.live")

Model = Any
View = Callable[[Any], Markup]
WatchSpec = Watchable | Callable[[Ctx], Watchable]

_RENDER_CACHE_SIZE = 64
_UNSEEN = object()
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
        if last is not None and isinstance(model, _IMMUTABLE) and (
            last[0] is model or (type(model) is tuple and type(last[0]) is tuple and model == last[0])
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
) -> Region:
    """Declare a live region.

    ``view(model)`` must return one element whose ``id`` is ``id`` (Datastar morphs by id).
    The model should be hashable (tuples, frozen dataclasses, sqlite3 rows) so that viewers
    with equal models share one render; an unhashable model still works, rendered per viewer.
    ``on_open(ctx)`` runs when a viewer's stream opens and ``on_close(ctx)`` when it ends,
    however it ends (the presence pattern joins and leaves there).
    """
    if not id or not id.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"A region id is letters, digits, '-' and '_' (got {id!r}).")
    if isinstance(topics, str):
        raise TypeError(f"topics is a list of topic names; write topics=[{topics!r}].")
    return Region(
        id=id, model=model, view=view, topics=tuple(topics), watch=tuple(watch), on_open=on_open, on_close=on_close
    )


class Stream:
    """One viewer's SSE connection: the loop that turns wakes into patch events."""

    def __init__(
        self,
        rt: Runtime,
        ctx: Ctx,
        regions: Sequence[Region],
        encoder: sse.StreamEncoder,
        authorize: Callable[[Ctx], bool] | None,
    ) -> None:
        self.rt = rt
        self.ctx = ctx
        self.regions = tuple(regions)
        self.encoder = encoder
        self.authorize = authorize
        self.wake = gevent.event.Event()
        self.ending = False
        self.seen: dict[str, Model] = {}
        self.dev_html: dict[str, str] = {}  # development: what each region last rendered
        self.dev_reported: set[str] = set()
        self.socket: socket.socket | None = None
        self.sent = 0  # patch frames sent: the stream's canonical line reports them
        self.written = time.monotonic()  # when anything was last written (heartbeats count)

    def end(self) -> None:
        """Ask the stream to send its final event and close (shutdown, revocation)."""
        self.ending = True
        self.wake.set()

    def _on_change(self) -> None:
        self.wake.set()

    def events(self) -> Iterator[bytes]:
        rt, ctx = self.rt, self.ctx
        canon.streaming()  # its canonical line is written when it ends
        unsubscribe = subscribe_all(self._watchables(), self._on_change)
        rt.streams.add(self)
        rt.live.streams_opened += 1
        ctx.store.leases += 1  # tenancy never closes a store a stream is reading
        if rt.stopping:
            # Opened after shutdown began: say goodbye at once, or the drain waits its whole timeout.
            self.ending = True
        opened: list[Region] = []
        try:
            self._open(opened)
            # A first comment at once, so the headers leave and proxies see a live stream.
            yield self._send(sse.comment("orion live"))
            while not self.ending:
                self.wake.clear()
                if (self.authorize is not None and not self.authorize(ctx)) or self._tenant_gone():
                    # Severed: the viewer sees why in place of each region, then the stream ends.
                    yield self._send(self._revoked()) + self.encoder.close()
                    return
                try:
                    frame = self._frame()
                except Exception as exc:
                    # A model or view failed: say so (in development, on the page), then end the
                    # stream; the client reconnects for a fresh complete render.
                    log.exception("live stream %s failed", [r.id for r in self.regions])
                    canon.failed(exc)
                    if rt.development:
                        overlay = dev.exception_overlay_event(exc, f"live regions {[r.id for r in self.regions]}")
                        yield self._send(overlay) + self.encoder.close()
                    return
                if frame:
                    self.sent += 1
                    yield self._send(frame)
                if self.ending:
                    break
                if self.wake.wait(timeout=max(0.0, self.written + rt.heartbeat - time.monotonic())):
                    rt.live.wakes += 1
                if time.monotonic() - self.written >= rt.heartbeat:
                    # The heartbeat is the only way a WSGI server notices a dead client: sent
                    # whenever nothing was written for that long, however often wakes came (a
                    # region watching a ticker with an unchanged model writes nothing).
                    yield self._send(sse.comment("hb"))
            # Shutdown: say so, then close cleanly; the client reconnects (retry: 'always').
            yield self._send(sse.comment("server stopping, reconnect")) + self.encoder.close()
            self._no_keepalive()
        finally:
            canon.add(regions=[r.id for r in self.regions], events=self.sent)
            unsubscribe()
            self._close(opened)
            ctx.store.leases -= 1
            rt.streams.discard(self)

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

    def _watchables(self) -> list[Watchable]:
        """What wakes this stream: each distinct topic once, then every watched thing."""
        topics = dict.fromkeys(t for r in self.regions for t in r.topics)
        watchables: list[Watchable] = [self.ctx.bus.topic(t) for t in topics]
        for r in self.regions:
            for spec in r.watch:
                watchables.append(spec if isinstance(spec, Watchable) else spec(self.ctx))
        return watchables

    def _frame(self) -> bytes:
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

    def _oracle(self, r: Region, model: Model) -> bytes:
        """Development only: an equal model must render the same HTML, or the view is impure."""
        again = str(r.view(model))
        if self.dev_html.get(r.id, again) == again or r.id in self.dev_reported:
            return b""
        self.dev_reported.add(r.id)
        message = dev.impure_message(r.id)
        log.error(message)
        return dev.overlay_event("The view is not a pure function of its model", message, where=r.id).encode()

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

    def _send(self, data: bytes | str) -> bytes:
        self.written = time.monotonic()
        raw = data.encode() if isinstance(data, str) else data
        out = self.encoder.encode(raw)
        live = self.rt.live
        live.events += 1
        live.raw_bytes += len(raw)
        live.wire_bytes += len(out)
        return out


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
    encoder = sse.StreamEncoder(encoding)
    live_stream = Stream(rt, ctx, regions, encoder, authorize)
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
