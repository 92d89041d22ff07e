"""The Datastar SDK test server: one ``/test`` endpoint that answers each case with app.belt.sse.

It behaves like the server every official SDK runs the shared golden cases against: read the
signals (GET and DELETE from the ``datastar`` query parameter, other methods from the JSON body),
then send one event for each entry of their ``events`` list. Run it on its own to point the
official runner at it:

    .venv/bin/python -m tests.conformance.server --port 8123
"""

if __name__ == "__main__":
    # gevent must patch the standard library before anything else imports socket or threading.
    from gevent import monkey

    monkey.patch_all()

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, request

from app.belt.sse import SSE_HEADERS, execute_script, patch_elements, patch_signals


def _patch_elements(event: Mapping[str, Any]) -> str:
    """Return the event for a ``patchElements`` case entry (``mode: remove`` included)."""
    return patch_elements(
        event.get("elements", ""),
        selector=event.get("selector"),
        mode=event.get("mode", "outer"),
        use_view_transition=event.get("useViewTransition", False),
        namespace=event.get("namespace"),
        event_id=event.get("eventId"),
        retry=event.get("retryDuration"),
    )


def _patch_signals(event: Mapping[str, Any]) -> str:
    """Return the event for a ``patchSignals`` case entry; ``signals-raw`` wins over ``signals``."""
    signals = event["signals-raw"] if "signals-raw" in event else event.get("signals", {})
    return patch_signals(
        signals,
        only_if_missing=event.get("onlyIfMissing", False),
        event_id=event.get("eventId"),
        retry=event.get("retryDuration"),
    )


def _execute_script(event: Mapping[str, Any]) -> str:
    """Return the event for an ``executeScript`` case entry."""
    return execute_script(
        event["script"],
        auto_remove=event.get("autoRemove", True),
        attributes=event.get("attributes"),
        event_id=event.get("eventId"),
        retry=event.get("retryDuration"),
    )


EVENT_TYPES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "patchElements": _patch_elements,
    "patchSignals": _patch_signals,
    "executeScript": _execute_script,
}


def _bad_request(message: str) -> Response:
    """Return a plain-text 400 that says what was wrong with the request."""
    return Response(message + "\n", status=400, content_type="text/plain; charset=utf-8")


def create_app() -> Flask:
    """Return the test server's Flask app."""
    app = Flask(__name__)

    @app.route("/test", methods=["GET", "POST", "DELETE"])
    def test() -> Response:
        """Answer one golden case: every event of the request's ``events``, in order."""
        if request.method in ("GET", "DELETE"):
            raw = request.args.get("datastar")
            if raw is None:
                return _bad_request("Missing the 'datastar' query parameter (URL-encoded JSON).")
        else:
            raw = request.get_data(as_text=True)
        try:
            signals = json.loads(raw)
        except ValueError as error:
            return _bad_request(f"The signals are not valid JSON: {error}.")
        events = signals.get("events") if isinstance(signals, dict) else None
        if not isinstance(events, list):
            return _bad_request('The signals must be an object with an "events" list.')
        body = []
        for event in events:
            kind = event.get("type") if isinstance(event, dict) else None
            make = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
            if make is None:
                return _bad_request(f"Unknown event type {kind!r}; use one of {list(EVENT_TYPES)}.")
            try:
                body.append(make(event))
            except (KeyError, TypeError, ValueError) as error:
                return _bad_request(f"Event {event!r} cannot be sent: {error!r}.")
        return Response("".join(body), status=200, headers=SSE_HEADERS)

    return app


def main() -> None:
    """Serve the test app with gevent's WSGI server until interrupted."""
    from gevent.pywsgi import WSGIServer

    parser = argparse.ArgumentParser(description="Serve the Datastar SDK test endpoint /test.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=7331, help="port to bind (default 7331)")
    args = parser.parse_args()
    server = WSGIServer((args.host, args.port), create_app())
    print(f"Datastar SDK test server on http://{args.host}:{args.port}/test", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
