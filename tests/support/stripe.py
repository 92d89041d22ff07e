"""A stand-in for the Stripe API on loopback, and a webhook sender that signs like Stripe.

    stripe = StripeStandIn(app_url=server.url, webhook_secret=SECRET).start()
    env = {"ORION_STRIPE_API": stripe.url, ...}

``POST /v1/checkout/sessions`` records the request and answers a session whose ``url`` is
``<stand-in>/pay/<session id>``. Opening that URL plays the customer paying: the stand-in
sends a signed ``checkout.session.completed`` to the app's webhook (HMAC-SHA256 of
``"<t>.<body>"``, the real algorithm) and redirects to the session's ``success_url``.
``fail_with = 500`` (or 400, ...) makes checkout answer that instead. It runs on a thread of
the test process (not gevent-patched).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

WEBHOOK = "/billing/stripe/webhook"
_ids = itertools.count(1)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Written here again, not imported from the recipe: the test must not trust the code it tests."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def post_webhook(
    app_url: str,
    body: bytes,
    headers: dict[str, str] | list[tuple[str, str]],
    *,
    timeout: float = 10,
) -> tuple[int, str]:
    """POST ``body`` to the app's webhook with exactly ``headers`` (a list may repeat one)."""
    parts = urlsplit(app_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.putrequest("POST", WEBHOOK)
        pairs = list(headers.items()) if isinstance(headers, dict) else headers
        for name, value in [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *pairs]:
            conn.putheader(name, value)
        conn.endheaders(body)
        answer = conn.getresponse()
        return answer.status, answer.read().decode(errors="replace")
    finally:
        conn.close()


def send_event(app_url: str, event: dict[str, Any], secret: str, *, timestamp: int | None = None) -> tuple[int, str]:
    body = json.dumps(event).encode()
    t = int(time.time()) if timestamp is None else timestamp
    return post_webhook(app_url, body, {"Stripe-Signature": f"t={t},v1={sign(secret, t, body)}"})


def event(kind: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_test_{next(_ids)}_{time.monotonic_ns()}",
        "object": "event",
        "type": kind,
        "data": {"object": obj},
    }


class StripeStandIn:
    def __init__(self, *, webhook_secret: str, app_url: str | None = None) -> None:
        self.webhook_secret = webhook_secret
        self.app_url = app_url
        self.requests: list[dict[str, Any]] = []
        self.sessions: dict[str, dict[str, str]] = {}
        self.webhooks: list[tuple[int, str]] = []
        self.fail_with: int | None = None
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                stand_in.requests.append({"path": self.path, "headers": dict(self.headers), "form": form})
                if stand_in.fail_with is not None:
                    self._json(
                        stand_in.fail_with, {"error": {"message": f"stand-in told to fail ({stand_in.fail_with})"}}
                    )
                    return
                if self.path != "/v1/checkout/sessions":
                    self._json(404, {"error": {"message": f"Unrecognized request URL (POST: {self.path})"}})
                    return
                session_id = f"cs_test_{next(_ids)}"
                stand_in.sessions[session_id] = form
                self._json(
                    200, {"id": session_id, "object": "checkout.session", "url": f"{stand_in.url}/pay/{session_id}"}
                )

            def do_GET(self) -> None:
                session_id = self.path.rsplit("/", 1)[-1]
                form = stand_in.sessions.get(session_id)
                if not self.path.startswith("/pay/") or form is None:
                    self._json(404, {"error": {"message": "no such session"}})
                    return
                stand_in.webhooks.append(stand_in.complete(session_id))
                self.send_response(303)
                self.send_header("Location", form["success_url"])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _json(self, status: int, data: dict[str, Any]) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> StripeStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def complete(self, session_id: str) -> tuple[int, str]:
        """What Stripe does once the customer paid: a signed checkout.session.completed."""
        form = self.sessions[session_id]
        assert self.app_url is not None, "the stand-in needs app_url to send webhooks"
        obj = {
            "id": session_id,
            "object": "checkout.session",
            "mode": form.get("mode"),
            "client_reference_id": form.get("client_reference_id"),
            "customer": f"cus_{session_id}",
            "subscription": f"sub_{session_id}",
            "payment_status": "paid",
            "metadata": {"account": form.get("metadata[account]"), "plan": form.get("metadata[plan]")},
        }
        return send_event(self.app_url, event("checkout.session.completed", obj), self.webhook_secret)

    def __enter__(self) -> StripeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
