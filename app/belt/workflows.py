"""Durable workflows: named steps whose results are recorded, so a crash resumes where it stopped.

    onboarding = workflows.workflow("onboarding")

    @onboarding.step("welcome")
    def welcome(ctx, run):
        send_welcome(run.input["email"])
        return {"sent": True}                       # recorded before the next step runs

    onboarding.sleep("pause", seconds=3 * 86400)    # a timer: the wake time is recorded too

    @onboarding.step("tip")
    def tip(ctx, run):
        send_tip(run.input["email"], after=run.results["welcome"])

    @onboarding.compensate
    def undo(ctx, run, error):                      # once a step has failed for good
        ...

    with ctx.store.tx():
        user_id = sql.insert_user(ctx.store, email)
        onboarding.start(ctx, {"email": email}, key=f"onboarding:{user_id}")

How it holds: every step runs as a job (kind ``_orion.workflow``), with the jobs' lease,
retries, backoff and dead letter. When a step returns, one transaction records its result,
moves the run on and enqueues the next step's job; a crash before that commit makes the step
run again (steps are at least once: make them idempotent), a crash after it never re-runs it.
A sleep records its wake time when the run reaches it and schedules the next step's job for
then, so restarts, deploys and crashes during a three-day wait change nothing. When a step's
job is dead the run is ``failed`` and the compensation hook runs (as a job too), then the run
is ``compensated``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import jobs
from .ctx import Ctx
from .store import Row, Store

TOPIC = "workflows"
STEP_KIND = "_orion.workflow"
COMPENSATE_KIND = "_orion.workflow.compensate"
_DONE = "__done__"


@dataclass(frozen=True)
class Run:
    """A workflow run as a step sees it: its input and the results of the finished steps."""

    id: int
    workflow: str
    input: Any
    results: dict[str, Any]
    tenant: str | None
    attempt: int = 1


StepFn = Callable[[Ctx, Run], Any]
Until = Callable[[Run], float]


@dataclass(frozen=True)
class Step:
    name: str
    fn: StepFn | None = None  # None: a sleep
    seconds: float | None = None
    until: Until | None = None
    max_attempts: int = jobs.DEFAULT_MAX_ATTEMPTS

    def wake_at(self, run: Run, now: float) -> float:
        if self.until is not None:
            return float(self.until(run))
        return now + float(self.seconds or 0)


class Workflow:
    """A named sequence of steps and sleeps; ``start(ctx, input)`` begins a run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps: list[Step] = []
        self.compensation: Callable[[Ctx, Run, str], Any] | None = None

    def step(
        self, name: str | None = None, *, max_attempts: int = jobs.DEFAULT_MAX_ATTEMPTS
    ) -> Callable[[StepFn], StepFn]:
        """Add ``fn(ctx, run) -> result`` as the next step (``result`` must be JSON)."""

        def add(fn: StepFn) -> StepFn:
            self._add(Step(name or fn.__name__, fn, max_attempts=max_attempts))
            return fn

        return add

    def sleep(self, name: str, *, seconds: float | None = None, until: Until | None = None) -> None:
        """Add a timer: wait ``seconds``, or until ``until(run)`` (epoch seconds)."""
        if (seconds is None) == (until is None):
            raise ValueError(f"{self.name}.sleep({name!r}): give seconds= or until=, exactly one.")
        self._add(Step(name, None, seconds, until))

    def compensate(self, fn: Callable[[Ctx, Run, str], Any]) -> Callable[[Ctx, Run, str], Any]:
        """``fn(ctx, run, error)`` undoes what the finished steps did, once a step failed for good."""
        self.compensation = fn
        return fn

    def _add(self, step: Step) -> None:
        if any(s.name == step.name for s in self.steps) or step.name == _DONE:
            raise ValueError(f"Workflow {self.name!r} already has a step named {step.name!r}.")
        self.steps.append(step)

    def start(self, ctx: Ctx, input: Any = None, *, key: str | None = None) -> int:
        """Begin a run in ``ctx.store`` (with the caller's transaction, if any); its id.

        ``key`` makes the start idempotent: a second start with the same key returns the
        first run's id and starts nothing.
        """
        if not self.steps:
            raise ValueError(f"Workflow {self.name!r} has no steps.")
        body = jobs._dumps(input, f"the input of workflow {self.name!r}")
        now = time.time()
        with ctx.store.tx():
            count, run_id = ctx.store.exec(
                "INSERT INTO _orion_workflows (name, tenant, input, unique_key, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (self.name, ctx.tenant, body, key, now, now),
            )
            if count == 0:
                row = ctx.store.one("SELECT id FROM _orion_workflows WHERE unique_key = ?", (key,))
                assert row is not None
                return int(row["id"])
            assert run_id is not None
            _advance(ctx, self, _run(ctx.store, run_id, 1), 0, now)
        return run_id


