"""The composition root: ``create_app()`` is the boot liturgy, read top to bottom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from app import belt, policy
from app.features import accounts, admin, console, dashboard, jobs_admin, patterns_demo, todos, workspaces
from app.recipes import redis_bus

#: The directory (control plane): people, sessions, workspaces. One SQLite file.
DIRECTORY = [accounts, workspaces, admin, dashboard]
#: The data plane: what each workspace holds, in a SQLite file of its own (ORION_TENANCY=db)
#: or in the one store at "/" (ORION_TENANCY=off). The same slices either way.
WORKSPACE = [todos, patterns_demo]
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
#: Endpoints that skip the cross-site check. Only those authenticated another way (a signed
#: webhook) belong here: Stripe's webhook checks its Stripe-Signature (registered only when
#: ORION_BILLING=stripe).
CSRF_EXEMPT: set[str] = {"billing_stripe.webhook"}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    # 1. settings: defaults < environment < the overrides passed in (tests)
    cfg = belt.settings(app, config)
    # 2. the store (one SQLite file) and 3. the bus (in-process, or Redis shared by processes)
    store = belt.Store(cfg["ORION_DB"], synchronous=cfg["ORION_SYNCHRONOUS"], write_queue=cfg["ORION_WRITE_QUEUE"])
    bus = belt.Bus() if cfg["ORION_BUS"] == "local" else redis_bus.connect(cfg)
    # 4. the runtime, error pages, the cross-site check, health
    rt = belt.install(app, store, bus, csrf_exempt=CSRF_EXEMPT)
    rt.on_shutdown.append(bus.close)  # the Redis bus sends what is pending, then disconnects
    # 5. migrations before any read: the belt's own tables, then the directory's slices
    store.migrate("orion", MIGRATIONS)
    for feature in DIRECTORY:
        store.migrate(_name(feature), feature.MIGRATIONS)
    # 6. the data plane: a file per workspace behind the gate, or the one store at "/"
    gate = _workspaces(app, rt, cfg)
    for bp in (accounts.bp, admin.bp, jobs_admin.bp, dashboard.bp):
        app.register_blueprint(bp)
    # 7. work that outlives the request: the job runner (started by the gunicorn worker) and
    #    Idempotency-Key on commands (after the gate: keys live in the request's store)
    belt.jobs.install(app, rt, workers=cfg["ORION_JOB_WORKERS"])
    belt.idempotency.install(app, everywhere=cfg["ORION_IDEMPOTENCY"])
    # 8. who is acting, what they may do, and the record of it
    _identity(rt, cfg)
    # 9. capabilities: flags, breakers (registered where they wrap a call), entitlements
    _capabilities(app, rt, cfg)
    # 10. the architecture console (/console), its x-ray footer on the todos page, the demo
    if console.install(app, gate, grants=accounts.policy.GRANTS).demo:
        console.seed_demo(rt)
    app.extensions["todos.footer"] = [console.XRAY]
    # 11. ship traces to an OpenTelemetry collector, when one is configured (app/recipes/otlp.py)
    if cfg["ORION_OTLP_ENDPOINT"]:
        from app.recipes import otlp

        rt.on_shutdown.append(otlp.install(cfg["ORION_OTLP_ENDPOINT"], service=cfg["ORION_SERVICE"]))
    return app


def _workspaces(app: Flask, rt: belt.Runtime, cfg: dict[str, Any]) -> belt.Gate | None:
    """Mount the workspace slices: behind the directory's gate, one file each (ORION_TENANCY=db),
    or in the main store at "/" (off). Returns the gate (None when off)."""
    store = rt.store
    if cfg["ORION_TENANCY"] != "db":
        _migrate_workspace(store)
        for feature in WORKSPACE:
            app.register_blueprint(feature.bp)
        return None
    app.register_blueprint(workspaces.bp)
    tenants = belt.Tenants(
        cfg["ORION_TENANTS_DIR"], migrate=_migrate_workspace,
        synchronous=cfg["ORION_SYNCHRONOUS"], write_queue=cfg["ORION_WRITE_QUEUE"],
    )
    tenants.forget = lambda key: workspaces.forget(store, key, rt.authz)  # `flask orion tenant delete`
    rt.tenants, rt.tenant_store, rt.tenant_stores = tenants, tenants.store, tenants.open_stores
    rt.on_shutdown.append(tenants.close_all)
    gate = belt.Gate(store, tenants, workspaces.membership)
    belt.install_gate(app, gate)
    for feature in WORKSPACE:
        app.register_blueprint(feature.bp, url_prefix="/w/<workspace>")
    return gate


def _identity(rt: belt.Runtime, cfg: dict[str, Any]) -> None:
    """Sessions or the self-host identity; grants by role (app/policy.py); the audit journal."""
    store = rt.store
    local = belt.load_local_identity(Path(cfg["ORION_IDENTITY_FILE"])) if cfg["ORION_AUTH"] == "local" else None
    rt.auth = belt.Auth(store, accounts.load_user, mode=cfg["ORION_AUTH"], local_identity=local)
    rt.authz = belt.create_authz(policy.for_directory(store))
    sinks = [belt.JsonlSink(cfg["ORION_AUDIT_JSONL"])] if cfg["ORION_AUDIT_JSONL"] else []
    rt.journal = belt.Journal(store, sinks=sinks)


def _capabilities(app: Flask, rt: belt.Runtime, cfg: dict[str, Any]) -> None:
    """Feature flags (declared by the slices that read them); entitlements and the Stripe
    recipe only with billing on (off, the self-host default: no billing code is imported)."""
    rt.flags = belt.Flags(rt.store, rt.bus)
    for feature in (*DIRECTORY, *WORKSPACE):
        rt.flags.declare(getattr(feature, "FLAGS", {}))
    if cfg["ORION_BILLING"] == "stripe":
        from app.recipes import billing_stripe

        rt.entitlements = belt.Entitlements(rt.store, rt.bus, account_of=admin.account_of)
        rt.entitlement = rt.entitlements.check
        billing_stripe.install(app, rt)


def _name(feature: Any) -> str:
    return str(feature.__name__.rsplit(".", 1)[-1])


def _migrate_workspace(store: belt.Store) -> None:
    """What every workspace's store holds: the same slices' migrations (belt tables too)."""
    store.migrate("orion", MIGRATIONS)
    for feature in WORKSPACE:
        store.migrate(_name(feature), feature.MIGRATIONS)
