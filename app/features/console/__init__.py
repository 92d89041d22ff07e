"""console: the architecture console (/console), the todos page's x-ray footer, and the demo.

``install(app, gate, grants)`` hangs the console on the app, hooks every store's calls into
its feed (the main store now, each workspace's store as tenancy opens it) and registers the
blueprint; ``seed_demo(rt)`` fills an empty directory with the demo's personas (ORION_DEMO=1).
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from app.belt import Gate, Store, runtime

from .commands import PASSWORD, PERSONAS, seed_demo
from .routes import XRAY, bp, grants_model
from .state import Console, Feed

log = logging.getLogger("orion.console")


def install(app: Flask, gate: Gate | None, *, grants: dict[str, tuple[tuple[str, str], ...]]) -> Console:
    """The console of ``app``: its feed fed by every store, its routes, its demo setting."""
    rt = runtime(app)
    demo = bool(app.config.setdefault("ORION_DEMO", os.environ.get("ORION_DEMO", "0") == "1"))
    if demo and (rt.tenants is None or rt.auth is None or rt.auth.mode != "accounts"):
        log.warning("ORION_DEMO=1 ignored: the demo signs personas into workspaces, so it needs "
                    "ORION_AUTH=accounts and ORION_TENANCY=db (or set ORION_DEMO=0).")  # fmt: skip
        demo = False
    if demo and not rt.development:
        log.warning("ORION_DEMO=1 outside development: anyone can sign in as a demo persona at /console.")
    app.config["ORION_DEMO"] = demo
    console = Console(feed=Feed(), gate=gate, demo=demo, grants_model=grants_model(grants))
    app.extensions["console"] = console
    _hook(rt.store, "main", console.feed)
    if rt.tenants is not None:
        tenants = rt.tenants
        for key, store in tenants.open_stores():
            _hook(store, key, console.feed)
        previous = tenants.on_open

        def opened(key: str, store: Store) -> None:
            _hook(store, key, console.feed)
            if previous is not None:
                previous(key, store)

        tenants.on_open = opened
    app.register_blueprint(bp)
    return console


def _hook(store: Store, name: str, feed: Feed) -> None:
    store.on_call = feed.hook(name)


__all__ = ["PASSWORD", "PERSONAS", "XRAY", "Console", "bp", "install", "seed_demo"]