_WORKFLOWS: dict[str, Workflow] = {}


def workflow(name: str) -> Workflow:
    """The workflow called ``name`` (made on first use): define its steps on it."""
    if name not in _WORKFLOWS:
        _WORKFLOWS[name] = Workflow(name)
    return _WORKFLOWS[name]


def get(store: Store, run_id: int) -> Row | None:
    return store.one("SELECT * FROM _orion_workflows WHERE id = ?", (run_id,))


def steps(store: Store, run_id: int) -> dict[str, Any]:
    """The recorded results of a run's finished steps, by name."""
    rows = store.query("SELECT name, result FROM _orion_workflow_steps WHERE workflow_id = ?", (run_id,))
    return {r["name"]: json.loads(r["result"]) for r in rows}


def listing(store: Store, limit: int = 20) -> tuple[Row, ...]:
    """The most recently changed runs, with how many steps each has finished."""
    return store.query(
        "SELECT w.id, w.name, w.state, w.step, w.wake_at, w.error, w.updated_at,"
        " (SELECT count(*) FROM _orion_workflow_steps s WHERE s.workflow_id = w.id) AS finished"
        " FROM _orion_workflows w ORDER BY w.updated_at DESC, w.id DESC LIMIT ?",
        (limit,),
    )


def _run(store: Store, run_id: int, attempt: int) -> Run:
    row = get(store, run_id)
    assert row is not None
    return Run(run_id, row["name"], json.loads(row["input"]), steps(store, run_id), row["tenant"], attempt)


def _advance(ctx: Ctx, flow: Workflow, run: Run, index: int, now: float) -> None:
    """Move ``run`` to step ``index`` (inside a transaction): record the sleeps it reaches,
    then enqueue the next real step's job, due when the last of those sleeps ends."""
    store = ctx.store
    due = now
    results = dict(run.results)
    while index < len(flow.steps) and flow.steps[index].fn is None:
        sleep = flow.steps[index]
        if sleep.name not in results:
            wake = max(due, sleep.wake_at(Run(run.id, run.workflow, run.input, results, run.tenant), due))
            results[sleep.name] = {"until": wake}
            _record(store, run.id, sleep.name, results[sleep.name], now)
        due = max(due, float(results[sleep.name]["until"]))
        index += 1
    nxt = flow.steps[index] if index < len(flow.steps) else None
    waiting = due > now
    if nxt is None and not waiting:
        store.exec(
            "UPDATE _orion_workflows SET state = 'done', step = NULL, wake_at = NULL, updated_at = ? WHERE id = ?",
            (now, run.id),
        )
    else:
        name = nxt.name if nxt is not None else _DONE
        store.exec(
            "UPDATE _orion_workflows SET state = ?, step = ?, wake_at = ?, updated_at = ? WHERE id = ?",
            ("waiting" if waiting else "running", None if nxt is None else name, due if waiting else None, now, run.id),
        )
        jobs.enqueue(
            ctx,
            STEP_KIND,
            {"workflow": run.id, "step": name},
            run_at=due,
            unique_key=f"workflow:{run.id}:{name}",
            max_attempts=nxt.max_attempts if nxt is not None else jobs.DEFAULT_MAX_ATTEMPTS,
        )
    ctx.bus.publish(TOPIC)


