"""app.belt.idempotency: Idempotency-Key on commands, and event ids recorded with their effect."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.belt import Bus, Ctx, Respond, Store, command, idempotency, install, settings, shape

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
DATASTAR = {"Datastar-Request": "true", "Content-Type": "application/json"}
BEHAVIOUR: dict[str, Any] = {}


def place(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    if BEHAVIOUR.get("crash"):
        BEHAVIOUR["crash"] -= 1
        raise RuntimeError("the effect crashed")
    with ctx.store.tx():
        _, order_id = ctx.store.exec("INSERT INTO orders (item) VALUES (?)", (data["item"],))
    gevent.sleep(BEHAVIOUR.get("slow", 0))  # answering takes a while (after the commit)
    respond.signals(order=order_id)


def note(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    ctx.store.exec("INSERT INTO orders (item) VALUES ('note')")


ITEM = shape.obj(item=shape.text(min=1, max=50))


def make_app(tmp_path: Path, *, everywhere: bool = False, wait: float = 2.0) -> tuple[Flask, Store]:
    app = Flask("idem")
    cfg = settings(app, {"ORION_DB": str(tmp_path / "app.sqlite"), "SECRET_KEY": "x", "ORION_AUDIT_JSONL": ""})
    store = Store(cfg["ORION_DB"])
    store.migrate("orion", MIGRATIONS)
    store.exec("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)")
    install(app, store, Bus())
    idempotency.install(app, everywhere=everywhere, wait=wait)
    app.add_url_rule("/orders", "place", idempotency.idempotent(command(place, shape=ITEM)), methods=["POST"])
    app.add_url_rule("/notes", "note", command(note), methods=["POST"])
    return app, store


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[FlaskClient, Store]]:
    BEHAVIOUR.clear()
    flask_app, store = make_app(tmp_path)
    yield flask_app.test_client(), store
    store.close()


def post(client: FlaskClient, body: dict[str, Any], key: str | None = "key-1", path: str = "/orders") -> Any:
    headers = dict(DATASTAR)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(path, data=json.dumps(body), headers=headers)


def orders(store: Store) -> list[str]:
    return [r["item"] for r in store.query("SELECT item FROM orders ORDER BY id")]


def test_a_retried_request_gets_the_stored_response_without_running_again(app: tuple[FlaskClient, Store]) -> None:
    client, store = app
    first = post(client, {"item": "tea"})
    assert first.status_code == 200 and '"order":1' in first.text
    assert "Idempotent-Replayed" not in first.headers
    again = post(client, {"item": "tea"})
    assert again.status_code == 200
    assert again.text == first.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert orders(store) == ["tea"]
    # another key is another request
    assert '"order":2' in post(client, {"item": "tea"}, key="key-2").text
    # and without a key nothing changes
    post(client, {"item": "tea"}, key=None)
    assert orders(store) == ["tea", "tea", "tea"]


def test_the_same_key_with_a_different_body_is_refused_with_422(app: tuple[FlaskClient, Store]) -> None:
    client, store = app
    post(client, {"item": "tea"})
    answer = post(client, {"item": "coffee"})
    assert answer.status_code == 422
    assert "already used for a different request" in answer.text
    assert orders(store) == ["tea"]


def test_concurrent_duplicates_run_once_and_the_second_waits_for_the_first(app: tuple[FlaskClient, Store]) -> None:
    client, store = app
    BEHAVIOUR["slow"] = 0.2
    first, second = gevent.spawn(post, client, {"item": "tea"}), gevent.spawn(post, client, {"item": "tea"})
    gevent.joinall([first, second], raise_error=True)
    answers = sorted([first.value, second.value], key=lambda a: "Idempotent-Replayed" in a.headers)
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].text == answers[1].text
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert orders(store) == ["tea"]


def test_a_duplicate_that_cannot_wait_longer_gets_409(tmp_path: Path) -> None:
    BEHAVIOUR.clear()
    BEHAVIOUR["slow"] = 0.3
    flask_app, store = make_app(tmp_path, wait=0.05)
    client = flask_app.test_client()
    try:
        first, second = gevent.spawn(post, client, {"item": "tea"}), gevent.spawn(post, client, {"item": "tea"})
        gevent.joinall([first, second], raise_error=True)
        statuses = sorted([first.value.status_code, second.value.status_code])
        assert statuses == [200, 409]
        busy = first.value if first.value.status_code == 409 else second.value
        assert busy.headers["Retry-After"] == "1" and "still running" in busy.text
        assert orders(store) == ["tea"]
    finally:
        store.close()


def test_a_failed_request_frees_its_key_so_the_retry_runs(app: tuple[FlaskClient, Store]) -> None:
    client, store = app
    BEHAVIOUR["crash"] = 1
    assert post(client, {"item": "tea"}).status_code == 500
    assert store.query("SELECT * FROM _orion_idempotency") == ()
    assert post(client, {"item": "tea"}).status_code == 200
    assert orders(store) == ["tea"]


def test_a_key_left_running_by_a_crash_is_taken_over_after_its_lease(app: tuple[FlaskClient, Store]) -> None:
    client, store = app
    store.exec(
        "INSERT INTO _orion_idempotency (scope, key, fingerprint, state, locked_until, created_at, expires_at)"
        " VALUES ('request:-', 'key-1', 'whatever', 'running', 0, 0, 1e12)"
    )
    assert post(client, {"item": "tea"}).status_code == 200
    assert orders(store) == ["tea"]


def test_keys_expire(app: tuple[FlaskClient, Store]) -> None:
    client, store = app
    post(client, {"item": "tea"})
    store.exec("UPDATE _orion_idempotency SET expires_at = 0")
    assert "Idempotent-Replayed" not in post(client, {"item": "tea"}).headers
    assert orders(store) == ["tea", "tea"]
    store.exec("UPDATE _orion_idempotency SET expires_at = 0")
    assert idempotency.prune(store) == 1


def test_a_malformed_key_is_refused(app: tuple[FlaskClient, Store]) -> None:
    client, store = app
    answer = post(client, {"item": "tea"}, key="x" * 300)
    assert answer.status_code == 400 and "1-255 printable ASCII" in answer.text
    assert orders(store) == []


def test_only_marked_commands_honour_the_key_unless_it_is_on_everywhere(tmp_path: Path) -> None:
    flask_app, store = make_app(tmp_path / "a")
    try:
        client = flask_app.test_client()
        post(client, {}, path="/notes")
        post(client, {}, path="/notes")
        assert orders(store) == ["note", "note"]
    finally:
        store.close()
    flask_app, store = make_app(tmp_path / "b", everywhere=True)
    try:
        client = flask_app.test_client()
        post(client, {}, path="/notes")
        assert post(client, {}, path="/notes").headers["Idempotent-Replayed"] == "true"
        assert orders(store) == ["note"]
    finally:
        store.close()


def test_begin_scopes_keys_so_two_users_never_share_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "app.sqlite")
    store.migrate("orion", MIGRATIONS)
    try:
        assert idempotency.begin(store, "request:alice", "k", "f")[0] == "run"
        assert idempotency.begin(store, "request:bob", "k", "f")[0] == "run"
        assert idempotency.begin(store, "request:alice", "k", "f")[0] == "busy"
        idempotency.finish(store, "request:alice", "k", 201, [("X", "1")], b"made")
        outcome, row = idempotency.begin(store, "request:alice", "k", "f")
        assert outcome == "replay" and row is not None and (row["status"], row["body"]) == (201, b"made")
    finally:
        store.close()


# events


def test_first_records_an_event_id_with_its_effect(tmp_path: Path) -> None:
    store = Store(tmp_path / "app.sqlite")
    store.migrate("orion", MIGRATIONS)
    store.exec("CREATE TABLE applied (event TEXT)")
    try:

        def deliver(event_id: str, fail: bool = False) -> bool:
            with store.tx():
                if not idempotency.first(store, "event:partner", event_id):
                    return False
                store.exec("INSERT INTO applied VALUES (?)", (event_id,))
                if fail:
                    raise ConnectionAbortedError("crashed mid-effect")
            return True

        with pytest.raises(ConnectionAbortedError):
            deliver("evt_1", fail=True)  # rolled back: the id is not recorded either
        assert deliver("evt_1") is True
        assert deliver("evt_1") is False
        assert deliver("evt_2") is True
        assert [r["event"] for r in store.query("SELECT event FROM applied")] == ["evt_1", "evt_2"]
        with pytest.raises(RuntimeError, match=r"inside `with ctx\.store\.tx\(\):`"):
            idempotency.first(store, "event:partner", "evt_3")
    finally:
        store.close()
