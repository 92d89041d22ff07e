"""The composition root: ``create_app()`` is the boot liturgy, read top to bottom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from app import belt
from app.features import accounts, todos

#: The slices this app is made of, in migration order.
FEATURES = [accounts, todos]
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
#: Endpoints that skip the cross-site check. Only those authenticated another way (a signed
#: webhook) belong here; none do yet.
CSRF_EXEMPT: set[str] = set()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    # 1. settings: defaults < environment < the overrides passed in (tests)
    cfg = belt.settings(app, config)
    # 2. the store (one SQLite file) and 3. the bus (in-process)
    store = belt.Store(cfg["ORION_DB"], synchronous=cfg["ORION_SYNCHRONOUS"])
    bus = belt.Bus()
    # 4. the runtime, error pages, the cross-site check, health
    rt = belt.install(app, store, bus, csrf_exempt=CSRF_EXEMPT)
    # 5. migrations before any read: the belt's own tables, then each feature's
    store.migrate("orion", MIGRATIONS)
    for feature in FEATURES:
        store.migrate(feature.__name__.rsplit(".", 1)[-1], feature.MIGRATIONS)
        # 6. routes
        app.register_blueprint(feature.bp)
    # 7. who is acting, what they may do, and the record of it
    local = belt.load_local_identity(Path(cfg["ORION_IDENTITY_FILE"])) if cfg["ORION_AUTH"] == "local" else None
    rt.auth = belt.Auth(store, accounts.load_user, mode=cfg["ORION_AUTH"], local_identity=local)
    rt.authz = belt.create_authz(accounts.grants)
    sinks = [belt.JsonlSink(cfg["ORION_AUDIT_JSONL"])] if cfg["ORION_AUDIT_JSONL"] else []
    rt.journal = belt.Journal(store, sinks=sinks)
    return app
