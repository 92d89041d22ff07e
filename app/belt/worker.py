"""``flask orion worker`` and ``flask orion jobs``: run jobs in a process of their own, operate them.

    flask orion worker                    # until SIGTERM (a systemd unit's ExecStart)
    flask orion worker --burst            # run what is due now, then exit (cron, tests)
    flask orion jobs                      # counts by state, and the dead letter
    flask orion jobs retry 42             # a dead job gets a fresh set of attempts
    flask orion jobs discard 42

The worker runs gevent-patched, as gunicorn's gevent worker does: handlers may wait on the
network while the lease keeps being renewed. The flask CLI imports the app unpatched, so the
command re-executes itself once with gevent's patching done first (same pid, same arguments).
SIGTERM stops claiming, lets running jobs finish (``--grace`` seconds), puts the rest back in
the queue, and closes the stores.
"""

from __future__ import annotations

import os
import signal
import sys

import click
import gevent
from flask.cli import AppGroup, ScriptInfo

from . import jobs as jobs_mod
from .runtime import runtime

_PATCHED = (
    "from gevent import monkey; monkey.patch_all()\n"
    "import sys\n"
    "from flask.cli import main\n"
    "sys.argv[0] = 'flask'\n"
    "main()\n"
)


@click.command("worker")
@click.option("--concurrency", default=4, show_default=True, help="Jobs run at once (greenlets).")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between looks for due jobs when idle.")
@click.option("--lease", default=30.0, show_default=True, help="Seconds a claim lasts unless renewed.")
@click.option("--grace", default=10.0, show_default=True, help="Seconds running jobs get after SIGTERM.")
@click.option("--burst", is_flag=True, help="Run the jobs due now, then exit.")
def worker(concurrency: int, poll: float, lease: float, grace: float, burst: bool) -> None:
    """Run jobs and workflow steps from every store of the app, in this process."""
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        info = click.get_current_context().find_object(ScriptInfo)
        if info is not None and info.app_import_path and "FLASK_APP" not in os.environ:
            os.environ["FLASK_APP"] = info.app_import_path
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-c", _PATCHED, *sys.argv[1:]])  # noqa: S606 - our own interpreter
    rt = runtime()
    stop = lambda: setattr(rt, "stopping", True)  # noqa: E731
    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    click.echo(f"orion worker {os.getpid()}: {concurrency} at once, stores: {len(rt.all_stores())}", err=True)
    try:
        runner = jobs_mod.Runner(rt, concurrency=concurrency, poll=poll, lease=lease, all_tenants=True)
        if burst:
            runner.maintain()
            while runner.run_pending():
                pass
        else:
            runner.start()
            while not rt.stopping:
                gevent.sleep(0.1)
            runner.stop(timeout=grace)
    finally:
        rt.stopping = True
        rt.shutdown(close_store=True)
    s = runner.stats
    click.echo(
        f"orion worker {os.getpid()}: done ({s.succeeded} succeeded, {s.retried} to retry, {s.dead} dead, "
        f"{s.released} put back)",
        err=True,
    )


@click.group("jobs", cls=AppGroup, invoke_without_command=True)
@click.pass_context
def jobs(context: click.Context) -> None:
    """Background jobs: counts and the dead letter (no subcommand), retry, discard."""
    if context.invoked_subcommand is None:
        context.invoke(jobs_list)


@jobs.command("list")
@click.option("--state", default="dead", show_default=True, help="queued, retrying, running, done or dead.")
def jobs_list(state: str) -> None:
    """Counts by state per store, then the jobs in --state."""
    rt = runtime()
    for tenant, store in rt.all_stores():
        counts = jobs_mod.counts(store)
        where = f"workspace {tenant}" if tenant else "main store"
        click.echo(f"{where}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
        for row in jobs_mod.listing(store, state):
            error = (row["last_error"] or "").splitlines()[0] if row["last_error"] else ""
            click.echo(
                f"  #{row['id']} {row['kind']} {row['state']} attempts {row['attempts']}/{row['max_attempts']} {error}"
            )


def _act(verb: str, job_id: int, tenant: str | None) -> None:
    rt = runtime()
    ctx = rt.ctx_for(tenant)
    done = (jobs_mod.retry if verb == "retry" else jobs_mod.discard)(ctx, job_id)
    if not done:
        raise click.ClickException(f"Job #{job_id} is not dead (or does not exist); only dead jobs can be {verb}ed.")
    click.echo(f"job #{job_id}: {'queued again' if verb == 'retry' else 'discarded'}")


@jobs.command("retry")
@click.argument("job_id", type=int)
@click.option("--tenant", default=None, help="The workspace whose store holds the job.")
def jobs_retry(job_id: int, tenant: str | None) -> None:
    """Give a dead job a fresh set of attempts, due now."""
    _act("retry", job_id, tenant)


@jobs.command("discard")
@click.argument("job_id", type=int)
@click.option("--tenant", default=None, help="The workspace whose store holds the job.")
def jobs_discard(job_id: int, tenant: str | None) -> None:
    """Delete a dead job."""
    _act("discard", job_id, tenant)
