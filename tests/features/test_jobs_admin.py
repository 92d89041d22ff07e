"""The Jobs panel over real sockets: live progress, the dead letter with retry and discard, a
separate `flask orion worker` process, and who may see it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.accounts import (
    ACCOUNTS,
    BROWSER,
    DATASTAR,
    HTML,
    JSON,
    call,
    execute,
    query,
    serving,
    sign_up,
)
from tests.support.server import ROOT, LiveServer
from tests.support.sse import SSEClient


def insert_job(server: LiveServer, kind: str, payload: object, state: str = "queued", error: str | None = None) -> int:
    """A job written by "another process" (this test) straight into the server's file."""
    now = time.time()
    execute(
        server,
        "INSERT INTO _orion_jobs (kind, payload, state, run_at, attempts, max_attempts, last_error, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, 3, ?, ?, ?)",
        (kind, json.dumps(payload), state, now, 3 if state == "dead" else 0, error, now, now),
    )
    return int(query(server, "SELECT max(id) AS id FROM _orion_jobs")[0]["id"])


def job(server: LiveServer, job_id: int) -> dict[str, object] | None:
    rows = query(server, "SELECT * FROM _orion_jobs WHERE id = ?", (job_id,))
    return dict(rows[0]) if rows else None


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("jobs")) as live:
        yield live


def test_the_panel_renders_before_javascript(server: LiveServer) -> None:
    answer = call(server, "GET", "/admin/jobs", headers=HTML)
    assert answer.status == 200, answer.text[:300]
    assert '<section id="jobs-panel"' in answer.text
    assert 'action="/admin/jobs/demo/export"' in answer.text and 'action="/admin/jobs/demo/onboarding"' in answer.text
    assert "/admin/jobs/live" in answer.text


def test_a_running_jobs_progress_bar_moves_live_and_it_ends_done(server: LiveServer) -> None:
    with SSEClient(server.url + "/admin/jobs/live") as stream:
        stream.wait_for(lambda e: "jobs-panel" in e.elements)
        answer = call(server, "POST", "/admin/jobs/demo/export", json.dumps({"steps": 4}), {**DATASTAR, **JSON})
        assert answer.status in (200, 204), answer.text
        [row] = query(server, "SELECT id, payload FROM _orion_jobs WHERE kind = 'jobs_admin.export'")
        assert json.loads(row["payload"]) == {"steps": 4, "pause": 0.25}
        job_id = row["id"]
        values = set()
        for _ in range(3):
            event = stream.wait_for(
                lambda e: (
                    f'aria-label="Progress of job {job_id}"' in e.elements
                    and re.search(r'value="([0-9.]+)" aria-label="Progress of job', e.elements) is not None
                    and re.search(r'value="([0-9.]+)" aria-label="Progress of job', e.elements).group(1) not in values
                ),  # type: ignore[union-attr]
                timeout=5,
            )
            values.add(re.search(r'value="([0-9.]+)" aria-label="Progress of job', event.elements).group(1))  # type: ignore[union-attr]
        assert len(values) >= 2  # the bar moved
        stream.wait_for(lambda e: "<strong>1</strong> Done" in e.elements, timeout=5)
    assert job(server, job_id)["state"] == "done"  # type: ignore[index]


def test_a_dead_job_shows_up_live_and_can_be_retried_then_discarded(server: LiveServer) -> None:
    with SSEClient(server.url + "/admin/jobs/live") as stream:
        stream.wait_for(lambda e: "jobs-panel" in e.elements)
        # written by another process: the server's runner notices within a poll (1 s)
        dead = insert_job(server, "jobs_admin.export", {"steps": 1, "pause": 0}, "dead", "ConnectionError: down\nat x")
        stream.wait_for(lambda e: f'id="job-{dead}-retry"' in e.elements and "ConnectionError: down" in e.elements)
        key = {"Idempotency-Key": "retry-once"}
        first = call(
            server, "POST", f"/admin/jobs/{dead}/retry", json.dumps({"tenant": ""}), {**DATASTAR, **JSON, **key}
        )
        assert first.status == 200 and "queued again" in first.text
        again = call(
            server, "POST", f"/admin/jobs/{dead}/retry", json.dumps({"tenant": ""}), {**DATASTAR, **JSON, **key}
        )
        assert again.headers.get("idempotent-replayed") == "true" and again.text == first.text
        wait_until(lambda: job(server, dead)["state"] == "done", what="the retried job to run")  # type: ignore[index]
        # a retry of a job that is no longer dead is refused with the reason, as a toast
        late = call(server, "POST", f"/admin/jobs/{dead}/retry", json.dumps({}), {**DATASTAR, **JSON})
        assert late.status == 200 and "not in the dead letter any more" in late.text
        other = insert_job(server, "jobs_admin.flaky", {}, "dead", "ConnectionError: partner.example is down")
        stream.wait_for(lambda e: f'id="job-{other}-discard"' in e.elements)
        # a plain form post (no JavaScript): 303 back to the page
        answer = call(server, "POST", f"/admin/jobs/{other}/discard", {"tenant": ""}, BROWSER)
        assert answer.status == 303
        assert job(server, other) is None
        stream.wait_for(lambda e: "jobs-panel" in e.elements and f'id="job-{other}' not in e.elements)
    actions = [r["action"] for r in query(server, "SELECT action FROM _orion_audit WHERE action LIKE 'jobs.%'")]
    assert "jobs.retry" in actions and "jobs.discard" in actions


