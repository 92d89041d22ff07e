"""The idempotency kernel: "exactly once, even though it arrived three times", solved once.

One table, ``_orion_idempotency``, keyed by ``(scope, key)``, serves both ways a duplicate
arrives:

* **Requests** carrying an ``Idempotency-Key`` header (a client retrying after a timeout).
  Mark a command with ``idempotent(view)`` (or set ORION_IDEMPOTENCY=1 for every command):
  the first request with a key runs and its response (status, headers, body) is stored; a
  retry with the same key and the same request gets that response back, marked
  ``Idempotent-Replayed: true``, without running the effect again; the same key with a
  different request is refused with 422; a duplicate arriving while the first still runs
  waits for it (up to ``wait`` seconds), then gets 409. Keys are scoped per user and expire
  after ``ttl`` (24 h). Responses of 5xx, 409 and 429 are not stored (the retry runs again).
* **Events** (inbound webhooks, messages): ``first(store, scope, event_id)`` inside the
  effect's transaction records the id and says whether this is its first delivery. The row
  commits or rolls back with the effect, so an event is applied exactly once.

The request path has one window, stated plainly: the effect commits before its response is
recorded, so a crash between the two leaves the key "running"; after its lease (60 s) a
retry runs the effect again. Effects that must never repeat should also record their own
key in their transaction (``first`` does exactly that).

Absorbing a per-source event table (the Stripe recipe's ``_orion_webhook_events``): replace
``INSERT OR IGNORE INTO _orion_webhook_events (source, event_id, type) ...`` and its
rowcount test with ``if not idempotency.first(ctx.store, f"event:{source}", event_id): return``
in the same transaction, then copy the old rows over once in a migration
(``INSERT INTO _orion_idempotency (scope, key, state, created_at, expires_at) SELECT
'event:' || source, event_id, 'done', <now>, <now + ttl> FROM _orion_webhook_events``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
from flask import Flask, Response, g, request

from . import jobs, signals
from .store import Row, Store

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
TTL = 24 * 3600.0
#: How long a request may run before a duplicate may take its key over (it crashed).
LEASE = 60.0
_NOT_STORED = {409, 429}
_HOP_BY_HOP = {"date", "server", "content-length", "transfer-encoding", "connection", "keep-alive"}

V = TypeVar("V", bound=Callable[..., Any])


def first(store: Store, scope: str, key: str, *, ttl: float = 30 * 86400.0) -> bool:
    """Record ``key`` in ``scope``; True if it was not recorded yet (or had expired).

    Call it inside the transaction of the effect it guards, so the record and the effect
    commit (or roll back) together:

        with ctx.store.tx():
            if not idempotency.first(ctx.store, "event:partner", event["id"]):
                return                       # a redelivery: already applied
            apply(ctx, event)
    """
    if not store.in_transaction():
        raise RuntimeError(
            "idempotency.first() records the key with the effect it guards: call it inside "
            "`with ctx.store.tx():`, before the effect."
        )
    now = time.time()
    count, _ = store.exec(
        "INSERT INTO _orion_idempotency (scope, key, state, created_at, expires_at) VALUES (?, ?, 'done', ?, ?)"
        " ON CONFLICT (scope, key) DO UPDATE SET state = 'done', fingerprint = NULL, status = NULL,"
        " headers = NULL, body = NULL, created_at = excluded.created_at, expires_at = excluded.expires_at"
        " WHERE expires_at < excluded.created_at",
        (scope, key, now, now + ttl),
    )
    return count > 0


def fingerprint(method: str, path: str, content_type: str, body: bytes) -> str:
    """What makes two requests "the same request": method, path and query, type, body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), content_type.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def begin(
    store: Store, scope: str, key: str, print_: str, *, ttl: float = TTL, lease: float = LEASE
) -> tuple[str, Row | None]:
    """Claim ``key`` for a request: ("run", None), ("replay", row), ("mismatch", row) or ("busy", row)."""
    now = time.time()
    with store.tx():
        row = store.one("SELECT * FROM _orion_idempotency WHERE scope = ? AND key = ?", (scope, key))
        free = row is None or row["expires_at"] < now or (row["state"] == "running" and row["locked_until"] < now)
        if free:
            store.exec(
                "INSERT OR REPLACE INTO _orion_idempotency"
                " (scope, key, fingerprint, state, locked_until, created_at, expires_at)"
                " VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (scope, key, print_, now + lease, now, now + ttl),
            )
            return "run", None
    assert row is not None
    if row["fingerprint"] != print_:
        return "mismatch", row
    return ("replay" if row["state"] == "done" else "busy"), row


