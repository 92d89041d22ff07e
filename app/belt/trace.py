"""Tracing: spans with ids, parents, attributes and timings, without threading a ctx through.

Every request opens a **request span** (app/belt/observe.py); ``trace.span(name)`` anywhere
below it, in any function of that greenlet, opens a child::

    with trace.span("export.render", rows=len(rows)) as s:
        ...
        s.set(bytes=len(out))

Store queries become child spans by themselves (``record``), so a request's tree shows where
its time went. When the request span ends, the whole trace lands in ``RING`` (the admin
dashboard's Traces tab) and is handed to every ``on_trace`` hook (app/recipes/otlp.py ships it
to an OpenTelemetry collector).

**The platform fact this rests on:** the current span is a ``contextvars.ContextVar``, and under
gevent every greenlet has its own context (greenlet >= 1.0 gives each greenlet its own
``gr_context``). Concurrent requests therefore never see each other's spans. A greenlet you
spawn starts with an *empty* context (checked with gevent 26.9 / greenlet 3.5: a plain
``gevent.spawn`` child sees no span), so spawn with ``trace.spawn(fn, ...)`` to carry the
current span into it; its spans then nest under the span that spawned it.

A span that ends after its trace's root (a greenlet that outlived its request) still reaches
the ``on_trace`` hooks, but not the in-memory tree, which was frozen when the root ended.
A trace keeps at most ``MAX_SPANS`` spans in memory (the rest are counted as ``dropped``).

>>> with span("outer") as a:
...     with span("inner", n=1) as b:
...         pass
>>> b.parent_id == a.span_id and b.trace_id == a.trace_id
True
>>> [s.name for s in RING.recent(1)[0].spans]
['inner', 'outer']
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import gevent

from .ring import Ring

log = logging.getLogger("orion.trace")

F = TypeVar("F", bound=Callable[..., Any])
Attributes = tuple[tuple[str, Any], ...]
OnTrace = Callable[[tuple["SpanRecord", ...]], None]

#: Spans kept in memory per trace; a request that runs thousands of queries keeps the first.
MAX_SPANS = 256
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_current: ContextVar[Span | None] = ContextVar("orion_span", default=None)
_hooks: list[OnTrace] = []
# Ids need to be unique, not secret: a seeded Mersenne Twister is ~10x cheaper than os.urandom.
_random = random.Random()  # noqa: S311


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """A finished span: what the ring keeps and the hooks receive (immutable)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: float  # epoch seconds
    duration: float  # seconds
    attributes: Attributes = ()
    status: str = "ok"  # "ok" or "error"
    error: str | None = None

    @property
    def end(self) -> float:
        return self.start + self.duration

    def attribute(self, key: str, default: Any = None) -> Any:
        for k, v in self.attributes:
            if k == key:
                return v
        return default


@dataclass(frozen=True, eq=False)
class TraceRecord:
    """One finished trace: its root and every span that ended before it."""

    trace_id: str
    name: str
    start: float
    duration: float
    status: str
    spans: tuple[SpanRecord, ...]
    dropped: int = 0

    @property
    def root(self) -> SpanRecord:
        return self.spans[-1]  # the root ends last

    def tree(self) -> list[tuple[int, SpanRecord]]:
        """The spans depth first, each with its depth (children by start time)."""
        children: dict[str | None, list[SpanRecord]] = {}
        ids = {s.span_id for s in self.spans}
        for s in self.spans:
            parent = s.parent_id if s.parent_id in ids else None
            children.setdefault(parent, []).append(s)
        out: list[tuple[int, SpanRecord]] = []

        def walk(parent: str | None, depth: int) -> None:
            for s in sorted(children.get(parent, ()), key=lambda s: s.start):
                out.append((depth, s))
                walk(s.span_id, depth + 1)

        walk(None, 0)
        return out


#: The last finished traces, newest first on the way out (Watchable).
RING: Ring[TraceRecord] = Ring(200, name="traces")


class _Collector:
    """The spans of one trace gathered until its root ends."""

    __slots__ = ("done", "dropped", "spans")

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []
        self.dropped = 0
        self.done = False