def test_the_onboarding_workflow_shows_its_status(server: LiveServer) -> None:
    answer = call(server, "POST", "/admin/jobs/demo/onboarding", json.dumps({}), {**DATASTAR, **JSON})
    assert answer.status in (200, 204)
    [run] = query(server, "SELECT id FROM _orion_workflows WHERE name = 'onboarding'")
    wait_until(
        lambda: query(server, "SELECT state FROM _orion_workflows WHERE id = ?", (run["id"],))[0]["state"] == "waiting"
    )
    page = call(server, "GET", "/admin/jobs", headers=HTML).text
    assert (
        f'id="run-{run["id"]}"' in page
        and "waiting until" in page
        and "at <em>tip</em>" in page
        and "(2 step(s) finished)" in page
    )
    steps = {
        r["name"]: json.loads(r["result"]) for r in query(server, "SELECT name, result FROM _orion_workflow_steps")
    }
    assert steps["welcome"]["sent_to"] == "owner@localhost"


def test_a_separate_worker_process_runs_the_jobs_and_the_panel_repaints(tmp_path: Path) -> None:
    # This server also runs with the write queue on (group commit, fsync per batch).
    env = {"ORION_JOB_WORKERS": "0", "ORION_WRITE_QUEUE": "1", "ORION_SYNCHRONOUS": "FULL"}
    server = LiveServer(tmp_path / "app.sqlite", env=env).start()
    try:
        with SSEClient(server.url + "/admin/jobs/live") as stream:
            stream.wait_for(lambda e: "jobs-panel" in e.elements)
            answer = call(server, "POST", "/admin/jobs/demo/export", json.dumps({"steps": 2}), {**DATASTAR, **JSON})
            assert answer.status in (200, 204)
            # answered, so durable: another process (this test) sees the job at once
            [row] = query(server, "SELECT id, state FROM _orion_jobs")
            time.sleep(0.3)
            assert job(server, row["id"])["state"] == "queued"  # type: ignore[index]  # no in-process workers
            env = {**server.env, "FLASK_APP": "app:create_app"}
            worker = subprocess.run(
                [sys.executable, "-m", "flask", "orion", "worker", "--burst"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert worker.returncode == 0, worker.stderr[-2000:]
            assert "1 succeeded" in worker.stderr
            done = job(server, row["id"])
            assert done is not None and done["state"] == "done"
            assert str(done["worker"]).split(":")[1] != str(server.proc.pid if server.proc else "")  # type: ignore[union-attr]
            # the server notices the worker's change on its next poll and repaints the panel
            stream.wait_for(lambda e: "<strong>1</strong> Done" in e.elements, timeout=5)
        listing = subprocess.run(
            [sys.executable, "-m", "flask", "orion", "jobs"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "main store: 0 queued, 0 retrying, 0 running, 1 done, 0 dead" in listing.stdout, listing.stderr[-1000:]
    finally:
        assert server.stop() == 0
    assert query(server, "PRAGMA integrity_check")[0][0] == "ok"


def test_only_those_who_may_manage_jobs_see_the_panel(tmp_path: Path) -> None:
    with serving(tmp_path, ACCOUNTS) as server:
        owner = sign_up(server, "owner@example.com", "correct horse battery")
        member = sign_up(server, "member@example.com", "correct horse battery")
        assert call(server, "GET", "/admin/jobs", headers=HTML, token=owner).status == 200
        refused = call(server, "GET", "/admin/jobs", headers=HTML, token=member)
        assert refused.status == 403 and "Only admins can see the jobs" in refused.text
        dead = insert_job(server, "jobs_admin.flaky", {}, "dead", "boom")
        answer = call(server, "POST", f"/admin/jobs/{dead}/discard", json.dumps({}), JSON, token=member)
        assert answer.status == 403
        assert job(server, dead) is not None
        severed = call(server, "GET", "/admin/jobs/live", token=member)
        assert "Access revoked" in severed.text and "<progress" not in severed.text
