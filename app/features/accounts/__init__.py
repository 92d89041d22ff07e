"""accounts: people, their sessions and roles (the policy side of belt.auth and belt.authz)."""

from __future__ import annotations

from pathlib import Path

from app.belt import Store, User

from . import policy, sql
from .routes import bp

MIGRATIONS = Path(__file__).parent / "migrations"


def load_user(store: Store, user_id: str) -> User | None:
    """belt.auth's user loader: a session's user id → who is acting."""
    if not user_id.isdigit():
        return None
    row = sql.by_id(store, user_id)
    if row is None:
        return None
    return User(id=str(row["id"]), email=row["email"], name=row["name"], role=row["role"])


grants = policy.grants

__all__ = ["MIGRATIONS", "bp", "grants", "load_user"]
