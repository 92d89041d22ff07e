"""app.belt.entitlements: capabilities from plans, cached, Watchable per account; step 3's 402."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from flask import Flask

from app.belt.audit import Journal
from app.belt.auth import Auth, User
from app.belt.boot import install, settings
from app.belt.bus import Bus
from app.belt.command import Refused, command, required_capability
from app.belt.ctx import Ctx
from app.belt.entitlements import Entitlements, entitled, entitlements_watch
from app.belt.runtime import Runtime
from app.belt.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db.sqlite")
    s.migrate("orion", ROOT / "migrations")
    s.exec("INSERT INTO _orion_plan_capabilities (plan, capability) VALUES ('pro', 'todos.export'), ('pro', 'api')")
    yield s
    s.close()


@pytest.fixture
def ents(store: Store) -> Entitlements:
    return Entitlements(store, Bus(), account_of=lambda ctx: ctx.extra.get("account"))


def test_capabilities_come_from_the_plan(ents: Entitlements) -> None:
    assert ents.plan("ann") == "free"  # no row: the default plan
    assert not ents.entitled("ann", "todos.export")
    ents.set_plan("ann", "pro")
    assert ents.plan("ann") == "pro" and ents.entitled("ann", "todos.export") and ents.entitled("ann", "api")
    assert not ents.entitled("ann", "sso")
    assert not ents.entitled(None, "todos.export")
    assert ents.plans() == {"pro": frozenset({"todos.export", "api"})}


def test_re_tiering_a_plan_is_one_row(store: Store, ents: Entitlements) -> None:
    assert not ents.entitled("bob", "todos.export")
    store.exec("INSERT INTO _orion_plan_capabilities (plan, capability) VALUES ('free', 'todos.export')")
    ents.invalidate()  # what the bus (or the TTL) does for a change made by hand
    assert ents.entitled("bob", "todos.export")


def test_answers_are_cached(store: Store, ents: Entitlements) -> None:
    ents.set_plan("ann", "pro")
    ents.entitled("ann", "api")
    reads = store.stats.queries + store.stats.memo_hits
    for _ in range(1_000):
        assert ents.entitled("ann", "todos.export")
    assert store.stats.queries + store.stats.memo_hits == reads


def test_an_upgrade_wakes_that_accounts_watchers_after_commit(store: Store, ents: Entitlements) -> None:
    woke: list[str] = []
    stops = [
        ents.watch("ann").subscribe(lambda: woke.append("ann")),
        ents.watch("bob").subscribe(lambda: woke.append("bob")),
    ]
    with store.tx():
        ents.set_plan("ann", "pro", customer="cus_1", subscription="sub_1")
        assert woke == []  # not before the commit: a repaint would read the old plan
    assert woke == ["ann"]
    with pytest.raises(RuntimeError), store.tx():
        ents.set_plan("bob", "pro")
        raise RuntimeError("rolled back")
    assert woke == ["ann"] and ents.plan("bob") == "free"
    assert ents.account_for(subscription="sub_1") == "ann" and ents.account_for(customer="cus_1") == "ann"
    assert ents.account_for(subscription="sub_x") is None
    for stop in stops:
        stop()


def test_another_process_upgrade_reaches_watchers_through_the_bus(store: Store, ents: Entitlements) -> None:
    other_store = Store(store.path)
    try:
        other = Entitlements(other_store, ents.bus, account_of=lambda ctx: None)
        assert other.plan("ann") == "free"
        woke: list[str] = []
        stop = other.watch("ann").subscribe(lambda: woke.append("ann"))
        ents.set_plan("ann", "pro")
        assert woke == ["ann"] and other.plan("ann") == "pro"
        stop()
        assert ents.bus is not None and ents.bus.subscriber_count("entitlements") == 0
    finally:
        other_store.close()


def test_the_ctx_helpers_are_open_when_billing_is_off(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    ctx = rt.ctx()
    assert rt.entitlements is None and rt.entitlement is None
    assert entitled(ctx, "anything") is True
    assert entitlements_watch(ctx).subscribe(lambda: None)() is None
    rt.store.close()


# -- step 3 of the command pipeline -----------------------------------------------------------


def _runtime(tmp_path: Path) -> Runtime:
    app = Flask(__name__)
    cfg = settings(
        app,
        {"ORION_DB": str(tmp_path / "app.sqlite"), "ORION_AUDIT_JSONL": "", "SECRET_KEY": "x", "ORION_TENANCY": "off"},
    )
    store = Store(cfg["ORION_DB"])
    rt = install(app, store, Bus())
    store.migrate("orion", ROOT / "migrations")
    rt.app = app  # type: ignore[attr-defined]
    return rt


@pytest.fixture
def billed(tmp_path: Path) -> Iterator[tuple[Flask, Runtime, list[str]]]:
    rt = _runtime(tmp_path)
    app: Flask = rt.app  # type: ignore[attr-defined]
    owner = User("local", "owner@localhost", role="owner", local=True)
    rt.auth = Auth(rt.store, lambda store, uid: None, mode="local", local_identity=owner)
    rt.journal = Journal(rt.store)
    rt.entitlements = Entitlements(rt.store, rt.bus, account_of=lambda ctx: "local")
    rt.entitlement = rt.entitlements.check
    rt.store.exec("INSERT INTO _orion_plan_capabilities (plan, capability) VALUES ('pro', 'reports')")
    ran: list[str] = []

    def export(ctx: Ctx, data: Any, respond: Any) -> None:
        ran.append("export")

    def plain(ctx: Ctx, data: Any, respond: Any) -> None:
        ran.append("plain")

    app.add_url_rule("/export", "export", command(export, action="test.export", capability="reports"), methods=["POST"])
    app.add_url_rule("/plain", "plain", command(plain, action="test.plain"), methods=["POST"])
    yield app, rt, ran
    rt.store.close()


def test_a_command_needing_a_capability_answers_402_without_it(billed: tuple[Flask, Runtime, list[str]]) -> None:
    app, rt, ran = billed
    assert required_capability("test.export") == "reports" and required_capability("test.plain") is None
    client = app.test_client()
    answer = client.post("/export", json={})
    assert answer.status_code == 402 and ran == []
    assert "Your plan (free) does not include reports" in answer.get_data(as_text=True)
    # Journaled: the started record got its outcome, "denied", with the reason.
    records = rt.store.query("SELECT action, outcome, reason FROM _orion_audit ORDER BY seq")
    assert [(r["action"], r["outcome"]) for r in records] == [("test.export", "started"), ("test.export", "denied")]
    assert "does not include reports" in records[-1]["reason"]
    # A command that needs no capability runs on any plan.
    assert client.post("/plain", json={}).status_code == 204 and ran == ["plain"]


def test_after_an_upgrade_the_same_command_runs(billed: tuple[Flask, Runtime, list[str]]) -> None:
    app, rt, ran = billed
    assert rt.entitlements is not None
    rt.entitlements.set_plan("local", "pro")
    assert app.test_client().post("/export", json={}).status_code == 204 and ran == ["export"]


def test_a_datastar_client_sees_the_402_as_a_toast(billed: tuple[Flask, Runtime, list[str]]) -> None:
    app, _, ran = billed
    answer = app.test_client().post("/export", json={}, headers={"Datastar-Request": "true"})
    assert answer.status_code == 200 and ran == []
    assert "toast-error" in answer.get_data(as_text=True) and "Upgrade" in answer.get_data(as_text=True)


def test_billing_off_the_check_never_runs(billed: tuple[Flask, Runtime, list[str]]) -> None:
    app, rt, ran = billed
    rt.entitlement = None  # what create_app leaves when ORION_BILLING is off
    assert app.test_client().post("/export", json={}).status_code == 204 and ran == ["export"]


def test_check_refuses_with_402(ents: Entitlements, store: Store) -> None:
    command(lambda ctx, data, respond: None, action="test.sso", capability="sso")
    ctx = Ctx(store=store, bus=None, extra={"account": "ann"})  # type: ignore[arg-type]
    with pytest.raises(Refused) as refused:
        ents.check(ctx, "test.sso")
    assert refused.value.code == 402
    ents.check(ctx, "test.not-gated")  # no capability needed: passes
    gevent.sleep(0)
