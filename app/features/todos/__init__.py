"""todos: the example slice. A shared list that every open page keeps live."""

from pathlib import Path

from .routes import bp

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS", "bp"]
