"""Recipe: billing through Stripe (Checkout and webhooks) into the entitlements seam.

Turn it on with configuration only; feature code never changes (it gates on capabilities):

    ORION_BILLING=stripe
    ORION_STRIPE_SECRET=sk_test_...          # the API key (a test-mode key while you try it)
    ORION_STRIPE_WEBHOOK_SECRET=whsec_...    # the endpoint's signing secret; comma-separated
                                             # old,new while you roll it
    ORION_STRIPE_PRICES=pro=price_123        # plan=price pairs, comma-separated: what /billing sells
    ORION_STRIPE_API=https://api.stripe.com  # tests point it at a stand-in on loopback

and in Stripe's dashboard point a webhook endpoint at ``https://<your host>/billing/stripe/webhook``
for ``checkout.session.completed``, ``customer.subscription.updated`` and
``customer.subscription.deleted``. With ``ORION_BILLING`` off this module is never imported.

* **Checkout**: ``checkout(account, plan)`` creates a Checkout Session (one form-encoded POST)
  through the ``stripe`` breaker, so an outage fails fast instead of holding every customer's
  click for the timeout, and the /billing page shows "payments unavailable" by itself. A 4xx
  from Stripe (our request was wrong) never trips the breaker.
* **Webhooks**: a plain route (not a command: no session, no CSRF check, on the visible
  ``CSRF_EXEMPT`` list in app/__init__.py) reads the raw body and checks ``Stripe-Signature``
  (``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``): any v1 matching any of our secrets
  is accepted (Stripe sends one per live secret while one is rolled), the timestamp must be
  within 300 s either way (a captured request cannot be replayed later), and digests are
  compared in constant time. Each event id is applied once: a redelivery answers 200 and does
  nothing.

Why the standard library for HTTP: this is one POST with a form body and a JSON answer; under
gunicorn's gevent worker ``urllib`` is cooperative already, so ``requests``/``httpx`` would add
a dependency (and a connection pool we do not need) to save ten lines.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from app.belt import BadInput, Breaker, Entitlements, Runtime, breaker, runtime

log = logging.getLogger("orion.billing.stripe")

SOURCE = "stripe"
TOLERANCE = 300  # seconds, either way
MAX_SIGNATURE_HEADER = 4096
MAX_SIGNATURES = 16
#: Subscription statuses that keep the paid plan (past_due: Stripe is still retrying the card).
KEEPS_PLAN = frozenset({"active", "trialing", "past_due"})

bp = Blueprint("billing_stripe", __name__)


# -- the API client ------------------------------------------------------------------------


class StripeError(Exception):
    """Stripe answered with an error (``status``), or could not be reached (``status`` 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_failure(exc: BaseException) -> bool:
    """Does ``exc`` say Stripe is unwell? A 4xx other than 429 says our request was wrong."""
    if isinstance(exc, StripeError) and 400 <= exc.status < 500 and exc.status != 429:
        return False
    return True


def form_encode(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding of nested parameters.

    >>> form_encode({"line_items": [{"price": "p_1", "quantity": 1}], "metadata": {"plan": "pro"}})
    [('line_items[0][price]', 'p_1'), ('line_items[0][quantity]', '1'), ('metadata[plan]', 'pro')]
    """
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            pairs.extend(form_encode(value, name))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    pairs.extend(form_encode(item, f"{name}[{i}]"))
                else:
                    pairs.append((f"{name}[{i}]", str(item)))
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    return pairs


class StripeClient:
    """POSTs to the Stripe API through a breaker; the timeout is ours to choose (10 s)."""

    def __init__(self, api: str, secret: str, *, breaker: Breaker, timeout: float = 10.0) -> None:
        self.api = api.rstrip("/")
        self.secret = secret
        self.breaker = breaker
        self.timeout = timeout

    def post(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON answer to ``POST <api><path>``; ``StripeError`` or ``CircuitOpen`` otherwise."""
        return self.breaker.call(self._post, path, params)

    def _post(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        from urllib.parse import urlencode

        body = urlencode(form_encode(params)).encode()
        req = urllib.request.Request(  # noqa: S310 - the base URL is the operator's setting
            self.api + path,
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.secret}",
                "Content-Type": "application/x-www-form-urlencoded",
                # A retry of this very request (by a proxy, by us) creates no second session.
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as answer:  # noqa: S310
                data = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise StripeError(exc.code, _error_message(exc)) from None
        except (OSError, ValueError) as exc:  # refused, reset, timed out, not JSON
            raise StripeError(0, f"Stripe could not be reached: {exc}") from None
        if not isinstance(data, dict):
            raise StripeError(0, "Stripe answered with something other than a JSON object.")
        return data


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read())["error"]["message"]
    except Exception:
        detail = exc.reason
    return f"Stripe answered {exc.code}: {detail}"


# -- the billing adapter (rt.billing) ------------------------------------------------------


@dataclass
class StripeBilling:
    """The ``Billing`` adapter: what /billing sells and how a customer buys it."""

    client: StripeClient
    prices: dict[str, str]  # plan -> Stripe price id
    webhook_secrets: tuple[str, ...]
    name: str = "stripe"

    @property
    def breaker(self) -> Breaker:
        return self.client.breaker

    def for_sale(self) -> tuple[str, ...]:
        return tuple(self.prices)

    def plan_of_price(self, price: str | None) -> str | None:
        for plan, price_id in self.prices.items():
            if price_id == price:
                return plan
        return None

    def checkout(self, account: str, plan: str, *, success_url: str, cancel_url: str) -> str:
        """Create a Checkout Session for ``account`` buying ``plan``: the URL to send them to."""
        if plan not in self.prices:
            raise ValueError(f"{plan!r} is not for sale; ORION_STRIPE_PRICES offers {sorted(self.prices)}.")
        session = self.client.post(
            "/v1/checkout/sessions",
            {
                "mode": "subscription",
                "line_items": [{"price": self.prices[plan], "quantity": 1}],
                "success_url": success_url,
                "cancel_url": cancel_url,
                "client_reference_id": account,
                "metadata": {"account": account, "plan": plan},
                "subscription_data": {"metadata": {"account": account, "plan": plan}},
            },
        )
        url = session.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise StripeError(0, f"Stripe's checkout session has no usable url (got {url!r}).")
        return url


# -- webhook signatures --------------------------------------------------------------------


class SignatureError(BadInput):
    """A webhook whose Stripe-Signature is missing, malformed (400) or does not verify (401)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Stripe's v1 signature: hex HMAC-SHA256 of ``b"<timestamp>." + body`` with ``secret``.

    >>> sign("whsec_test", 1700000000, b'{"id":"evt_1"}')[:16]
    'c89214b5b5da833d'
    """
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The header Stripe would send (for tests and the stand-in)."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def verify(header: str | None, body: bytes, secrets: Sequence[str], *, now: float, tolerance: int = TOLERANCE) -> int:
    """Check a ``Stripe-Signature`` header against ``body``; its timestamp, or ``SignatureError``."""
    if header is None or not header.strip():
        raise SignatureError("Missing Stripe-Signature header: only Stripe's signed webhooks are accepted here.", 400)
    if len(header) > MAX_SIGNATURE_HEADER:
        raise SignatureError(
            f"The Stripe-Signature header is {len(header)} characters long; the limit is {MAX_SIGNATURE_HEADER}.", 400
        )
    stamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key:
            raise SignatureError(f"The Stripe-Signature header is garbled near {part.strip()[:40]!r}.", 400)
        if key == "t":
            stamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(stamps) != 1 or not re.fullmatch(r"[0-9]{1,12}", stamps[0]):
        raise SignatureError(
            "The Stripe-Signature header needs exactly one timestamp: t= and the time in Unix seconds.", 400
        )
    if not signatures or len(signatures) > MAX_SIGNATURES or not all(_HEX64.match(s) for s in signatures):
        raise SignatureError(
            f"The Stripe-Signature header needs 1 to {MAX_SIGNATURES} v1 signatures of 64 hex digits each.", 400
        )
    timestamp = int(stamps[0])
    skew = now - timestamp
    if abs(skew) > tolerance:
        when = f"{skew:.0f} s old" if skew > 0 else f"{-skew:.0f} s in the future"
        raise SignatureError(
            f"The webhook's timestamp is {when}; at most {tolerance} s either way is accepted "
            "(a replay, or a clock that needs NTP).",
            401,
        )
    matched = False
    for secret in secrets:
        expected = sign(secret, timestamp, body)
        for candidate in signatures:
            # Compare every pair, in constant time: how far a guess matched must not leak.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError(
            "The webhook's signature does not match its body: wrong signing secret, or the body "
            "was changed (even re-serialized) on the way.",
            401,
        )
    return timestamp


# -- webhook events → plan rows ------------------------------------------------------------


def parse_event(body: bytes) -> dict[str, Any]:
    """The event a verified body carries (``id``, ``type``, ``data.object``), or a 400."""
    try:
        event = json.loads(body)
    except ValueError:
        raise BadInput("The webhook body is not JSON.", 400) from None
    if not isinstance(event, dict):
        raise BadInput("The webhook body is not a JSON object.", 400)
    event_id, kind, data = event.get("id"), event.get("type"), event.get("data")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255:
        raise BadInput("The webhook event has no id.", 400)
    if not isinstance(kind, str) or not kind:
        raise BadInput(f"The webhook event {event_id!r} has no type.", 400)
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise BadInput(f"The webhook event {event_id!r} has no data.object.", 400)
    return event


def apply_event(rt: Runtime, billing: StripeBilling, event: dict[str, Any]) -> str:
    """Apply one verified event exactly once; what happened, in a few words."""
    ents = rt.entitlements
    assert ents is not None, "billing is on, so create_app() built rt.entitlements"
    store = ents.store
    kind, event_id = event["type"], event["id"]
    with store.tx():
        # The unique (source, event id) row is the whole "exactly once": a redelivery, or a
        # second copy racing this one, finds it. (The idempotency kernel will absorb this.)
        fresh, _ = store.exec(
            "INSERT OR IGNORE INTO _orion_webhook_events (source, event_id, type) VALUES (?, ?, ?)",
            (SOURCE, event_id, kind),
        )
        if not fresh:
            return f"duplicate: {event_id} was already handled"
        change = _plan_change(ents, billing, kind, event["data"]["object"])
        if isinstance(change, str):
            log.info("stripe event %s (%s) ignored: %s", event_id, kind, change)
            return f"ignored: {change}"
        account, plan, status, customer, subscription = change
        old = ents.set_plan(account, plan, status=status, customer=customer, subscription=subscription)
        if rt.journal is not None:
            rt.journal.record(
                action="billing.plan_changed",
                outcome="succeeded",
                reason=f"{kind} {event_id}: {old} -> {plan} ({status})",
                actor=SOURCE,
                target=f"account={account}",
            )
    return f"applied: account {account} is on {plan}"


def _plan_change(
    ents: Entitlements, billing: StripeBilling, kind: str, obj: dict[str, Any]
) -> tuple[str, str, str, str | None, str | None] | str:
    """(account, plan, status, customer, subscription) for an event we act on, or why not."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    customer = _str(obj.get("customer"))
    if kind == "checkout.session.completed":
        account = _str(obj.get("client_reference_id")) or _str(metadata.get("account"))
        plan = _str(metadata.get("plan"))
        if account is None or plan is None:
            return "the checkout session names no account or plan (not one of ours)"
        if plan not in billing.prices:
            return f"plan {plan!r} is not in ORION_STRIPE_PRICES"
        return account, plan, "active", customer, _str(obj.get("subscription"))
    if kind in ("customer.subscription.updated", "customer.subscription.deleted"):
        subscription = _str(obj.get("id"))
        account = _str(metadata.get("account")) or ents.account_for(subscription=subscription, customer=customer)
        if account is None:
            return f"subscription {subscription!r} belongs to no account we know"
        status = _str(obj.get("status")) or ("canceled" if kind.endswith("deleted") else "active")
        if kind.endswith("deleted") or status not in KEEPS_PLAN:
            return account, ents.default_plan, status, customer, subscription
        plan = billing.plan_of_price(_first_price(obj)) or _str(metadata.get("plan"))
        if plan is None or plan not in billing.prices:
            return f"subscription {subscription!r} is on a price that is in no plan of ORION_STRIPE_PRICES"
        return account, plan, status, customer, subscription
    return f"{kind} is not an event billing acts on"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _first_price(subscription: dict[str, Any]) -> str | None:
    try:
        price = subscription["items"]["data"][0]["price"]
        return _str(price["id"] if isinstance(price, dict) else price)
    except (KeyError, IndexError, TypeError):
        return None


@bp.post("/billing/stripe/webhook")
def webhook() -> Response:
    billing: StripeBilling = current_app.extensions["billing_stripe"]
    headers = request.headers.getlist("Stripe-Signature")
    if len(headers) > 1:
        raise SignatureError(f"Stripe-Signature was sent {len(headers)} times; Stripe sends it once.", 400)
    body = request.get_data(cache=False)  # the raw bytes: the signature covers exactly these
    verify(headers[0] if headers else None, body, billing.webhook_secrets, now=time.time())
    outcome = apply_event(runtime(), billing, parse_event(body))
    return Response(outcome + "\n", status=200, mimetype="text/plain")


# -- installing ----------------------------------------------------------------------------


def install(app: Flask, rt: Runtime) -> StripeBilling:
    """Hang the Stripe adapter on ``rt.billing`` and register the webhook route."""

    def setting(name: str, default: str = "") -> str:
        return str(app.config.get(name) or os.environ.get(name) or default)

    secret = setting("ORION_STRIPE_SECRET")
    secrets = tuple(s.strip() for s in setting("ORION_STRIPE_WEBHOOK_SECRET").split(",") if s.strip())
    prices = _prices(setting("ORION_STRIPE_PRICES"))
    for name, value in (("ORION_STRIPE_SECRET", secret), ("ORION_STRIPE_WEBHOOK_SECRET", secrets)):
        if not value:
            raise SystemExit(
                f"ORION_BILLING=stripe needs {name} (from Stripe's dashboard: Developers → API keys / "
                "Webhooks), or set ORION_BILLING=off."
            )
    client = StripeClient(
        setting("ORION_STRIPE_API", "https://api.stripe.com"),
        secret,
        breaker=breaker("stripe", threshold=5, cooloff=30.0, is_failure=is_failure),
    )
    billing = StripeBilling(client, prices, secrets)
    rt.billing = billing
    app.extensions["billing_stripe"] = billing
    app.register_blueprint(bp)
    return billing


def _prices(text: str) -> dict[str, str]:
    prices: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        plan, sep, price = pair.partition("=")
        if not sep or not plan.strip() or not price.strip():
            raise SystemExit(f"ORION_STRIPE_PRICES: {pair!r} is not plan=price_id (e.g. pro=price_123).")
        prices[plan.strip()] = price.strip()
    return prices
