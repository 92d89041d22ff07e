"""Boot: settings, the runtime, error pages, and the gunicorn hooks.

``create_app()`` reads as the boot liturgy: ``settings`` → store → bus → ``install`` →
migrate each feature → register blueprints. This module holds the parts of that liturgy that
are the same in every orion app.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import traceback
from collections.abc import Collection
from pathlib import Path
from typing import Any

import gevent
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import BaseConverter, ValidationError

from . import canon, cli, csrf, dev, observe, sse
from .bus import Bus
from .html import html
from .runtime import Runtime, runtime
from .store import Store

log = logging.getLogger("orion")

_SQLITE_MAX_ID = 2**63 - 1


def settings(app: Flask, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load orion's settings into ``app.config``: defaults < environment < ``overrides``.

    ORION_ENV            development | production (default production: no tracebacks shown)
    ORION_DB             the SQLite file (default data/app.sqlite under the project root)
    ORION_SYNCHRONOUS    NORMAL (default) or FULL; see app/belt/store.py for the trade-off
    ORION_HEARTBEAT      seconds between stream heartbeats (default 15)
    ORION_SEND_TIMEOUT   seconds a write to a viewer may block before it is dropped (default 10)
    ORION_SEND_BUFFER    bytes of kernel send buffer per connection (default 65536; 0: the kernel's
                         autotuning), so a client that stops reading blocks a write soon (backpressure.py)
    ORION_DATASTAR_URL   where pages load the Datastar client (default: our own static copy)
    ORION_MAX_BODY       largest request body in bytes (default 256 KiB)
    ORION_BODY_TIMEOUT   seconds a command's request body may take to arrive (default 30; then 408)
    ORION_STATS          expose /_orion/stats (default: on in development only)
    ORION_PROXIES        how many reverse proxies sit in front (trust that many X-Forwarded-* hops;
                         default 0). Needed for HTTPS detection (Secure, __Host- cookies) behind TLS.
    ORION_TENANCY        db (a SQLite file per workspace, under /w/<key>/) or off (one store, at /)
    ORION_TENANTS_DIR    where the workspace files live (default data/tenants)
    ORION_AUTH           accounts (sign up / sign in) or local (self-host: one identity, no sign-in)
    ORION_AUDIT_JSONL    where the audit journal is mirrored as JSON lines (default data/audit.jsonl;
                         empty: no file)
    SECRET_KEY           signs cookies; generated into data/secret_key on first boot
    ORION_BUS            local (default: the in-process bus, one process per node) or redis (several
                         processes or machines share one Redis; app/recipes/README.md)
    ORION_REDIS_URL      the Redis of ORION_BUS=redis (default redis://127.0.0.1:6379/0; unix:///path too)
    ORION_REDIS_PREFIX   this app's channel prefix on that Redis (default orion)
    ORION_WRITE_QUEUE    1: group commit (one fsync per hub tick; see app/belt/store.py). Default 0
    ORION_JOB_WORKERS    job-running greenlets in the web process (default 2; 0: only `flask orion worker`)
    ORION_IDEMPOTENCY    1: every command honours an Idempotency-Key header (default 0: opt-in per command)
    ORION_BILLING        off (default, self-host: no billing code runs, every capability is on) or
                         stripe (app/recipes/billing_stripe.py reads its ORION_STRIPE_* settings)
    ORION_STALL_MS       a hub blocked this long is a stall, reported with its culprit (default 200)
    ORION_CANON_SAMPLE   the share of boring 2xx/3xx canonical lines kept, 0..1 (default 1: all;
                         errors, refusals, slow requests and streams are always kept)
    ORION_CANON_SLOW_MS  a request at least this slow is always logged (default 500)
    ORION_ANALYTICS      0: analytics.track() records nothing (default 1)
    ORION_OTLP_ENDPOINT  ship traces to this OpenTelemetry collector (OTLP/HTTP, e.g.
                         http://127.0.0.1:4318/v1/traces; app/recipes/otlp.py). Default: off
    ORION_SERVICE        the service.name traces carry (default orion)
    """
    root = Path(app.root_path).parent
    env = os.environ
    cfg: dict[str, Any] = {
        "ORION_ENV": env.get("ORION_ENV", "production"),
        "ORION_DB": env.get("ORION_DB", str(root / "data" / "app.sqlite")),
        "ORION_SYNCHRONOUS": env.get("ORION_SYNCHRONOUS", "NORMAL"),
        "ORION_HEARTBEAT": float(env.get("ORION_HEARTBEAT", "15")),
        "ORION_SEND_TIMEOUT": float(env.get("ORION_SEND_TIMEOUT", "10")),
        "ORION_DATASTAR_URL": env.get("ORION_DATASTAR_URL", "/static/datastar.js"),
        "MAX_CONTENT_LENGTH": int(env.get("ORION_MAX_BODY", str(256 * 1024))),
        "ORION_AUTH": env.get("ORION_AUTH", "accounts"),
        "ORION_TENANCY": env.get("ORION_TENANCY", "db"),
        "ORION_PROXIES": int(env.get("ORION_PROXIES", "0")),
        "ORION_BUS": env.get("ORION_BUS", "local"),
        "ORION_REDIS_URL": env.get("ORION_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "ORION_REDIS_PREFIX": env.get("ORION_REDIS_PREFIX", "orion"),
        "ORION_BILLING": env.get("ORION_BILLING") or "off",
    }
    cfg.update(overrides or {})
    if cfg["ORION_TENANCY"] not in ("db", "off"):
        raise SystemExit(f"ORION_TENANCY={cfg['ORION_TENANCY']!r}: use 'db' (a file per workspace) or 'off'.")
    if cfg["ORION_ENV"] not in ("development", "production"):
        raise SystemExit(f"ORION_ENV={cfg['ORION_ENV']!r} is not a mode; set it to 'development' or 'production'.")
    if cfg["ORION_BUS"] not in ("local", "redis"):
        raise SystemExit(
            f"ORION_BUS={cfg['ORION_BUS']!r} is not a bus; set it to 'local' (one process) or 'redis' "
            "(with ORION_REDIS_URL, to share changes between processes)."
        )
    if cfg["ORION_BILLING"] not in ("off", "stripe"):
        raise SystemExit(f"ORION_BILLING={cfg['ORION_BILLING']!r}: use 'off' (self-host) or 'stripe'.")
    cfg.setdefault("ORION_STATS", env.get("ORION_STATS", "1" if cfg["ORION_ENV"] == "development" else "0") == "1")
    data = Path(cfg["ORION_DB"]).parent
    cfg.setdefault("SECRET_KEY", env.get("SECRET_KEY") or _secret_key(data))
    cfg.setdefault("ORION_AUDIT_JSONL", env.get("ORION_AUDIT_JSONL", str(data / "audit.jsonl")))
    cfg.setdefault("ORION_TENANTS_DIR", env.get("ORION_TENANTS_DIR", str(data / "tenants")))
    cfg.setdefault("ORION_IDENTITY_FILE", env.get("ORION_IDENTITY_FILE", str(data / "identity.json")))
    cfg.setdefault("ORION_WRITE_QUEUE", env.get("ORION_WRITE_QUEUE", "0") == "1")
    cfg.setdefault("ORION_JOB_WORKERS", int(env.get("ORION_JOB_WORKERS", "2")))
    cfg.setdefault("ORION_IDEMPOTENCY", env.get("ORION_IDEMPOTENCY", "0") == "1")
    cfg.setdefault("ORION_STALL_MS", float(env.get("ORION_STALL_MS", "200")))
    cfg.setdefault("ORION_BODY_TIMEOUT", float(env.get("ORION_BODY_TIMEOUT", "30")))
    cfg.setdefault("ORION_CANON_SAMPLE", float(env.get("ORION_CANON_SAMPLE", "1")))
    cfg.setdefault("ORION_CANON_SLOW_MS", float(env.get("ORION_CANON_SLOW_MS", "500")))
    cfg.setdefault("ORION_ANALYTICS", env.get("ORION_ANALYTICS", "1") == "1")
    cfg.setdefault("ORION_OTLP_ENDPOINT", env.get("ORION_OTLP_ENDPOINT", ""))
    cfg.setdefault("ORION_SERVICE", env.get("ORION_SERVICE", "orion"))
    app.config.update(cfg)
    return cfg


def _secret_key(folder: Path) -> str:
    path = folder / "secret_key"
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    # Written whole, then linked into place: two workers booting at once (the Redis bus
    # allows several) must both end up with the one key, never with a half-written file.
    draft = folder / f".secret_key.{os.getpid()}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process won: use its key
    finally:
        draft.unlink()
    return path.read_text().strip()


def install(app: Flask, store: Store, bus: Bus, *, csrf_exempt: Collection[str] = ()) -> Runtime:
    """Hang the runtime on ``app`` and add what every orion app shares.

    ``csrf_exempt`` is the explicit list of endpoints (``"blueprint.view"``) that skip the
    cross-site check: only those authenticated by other means (a signed webhook).
    """
    rt = Runtime(
        store=store,
        bus=bus,
        development=app.config["ORION_ENV"] == "development",
        heartbeat=float(app.config["ORION_HEARTBEAT"]),
        send_timeout=float(app.config["ORION_SEND_TIMEOUT"]),
    )
    rt.datastar_url = app.config["ORION_DATASTAR_URL"]
    app.extensions["orion"] = rt
    proxies = int(app.config.get("ORION_PROXIES", 0))
    if proxies:
        # Trust exactly as many X-Forwarded-* hops as there are proxies: the scheme decides
        # whether session cookies are Secure and __Host- prefixed, the address feeds throttling.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)  # type: ignore[method-assign]
    app.url_map.converters["id"] = IdConverter
    _error_pages(app, rt)
    exempt = frozenset(csrf_exempt)
    trusted = tuple(o for o in os.environ.get("ORION_TRUSTED_ORIGINS", "").split(",") if o)

    @app.before_request
    def refuse_cross_site() -> None:
        csrf.check(request, exempt=exempt, trusted_origins=trusted)

    if rt.development:
        dev.install(app, rt)
    app.add_url_rule("/_orion/health", "orion_health", _health)
    app.add_url_rule("/_orion/ready", "orion_ready", _ready)
    cli.register(app)
    if app.config.get("ORION_STATS"):
        app.add_url_rule("/_orion/stats", "orion_stats", _stats)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    observe.install(app, rt)  # request spans, canonical lines, the query log, analytics
    return rt


class IdConverter(BaseConverter):
    """``<id:todo_id>``: a positive SQLite rowid; anything else is a 404, never a 500."""

    regex = r"[1-9][0-9]{0,18}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > _SQLITE_MAX_ID:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


def _health() -> Response:
    rt = runtime()
    return jsonify(status="stopping" if rt.stopping else "ok", streams=len(rt.streams))


def _ready() -> Response:
    """Readiness for a load balancer: 200 once the store answers, 503 while stopping.

    Liveness (``/_orion/health``) stays 200 during a drain, so nothing kills a process that is
    finishing its last commands; readiness turns 503 so no new traffic is sent to it. Requests
    are served only after ``create_app()`` returned, so the migrations have run; the query
    proves the database file is there and readable. The bus is not checked: a Redis outage
    must not take every process out of rotation at once (each wakes its viewers when it is back).
    """
    rt = runtime()
    if rt.stopping:
        return _not_ready("stopping")
    try:
        row = rt.store.one("SELECT count(*) AS n FROM _orion_migrations")
    except Exception as exc:  # a closed store, a missing or unreadable file
        log.warning("readiness check failed: %r", exc)
        return _not_ready("the store does not answer")
    if row is None or not row["n"]:
        return _not_ready("no migrations applied")
    return jsonify(status="ready")


def _not_ready(reason: str) -> Response:
    response = jsonify(status="not ready", reason=reason)
    response.status_code = 503
    return response


def _stats() -> Response:
    return jsonify(runtime().stats())


def _wants_html() -> bool:
    return (
        request.headers.get("Datastar-Request") != "true"
        and request.accept_mimetypes.accept_html
        and request.accept_mimetypes["text/html"] >= request.accept_mimetypes["text/plain"]
    )


def _error_pages(app: Flask, rt: Runtime) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        message = getattr(exc, "message", None) or _friendly(exc)
        status = exc.code or 500
        if status >= 500:
            log.error("%s %s -> %s %s", request.method, request.path, status, message)
        if _wants_html():
            body = html(
                "<!doctype html><meta charset=utf-8><title>{} {}</title>"
                '<main style="font:16px system-ui;max-width:40rem;margin:4rem auto">'
                '<h1>{}</h1><p>{}</p><p><a href="/">Back to the start page</a></p></main>',
                status,
                exc.name,
                exc.name,
                message,
            )
            return Response(body, status=status, mimetype="text/html")
        return Response(message + "\n", status=status, mimetype="text/plain")

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.path)
        canon.failed(exc)
        if rt.development:
            trace = "".join(traceback.format_exception(exc))
            if request.headers.get("Datastar-Request") == "true":
                # The Datastar client ignores a 500's body: patch the overlay onto the page.
                event = dev.exception_overlay_event(exc, f"{request.method} {request.path}")
                return Response(event, headers=sse.SSE_HEADERS)
            if _wants_html():
                return Response(
                    html("<!doctype html><title>Error</title><h1>{}</h1><pre>{}</pre>", repr(exc), trace),
                    status=500,
                    mimetype="text/html",
                )
            return Response(trace, status=500, mimetype="text/plain")
        return Response(
            "Internal Server Error: the failure was logged. Try again; if it persists, "
            "tell the operator the time it happened.\n",
            status=500,
            mimetype="text/plain",
        )


