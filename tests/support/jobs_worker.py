"""Job handlers and a workflow for the jobs tests, and a worker process that runs them.

    python -m tests.support.jobs_worker DB [--lease S] [--burst] [--block]

The tests import this module for the same handlers (a kind's handler must be registered in
the process that enqueues it and in the one that runs it). ``--block`` makes ``test.block``
jobs and the workflow's ``second`` step hang, so a test can kill the process mid-job.
Every handler records what ran in the ``ran`` table: (what, job or run id, attempt, pid).
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Any

import gevent

from app.belt import Bus, Ctx, Store, jobs, workflows
from app.belt.runtime import Runtime

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
BLOCK = {"on": False}


def prepare(path: Path | str, **options: Any) -> Store:
    """A store with the belt's tables and the ``ran`` table the handlers write to."""
    store = Store(path, **options)
    store.migrate("orion", MIGRATIONS)
    store.exec(
        "CREATE TABLE IF NOT EXISTS ran (what TEXT NOT NULL, ref INTEGER, attempt INTEGER, pid INTEGER, tenant TEXT)"
    )
    return store


def note(ctx: Ctx, what: str, ref: int, attempt: int) -> None:
    ctx.store.exec(
        "INSERT INTO ran (what, ref, attempt, pid, tenant) VALUES (?, ?, ?, ?, ?)",
        (what, ref, attempt, os.getpid(), ctx.tenant),
    )


@jobs.handler("test.record")
def record(ctx: Ctx, job: jobs.Job) -> dict[str, int]:
    note(ctx, "record", job.id, job.attempt)
    gevent.sleep(0.001)  # let the other greenlets (and the other process) interleave
    return {"pid": os.getpid()}


@jobs.handler("test.block")
def block(ctx: Ctx, job: jobs.Job) -> str:
    note(ctx, "block", job.id, job.attempt)
    if BLOCK["on"]:
        gevent.sleep(3600)
    return "finished"


FLOW = workflows.workflow("test.flow")


@FLOW.step("first")
def first(ctx: Ctx, run: workflows.Run) -> dict[str, int]:
    note(ctx, "first", run.id, run.attempt)
    return {"n": 1}


FLOW.sleep("nap", seconds=0.05)


@FLOW.step("second")
def second(ctx: Ctx, run: workflows.Run) -> dict[str, int]:
    note(ctx, "second", run.id, run.attempt)
    if BLOCK["on"]:
        gevent.sleep(3600)  # the process is killed here
    return {"n": run.results["first"]["n"] + 1}


@FLOW.step("third")
def third(ctx: Ctx, run: workflows.Run) -> dict[str, int]:
    note(ctx, "third", run.id, run.attempt)
    return {"n": run.results["second"]["n"] + 1}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--block", action="store_true")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    BLOCK["on"] = args.block
    store = Store(args.db)
    rt = Runtime(store=store, bus=Bus())
    gevent.signal_handler(signal.SIGTERM, lambda: setattr(rt, "stopping", True))
    print("ready", flush=True)
    try:
        jobs.work(rt, concurrency=args.concurrency, poll=0.05, lease=args.lease, burst=args.burst)
    finally:
        store.close()


if __name__ == "__main__":
    main()
