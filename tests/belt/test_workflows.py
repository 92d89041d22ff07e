"""app.belt.workflows: recorded steps, timers, compensation, and a worker killed mid-run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from app.belt import Bus, Ctx, jobs, workflows
from app.belt.runtime import Runtime
from tests.support.jobs_worker import FLOW, prepare

ROOT = Path(__file__).resolve().parents[2]
LOG: list[str] = []

SHIP = workflows.workflow("t.ship")


@SHIP.step("reserve")
def reserve(ctx: Ctx, run: workflows.Run) -> dict[str, Any]:
    LOG.append(f"reserve {run.input['sku']}")
    return {"reservation": 7}


@SHIP.step("charge", max_attempts=2)
def charge(ctx: Ctx, run: workflows.Run) -> str:
    LOG.append(f"charge attempt {run.attempt}")
    if run.input.get("card") == "declined":
        raise RuntimeError("card declined")
    return "charged"


SHIP.sleep("until-dispatch", until=lambda run: run.input.get("dispatch_at", 0))


@SHIP.compensate
def release(ctx: Ctx, run: workflows.Run, error: str) -> None:
    LOG.append(f"release {run.results['reserve']['reservation']} because {error.splitlines()[0]}")


@pytest.fixture(autouse=True)
def clear_log() -> None:
    LOG.clear()


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    store = prepare(tmp_path / "app.sqlite")
    yield Runtime(store=store, bus=Bus())
    store.close()


def drain(rt: Runtime, until: Any, timeout: float = 5.0) -> None:
    runner = jobs.Runner(rt)
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out; runs: {[dict(r) for r in workflows.listing(rt.store)]}"
        # retries come due at once (backoff is tested in test_jobs); sleeps keep their time
        rt.store.exec("UPDATE _orion_jobs SET run_at = 0 WHERE state = 'queued' AND attempts > 0")
        if not runner.run_pending():
            gevent.sleep(0.01)


def run_state(rt: Runtime, run_id: int) -> str:
    row = workflows.get(rt.store, run_id)
    assert row is not None
    return str(row["state"])


def test_steps_run_in_order_with_each_result_recorded_before_the_next(rt: Runtime) -> None:
    heard: list[str] = []
    stop = rt.bus.subscribe("workflows", lambda: heard.append("w"))
    run_id = SHIP.start(rt.ctx(), {"sku": "tea"})
    assert run_state(rt, run_id) == "running"
    drain(rt, lambda: run_state(rt, run_id) == "done")
    stop()
    assert LOG == ["reserve tea", "charge attempt 1"]
    results = workflows.steps(rt.store, run_id)
    assert results["reserve"] == {"reservation": 7} and results["charge"] == "charged"
    assert "until-dispatch" in results  # a sleep whose time had passed: recorded, no wait
    assert heard


def test_a_sleep_records_its_wake_time_and_the_next_step_waits_for_it(rt: Runtime) -> None:
    flow = workflows.workflow("t.nap")
    flow.step("a")(lambda ctx, run: LOG.append("a"))
    flow.sleep("nap", seconds=0.3)
    flow.step("b")(lambda ctx, run: LOG.append("b"))
    started = time.time()
    run_id = flow.start(rt.ctx())
    drain(rt, lambda: LOG == ["a"])
    row = workflows.get(rt.store, run_id)
    assert row is not None and (row["state"], row["step"]) == ("waiting", "b")
    assert row["wake_at"] == pytest.approx(workflows.steps(rt.store, run_id)["nap"]["until"])
    assert row["wake_at"] >= started + 0.3
    drain(rt, lambda: run_state(rt, run_id) == "done")
    assert LOG == ["a", "b"]
    assert time.time() >= row["wake_at"]


def test_a_step_that_fails_for_good_fails_the_run_and_compensates(rt: Runtime) -> None:
    run_id = SHIP.start(rt.ctx(), {"sku": "tea", "card": "declined"})
    drain(rt, lambda: run_state(rt, run_id) == "compensated", timeout=10)
    assert LOG == [
        "reserve tea",
        "charge attempt 1",
        "charge attempt 2",
        "release 7 because step 'charge': RuntimeError: card declined",
    ]
    row = workflows.get(rt.store, run_id)
    assert row is not None and "card declined" in row["error"]
    assert "charge" not in workflows.steps(rt.store, run_id)


def test_a_start_commits_with_its_transaction_and_a_key_starts_once(rt: Runtime) -> None:
    ctx = rt.ctx()
    with pytest.raises(RuntimeError), ctx.store.tx():
        SHIP.start(ctx, {"sku": "tea"})
        raise RuntimeError("the command failed")
    assert ctx.store.query("SELECT * FROM _orion_workflows") == ()
    assert ctx.store.query("SELECT * FROM _orion_jobs") == ()
    first = SHIP.start(ctx, {"sku": "tea"}, key="order-1")
    assert SHIP.start(ctx, {"sku": "tea"}, key="order-1") == first
    assert len(ctx.store.query("SELECT * FROM _orion_workflows")) == 1


def test_a_repeated_step_job_never_redoes_a_finished_step(rt: Runtime) -> None:
    run_id = SHIP.start(rt.ctx(), {"sku": "tea"})
    drain(rt, lambda: run_state(rt, run_id) == "done")
    # a stale duplicate of the first step's job (a retry after a crash, say)
    job_id = jobs.enqueue(rt.ctx(), workflows.STEP_KIND, {"workflow": run_id, "step": "reserve"})
    drain(rt, lambda: jobs.get(rt.store, job_id)["state"] == "done")  # type: ignore[index]
    assert LOG == ["reserve tea", "charge attempt 1"]


def test_a_workflow_needs_steps_and_unique_step_names() -> None:
    flow = workflows.workflow("t.empty")
    with pytest.raises(ValueError, match="already has a step named 'x'"):
        flow.step("x")(lambda ctx, run: None)
        flow.step("x")(lambda ctx, run: None)
    with pytest.raises(ValueError, match="exactly one"):
        flow.sleep("s")


def worker(db: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.jobs_worker", db, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_worker_killed_mid_workflow_resumes_at_the_first_unfinished_step(rt: Runtime) -> None:
    run_id = FLOW.start(rt.ctx())
    db = rt.store.path
    first = worker(db, "--block", "--lease", "0.5")
    try:
        deadline = time.monotonic() + 15
        while not rt.store.query("SELECT * FROM ran WHERE what = 'second'"):
            assert time.monotonic() < deadline, first.stdout.read() if first.stdout else ""
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)  # mid-step: "second" started, never finished
        first.communicate(timeout=10)
    assert set(workflows.steps(rt.store, run_id)) == {"first", "nap"}
    time.sleep(0.6)  # the dead worker's lease runs out
    second = worker(db, "--burst")
    output, _ = second.communicate(timeout=30)
    assert second.returncode == 0, output
    assert run_state(rt, run_id) == "done"
    ran = [(r["what"], r["pid"]) for r in rt.store.query("SELECT what, pid FROM ran ORDER BY rowid")]
    assert [what for what, _ in ran] == ["first", "second", "second", "third"]
    assert ran[0][1] == ran[1][1] == first.pid  # finished before the crash: never redone
    assert ran[2][1] == ran[3][1] == second.pid  # the unfinished step again, then the rest
    results = workflows.steps(rt.store, run_id)
    assert (results["first"], results["second"], results["third"]) == ({"n": 1}, {"n": 2}, {"n": 3})
