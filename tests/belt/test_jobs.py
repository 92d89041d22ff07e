"""app.belt.jobs: a transactional outbox, leases, retries, the dead letter, unique keys, tenants,
schedules, and two real processes sharing one file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from app.belt import Bus, Ctx, Store, jobs
from app.belt.runtime import Runtime
from tests.support import jobs_worker
from tests.support.jobs_worker import prepare

ROOT = Path(__file__).resolve().parents[2]
CALLS: list[tuple[str, Any]] = []


@jobs.handler("t.echo")
def echo(ctx: Ctx, job: jobs.Job) -> Any:
    CALLS.append(("echo", (job.payload, ctx.tenant, ctx.store.path)))
    return {"echo": job.payload}


@jobs.handler("t.flaky", backoff=0.01, max_backoff=0.02)
def flaky(ctx: Ctx, job: jobs.Job) -> str:
    CALLS.append(("flaky", job.attempt))
    if job.attempt < job.payload["succeed_on"]:
        raise ConnectionError(f"the partner is down (attempt {job.attempt})")
    return "ok"


def _dead_hook(ctx: Ctx, job: jobs.Job, error: str) -> None:
    ctx.store.exec("INSERT INTO ran (what, ref, attempt) VALUES ('on_dead', ?, ?)", (job.id, job.attempt))


@jobs.handler("t.doomed", backoff=0.01, max_backoff=0.01, on_dead=_dead_hook)
def doomed(ctx: Ctx, job: jobs.Job) -> None:
    raise ValueError(f"bad input {job.payload!r}")


@jobs.handler("t.slow", timeout=0.05)
def slow(ctx: Ctx, job: jobs.Job) -> None:
    gevent.sleep(1)


@jobs.handler("t.progress")
def with_progress(ctx: Ctx, job: jobs.Job) -> None:
    for step in (1, 2):
        jobs.progress(ctx, job.id, step / 2)
        CALLS.append(("progress", jobs.get(ctx.store, job.id)["progress"]))  # type: ignore[index]


@jobs.handler("t.sleepy")
def sleepy(ctx: Ctx, job: jobs.Job) -> None:
    CALLS.append(("sleepy", job.attempt))
    gevent.sleep(30)


@pytest.fixture(autouse=True)
def clear_calls() -> None:
    CALLS.clear()


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    store = prepare(tmp_path / "app.sqlite")
    yield Runtime(store=store, bus=Bus())
    store.close()


def state(store: Store, job_id: int) -> dict[str, Any]:
    row = jobs.get(store, job_id)
    assert row is not None
    return dict(row)


def run_until(runner: jobs.Runner, done: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        if not runner.run_pending():
            gevent.sleep(0.005)


# enqueue: a transactional outbox


def test_a_job_commits_or_rolls_back_with_the_write_that_asked_for_it(rt: Runtime) -> None:
    ctx = rt.ctx()
    ctx.store.exec("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    with pytest.raises(RuntimeError), ctx.store.tx():
        ctx.store.exec("INSERT INTO orders DEFAULT VALUES")
        jobs.enqueue(ctx, "t.echo", {"order": 1})
        raise RuntimeError("the command failed after enqueueing")
    assert ctx.store.query("SELECT * FROM _orion_jobs") == ()
    with ctx.store.tx():
        ctx.store.exec("INSERT INTO orders DEFAULT VALUES")
        job_id = jobs.enqueue(ctx, "t.echo", {"order": 2})
    row = state(ctx.store, job_id)
    assert (row["kind"], row["payload"], row["state"], row["attempts"]) == ("t.echo", '{"order":2}', "queued", 0)
    assert jobs.Runner(rt).run_pending() == 1
    row = state(ctx.store, job_id)
    assert (row["state"], row["result"], row["progress"]) == ("done", '{"echo":{"order":2}}', 1)
    assert CALLS == [("echo", ({"order": 2}, None, ctx.store.path))]


def test_enqueue_refuses_an_unknown_kind_and_a_payload_that_is_not_json(rt: Runtime) -> None:
    with pytest.raises(ValueError, match=r"No job handler is registered for 't\.ehco'\. Did you mean 't\.echo'\?"):
        jobs.enqueue(rt.ctx(), "t.ehco")
    with pytest.raises(ValueError, match="must be JSON"):
        jobs.enqueue(rt.ctx(), "t.echo", {"when": object()})
    with pytest.raises(ValueError, match="at least one attempt"):
        jobs.enqueue(rt.ctx(), "t.echo", max_attempts=0)


def test_a_job_waits_for_its_run_at(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "t.echo", "later", delay=0.3)
    runner = jobs.Runner(rt)
    assert runner.run_pending() == 0
    run_until(runner, lambda: state(rt.store, job_id)["state"] == "done")


def test_unique_keys_collapse_concurrent_duplicates(rt: Runtime) -> None:
    ids = [gevent.spawn(jobs.enqueue, rt.ctx(), "t.echo", n, unique_key="daily-report") for n in range(10)]
    gevent.joinall(ids, raise_error=True)
    assert len({g.value for g in ids}) == 1
    assert len(rt.store.query("SELECT * FROM _orion_jobs")) == 1
    jobs.Runner(rt).run_pending()
    # once it is done the key is free again
    again = jobs.enqueue(rt.ctx(), "t.echo", "next day", unique_key="daily-report")
    assert again != ids[0].value


def test_a_failing_job_retries_with_backoff_then_succeeds(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "t.flaky", {"succeed_on": 3})
    runner = jobs.Runner(rt)
    runner.run_pending()
    row = state(rt.store, job_id)
    assert row["state"] == "queued" and row["attempts"] == 1
    assert "ConnectionError: the partner is down (attempt 1)" in row["last_error"]
    assert row["run_at"] > time.time() - 0.001  # it waits its backoff
    assert jobs.counts(rt.store)["retrying"] == 1
    run_until(runner, lambda: state(rt.store, job_id)["state"] == "done")
    assert [c for c in CALLS if c[0] == "flaky"] == [("flaky", 1), ("flaky", 2), ("flaky", 3)]
    assert runner.stats.retried == 2 and runner.stats.succeeded == 1


def test_after_the_last_attempt_a_job_is_dead_with_its_error_and_can_be_retried_or_discarded(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "t.doomed", "x", max_attempts=3)
    runner = jobs.Runner(rt)
    run_until(runner, lambda: state(rt.store, job_id)["state"] == "dead")
    row = state(rt.store, job_id)
    assert row["attempts"] == 3
    assert row["last_error"].startswith("ValueError: bad input 'x'")
    assert "doomed" in row["last_error"]  # where it happened
    # the on_dead hook ran in the same transaction as the dead letter
    assert [tuple(r) for r in rt.store.query("SELECT what, ref, attempt FROM ran")] == [("on_dead", job_id, 3)]
    assert jobs.counts(rt.store)["dead"] == 1
    assert [r["id"] for r in jobs.listing(rt.store, "dead")] == [job_id]
    # retry: a fresh set of attempts, due now
    assert jobs.retry(rt.ctx(), job_id)
    row = state(rt.store, job_id)
    assert (row["state"], row["attempts"]) == ("queued", 0)
    assert not jobs.retry(rt.ctx(), job_id)  # not dead any more
    run_until(runner, lambda: state(rt.store, job_id)["state"] == "dead")
    assert jobs.discard(rt.ctx(), job_id)
    assert jobs.get(rt.store, job_id) is None


def test_a_job_without_a_handler_here_is_dead_with_the_fix(rt: Runtime) -> None:
    jobs.enqueue(rt.ctx(), "t.echo")
    rt.store.exec("UPDATE _orion_jobs SET kind = 't.gone'")
    jobs.Runner(rt).run_pending()
    [row] = rt.store.query("SELECT state, last_error FROM _orion_jobs")
    assert row["state"] == "dead"
    assert "No handler for job kind 't.gone'" in row["last_error"] and "Deploy the handler" in row["last_error"]


def test_a_handler_that_overruns_its_timeout_fails_the_attempt(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "t.slow", max_attempts=1)
    jobs.Runner(rt).run_pending()
    row = state(rt.store, job_id)
    assert row["state"] == "dead"
    assert "longer than the handler's timeout of 0.05s" in row["last_error"]


def test_progress_is_recorded_and_published(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "t.progress")
    heard: list[str] = []
    stop = rt.bus.subscribe(f"jobs:{job_id}", lambda: heard.append("tick"))
    try:
        jobs.Runner(rt).run_pending()
    finally:
        stop()
    assert [c for c in CALLS if c[0] == "progress"] == [("progress", 0.5), ("progress", 1.0)]
    assert len(heard) >= 3  # two progress updates and the finish


def test_handlers_run_bound_to_the_tenant_that_enqueued_them(tmp_path: Path) -> None:
    main, acme = prepare(tmp_path / "main.sqlite"), prepare(tmp_path / "acme.sqlite")
    acme.tenant = "acme"
    rt = Runtime(
        store=main, bus=Bus(), tenant_store=lambda key: {"acme": acme}[key], tenant_stores=lambda: [("acme", acme)]
    )
    try:
        heard: list[str] = []
        stop = rt.bus.subscribe("acme:jobs", lambda: heard.append("acme:jobs"))
        acme_job = jobs.enqueue(rt.ctx_for("acme"), "t.echo", "for acme")
        main_job = jobs.enqueue(rt.ctx(), "t.echo", "for everyone")
        assert acme.one("SELECT tenant FROM _orion_jobs WHERE id = ?", (acme_job,))["tenant"] == "acme"  # type: ignore[index]
        assert jobs.Runner(rt).run_pending() == 2
        stop()
        assert sorted(c[1] for c in CALLS) == sorted(
            [("for acme", "acme", acme.path), ("for everyone", None, main.path)]
        )
        assert state(acme, acme_job)["state"] == "done" and state(main, main_job)["state"] == "done"
        assert heard  # the tenant's topics, prefixed
    finally:
        main.close()
        acme.close()


# the in-process runner


def test_a_started_runner_runs_a_job_as_soon_as_its_transaction_commits(rt: Runtime) -> None:
    runner = jobs.Runner(rt, concurrency=2, poll=5.0).start()
    try:
        started = time.monotonic()
        job_id = jobs.enqueue(rt.ctx(), "t.echo", "now")
        while state(rt.store, job_id)["state"] != "done":
            assert time.monotonic() - started < 2, "the runner was not woken by the commit"
            gevent.sleep(0.01)
    finally:
        runner.stop()


def test_stopping_interrupts_a_running_job_and_puts_it_back_without_spending_an_attempt(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "t.sleepy")
    runner = jobs.Runner(rt, concurrency=1, poll=0.01).start()
    while not CALLS:
        gevent.sleep(0.01)
    assert state(rt.store, job_id)["state"] == "running"
    runner.stop(timeout=0.1)
    row = state(rt.store, job_id)
    assert (row["state"], row["attempts"]) == ("queued", 0)
    assert runner.stats.released == 1


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_new_attempt(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "t.echo", "contested")
    slow = jobs.Runner(rt, lease=0.05, name="slow")
    claimed = slow._claim(rt.store)
    assert claimed is not None
    time.sleep(0.06)  # the lease runs out: another worker takes the job
    fast = jobs.Runner(rt, name="fast")
    assert fast.run_pending() == 1
    assert (state(rt.store, job_id)["attempts"], state(rt.store, job_id)["worker"]) == (2, "fast")
    slow._execute(rt.store, claimed)  # the slow worker finishes its stale attempt 1
    assert slow.stats.lost_leases == 1
    row = state(rt.store, job_id)
    assert (row["state"], row["attempts"], row["worker"]) == ("done", 2, "fast")


# periodic jobs


def test_a_schedule_fires_once_per_due_time_however_many_runners_look(rt: Runtime) -> None:
    entry = jobs.schedule("t.echo", cron="*/5 * * * *", payload="tick", name="t.every-five")
    try:
        t0 = 1_767_261_720.0  # 2026-01-01 10:02 UTC
        a, b = jobs.Runner(rt), jobs.Runner(rt)
        assert jobs.fire_due(rt.ctx(), t0) == []  # first sight: due at 10:05
        [row] = rt.store.query("SELECT next_at FROM _orion_schedules WHERE name = 't.every-five'")
        assert row["next_at"] == entry.next_after(t0) == t0 + 180
        a.maintain(t0 + 181)
        b.maintain(t0 + 181)
        assert jobs.fire_due(rt.ctx(), t0 + 182) == []
        assert len(rt.store.query("SELECT * FROM _orion_jobs WHERE kind = 't.echo'")) == 1
        assert a.run_pending() == 1
        assert jobs.fire_due(rt.ctx(), t0 + 480) == ["t.every-five"]  # 10:10
    finally:
        jobs._SCHEDULES.pop("t.every-five")


def test_schedule_refuses_a_bad_spec() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        jobs.schedule("t.echo")
    with pytest.raises(ValueError, match="minute 99 is out of range"):
        jobs.schedule("t.echo", cron="99 * * * *")
    with pytest.raises(ValueError, match="matches no time"):
        jobs.schedule("t.echo", cron="0 0 30 2 *")


# two real processes sharing one file


def worker(db: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.jobs_worker", str(db), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stdout.read()


def test_two_processes_claiming_from_one_file_never_run_the_same_attempt_twice(rt: Runtime) -> None:
    ctx = rt.ctx()
    with ctx.store.tx():
        ids = [jobs.enqueue(ctx, "test.record", n) for n in range(150)]
    procs = [worker(Path(rt.store.path), "--burst", "--concurrency", "4") for _ in range(2)]
    for proc in procs:
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output
    rows = rt.store.query("SELECT ref, attempt, pid FROM ran WHERE what = 'record'")
    attempts = [(r["ref"], r["attempt"]) for r in rows]
    assert len(attempts) == len(set(attempts)), "an attempt ran twice"
    assert sorted(r["ref"] for r in rows) == sorted(ids)  # each job ran exactly once
    assert {r["attempt"] for r in rows} == {1}
    assert jobs.counts(rt.store)["done"] == 150
    assert len({r["pid"] for r in rows}) == 2, "both processes should have taken jobs"


def test_a_killed_workers_lease_expires_and_the_job_runs_again(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "test.block")
    proc = worker(Path(rt.store.path), "--block", "--lease", "0.6")
    try:
        wait_ready(proc)
        deadline = time.monotonic() + 10
        while not rt.store.query("SELECT * FROM ran WHERE what = 'block'"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    row = state(rt.store, job_id)
    assert (row["state"], row["attempts"]) == ("running", 1)
    runner = jobs.Runner(rt)
    assert runner.run_pending() == 0  # the dead worker's lease still holds it
    time.sleep(0.7)
    assert runner.run_pending() == 1
    row = state(rt.store, job_id)
    assert (row["state"], row["attempts"], row["result"]) == ("done", 2, '"finished"')
    runs = rt.store.query("SELECT attempt, pid FROM ran WHERE what = 'block' ORDER BY attempt")
    assert [(r["attempt"], r["pid"] == os.getpid()) for r in runs] == [(1, False), (2, True)]


def test_a_job_whose_worker_keeps_dying_ends_dead_not_in_a_loop(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "t.echo", max_attempts=1)
    dying = jobs.Runner(rt, lease=0.01, name="dies")
    assert dying._claim(rt.store) is not None  # ... and the process dies here
    time.sleep(0.02)
    jobs.Runner(rt).run_pending()
    row = state(rt.store, job_id)
    assert row["state"] == "dead"
    assert "its lease expired" in row["last_error"]
    assert CALLS == []


def test_the_worker_module_is_importable_without_side_effects() -> None:
    # The tests and the worker processes share these handlers; importing them starts nothing.
    assert "test.record" in jobs.handlers() and jobs_worker.BLOCK == {"on": False}
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(":memory:").execute("SELECT * FROM ran")


def test_a_worker_process_finds_due_jobs_of_tenants_it_has_not_opened(tmp_path: Path) -> None:
    from app.belt import Tenants

    main = prepare(tmp_path / "main.sqlite")
    tenants = Tenants(
        tmp_path / "tenants", migrate=lambda store: store.migrate("orion", jobs_worker.MIGRATIONS) and None
    )
    rt = Runtime(store=main, bus=Bus(), tenant_store=tenants.store, tenant_stores=tenants.open_stores)
    rt.tenants = tenants
    try:
        tenants.store("acme", create=True)
        jobs.enqueue(rt.ctx_for("acme"), "t.echo", "for acme")
        tenants.close("acme")  # a fresh worker process has no tenant store open
        assert jobs.Runner(rt).run_pending() == 0
        assert jobs.Runner(rt, all_tenants=True).run_pending() == 1
        assert CALLS == [("echo", ("for acme", "acme", str(tenants.path("acme"))))]
    finally:
        tenants.close_all()
        main.close()


def test_a_job_whose_tenant_cannot_be_opened_here_fails_its_attempts_with_the_reason(rt: Runtime) -> None:
    job_id = jobs.enqueue(rt.ctx(), "t.echo", max_attempts=1)
    rt.store.exec("UPDATE _orion_jobs SET tenant = 'gone'")  # this runtime has no tenancy
    jobs.Runner(rt).run_pending()
    row = state(rt.store, job_id)
    assert row["state"] == "dead" and "no tenancy configured" in row["last_error"]
    assert CALLS == []