class Span:
    """An open span. Use ``span()`` (a context manager) rather than building one."""

    __slots__ = (
        "_collector",
        "_t0",
        "attributes",
        "error",
        "is_root",
        "name",
        "parent_id",
        "span_id",
        "start",
        "status",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        parent: Span | None,
        attributes: dict[str, Any],
        trace_id: str | None = None,
        parent_id: str | None = None,
    ) -> None:
        self.name = name
        self.span_id = f"{_random.getrandbits(64):016x}"
        self.trace_id: str
        self.parent_id: str | None
        self._collector: _Collector
        self.is_root: bool
        if parent is not None:
            self.trace_id = parent.trace_id
            self.parent_id = parent.span_id
            self._collector = parent._collector
            self.is_root = False
        else:
            self.trace_id = trace_id or f"{_random.getrandbits(128):032x}"
            self.parent_id = parent_id  # a remote parent (traceparent header), or None
            self._collector = _Collector()
            self.is_root = True
        self.attributes = attributes
        self.status = "ok"
        self.error: str | None = None
        self.start = time.time()
        self._t0 = time.perf_counter()

    def set(self, **attributes: Any) -> None:
        """Add or replace attributes (strings, numbers, booleans)."""
        self.attributes.update(attributes)

    def fail(self, error: BaseException | str) -> None:
        """Mark the span failed (an exception inside ``span()`` does this by itself)."""
        self.status = "error"
        self.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"[:300]

    def end(self) -> SpanRecord:
        """Finish the span: it joins its trace (and, for a root, the trace is published)."""
        record = SpanRecord(
            self.trace_id,
            self.span_id,
            self.parent_id,
            self.name,
            self.start,
            time.perf_counter() - self._t0,
            tuple(self.attributes.items()),
            self.status,
            self.error,
        )
        _finished(self._collector, record, root=self.is_root)
        return record

    def traceparent(self) -> str:
        """This span as a W3C ``traceparent`` header value, to continue the trace elsewhere."""
        return f"00-{self.trace_id}-{self.span_id}-01"

    def __repr__(self) -> str:
        return f"<Span {self.name!r} {self.trace_id[:8]}/{self.span_id[:8]}>"


def start(name: str, *, parent: Span | None = None, traceparent: str | None = None, **attributes: Any) -> Span:
    """Open a span without entering it (the caller ends it). ``parent`` defaults to the current
    span; with none, a new trace begins (continuing ``traceparent`` when it is a valid header)."""
    if parent is None:
        parent = _current.get()
    if parent is None and traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}:
            return Span(name, None, attributes, trace_id=match.group(1), parent_id=match.group(2))
    return Span(name, parent, attributes)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """A child of the current span (or a new trace), current for the duration of the block."""
    s = start(name, **attributes)
    token = _current.set(s)
    try:
        yield s
    except BaseException as exc:
        s.fail(exc)
        raise
    finally:
        _current.reset(token)
        s.end()


def current() -> Span | None:
    """The span open in this greenlet (None outside any)."""
    return _current.get()


def activate(s: Span | None) -> Callable[[], None]:
    """Make ``s`` the current span of this greenlet; returns the call that restores the old one."""
    token = _current.set(s)
    return lambda: _current.reset(token)


def record(name: str, duration: float, **attributes: Any) -> None:
    """A finished child span of the current one, ``duration`` seconds long and ending now.

    For work timed elsewhere (the store times its queries). Outside a trace it does nothing:
    a query alone never starts a trace.
    """
    parent = _current.get()
    if parent is None:
        return
    collector = parent._collector
    if collector.done:
        return
    rec = SpanRecord(
        parent.trace_id,
        f"{_random.getrandbits(64):016x}",
        parent.span_id,
        name,
        time.time() - duration,
        duration,
        tuple(attributes.items()),
    )
    _finished(collector, rec, root=False)


def spawn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> gevent.Greenlet:
    """``gevent.spawn`` that carries the current span into the new greenlet.

    A greenlet starts with an empty context under gevent, so a plain ``gevent.spawn`` begins
    a new trace (or none); spans opened in a greenlet spawned here nest under the caller's.
    """
    parent = _current.get()

    def run() -> Any:
        _current.set(parent)
        return fn(*args, **kwargs)

    return gevent.spawn(run)


def wrap(fn: F, name: str | None = None) -> F:
    """``fn`` wrapped in a span named ``name`` (default: its qualified name)."""
    label = name or f"{fn.__module__}.{fn.__qualname__}"

    @wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        with span(label):
            return fn(*args, **kwargs)

    return traced  # type: ignore[return-value]


def on_trace(hook: OnTrace) -> Callable[[], None]:
    """Call ``hook(spans)`` with each finished trace's spans (and with any late span alone).

    Hooks run on the hub when a trace ends: queue and batch (as OpenTelemetry's
    BatchSpanProcessor does), never do network I/O inline. Returns the call that removes it.
    """
    _hooks.append(hook)

    def remove() -> None:
        if hook in _hooks:
            _hooks.remove(hook)

    return remove


def _finished(collector: _Collector, record: SpanRecord, *, root: bool) -> None:
    if collector.done:
        _publish((record,))  # late: its tree is already frozen
        return
    if len(collector.spans) < MAX_SPANS or root:
        collector.spans.append(record)
    else:
        collector.dropped += 1
    if not root:
        return
    collector.done = True
    spans = tuple(collector.spans)
    # The trace's status is its root's: a refused command fails its effect's span, not the request.
    RING.append(
        TraceRecord(
            record.trace_id, record.name, record.start, record.duration, record.status, spans, collector.dropped
        )
    )
    _publish(spans)


def _publish(spans: tuple[SpanRecord, ...]) -> None:
    for hook in tuple(_hooks):
        try:
            hook(spans)
        except Exception:
            log.exception("on_trace hook %r failed; the trace is still in the ring", hook)


def find(trace_id: str) -> TraceRecord | None:
    """A finished trace still in the ring, by its id or its root span's (a request id)."""
    for t in RING.recent():
        if t.trace_id == trace_id or t.root.span_id == trace_id:
            return t
    return None
