"""dashboard: /admin, the operator's view of the running app. Grouped, server-driven tabs:
Health, Traces and Logs (Observability); Jobs, Audit and Flags (Operations); Analytics
(Product). Each tab is a live panel over a belt seam; the open tab is saved per admin."""

from pathlib import Path

from .routes import bp

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = ["MIGRATIONS", "bp"]
