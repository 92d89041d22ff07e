"""workspaces: the directory side of tenancy — which workspaces exist and who belongs to each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.belt import Store

from . import sql
from .routes import bp

MIGRATIONS = Path(__file__).parent / "migrations"


def membership(directory: Store, user_id: str, key: str) -> str | None:
    """The gate's question: ``user_id``'s role in workspace ``key`` (None: not a member)."""
    if user_id == "local":  # the self-host identity owns every workspace there is
        return "owner" if sql.by_key(directory, key) is not None else None
    return sql.role(directory, user_id, key)


def forget(directory: Store, key: str, authz: Any = None) -> int:
    """Drop workspace ``key`` from the directory (``flask orion tenant delete``).

    Its row and every membership go in one transaction; returns how many rows were dropped.
    The former members' grants are forgotten, so their open streams here are severed.
    """
    with directory.tx():
        members = sql.member_ids(directory, key)
        dropped = sql.remove_all_members(directory, key) + sql.delete(directory, key)
    if authz is not None:
        for user_id in members:
            authz.invalidate(user_id)
    return dropped


__all__ = ["MIGRATIONS", "bp", "forget", "membership"]
