"""Observe: wire tracing, the canonical line, stalls, the query log and analytics into an app.

``boot.install`` calls ``install(app, rt)``; gunicorn's worker hook calls ``start(rt)`` (the
stall watchdog needs the worker's hub) and shutdown calls ``stop()``.

The WSGI middleware is where a request begins and ends for observability. It wraps Flask's
``wsgi_app`` rather than using ``before_request``/``after_request`` because a streamed
response (every live stream) is still running long after Flask's hooks have returned: the
request's span and its canonical line end only when the body has been sent, or when the
client went away (``close()`` before the body was exhausted: outcome "aborted").

While Flask runs the view the request span is current (queries nest under it); while the
body streams it is not, so an hours-long stream does not pile up a span per query. Its line
stays current to the end, so ``canon.add`` from a stream's code still lands in it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Flask, request, request_started
from greenlet import getcurrent

from . import analytics, canon, dev, health, sse, stalls, trace
from .html import html
from .store import Store

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("orion.observe")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: The stall watchdog of this process (None until ``start``).
WATCHDOG: stalls.Watchdog | None = None
_settings: dict[str, float] = {"stall_ms": 200.0}


def install(app: Flask, rt: Runtime) -> None:
    """Trace and log every request of ``app``; time every store query; bind analytics."""
    cfg = app.config
    canon.configure(
        sample=float(cfg.get("ORION_CANON_SAMPLE", 1.0)),
        slow_ms=float(cfg.get("ORION_CANON_SLOW_MS", 500)),
        development=rt.development,
    )
    _settings["stall_ms"] = float(cfg.get("ORION_STALL_MS", 200))
    app.wsgi_app = Middleware(app.wsgi_app, rt)  # type: ignore[method-assign]
    # The route is known once Flask has matched the URL, and Flask forgets the request before
    # a streamed body ends: note it as soon as dispatching starts (for every request, 404s too,
    # before any before_request hook can refuse it).
    request_started.connect(_note_route, app, weak=False)
    Store.on_timed = health.QUERIES.observe
    analytics.ANALYTICS.enabled = bool(cfg.get("ORION_ANALYTICS", True))
    analytics.ANALYTICS.development = rt.development
    analytics.ANALYTICS.bind(rt.store)


def start(rt: Runtime) -> stalls.Watchdog:
    """Start the stall watchdog on this (the worker's) hub. Idempotent."""
    global WATCHDOG
    if WATCHDOG is None:
        threshold = _settings["stall_ms"] / 1000
        WATCHDOG = stalls.Watchdog(threshold=threshold, on_stall=_reporter(rt)).start()
    return WATCHDOG


def stop() -> None:
    global WATCHDOG
    if WATCHDOG is not None:
        WATCHDOG.stop()
        WATCHDOG = None


def figures(rt: Runtime) -> health.Figures:
    """The health figures now, with this process's event-loop lag (app/belt/health.py)."""
    return health.figures(rt, WATCHDOG)


def stats(rt: Runtime) -> dict[str, Any]:
    """What /_orion/stats shows of observability."""
    out = health.figures(rt, WATCHDOG).as_dict()
    out["canon"] = dict(vars(canon.STATS))
    out["traces"] = trace.RING.total
    a = analytics.ANALYTICS
    out["analytics"] = {
        "tracked": a.tracked,
        "flushed": a.flushed,
        "dropped": a.dropped,
        "flushes": a.flushes,
        "buffered": len(a.buffer),
    }
    return out


class Middleware:
    """Opens the request span and the canonical line; ends both when the body is done."""

    def __init__(self, app: WSGIApp, rt: Runtime) -> None:
        self.app = app
        self.rt = rt

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        _chain_flags(self.rt)
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        root = trace.start(method, traceparent=environ.get("HTTP_TRACEPARENT"))
        line = canon.Line(method=method, path=path, trace_id=root.trace_id, greenlet=getcurrent())
        environ["orion.trace_id"] = root.trace_id
        environ["orion.request_id"] = root.span_id
        line.fields["request_id"] = root.span_id
        environ["orion.line"] = line
        restore = trace.activate(root)
        canon._current.set(line)

        body = _Body(self, environ, line, root)

        def observed(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            line.status = int(status.split(" ", 1)[0])
            for name, value in headers:
                if name.lower() == "content-length" and value.isdigit():
                    body.length = int(value)
            return start_response(status, headers, exc_info)

        key = id(sys._getframe())
        stalls.ACTIVE[key] = line
        try:
            body.inner = self.app(environ, observed)
        except BaseException as exc:  # below Flask's own error handlers: rare
            line.error = f"{type(exc).__name__}: {exc}"[:300]
            body.finish(aborted=False)
            raise
        finally:
            stalls.ACTIVE.pop(key, None)
            restore()
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body.inner, wrapper):
            # A static file the server sends with sendfile(): it must see its own wrapper, so
            # the line is written now (the time to the first byte), not when the file is sent.
            body.finish(aborted=False)
            return body.inner
        return body


class _Body:
    """The response body, passed through; it ends the span and the line exactly once."""

    def __init__(self, mw: Middleware, environ: dict[str, Any], line: canon.Line, root: trace.Span) -> None:
        self.mw = mw
        self.environ = environ
        self.line = line
        self.root = root
        self.inner: Iterable[bytes] = ()
        self.chunks = 0
        self.bytes = 0
        self.length = 0  # Content-Length, for a file the server sends itself
        self.exhausted = False
        self.finished = False
        self._gen: Generator[bytes, None, None] | None = None

    def __iter__(self) -> Iterator[bytes]:
        self._gen = self._iterate()
        return self._gen

    def _iterate(self) -> Generator[bytes, None, None]:
        key = id(sys._getframe())  # a generator's frame lives as long as it does
        stalls.ACTIVE[key] = self.line
        try:
            for chunk in self.inner:
                self.chunks += 1
                self.bytes += len(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            self.line.error = f"{type(exc).__name__}: {exc}"[:300]
            self.finish(aborted=False)
            raise
        finally:
            stalls.ACTIVE.pop(key, None)
        self.exhausted = True
        self.finish(aborted=False)

    def close(self) -> None:
        try:
            if self._gen is not None:
                self._gen.close()
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self.finish(aborted=not self.exhausted)

    def finish(self, *, aborted: bool) -> None:
        if self.finished:
            return
        self.finished = True
        line, root = self.line, self.root
        try:
            _enrich(self.mw.rt, self.environ, line)
            root.name = f"{line.method} {line.route or line.path}"
            root.set(
                **{
                    "http.request.method": line.method,
                    "url.path": line.path,
                    "http.response.status_code": line.status or 0,
                }
            )
            if line.route:
                root.set(**{"http.route": line.route})
            if line.error is not None or (line.status or 0) >= 500:
                root.fail(line.error or f"HTTP {line.status}")
            extra: dict[str, Any] = {"bytes": self.bytes or self.length}
            if line.kind == "stream":
                extra["chunks"] = self.chunks
            root.end()
            canon.finish(line, aborted=aborted, extra=extra)
        except Exception:
            log.exception("observe: the end of %s %s could not be recorded", line.method, line.path)
        finally:
            if canon._current.get() is line:
                canon._current.set(None)


def _note_route(sender: Flask, **extra: Any) -> None:
    line = canon.current()
    rule = request.url_rule
    if line is not None and rule is not None:
        line.route = rule.rule
        root = trace.current()
        if root is not None and root.is_root:
            root.name = f"{line.method} {rule.rule}"


def _enrich(rt: Runtime, environ: dict[str, Any], line: canon.Line) -> None:
    """Fill in what the request learned: who acted, where, on which plan."""
    fields = line.fields
    verdict = environ.get("orion.verdict")
    if verdict is not None:
        fields.setdefault("tenant", verdict.tenant)
    for ctx in environ.get("orion.ctxs", ()):
        user = ctx.user
        if user is None:
            continue
        fields.setdefault("user", str(user.id))
        line.tags.setdefault("role", user.role)
        if user.real is not None:
            fields.setdefault("real_user", str(user.real.id))
        if ctx.tenant is not None:
            fields.setdefault("tenant", ctx.tenant)
        ent = rt.entitlements
        if ent is not None:
            try:
                account = ent.account_of(ctx)
                if account is not None:
                    line.tags.setdefault("plan", ent.plan(account))
            except Exception:  # the plan is a nicety; the line must still be written
                log.debug("observe: no plan for the canonical line", exc_info=True)
        break


def _chain_flags(rt: Runtime) -> None:
    """Have the app's flags report each evaluation to the current line (once per Flags)."""
    flags = rt.flags
    if flags is None or getattr(flags, "_orion_canon", False):
        return
    previous = flags.on_evaluate

    def on_evaluate(name: str, context: Any, result: bool, reason: str) -> None:
        canon.flag_evaluated(name, context, result, reason)
        if previous is not None:
            previous(name, context, result, reason)

    flags.on_evaluate = on_evaluate
    flags._orion_canon = True  # type: ignore[attr-defined]


# -- stall reports -----------------------------------------------------------------------


def _reporter(rt: Runtime) -> Callable[[stalls.Stall], None]:
    def report(stall: stalls.Stall) -> None:
        # Production: one log line with the stack, one JSON event beside the canonical lines,
        # and the counters (stalls.STATS, /_orion/stats). Development: a banner too.
        log.warning(
            "stall: the gevent hub was blocked for %.0f ms by %s (trace %s, %s) at %s\n%s",
            stall.duration_ms,
            stall.where,
            stall.trace_id,
            stall.greenlet,
            stall.culprit,
            "\n".join(stall.stack),
        )
        event = {
            "ts": canon._iso(stall.at),
            "kind": "stall",
            "duration_ms": stall.duration_ms,
            "detected_ms": stall.detected_ms,
            "route": stall.route,
            "trace_id": stall.trace_id,
            "greenlet": stall.greenlet,
            "culprit": stall.culprit,
            "stack": [frame.split("\n")[0] for frame in stall.stack[-8:]],
        }
        try:
            canon.sink(json.dumps(event, separators=(",", ":"), ensure_ascii=True))
        except Exception:
            log.exception("stall event could not be written")
        if rt.development:
            dev.announce(stall_banner(stall))

    return report


def stall_banner(stall: stalls.Stall) -> str:
    """Development: a dismissible banner naming the stall's culprit, as SSE events."""
    banner = html(
        '<div id="orion-stall-banner" role="alert" style="position:fixed;left:1rem;right:1rem;top:1rem;'
        "z-index:99998;background:#7a2e0e;color:#fff;padding:.6rem .9rem;border-radius:8px;"
        'font:13px/1.4 ui-monospace,monospace;box-shadow:0 6px 24px rgba(0,0,0,.35)">'
        '<button style="float:right" onclick="this.parentNode.remove()">Dismiss</button>'
        "<strong>The server was blocked for {} ms</strong> by {} at <code>{}</code>. Every open page "
        "froze meanwhile: move slow work to <code>gevent.get_hub().threadpool</code> or a job."
        '<details><summary>stack</summary><pre style="white-space:pre-wrap;margin:.3rem 0 0">{}</pre></details></div>',
        round(stall.duration_ms),
        stall.where,
        stall.culprit,
        "\n".join(stall.stack),
    )
    # One banner at a time: drop the previous one, then add this one.
    return sse.execute_script("document.getElementById('orion-stall-banner')?.remove()") + sse.patch_elements(
        banner, selector="body", mode="append"
    )
