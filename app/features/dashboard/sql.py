"""dashboard: named queries. The admin's saved state, and the recent audit journal."""

from __future__ import annotations

import time

from app.belt import Row, Store


def state(store: Store, user_id: str) -> dict[str, str]:
    """The admin's saved dashboard state: ``{"tab": ..., "trace": ..., "logs": ...}``."""
    rows = store.query("SELECT key, value FROM dashboard_state WHERE user_id = ?", (user_id,))
    return {row["key"]: row["value"] for row in rows}


def save(store: Store, user_id: str, key: str, value: str) -> None:
    store.exec(
        "INSERT INTO dashboard_state (user_id, key, value, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (user_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (user_id, key, value, time.time()),
    )


def audit(store: Store, limit: int = 30) -> tuple[Row, ...]:
    """The newest audit records (app/belt/audit.py's journal), newest first."""
    return store.query(
        "SELECT seq, at, actor, real_actor, action, target, outcome, reason, request_id"
        " FROM _orion_audit ORDER BY seq DESC LIMIT ?",
        (limit,),
    )


def interrupted(store: Store) -> int:
    """Started records with no outcome: commands a crash cut off mid-effect."""
    row = store.one(
        "SELECT count(*) AS n FROM _orion_audit s WHERE s.outcome = 'started' AND NOT EXISTS"
        " (SELECT 1 FROM _orion_audit o WHERE o.started_seq = s.seq)"
    )
    return int(row["n"]) if row is not None else 0


def flags(store: Store) -> tuple[Row, ...]:
    """Every feature flag's row (app/belt/flags.py keeps them in _orion_flags)."""
    return store.query(
        "SELECT name, description, enabled, percent, on_for, off_for, updated_at, updated_by"
        " FROM _orion_flags ORDER BY name"
    )
