"""Recipe: the Redis bus, for several processes or machines (rung 2 of the ladder).

Turn it on with configuration only, no feature code changes:

    ORION_BUS=redis
    ORION_REDIS_URL=redis://127.0.0.1:6379/0    # or unix:///run/redis/redis-server.sock
    ORION_REDIS_PREFIX=orion                    # one prefix per app sharing that Redis

``create_app()`` then builds a ``RedisBus`` (app/belt/redis_bus.py) instead of the in-process
``Bus``, and ``Runtime.shutdown`` closes it. With it, gunicorn may run more than one worker
(``ORION_WORKERS``) and several machines may serve one app; see app/recipes/README.md for
Redis's own settings and the caveats.
"""

from __future__ import annotations

from typing import Any

from app.belt.redis_bus import RedisBus


def connect(cfg: dict[str, Any]) -> RedisBus:
    """The Redis bus that ``cfg`` (``belt.settings()``) names; it connects on first use."""
    return RedisBus(cfg["ORION_REDIS_URL"], prefix=cfg["ORION_REDIS_PREFIX"])
