"""todos: the example slice. A shared list that every open page keeps live."""

from pathlib import Path

from .routes import bp

MIGRATIONS = Path(__file__).parent / "migrations"
#: The feature flags this slice reads, declared at boot so /admin/flags lists them.
FLAGS = {"todos.stats": "A stats line under the todo list: how much is done."}

__all__ = ["FLAGS", "MIGRATIONS", "bp"]
