"""app/recipes/billing_stripe.py: signatures (known answers), the breaker-wrapped client against a
stand-in on loopback, events → plan rows exactly once, the webhook's bad input over real sockets,
and a self-host run (billing off) that never touches billing code."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.belt.audit import Journal
from app.belt.breaker import Breaker, CircuitOpen
from app.belt.bus import Bus
from app.belt.entitlements import Entitlements
from app.belt.runtime import Runtime
from app.belt.store import Store
from app.recipes.billing_stripe import (
    SignatureError,
    StripeBilling,
    StripeClient,
    StripeError,
    apply_event,
    form_encode,
    is_failure,
    sign,
    verify,
)
from tests.support.accounts import HTML, call, query, serving
from tests.support.server import LiveServer
from tests.support.stripe import StripeStandIn, event, post_webhook, send_event
from tests.support.stripe import sign as independent_sign

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_test_secret"
NOW = 1_700_000_000


# -- signatures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "expected"),
    [
        # Computed with `printf '<t>.<body>' | openssl dgst -sha256 -hmac <secret>`.
        (
            "whsec_test",
            1700000000,
            b'{"id":"evt_1"}',
            "c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925",
        ),
        (
            "whsec_test_secret",
            1492774577,
            b'{"id": "evt_test_webhook", "object": "event"}',
            "c137b1b62277d523cf8fed4dfbd0170a9a5b8a380e00cc3711d4bf0652f2ce7a",
        ),
    ],
    ids=["compact", "stripe-docs-shape"],
)
def test_the_v1_signature_known_answers(secret: str, timestamp: int, body: bytes, expected: str) -> None:
    assert sign(secret, timestamp, body) == expected
    assert independent_sign(secret, timestamp, body) == expected


BODY = b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {}}}'
GOOD = sign(SECRET, NOW, BODY)


@pytest.mark.parametrize(
    ("header", "body", "status"),
    [
        (None, BODY, 400),
        ("", BODY, 400),
        ("t1700000000v1abc", BODY, 400),
        (f"t={NOW},t={NOW},v1={GOOD}", BODY, 400),
        (f"v1={GOOD}", BODY, 400),
        (f"t=yesterday,v1={GOOD}", BODY, 400),
        (f"t={NOW},v0={GOOD}", BODY, 400),
        (f"t={NOW},v1={'z' * 64}", BODY, 400),
        (f"t={NOW},v1={GOOD[:-1]}", BODY, 400),
        (f"t={NOW}," + ",".join(f"v1={GOOD}" for _ in range(17)), BODY, 400),
        (f"t={NOW},v1={GOOD}," + "x" * 10_000, BODY, 400),
        (f"t={NOW - 301},v1={sign(SECRET, NOW - 301, BODY)}", BODY, 401),
        (f"t={NOW + 301},v1={sign(SECRET, NOW + 301, BODY)}", BODY, 401),
        (f"t={NOW},v1={sign('whsec_someone_else', NOW, BODY)}", BODY, 401),
        (f"t={NOW},v1={GOOD}", json.dumps(json.loads(BODY), indent=2).encode(), 401),
        (f"t={NOW},v1={GOOD}", json.dumps(json.loads(BODY), separators=(",", ":")).encode(), 401),
        (f"t={NOW + 1},v1={GOOD}", BODY, 401),
    ],
    ids=[
        "missing",
        "empty",
        "garbled",
        "two-timestamps",
        "no-timestamp",
        "timestamp-not-a-number",
        "no-v1",
        "v1-not-hex",
        "v1-too-short",
        "too-many-v1",
        "10kB-header",
        "301s-old",
        "301s-in-the-future",
        "wrong-secret",
        "body-re-serialized-indented",
        "body-re-serialized-compact",
        "timestamp-swapped",
    ],
)
def test_a_bad_signature_header_is_a_clear_4xx(header: str | None, body: bytes, status: int) -> None:
    with pytest.raises(SignatureError) as refused:
        verify(header, body, [SECRET], now=NOW)
    assert refused.value.code == status
    assert refused.value.message.endswith(".")


@pytest.mark.parametrize("skew", [-300, 0, 300], ids=["300s-future", "now", "300s-old"])
def test_a_good_signature_verifies_within_the_tolerance(skew: int) -> None:
    t = NOW - skew
    assert verify(f"t={t},v1={sign(SECRET, t, BODY)}", BODY, [SECRET], now=NOW) == t


def test_any_matching_v1_is_accepted_so_secrets_can_roll() -> None:
    old, new = "whsec_old", "whsec_new"
    rolling = f"t={NOW},v1={sign(old, NOW, BODY)},v1={sign(new, NOW, BODY)}"
    assert verify(rolling, BODY, [new], now=NOW) == NOW  # Stripe signs with both while rolling
    assert verify(f"t={NOW},v1={sign(old, NOW, BODY)}", BODY, [new, old], now=NOW) == NOW  # we hold both
    with pytest.raises(SignatureError):
        verify(f"t={NOW},v1={sign(old, NOW, BODY)}", BODY, [new], now=NOW)


# -- the client through its breaker, against the stand-in -------------------------------------


@pytest.fixture
def stand_in() -> Iterator[StripeStandIn]:
    with StripeStandIn(webhook_secret=SECRET) as s:
        yield s


def billing(stand_in: StripeStandIn, breaker: Breaker | None = None) -> StripeBilling:
    b = breaker or Breaker("stripe-test", threshold=2, cooloff=30, is_failure=is_failure)
    return StripeBilling(
        StripeClient(stand_in.url, "sk_test_123", breaker=b, timeout=5), {"pro": "price_pro"}, (SECRET,)
    )


def test_checkout_posts_a_subscription_session_for_the_account(stand_in: StripeStandIn) -> None:
    url = billing(stand_in).checkout("42", "pro", success_url="http://app/billing?ok", cancel_url="http://app/billing")
    assert url.startswith(stand_in.url + "/pay/cs_test_")
    [req] = stand_in.requests
    assert req["path"] == "/v1/checkout/sessions"
    assert req["headers"]["Authorization"] == "Bearer sk_test_123"
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert req["headers"]["Idempotency-Key"]
    assert req["form"] == {
        "mode": "subscription",
        "line_items[0][price]": "price_pro",
        "line_items[0][quantity]": "1",
        "success_url": "http://app/billing?ok",
        "cancel_url": "http://app/billing",
        "client_reference_id": "42",
        "metadata[account]": "42",
        "metadata[plan]": "pro",
        "subscription_data[metadata][account]": "42",
        "subscription_data[metadata][plan]": "pro",
    }


def test_a_4xx_from_stripe_never_trips_the_breaker(stand_in: StripeStandIn) -> None:
    stand_in.fail_with = 400
    b = billing(stand_in)
    for _ in range(5):
        with pytest.raises(StripeError, match="Stripe answered 400: stand-in told to fail"):
            b.checkout("42", "pro", success_url="http://a/", cancel_url="http://a/")
    assert b.breaker.state == "closed" and len(stand_in.requests) == 5


@pytest.mark.parametrize("status", [500, 503, 429])
def test_outages_open_the_breaker_and_then_nothing_is_sent(stand_in: StripeStandIn, status: int) -> None:
    stand_in.fail_with = status
    b = billing(stand_in)
    for _ in range(2):
        with pytest.raises(StripeError):
            b.checkout("42", "pro", success_url="http://a/", cancel_url="http://a/")
    assert b.breaker.state == "open"
    with pytest.raises(CircuitOpen):
        b.checkout("42", "pro", success_url="http://a/", cancel_url="http://a/")
    assert len(stand_in.requests) == 2  # failed fast: the third never left


def test_an_unreachable_stripe_is_a_failure() -> None:
    b = StripeClient("http://127.0.0.1:9", "sk", breaker=Breaker("unreachable", threshold=1, cooloff=30), timeout=2)
    with pytest.raises(StripeError, match="could not be reached"):
        b.post("/v1/checkout/sessions", {})
    assert b.breaker.state == "open"


def test_form_encoding_matches_stripes() -> None:
    assert form_encode({"a": True, "b": None, "c": ["x", "y"], "d": {"e": {"f": 1}}}) == [
        ("a", "true"),
        ("c[0]", "x"),
        ("c[1]", "y"),
        ("d[e][f]", "1"),
    ]


# -- events → plan rows, exactly once ---------------------------------------------------------


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    store = Store(tmp_path / "app.sqlite")
    store.migrate("orion", ROOT / "migrations")
    store.exec("INSERT INTO _orion_plan_capabilities (plan, capability) VALUES ('pro', 'todos.export')")
    runtime = Runtime(store=store, bus=Bus())
    runtime.journal = Journal(store)
    runtime.entitlements = Entitlements(store, runtime.bus, account_of=lambda ctx: None)
    yield runtime
    store.close()


def completed(account: str = "42", plan: str = "pro", event_id: str | None = None) -> dict[str, Any]:
    obj = {
        "client_reference_id": account,
        "customer": f"cus_{account}",
        "subscription": f"sub_{account}",
        "metadata": {"account": account, "plan": plan},
    }
    return event("checkout.session.completed", obj, event_id)


def subscription(kind: str, account: str = "42", *, status: str = "active", price: str = "price_pro") -> dict[str, Any]:
    obj = {
        "id": f"sub_{account}",
        "customer": f"cus_{account}",
        "status": status,
        "metadata": {},
        "items": {"data": [{"price": {"id": price}}]},
    }
    return event(kind, obj)


def changes(rt: Runtime) -> list[str]:
    return [
        r["reason"] for r in rt.store.query("SELECT reason FROM _orion_audit WHERE action = 'billing.plan_changed'")
    ]


def test_a_completed_checkout_puts_the_account_on_the_plan_once(rt: Runtime, stand_in: StripeStandIn) -> None:
    b = billing(stand_in)
    assert rt.entitlements is not None
    first = completed(event_id="evt_once")
    assert apply_event(rt, b, first) == "applied: account 42 is on pro"
    assert rt.entitlements.entitled("42", "todos.export")
    assert apply_event(rt, b, first) == "duplicate: evt_once was already handled"
    assert len(changes(rt)) == 1 and "evt_once: free -> pro (active)" in changes(rt)[0]


@pytest.mark.parametrize(
    ("kind", "status", "plan"),
    [
        ("customer.subscription.updated", "active", "pro"),
        ("customer.subscription.updated", "past_due", "pro"),
        ("customer.subscription.updated", "canceled", "free"),
        ("customer.subscription.updated", "unpaid", "free"),
        ("customer.subscription.deleted", "canceled", "free"),
    ],
    ids=["updated-active", "updated-past-due-keeps", "updated-canceled", "updated-unpaid", "deleted"],
)
def test_subscription_events_move_the_account(
    rt: Runtime, stand_in: StripeStandIn, kind: str, status: str, plan: str
) -> None:
    b = billing(stand_in)
    assert rt.entitlements is not None
    apply_event(rt, b, completed())
    assert apply_event(rt, b, subscription(kind, status=status)).startswith("applied")
    assert rt.entitlements.plan("42") == plan


@pytest.mark.parametrize(
    ("evt", "why"),
    [
        (subscription("customer.subscription.updated", account="nobody"), "belongs to no account"),
        (subscription("customer.subscription.updated", price="price_unknown"), "in no plan"),
        (completed(plan="platinum"), "not in ORION_STRIPE_PRICES"),
        (event("checkout.session.completed", {"metadata": {}}), "names no account"),
        (event("invoice.paid", {"id": "in_1"}), "not an event billing acts on"),
    ],
    ids=["unknown-subscription", "unknown-price", "unknown-plan", "not-ours", "other-type"],
)
def test_events_we_cannot_act_on_are_acknowledged_and_change_nothing(
    rt: Runtime, stand_in: StripeStandIn, evt: dict[str, Any], why: str
) -> None:
    b = billing(stand_in)
    assert rt.entitlements is not None
    if evt["data"]["object"].get("id") == "sub_42":
        apply_event(rt, b, completed())
    before = changes(rt)
    outcome = apply_event(rt, b, evt)
    assert outcome.startswith("ignored") and why in outcome
    assert changes(rt) == before


# -- the webhook over real sockets ------------------------------------------------------------

ON = {
    "ORION_BILLING": "stripe",
    "ORION_STRIPE_SECRET": "sk_test_123",
    "ORION_STRIPE_WEBHOOK_SECRET": SECRET,
    "ORION_STRIPE_PRICES": "pro=price_pro",
    "ORION_STRIPE_API": "http://127.0.0.1:9",  # nothing here calls out
}


@pytest.fixture(scope="module")
def billed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("stripe"), ON) as server:
        yield server


def handled(server: LiveServer) -> int:
    return len(query(server, "SELECT * FROM _orion_webhook_events"))


Case = tuple[list[tuple[str, str]], bytes, int]


def webhook_case(name: str) -> Case:
    """One bad webhook, built when the test runs (its timestamps are "now" then)."""
    now = time.time()
    t = int(now)
    old, future = math.floor(now) - 301, math.ceil(now) + 301  # never within 300 s, however it rounds
    body = json.dumps(completed(account="mallory")).encode()
    good = f"t={t},v1={sign(SECRET, t, body)}"

    def signed(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
        return [("Stripe-Signature", f"t={t},v1={sign(SECRET, t, raw)}")], raw

    cases: dict[str, Case] = {
        "missing-header": ([], body, 400),
        "duplicated-header": ([("Stripe-Signature", good), ("Stripe-Signature", good)], body, 400),
        "garbled-header": ([("Stripe-Signature", "t=,v1=;DROP")], body, 400),
        "5kB-header": ([("Stripe-Signature", good + ",x=" + "a" * 5_000)], body, 400),
        # Past gunicorn's header limit (8190 bytes): it answers 431 before the app sees it.
        "10kB-header": ([("Stripe-Signature", good + ",x=" + "a" * 10_000)], body, 431),
        "301s-old": ([("Stripe-Signature", f"t={old},v1={sign(SECRET, old, body)}")], body, 401),
        "301s-in-the-future": ([("Stripe-Signature", f"t={future},v1={sign(SECRET, future, body)}")], body, 401),
        "body-re-serialized": ([("Stripe-Signature", good)], json.dumps(json.loads(body), indent=1).encode(), 401),
        "wrong-secret": ([("Stripe-Signature", f"t={t},v1={sign('whsec_guess', t, body)}")], body, 401),
        "signed-not-json": (*signed(b"not json"), 400),
        "signed-not-an-object": (*signed(b"[1, 2]"), 400),
        "signed-without-id": (*signed(b'{"type": "checkout.session.completed", "data": {"object": {}}}'), 400),
        "signed-without-data": (*signed(b'{"id": "evt_x", "type": "checkout.session.completed"}'), 400),
    }
    return cases[name]


WEBHOOK_CASES = [
    "missing-header",
    "duplicated-header",
    "garbled-header",
    "5kB-header",
    "10kB-header",
    "301s-old",
    "301s-in-the-future",
    "body-re-serialized",
    "wrong-secret",
    "signed-not-json",
    "signed-not-an-object",
    "signed-without-id",
    "signed-without-data",
]


@pytest.mark.parametrize("case", WEBHOOK_CASES)
def test_a_bad_webhook_is_a_clear_4xx_and_changes_nothing(billed: LiveServer, case: str) -> None:
    headers, body, status = webhook_case(case)
    before = handled(billed)
    got, text = post_webhook(billed.url, body, headers)
    assert got == status, text
    assert handled(billed) == before
    assert not query(billed, "SELECT * FROM _orion_account_plans WHERE account = 'mallory'")


def test_a_replayed_event_is_acknowledged_and_applied_once(billed: LiveServer) -> None:
    evt = completed(account="7", event_id="evt_replayed")
    assert send_event(billed.url, evt, SECRET) == (200, "applied: account 7 is on pro\n")
    # Stripe redelivers (a lost answer, a retry): freshly signed, same event id.
    assert send_event(billed.url, evt, SECRET) == (200, "duplicate: evt_replayed was already handled\n")
    [row] = query(billed, "SELECT plan FROM _orion_account_plans WHERE account = '7'")
    assert row["plan"] == "pro"
    records = query(billed, "SELECT actor, target FROM _orion_audit WHERE action = 'billing.plan_changed'")
    assert [(r["actor"], r["target"]) for r in records] == [("stripe", "account=7")]


def test_the_webhook_is_on_the_csrf_exemption_list(billed: LiveServer) -> None:
    evt = completed(account="8")
    body = json.dumps(evt).encode()
    now = int(time.time())
    headers = {
        "Stripe-Signature": f"t={now},v1={sign(SECRET, now, body)}",
        "Sec-Fetch-Site": "cross-site",  # Stripe is another site: its signature vouches for it
        "Origin": "https://stripe.com",
    }
    assert post_webhook(billed.url, body, headers)[0] == 200
    # ...and only the webhook: a command posted cross-site is still refused.
    assert call(billed, "POST", "/billing/upgrade", {"plan": "pro"}, {"Sec-Fetch-Site": "cross-site"}).status == 403


# -- billing off: no billing code at all ------------------------------------------------------


def test_a_self_host_run_never_touches_billing(tmp_path: Path, stand_in: StripeStandIn) -> None:
    # Every Stripe setting present but ORION_BILLING unset: still off.
    env = {**ON, "ORION_STRIPE_API": stand_in.url, "ORION_BILLING": ""}
    stand_in.app_url = None
    with serving(tmp_path, env) as server:
        page = call(server, "GET", "/", headers=HTML).text
        assert 'href="todos/export.csv"' in page  # every capability is included
        assert call(server, "GET", "/todos/export.csv").status == 200
        assert "Billing is off" in call(server, "GET", "/billing", headers=HTML).text
        assert call(server, "POST", "/billing/upgrade", {"plan": "pro"}).status == 404
        assert send_event(server.url, completed(account="local"), SECRET)[0] == 404  # no webhook route
    assert stand_in.requests == []
    # And the recipe is never even imported: create_app() with billing off leaves it out.
    probe = (
        "import sys; from app import create_app; "
        f"create_app({{'ORION_DB': {str(tmp_path / 'probe.sqlite')!r}, 'ORION_AUDIT_JSONL': '', "
        "'ORION_TENANCY': 'off', 'ORION_AUTH': 'local', "
        f"'ORION_IDENTITY_FILE': {str(tmp_path / 'id.json')!r}}}); "
        "print('app.recipes.billing_stripe' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "SECRET_KEY": "x"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