def _record(store: Store, run_id: int, name: str, result: Any, now: float) -> None:
    store.exec(
        "INSERT INTO _orion_workflow_steps (workflow_id, name, result, finished_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (run_id, name, jobs._dumps(result, f"the result of step {name!r}", lenient=True), now),
    )


def _flow(name: str) -> Workflow:
    try:
        return _WORKFLOWS[name]
    except KeyError:
        raise LookupError(
            f"No workflow {name!r} is defined in this process (known: {sorted(_WORKFLOWS)}); "
            "import the module that defines it in the app."
        ) from None


def _first_unfinished(flow: Workflow, results: dict[str, Any]) -> int:
    for index, step in enumerate(flow.steps):
        if step.name not in results:
            return index
    return len(flow.steps)


def _on_step_dead(ctx: Ctx, job: jobs.Job, error: str) -> None:
    """A step failed for good (inside the dead-letter transaction): fail the run, compensate."""
    run_id = job.payload["workflow"]
    now = time.time()
    count, _ = ctx.store.exec(
        "UPDATE _orion_workflows SET state = 'failed', error = ?, updated_at = ?"
        " WHERE id = ? AND state IN ('running', 'waiting')",
        (f"step {job.payload['step']!r}: {error}", now, run_id),
    )
    row = get(ctx.store, run_id)
    if count and row is not None and _WORKFLOWS.get(row["name"]) and _WORKFLOWS[row["name"]].compensation:
        jobs.enqueue(ctx, COMPENSATE_KIND, {"workflow": run_id}, unique_key=f"workflow:{run_id}:compensate")
    ctx.bus.publish(TOPIC)


@jobs.handler(STEP_KIND, on_dead=_on_step_dead)
def _run_step(ctx: Ctx, job: jobs.Job) -> Any:
    run_id, name = job.payload["workflow"], job.payload["step"]
    row = get(ctx.store, run_id)
    if row is None or row["state"] not in ("running", "waiting"):
        return "skipped: the run is over"
    flow = _flow(row["name"])
    run = _run(ctx.store, run_id, job.attempt)
    index = _first_unfinished(flow, run.results)
    step = flow.steps[index] if index < len(flow.steps) else None
    if name != (step.name if step is not None else _DONE):
        return f"skipped: the run is at {step.name if step else 'its end'!r}, not {name!r}"
    if step is None:  # the run ended on a sleep that is now over
        with ctx.store.tx():
            _advance(ctx, flow, run, len(flow.steps), time.time())
        return "done"
    if row["state"] == "waiting":
        ctx.store.exec(
            "UPDATE _orion_workflows SET state = 'running', wake_at = NULL, updated_at = ?"
            " WHERE id = ? AND state = 'waiting'",
            (time.time(), run_id),
        )
        ctx.bus.publish(TOPIC)
    assert step.fn is not None
    result = step.fn(ctx, run)  # outside any transaction: a step may wait on the network
    now = time.time()
    with ctx.store.tx():
        _record(ctx.store, run_id, step.name, result, now)
        results = {**run.results, step.name: result}
        _advance(ctx, flow, Run(run.id, run.workflow, run.input, results, run.tenant, run.attempt), index + 1, now)
    return {"step": step.name}


@jobs.handler(COMPENSATE_KIND)
def _run_compensation(ctx: Ctx, job: jobs.Job) -> Any:
    run_id = job.payload["workflow"]
    row = get(ctx.store, run_id)
    if row is None or row["state"] != "failed":
        return "skipped"
    flow = _flow(row["name"])
    assert flow.compensation is not None
    flow.compensation(ctx, _run(ctx.store, run_id, job.attempt), row["error"] or "")
    with ctx.store.tx():
        ctx.store.exec(
            "UPDATE _orion_workflows SET state = 'compensated', updated_at = ? WHERE id = ? AND state = 'failed'",
            (time.time(), run_id),
        )
        ctx.bus.publish(TOPIC)
    return "compensated"
