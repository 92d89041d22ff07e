"""jobs_admin: named reads over the belt's job and workflow tables (via app.belt.jobs/workflows)."""

from __future__ import annotations

from typing import Any

from app.belt import Store, jobs, workflows

#: How many jobs of each state, and workflow runs, the panel lists.
LIMIT = 20


def of_store(tenant: str | None, store: Store) -> tuple[Any, ...]:
    """(tenant, counts, running, retrying, queued, dead, workflow runs) of one store."""
    return (
        tenant,
        tuple(jobs.counts(store).items()),
        jobs.listing(store, "running", LIMIT),
        jobs.listing(store, "retrying", LIMIT),
        jobs.listing(store, "queued", LIMIT),
        jobs.listing(store, "dead", LIMIT),
        workflows.listing(store, LIMIT),
    )


def is_dead(store: Store, job_id: int) -> bool:
    row = jobs.get(store, job_id)
    return row is not None and row["state"] == "dead"
