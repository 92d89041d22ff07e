"""Development guards: turn whole classes of bug into loud, located errors.

Nothing here runs in production: ``install`` registers the development routes only when
ORION_ENV=development, and the live loop calls the region oracle only then.

* **Region oracle** — when a viewer's model is unchanged, development re-renders anyway and
  compares. Different HTML from an equal model means the view read something that is not
  in its model (the clock, a global, the store): the next real change would show it, or not,
  at random. The page gets an overlay naming the region and the fix.
* **Error overlay** — a failure in a command or a stream is patched onto the live page with
  the route and the stack (dismissible); a failing page load gets a full error document.
* **Live reload** — ``/_orion/dev`` holds a stream; when the server restarts (code changed),
  the page reconnects, sees a new boot id, and reloads.
* **Debug panel** — ``app/static/orion-dev.js`` outlines the elements each patch changed and
  counts patches (toggle with Alt+D).
"""

from __future__ import annotations

import secrets
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Flask, Response
from markupsafe import Markup

from . import sse
from .html import html

if TYPE_CHECKING:
    from .runtime import Runtime

BOOT_ID = secrets.token_hex(6)


class ImpureView(RuntimeError):
    """A view produced different HTML from an equal model."""


def impure_message(region_id: str) -> str:
    return (
        f"Region {region_id!r}: the model is unchanged but the view produced different HTML. "
        "The view read something that is not in its model (the time, a global, the store, a "
        "request). Compute that value in the region's model function and pass it in; views "
        "must be pure functions of their model."
    )


def overlay(title: str, detail: str, *, where: str = "") -> Markup:
    """The development error overlay (one at a time; the button dismisses it)."""
    return html(
        '<div id="orion-error-overlay" role="alertdialog" aria-label="Development error" '
        'style="position:fixed;inset:1rem;z-index:99999;overflow:auto;background:#1d2330;color:#fff;'
        'padding:1.2rem 1.5rem;border-radius:10px;font:14px/1.45 ui-monospace,monospace;'
        'box-shadow:0 10px 40px rgba(0,0,0,.4)">'
        '<button style="float:right" onclick="this.parentNode.remove()">Dismiss</button>'
        '<h2 style="margin:0 0 .4rem;color:#fda29b">{}</h2><p style="color:#d0d5dd">{}</p>'
        '<pre style="white-space:pre-wrap">{}</pre></div>',
        title, where, detail,
    )


def overlay_event(title: str, detail: str, *, where: str = "") -> str:
    """The overlay as one SSE event that appends it to the page's body."""
    return sse.patch_elements(overlay(title, detail, where=where), selector="body", mode="append")


def exception_overlay_event(exc: BaseException, where: str) -> str:
    return overlay_event(f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)), where=where)


def head() -> Markup:
    """What development pages add to <head>: the live-reload stream and the debug panel."""
    return html(
        '<script type="module" src="/static/orion-dev.js"></script>\n'
        '<meta name="orion-boot" content="{}">\n',
        BOOT_ID,
    )


def body() -> Markup:
    """The element holding the live-reload stream."""
    return Markup(
        '<div id="orion-dev" hidden data-init="@get(&#39;/_orion/dev&#39;, {retry: &#39;always&#39;, '
        "retryMaxCount: Infinity, retryInterval: 300, retryMaxWait: 1000})\"></div>"
    )


def install(app: Flask, rt: Runtime) -> None:
    """Register the development routes (only ever called in development)."""

    @app.get("/_orion/dev")
    def dev_stream() -> Response:
        def events() -> Iterator[bytes]:
            from . import canon

            canon.streaming()
            # A page whose boot id differs was served by an older process: reload it.
            yield sse.execute_script(
                f"if (document.querySelector('meta[name=orion-boot]')?.content !== '{BOOT_ID}') "
                "location.reload()"
            ).encode()
            import gevent.queue

            # Notices for every open page (a stall's banner: app/belt/observe.py), or a heartbeat.
            notices: gevent.queue.Queue[str] = gevent.queue.Queue(maxsize=16)
            _listeners.add(notices)
            try:
                while not rt.stopping:
                    try:
                        yield notices.get(timeout=rt.heartbeat).encode()
                    except gevent.queue.Empty:
                        yield sse.comment("hb").encode()
            finally:
                _listeners.discard(notices)

        return Response(events(), headers=sse.SSE_HEADERS)


#: The notice queues of the open development streams (one per page).
_listeners: set[Any] = set()


def announce(events: str) -> None:
    """Development: send ``events`` (SSE text, e.g. a banner) to every open page. From the hub."""
    for notices in list(_listeners):
        if not notices.full():  # a page that stopped reading misses notices, never blocks us
            notices.put_nowait(events)
