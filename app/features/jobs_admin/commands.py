"""jobs_admin: retry or discard a dead job, and start the demos (jobs and a workflow).

Every command needs ("manage", "jobs:*"). A job lives in the store of the tenant that
enqueued it: the forms name that tenant, and the command acts on its store.
"""

from __future__ import annotations

import time
from typing import Any

import gevent

from app.belt import Ctx, Refused, Respond, jobs, require, shape, workflows

from . import sql

TARGET = shape.obj(tenant=shape.optional(shape.text(trim=True, max=63)))
EXPORT = shape.obj(steps=shape.optional(shape.integer(min=1, max=50, label="Steps")))

# -- the demos: what the panel's "Try it" buttons start ------------------------------------------


@jobs.handler("jobs_admin.export")
def demo_export(ctx: Ctx, job: jobs.Job) -> dict[str, Any]:
    """A long job that reports its progress: the panel's <progress> bar moves."""
    steps = int(job.payload.get("steps", 20))
    for done in range(1, steps + 1):
        gevent.sleep(float(job.payload.get("pause", 0.25)))  # a real export reads a page of rows here
        jobs.progress(ctx, job.id, done / steps)
    return {"rows": steps * 50}


@jobs.handler("jobs_admin.flaky", backoff=1.0, max_backoff=2.0)
def demo_flaky(ctx: Ctx, job: jobs.Job) -> None:
    """A job whose partner is always down: it retries, then lands in the dead letter."""
    raise ConnectionError(f"partner.example is down (attempt {job.attempt} of {job.max_attempts})")


ONBOARDING = workflows.workflow("onboarding")


@ONBOARDING.step("welcome")
def send_welcome(ctx: Ctx, run: workflows.Run) -> dict[str, Any]:
    return {"sent_to": run.input["email"], "message": "Welcome aboard!", "at": time.time()}


ONBOARDING.sleep("wait", seconds=5)


@ONBOARDING.step("tip")
def send_tip(ctx: Ctx, run: workflows.Run) -> dict[str, Any]:
    return {"sent_to": run.input["email"], "message": "Tip: open the todos in two browsers.", "at": time.time()}


# -- commands -----------------------------------------------------------------------------------


def retry(ctx: Ctx, data: dict[str, Any], respond: Respond, job_id: int) -> None:
    require(ctx, "manage", "jobs:*")
    target = _target(ctx, data.get("tenant"))
    _dead_or_404(target, job_id)
    try:
        jobs.retry(target, job_id)
    except ValueError as exc:
        raise Refused(str(exc), 409) from None
    respond.toast(f"Job #{job_id} is queued again with a fresh set of attempts.")


def discard(ctx: Ctx, data: dict[str, Any], respond: Respond, job_id: int) -> None:
    require(ctx, "manage", "jobs:*")
    target = _target(ctx, data.get("tenant"))
    _dead_or_404(target, job_id)
    jobs.discard(target, job_id)
    respond.toast(f"Job #{job_id} was discarded.")


def demo_export_start(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    require(ctx, "manage", "jobs:*")
    jobs.enqueue(ctx, "jobs_admin.export", {"steps": data.get("steps") or 20, "pause": 0.25})


def demo_flaky_start(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    require(ctx, "manage", "jobs:*")
    jobs.enqueue(ctx, "jobs_admin.flaky", {}, max_attempts=3)


def demo_onboarding_start(ctx: Ctx, data: dict[str, Any], respond: Respond) -> None:
    user = require(ctx, "manage", "jobs:*")
    ONBOARDING.start(ctx, {"email": user.email})


def _target(ctx: Ctx, tenant: str | None) -> Ctx:
    """The ctx of the store the job lives in: the main store, or an open tenant's."""
    if not tenant:
        return ctx
    if tenant not in {t for t, _ in ctx.runtime.all_stores() if t is not None}:
        raise Refused(f"There is no open workspace {tenant!r} here; reload the jobs page.", 404)
    target: Ctx = ctx.runtime.ctx_for(tenant, user=ctx.user)
    return target


def _dead_or_404(ctx: Ctx, job_id: int) -> None:
    if not sql.is_dead(ctx.store, job_id):
        raise Refused(
            f"Job #{job_id} is not in the dead letter any more (someone retried or discarded it). "
            "The panel on your page is current.",
            404,
        )
