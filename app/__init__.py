"""The composition root: ``create_app()`` is the boot liturgy, read top to bottom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from app import belt
from app.features import todos

#: The slices this app is made of, in migration order.
FEATURES = [todos]
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    # 1. settings: defaults < environment < the overrides passed in (tests)
    cfg = belt.settings(app, config)
    # 2. the store (one SQLite file) and 3. the bus (in-process)
    store = belt.Store(cfg["ORION_DB"], synchronous=cfg["ORION_SYNCHRONOUS"])
    bus = belt.Bus()
    # 4. the runtime, error pages, health, converters
    belt.install(app, store, bus)
    # 5. migrations before any read: the belt's own tables, then each feature's
    store.migrate("orion", MIGRATIONS)
    for feature in FEATURES:
        store.migrate(feature.__name__.rsplit(".", 1)[-1], feature.MIGRATIONS)
        # 6. routes
        app.register_blueprint(feature.bp)
    return app