def _friendly(exc: HTTPException) -> str:
    if exc.code == 404:
        return (
            f"Nothing here: {request.path!r} is not a page or command of this app, or what it names no longer exists."
        )
    if exc.code == 405:
        # Flask adds OPTIONS (and HEAD) to every rule; naming them would not help anyone.
        methods = set(getattr(exc, "valid_methods", None) or []) - {"HEAD", "OPTIONS"}
        allowed = ", ".join(sorted(methods))
        return f"{request.method} is not allowed on {request.path!r}; use {allowed or 'another method'}."
    if exc.code == 413:
        return f"The request body is too large: the limit is {request.max_content_length:,} bytes."
    return str(exc.description or exc.name)


# -- gunicorn (called from gunicorn.conf.py; imported lazily, after gevent has patched) --


def gunicorn_post_worker_init(worker: Any) -> None:
    """Watch for SIGTERM: end every stream at once so the graceful drain finishes quickly."""
    app = worker.wsgi
    rt = runtime(app)
    # Everything built at boot lives as long as the worker: move it out of the collector's
    # reach, and collect young objects less often. With thousands of streams (about 90
    # tracked objects each) the default thresholds ran full collections of 100-280 ms in
    # the middle of fan-outs (bench/RESULTS.md); freezing and a higher gen-0 threshold
    # removed them. Cyclic garbage is rare here: streams clean up in `finally`.
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)
    from .jobs import start_in_process

    start_in_process(app)  # the job runner starts only where requests are served
    observe.start(rt)  # the stall watchdog watches this worker's hub

    def watch() -> None:
        while worker.alive:
            gevent.sleep(0.1)
        log.info("worker %s stopping: ending %d streams", worker.pid, len(rt.streams))
        rt.shutdown(close_store=False)

    gevent.spawn(watch)


def gunicorn_worker_exit(server: Any, worker: Any) -> None:
    """After the last request finished: close the store (a final checkpoint, clean WAL)."""
    try:
        rt = runtime(worker.wsgi)
    except Exception:
        return
    observe.stop()
    rt.shutdown(close_store=True)
