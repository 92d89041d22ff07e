"""admin: the capability pages. /admin/flags flips feature flags, /admin/health shows every
circuit breaker (and a demo dependency to break on purpose), /billing shows your plan and
sells the next one. Each is a live region: a flip, a trip or an upgrade repaints it."""

from pathlib import Path

from . import policy
from .routes import bp

MIGRATIONS = Path(__file__).parent / "migrations"

account_of = policy.account_of

__all__ = ["MIGRATIONS", "account_of", "bp"]
