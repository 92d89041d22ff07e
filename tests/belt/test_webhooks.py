"""app.belt.webhooks: signed deliveries to a real receiver on loopback (retries, dead letter),
and the verified, exactly-once receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.belt import Bus, Ctx, Store, install, jobs, settings, webhooks
from app.belt.runtime import Runtime
from tests.support.jobs_worker import MIGRATIONS, prepare


@dataclass
class Receiver:
    """A tiny HTTP server on loopback that records every POST and answers from a script."""

    answers: list[int] = field(default_factory=list)  # statuses to give, then 200
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            box.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = box.answers.pop(0) if box.answers else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"thanks" if status == 200 else b"not now")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/orion"
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    store = prepare(tmp_path / "app.sqlite")
    yield Runtime(store=store, bus=Bus())
    store.close()


def deliver_all(rt: Runtime) -> None:
    """Run every delivery now, skipping the backoff waits (the backoff is tested in test_jobs)."""
    runner = jobs.Runner(rt)
    while True:
        rt.store.exec("UPDATE _orion_jobs SET run_at = 0 WHERE state = 'queued'")
        if not runner.run_pending():
            return


def job_row(store: Store, job_id: int) -> dict[str, Any]:
    row = jobs.get(store, job_id)
    assert row is not None
    return dict(row)


def test_a_delivery_is_a_signed_post_the_receiver_can_verify(rt: Runtime, receiver: Receiver) -> None:
    ctx = rt.ctx()
    endpoint_id, secret = webhooks.register(ctx, "acct-1", receiver.url)
    assert secret.startswith("whsec_") and len(secret) > 40
    assert webhooks.register(ctx, "acct-1", receiver.url) == (endpoint_id, secret)  # again: same secret
    job_id = webhooks.send(ctx, receiver.url, "order.paid", {"order": 42})
    jobs.Runner(rt).run_pending()
    [got] = receiver.received
    assert got["path"] == "/hooks/orion"
    assert got["headers"]["Content-Type"] == "application/json"
    assert got["headers"]["Orion-Event"] == "order.paid"
    webhooks.verify(secret, got["headers"]["Orion-Signature"], got["body"])  # raises if wrong
    event = json.loads(got["body"])
    assert event["type"] == "order.paid" and event["data"] == {"order": 42} and event["id"].startswith("evt_")
    row = job_row(rt.store, job_id)
    assert (row["state"], json.loads(row["result"])) == ("done", {"status": 200, "attempt": 1})


def test_a_failing_endpoint_is_retried_with_the_same_event_then_succeeds(rt: Runtime, receiver: Receiver) -> None:
    ctx = rt.ctx()
    webhooks.register(ctx, "acct-1", receiver.url)
    receiver.answers = [500, 503]
    job_id = webhooks.send(ctx, receiver.url, "order.paid", {"order": 1})
    runner = jobs.Runner(rt)
    runner.run_pending()
    row = job_row(rt.store, job_id)
    assert row["state"] == "queued" and row["attempts"] == 1
    assert "answered 500: 'not now'" in row["last_error"]
    assert row["run_at"] - time.time() > 4  # backoff: about 10 s (5 to 10 with jitter)
    deliver_all(rt)
    assert job_row(rt.store, job_id)["state"] == "done"
    assert len(receiver.received) == 3
    ids = {json.loads(r["body"])["id"] for r in receiver.received}
    assert len(ids) == 1  # the receiver can dedupe retries on the event id
    assert [r["headers"]["Orion-Delivery"] for r in receiver.received] == [f"{job_id}.1", f"{job_id}.2", f"{job_id}.3"]


def test_an_endpoint_that_never_answers_2xx_ends_in_the_dead_letter(rt: Runtime, receiver: Receiver) -> None:
    ctx = rt.ctx()
    webhooks.register(ctx, "acct-1", receiver.url)
    receiver.answers = [410] * webhooks.MAX_ATTEMPTS
    job_id = webhooks.send(ctx, receiver.url, "order.paid", {})
    deliver_all(rt)
    row = job_row(rt.store, job_id)
    assert (row["state"], row["attempts"]) == ("dead", webhooks.MAX_ATTEMPTS)
    assert "DeliveryFailed" in row["last_error"] and "answered 410" in row["last_error"]


def test_an_unreachable_endpoint_fails_the_attempt(rt: Runtime) -> None:
    ctx = rt.ctx()
    webhooks.register(ctx, "acct-1", "http://127.0.0.1:9/nobody-listens")
    job_id = webhooks.send(ctx, "http://127.0.0.1:9/nobody-listens", "x", {})
    jobs.Runner(rt).run_pending()
    row = job_row(rt.store, job_id)
    assert row["state"] == "queued" and "ConnectionRefusedError" in row["last_error"]


def test_sending_commits_with_the_transaction_and_needs_a_registered_endpoint(rt: Runtime, receiver: Receiver) -> None:
    ctx = rt.ctx()
    with pytest.raises(LookupError, match="register it first"):
        webhooks.send(ctx, receiver.url, "order.paid", {})
    webhooks.register(ctx, "acct-1", receiver.url)
    with pytest.raises(RuntimeError), ctx.store.tx():
        webhooks.send(ctx, receiver.url, "order.paid", {})
        raise RuntimeError("the order was not saved after all")
    assert ctx.store.query("SELECT * FROM _orion_jobs") == ()
    with pytest.raises(ValueError, match="http\\(s\\) URL"):
        webhooks.register(ctx, "acct-1", "ftp://example.com/x")


def test_publish_goes_to_the_accounts_endpoints_that_want_the_event(rt: Runtime, receiver: Receiver) -> None:
    ctx = rt.ctx()
    webhooks.register(ctx, "acct-1", receiver.url + "?all", events="*")
    webhooks.register(ctx, "acct-1", receiver.url + "?paid", events="order.paid, order.refunded")
    webhooks.register(ctx, "acct-1", receiver.url + "?other", events="user.created")
    off, _ = webhooks.register(ctx, "acct-1", receiver.url + "?off")
    webhooks.deactivate(ctx, off)
    webhooks.register(ctx, "acct-2", receiver.url + "?someone-else")
    assert len(webhooks.publish(ctx, "acct-1", "order.paid", {"n": 1})) == 2
    jobs.Runner(rt).run_pending()
    assert sorted(r["path"].split("?")[1] for r in receiver.received) == ["all", "paid"]


def test_verify_refuses_forgeries_replays_and_accepts_a_rotated_secret() -> None:
    body = b'{"id":"evt_1"}'
    header = webhooks.sign("new-secret", body)
    assert webhooks.verify(["old-secret", "new-secret"], header, body)
    with pytest.raises(webhooks.InvalidSignature, match="No v1 signature matches"):
        webhooks.verify("old-secret", header, body)
    with pytest.raises(webhooks.InvalidSignature, match="No v1 signature matches"):
        webhooks.verify("new-secret", header, b'{"id":"evt_2"}')
    with pytest.raises(webhooks.InvalidSignature, match="a replay"):
        webhooks.verify("new-secret", webhooks.sign("new-secret", body, timestamp=int(time.time()) - 3600), body)
    with pytest.raises(webhooks.InvalidSignature, match="no signature header"):
        webhooks.verify("new-secret", None, body)
    with pytest.raises(webhooks.InvalidSignature, match="no timestamp"):
        webhooks.verify("new-secret", "v1=abc", body)
    # two signatures in one header (the sender is rotating): either may match
    old = webhooks.sign("old-secret", body)
    both = old + "," + header.split(",")[1]
    assert webhooks.verify("new-secret", both, body)


# in


def receiving_app(tmp_path: Path) -> tuple[Flask, Store, list[dict[str, Any]]]:
    app = Flask("hooks")
    cfg = settings(app, {"ORION_DB": str(tmp_path / "in.sqlite"), "SECRET_KEY": "x", "ORION_AUDIT_JSONL": ""})
    store = Store(cfg["ORION_DB"])
    store.migrate("orion", MIGRATIONS)
    store.exec("CREATE TABLE payments (event TEXT, amount INTEGER)")
    applied: list[dict[str, Any]] = []
    install(app, store, Bus(), csrf_exempt={"partner"})

    @app.post("/hooks/partner", endpoint="partner")
    @webhooks.receiver("whsec_partner", source="partner")
    def partner(ctx: Ctx, event: dict[str, Any]) -> None:
        ctx.store.exec("INSERT INTO payments VALUES (?, ?)", (event["id"], event["data"]["amount"]))
        applied.append(event)
        if event["data"].get("explode"):
            raise RuntimeError("the effect failed")

    return app, store, applied


def test_the_receiver_verifies_and_applies_each_event_once(tmp_path: Path, rt: Runtime, receiver: Receiver) -> None:
    app, store, applied = receiving_app(tmp_path)
    client = app.test_client()
    try:
        # a delivery made by our own sender, replayed into the receiver
        webhooks.register(rt.ctx(), "partner", receiver.url)
        secret = rt.store.one("SELECT secret FROM _orion_webhook_endpoints")["secret"]  # type: ignore[index]
        webhooks.send(rt.ctx(), receiver.url, "payment", {"amount": 5})
        jobs.Runner(rt).run_pending()
        [sent] = receiver.received
        resign = {"Orion-Signature": webhooks.sign("whsec_partner", sent["body"]), "Content-Type": "application/json"}
        assert webhooks.verify(secret, sent["headers"]["Orion-Signature"], sent["body"])

        first = client.post("/hooks/partner", data=sent["body"], headers=resign)
        assert first.status_code == 200 and first.text.startswith("ok: evt_")
        again = client.post("/hooks/partner", data=sent["body"], headers=resign)
        assert again.status_code == 200 and again.text.startswith("duplicate: evt_")
        assert [r["amount"] for r in store.query("SELECT amount FROM payments")] == [5]
        assert len(applied) == 1

        forged = client.post("/hooks/partner", data=sent["body"], headers={**resign, "Orion-Signature": "t=1,v1=00"})
        assert forged.status_code == 400 and "away from now" in forged.text
        unsigned = client.post("/hooks/partner", data=sent["body"])
        assert unsigned.status_code == 400 and "no signature header" in unsigned.text
        not_json = b"{nope"
        bad = client.post(
            "/hooks/partner", data=not_json, headers={"Orion-Signature": webhooks.sign("whsec_partner", not_json)}
        )
        assert bad.status_code == 400 and "not JSON" in bad.text
    finally:
        store.close()


def test_an_event_whose_effect_fails_is_not_recorded_so_the_redelivery_applies_it(tmp_path: Path) -> None:
    app, store, _ = receiving_app(tmp_path)
    client = app.test_client()
    try:
        body = json.dumps({"id": "evt_9", "type": "payment", "data": {"amount": 1, "explode": True}}).encode()
        headers = {"Orion-Signature": webhooks.sign("whsec_partner", body)}
        assert client.post("/hooks/partner", data=body, headers=headers).status_code == 500
        assert store.query("SELECT * FROM payments") == ()
        assert store.query("SELECT * FROM _orion_idempotency") == ()
        fixed = json.dumps({"id": "evt_9", "type": "payment", "data": {"amount": 1}}).encode()
        answer = client.post(
            "/hooks/partner", data=fixed, headers={"Orion-Signature": webhooks.sign("whsec_partner", fixed)}
        )
        assert answer.status_code == 200
        assert [r["event"] for r in store.query("SELECT event FROM payments")] == ["evt_9"]
    finally:
        store.close()
