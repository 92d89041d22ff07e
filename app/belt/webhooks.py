"""Webhooks in and out: signed deliveries as jobs, and a verified, deduplicated receiver.

**Out.** An account registers endpoints (``register(ctx, account, url)`` returns the signing
secret to show once); ``send(ctx, url, event, payload)`` or ``publish(ctx, account, event,
payload)`` enqueue one job per delivery, in the caller's transaction (an event is sent if and
only if the change that caused it commits). The job POSTs JSON ``{"id", "type", "created",
"data"}`` with

    Orion-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

plus ``Orion-Event`` and ``Orion-Delivery``. A non-2xx answer (or no answer in 10 s) retries
with backoff (10 s doubling to an hour, with jitter) over about a day, then the delivery is
dead in the Jobs panel, where a person can retry it. The event id never changes across
retries: receivers dedupe on it.

**In.** ``receiver(secret, source=...)`` wraps a view ``fn(ctx, event)``: it checks the
signature (constant time, a 5-minute clock tolerance, several ``v1`` for secret rotation),
parses the JSON, and runs ``fn`` inside a transaction that first records the event id
(``idempotency.first``), so a redelivered event is acknowledged with 200 and applied once.
The route must be listed in the app's ``CSRF_EXEMPT`` (it is authenticated by its signature).
The format is Stripe's, so ``verify(secret, request.headers["Stripe-Signature"], body)``
checks Stripe's deliveries too.

Not done here: refusing private or loopback target addresses (SSRF) — a multi-tenant app
whose users register URLs should add that check to ``register``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import json
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Response, request

from . import idempotency, jobs
from .ctx import Ctx
from .store import Row, Store

SIGNATURE = "Orion-Signature"
KIND = "_orion.webhook"
TOLERANCE = 300
TIMEOUT = 10.0
MAX_ATTEMPTS = 12  # 10 s, 20 s, ... capped at an hour: about a day in all


class InvalidSignature(ValueError):
    """The request is not signed by a secret we hold (or too long ago)."""


class DeliveryFailed(RuntimeError):
    """The endpoint did not answer 2xx."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Orion-Signature`` value for ``body``.

    >>> sign("whsec_test", b'{"id":"evt_1"}', timestamp=1700000000)[:40]
    't=1700000000,v1=c89214b5b5da833daed6f0b8'
    """
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str | Iterable[str],
    header: str | None,
    body: bytes,
    *,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a ``t=...,v1=...`` signature of ``body``; its timestamp, or ``InvalidSignature``."""
    if not header:
        raise InvalidSignature("The request carries no signature header.")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        raise InvalidSignature("The signature header has no timestamp (t=...).") from None
    now = time.time() if now is None else now
    if abs(now - t) > tolerance:
        raise InvalidSignature(
            f"The signature is {abs(now - t):.0f}s away from now (tolerance {tolerance}s): a replay?"
        )
    candidates = fields.get("v1", [])
    keys = [secret] if isinstance(secret, str) else list(secret)
    for key in keys:
        expected = hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, c) for c in candidates):
            return t
    raise InvalidSignature("No v1 signature matches a secret we hold for this sender.")


# -- out ----------------------------------------------------------------------------------


