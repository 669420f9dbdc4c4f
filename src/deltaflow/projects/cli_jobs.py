"""``deltaflow jobs``: Databricks jobs from the YAML specs in ``jobs/``.

``deploy SPEC...`` creates or updates each job by name (idempotent), ``run-now JOB`` starts a run and
follows it (exit status 1 when it does not succeed, with each failed task's error and log tail),
``list``, ``runs JOB`` and ``delete JOB``. JOB is a job id or an exact job name. The workspace comes
from databricks-sdk's usual configuration (``DATABRICKS_HOST``/``DATABRICKS_TOKEN``, ``~/.databrickscfg``)
or ``--profile``. Imports only click at load time.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

import click

__all__ = ["jobs"]


def _client(ctx: click.Context) -> Any:
    from deltaflow.projects.databricks_workspace import workspace_client

    return workspace_client(ctx.obj.get("databricks_profile") if ctx.obj else None)


def _params(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="'-P'")
        out[name] = value
    return out


def _time(ms: Optional[int]) -> str:
    if not ms:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _state(run: Any) -> str:
    state = run.state
    life = state.life_cycle_state.value if state and state.life_cycle_state else "?"
    result = state.result_state.value if state and state.result_state else ""
    return f"{life} {result}".strip()


@click.group("jobs")
@click.option("--profile", default=None, help="Profile of ~/.databrickscfg [default: DATABRICKS_HOST/TOKEN, "
                                                "then the DEFAULT profile].")
@click.pass_context
def jobs(ctx: click.Context, profile: Optional[str]) -> None:
    """Deploy and run Databricks jobs from YAML specs (jobs/*.yml)."""
    ctx.ensure_object(dict)
    ctx.obj["databricks_profile"] = profile


@jobs.command("deploy")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--upload-to", default=None, metavar="FOLDER",
              help="Where the specs' local files go [default: /Workspace/Users/<you>/.deltaflow/jobs].")
@click.pass_context
def deploy(ctx: click.Context, specs: tuple[str, ...], upload_to: Optional[str]) -> None:
    """Create or update (by name) the job of each SPEC file; every spec is checked before any call."""
    from deltaflow.projects.databricks_jobs import deploy_job
    from deltaflow.projects.jobs_spec import load_job_spec

    loaded = [load_job_spec(path) for path in specs]
    w = _client(ctx)
    for spec in loaded:
        job_id, created = deploy_job(w, spec, upload_to)
        click.echo(f"{'created' if created else 'updated'} job {spec.name!r} (job_id {job_id}) from {spec.path}")


@jobs.command("run-now")
@click.argument("job")
@click.option("-P", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A job parameter (repeatable).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the run until it ends.")
@click.option("--timeout", type=float, default=None, help="Seconds to follow the run at most.")
@click.pass_context
def run_now(ctx: click.Context, job: str, params: tuple[str, ...], wait: bool, timeout: Optional[float]) -> None:
    """Start a run of JOB (id or name) now; prints its run id and page, then follows it."""
    from deltaflow.projects.databricks_jobs import failure_report, follow_run, resolve_job
    from deltaflow.projects.databricks_workspace import sdk_call

    w = _client(ctx)
    job_id = resolve_job(w, job)
    values = _params(params)
    started = sdk_call(f"starting job {job}", w.jobs.run_now, job_id, job_parameters=values or None)
    run = sdk_call("reading the run", w.jobs.get_run, started.run_id)
    click.echo(f"run {started.run_id} of job {job_id}: {run.run_page_url}", err=True)
    if not wait:
        click.echo(str(started.run_id))
        return

    def progress(current: Any) -> None:
        message = f" ({current.state.state_message})" if current.state.state_message else ""
        click.echo(f"run {started.run_id}: {_state(current)}{message}", err=True)

    final = follow_run(w, started.run_id, progress, timeout=timeout)
    click.echo(f"{started.run_id} {_state(final)}")
    if not (final.state.result_state and final.state.result_state.value == "SUCCESS"):
        click.echo(failure_report(w, final), err=True)
        ctx.exit(1)


@jobs.command("list")
@click.option("--name", default=None, help="Only the job with this exact name (case-insensitive).")
@click.pass_context
def list_jobs(ctx: click.Context, name: Optional[str]) -> None:
    """The workspace's jobs: id, name, schedule, created."""
    from deltaflow.projects.databricks_workspace import sdk_call

    w = _client(ctx)
    rows = sdk_call("listing jobs", lambda: list(w.jobs.list(name=name)))
    click.echo(f"{'job_id':>12}  {'created (UTC)':<19}  {'schedule':<28}  name")
    for job in rows:
        schedule = job.settings.schedule
        cron = f"{schedule.quartz_cron_expression} {schedule.timezone_id}" if schedule else "-"
        click.echo(f"{job.job_id:>12}  {_time(job.created_time):<19}  {cron:<28}  {job.settings.name}")


@jobs.command("runs")
@click.argument("job")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_context
def runs(ctx: click.Context, job: str, limit: int) -> None:
    """The latest runs of JOB (id or name), newest first."""
    import itertools

    from deltaflow.projects.databricks_jobs import resolve_job
    from deltaflow.projects.databricks_workspace import sdk_call

    w = _client(ctx)
    job_id = resolve_job(w, job)
    rows = sdk_call("listing runs", lambda: list(itertools.islice(w.jobs.list_runs(job_id=job_id), limit)))
    click.echo(f"{'run_id':>12}  {'started (UTC)':<19}  {'seconds':>8}  {'trigger':<9}  state")
    for run in rows:
        seconds = f"{(run.end_time - run.start_time) / 1000:.1f}" if run.end_time else "-"
        trigger = run.trigger.value if run.trigger else "-"
        click.echo(f"{run.run_id:>12}  {_time(run.start_time):<19}  {seconds:>8}  {trigger:<9}  {_state(run)}")


@jobs.command("delete")
@click.argument("job")
@click.pass_context
def delete(ctx: click.Context, job: str) -> None:
    """Delete JOB (id or name); its active runs are cancelled."""
    from deltaflow.projects.databricks_jobs import resolve_job
    from deltaflow.projects.databricks_workspace import sdk_call

    w = _client(ctx)
    job_id = resolve_job(w, job)
    sdk_call(f"deleting job {job}", w.jobs.delete, job_id)
    click.echo(f"deleted job {job_id}")