def finish(store: Store, scope: str, key: str, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    store.exec(
        "UPDATE _orion_idempotency SET state = 'done', status = ?, headers = ?, body = ?, locked_until = NULL"
        " WHERE scope = ? AND key = ? AND state = 'running'",
        (status, json.dumps(headers), body, scope, key),
    )


def abandon(store: Store, scope: str, key: str) -> None:
    """Free a key whose request failed (a 5xx, an exception): a retry runs again."""
    store.exec("DELETE FROM _orion_idempotency WHERE scope = ? AND key = ? AND state = 'running'", (scope, key))


def prune(store: Store) -> int:
    """Delete expired keys; how many went (a periodic belt job runs it hourly)."""
    count, _ = store.exec("DELETE FROM _orion_idempotency WHERE expires_at < ?", (time.time(),))
    return count


def idempotent(view: V) -> V:
    """Mark a command view as honouring ``Idempotency-Key`` (``install`` does the work)."""
    view.orion_idempotent = True  # type: ignore[attr-defined]
    return view


def install(app: Flask, *, everywhere: bool = False, ttl: float = TTL, wait: float = 2.0) -> None:
    """Honour ``Idempotency-Key`` on views marked ``idempotent`` (on every command: ``everywhere``)."""

    @app.before_request
    def idempotency_begin() -> Response | None:
        key = request.headers.get(HEADER)
        if key is None or request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        view = app.view_functions.get(request.endpoint or "")
        if view is None or not (
            getattr(view, "orion_idempotent", False) or (everywhere and getattr(view, "orion_kind", None) == "command")
        ):
            return None
        if not 0 < len(key) <= 255 or not key.isascii() or not key.isprintable():
            return _text(
                400, f"The {HEADER} header must be 1-255 printable ASCII characters (e.g. a UUID); got {key!r}."
            )
        from .auth import current_user
        from .runtime import request_ctx

        ctx = request_ctx()
        user = current_user(ctx)
        if user is None and ctx.runtime is not None and ctx.runtime.auth is not None:
            return None  # anonymous (sign-in, sign-up): no one to scope the key to
        scope = f"request:{user.id if user is not None else '-'}"
        # signals.body: a body cut short or badly chunked is refused (400) before a key is
        # taken, so a replay never answers for a request that did not arrive whole.
        print_ = fingerprint(request.method, request.full_path, request.content_type or "", signals.body(request))
        deadline = time.monotonic() + wait
        while True:
            outcome, row = begin(ctx.store, scope, key, print_, ttl=ttl)
            if outcome != "busy" or time.monotonic() >= deadline:
                break
            gevent.sleep(0.05)  # the first request with this key is still running: wait for it
        if outcome == "run":
            g.orion_idempotency = (ctx.store, scope, key)
            return None
        if outcome == "mismatch":
            return _text(
                422, f"The {HEADER} {key!r} was already used for a different request. Use a new key for a new request."
            )
        if outcome == "busy":
            answer = _text(409, f"A request with {HEADER} {key!r} is still running; retry in a moment.")
            answer.headers["Retry-After"] = "1"
            return answer
        assert row is not None
        replay = Response(row["body"], status=row["status"], headers=json.loads(row["headers"]))
        replay.headers[REPLAYED] = "true"
        return replay

    @app.after_request
    def idempotency_record(response: Response) -> Response:
        claim = g.pop("orion_idempotency", None)
        if claim is None:
            return response
        store, scope, key = claim
        if response.status_code >= 500 or response.status_code in _NOT_STORED or response.is_streamed:
            abandon(store, scope, key)
            return response
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP]
        finish(store, scope, key, response.status_code, headers, response.get_data())
        return response

    @app.teardown_request
    def idempotency_abandon(exc: BaseException | None) -> None:
        claim = g.pop("orion_idempotency", None)
        if claim is not None:  # the request failed before a response was made
            store, scope, key = claim
            if not store.closed:
                abandon(store, scope, key)


def _text(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain")


@jobs.handler("_orion.idempotency.prune")
def _prune_job(ctx: Any, job: jobs.Job) -> int:
    return prune(ctx.store)


jobs.schedule("_orion.idempotency.prune", every=3600)