def register(ctx: Ctx, account: str, url: str, *, events: str = "*") -> tuple[int, str]:
    """Register (or re-activate) ``url`` for ``account``; (endpoint id, signing secret).

    ``events`` is ``*`` or a comma-separated list of event names. Registering a URL again
    keeps its secret.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"A webhook endpoint is an http(s) URL, e.g. https://example.com/hooks; got {url!r}.")
    secret = "whsec_" + secrets.token_urlsafe(32)
    with ctx.store.tx():
        ctx.store.exec(
            "INSERT INTO _orion_webhook_endpoints (account, url, secret, events, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (account, url) DO UPDATE SET events = excluded.events, active = 1",
            (account, url, secret, events, time.time()),
        )
        row = ctx.store.one(
            "SELECT id, secret FROM _orion_webhook_endpoints WHERE account = ? AND url = ?", (account, url)
        )
    assert row is not None
    return int(row["id"]), str(row["secret"])


def endpoints(store: Store, account: str) -> tuple[Row, ...]:
    return store.query(
        "SELECT id, url, events, active, created_at FROM _orion_webhook_endpoints WHERE account = ? ORDER BY id",
        (account,),
    )


def deactivate(ctx: Ctx, endpoint_id: int) -> bool:
    count, _ = ctx.store.exec("UPDATE _orion_webhook_endpoints SET active = 0 WHERE id = ?", (endpoint_id,))
    return count > 0


def send(ctx: Ctx, url: str, event: str, payload: Any, *, account: str | None = None) -> int:
    """Enqueue one signed delivery of ``event`` to the registered endpoint at ``url``; the job id."""
    sql = "SELECT id FROM _orion_webhook_endpoints WHERE url = ? AND active = 1"
    params: tuple[Any, ...] = (url,)
    if account is not None:
        sql, params = sql + " AND account = ?", (url, account)
    row = ctx.store.one(sql, params)
    if row is None:
        raise LookupError(
            f"No active webhook endpoint is registered at {url!r}"
            f"{f' for account {account!r}' if account else ''}: register it first "
            "(webhooks.register(ctx, account, url)), which also makes its signing secret."
        )
    return _enqueue(ctx, int(row["id"]), url, event, payload)


def publish(ctx: Ctx, account: str, event: str, payload: Any) -> list[int]:
    """Send ``event`` to every active endpoint of ``account`` that wants it; the job ids."""
    sent = []
    for row in endpoints(ctx.store, account):
        wanted = {e.strip() for e in row["events"].split(",")}
        if row["active"] and ("*" in wanted or event in wanted):
            sent.append(_enqueue(ctx, row["id"], row["url"], event, payload))
    return sent


def _enqueue(ctx: Ctx, endpoint_id: int, url: str, event: str, payload: Any) -> int:
    body = json.dumps(
        {"id": "evt_" + secrets.token_hex(12), "type": event, "created": int(time.time()), "data": payload},
        separators=(",", ":"),
        allow_nan=False,
    )
    return jobs.enqueue(
        ctx, KIND, {"endpoint": endpoint_id, "url": url, "event": event, "body": body}, max_attempts=MAX_ATTEMPTS
    )


@jobs.handler(KIND, backoff=10.0, max_backoff=3600.0)
def _deliver(ctx: Ctx, job: jobs.Job) -> dict[str, Any]:
    row = ctx.store.one("SELECT secret, active FROM _orion_webhook_endpoints WHERE id = ?", (job.payload["endpoint"],))
    if row is None or not row["active"]:
        return {"skipped": "the endpoint was removed or deactivated"}
    body = job.payload["body"].encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "orion-webhooks",
        SIGNATURE: sign(row["secret"], body),
        "Orion-Event": job.payload["event"],
        "Orion-Delivery": f"{job.id}.{job.attempt}",
    }
    status, text = post(job.payload["url"], body, headers)
    if not 200 <= status < 300:
        raise DeliveryFailed(f"{job.payload['url']} answered {status}: {text[:200]!r}")
    return {"status": status, "attempt": job.attempt}


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = TIMEOUT) -> tuple[int, str]:
    """POST ``body``; (status, the first KiB of the answer). Cooperative under gevent's patching.

    http.client, not urllib: urllib would route through any *_proxy variable in the
    environment, and a webhook must go where it was registered to go.
    """
    parts = urlsplit(url)
    conn_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_type(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request(
            "POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers
        )
        answer = conn.getresponse()
        return answer.status, answer.read(1024).decode("utf-8", "replace")
    finally:
        conn.close()


# -- in -----------------------------------------------------------------------------------

Secret = str | Iterable[str] | Callable[[], str | Iterable[str]]


def receiver(
    secret: Secret,
    *,
    source: str,
    header: str = SIGNATURE,
    event_id: Callable[[dict[str, Any]], Any] = lambda event: event.get("id"),
    tolerance: int = TOLERANCE,
) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Turn ``fn(ctx, event, **url_values)`` into a verified, exactly-once webhook view.

        @bp.post("/hooks/partner")
        @webhooks.receiver(lambda: current_app.config["PARTNER_SECRET"], source="partner")
        def partner(ctx, event):
            with ...: ...           # runs inside the transaction that records the event id

    A bad signature answers 400 (the sender will retry; a forger learns nothing); a
    redelivered event 200 ``duplicate`` without running ``fn``. ``fn`` runs in a transaction:
    it must not wait on the network; enqueue a job for that.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Response]:
        @functools.wraps(fn)
        def view(**url_values: Any) -> Response:
            from .runtime import request_ctx

            body = request.get_data(cache=True)
            keys = secret() if callable(secret) else secret
            try:
                verify(keys, request.headers.get(header), body, tolerance=tolerance)
            except InvalidSignature as exc:
                return Response(f"{exc}\n", status=400, mimetype="text/plain")
            try:
                event = json.loads(body)
                eid = event_id(event) if isinstance(event, dict) else None
            except ValueError:
                return Response("The webhook body is not JSON.\n", status=400, mimetype="text/plain")
            if not isinstance(eid, str) or not 0 < len(eid) <= 255:
                return Response("The webhook event has no id.\n", status=400, mimetype="text/plain")
            ctx = request_ctx()
            with ctx.store.tx():
                if not idempotency.first(ctx.store, f"event:{source}", eid):
                    return Response(f"duplicate: {eid} was already handled\n", mimetype="text/plain")
                fn(ctx, event, **url_values)
            return Response(f"ok: {eid}\n", mimetype="text/plain")

        view.orion_kind = "webhook"  # type: ignore[attr-defined]
        return view

    return wrap
