"""workspaces: the directory side of tenancy — which workspaces exist and who belongs to each."""

from __future__ import annotations

from pathlib import Path

from app.belt import Store

from . import sql
from .routes import bp

MIGRATIONS = Path(__file__).parent / "migrations"


def membership(directory: Store, user_id: str, key: str) -> str | None:
    """The gate's question: ``user_id``'s role in workspace ``key`` (None: not a member)."""
    if user_id == "local":  # the self-host identity owns every workspace there is
        return "owner" if sql.by_key(directory, key) is not None else None
    return sql.role(directory, user_id, key)


__all__ = ["MIGRATIONS", "bp", "membership"]
