"""patterns_demo: one page at /patterns showing each vendored pattern at work.

Presence avatars, a SQL-backed combobox, server-driven tabs, a modal served by a fragment,
an inline editor checked twice, and a toast: see app/patterns/ for each one's contract.
"""

from pathlib import Path

from .routes import bp

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS", "bp"]
