"""jobs_admin: the live Jobs panel at /admin/jobs (queued, running, retrying, dead; retry or
discard a dead job; workflow runs), and the demo jobs and "onboarding" workflow it can start.
It has no tables of its own: it reads and operates the belt's (_orion_jobs, _orion_workflows)."""

from .routes import bp

__all__ = ["bp"]
