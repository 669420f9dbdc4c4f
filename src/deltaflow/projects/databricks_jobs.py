"""Databricks jobs from ``jobs/`` specs, through databricks-sdk: deploy (create or update by name),
run now and follow a run, list, delete.

Deploy is idempotent: the job is found by its exact name; none → ``jobs/create``, one → ``jobs/reset``
with the spec's settings (so the job is exactly the spec), more than one → an error naming their ids.
Files the spec names by relative path are uploaded first to ``<upload root>/<job name>/`` (workspace
files by default) and the settings are rewritten to point there; a source-format notebook becomes a
workspace notebook (its path loses ``.py``, as Databricks stores it).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional

from deltaflow.errors import InvalidArgument, NotFound
from deltaflow.projects.databricks_workspace import home_folder, sdk_call, upload_file
from deltaflow.projects.jobs_spec import JobSpec

__all__ = ["deploy_job", "resolve_job", "follow_run", "failure_report", "TERMINAL_STATES"]

_log = logging.getLogger("deltaflow.projects")
TERMINAL_STATES = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
_NOTEBOOK_HEADER = b"# Databricks notebook source"


def _slug(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "-", name).strip("-") or "job"


def _upload_files(w: Any, spec: JobSpec, root: str) -> dict[Path, str]:
    """Uploads the spec's local files under ``root``; returns each file's remote path."""
    base = spec.path.parent.resolve()
    remote: dict[Path, str] = {}
    for local in spec.local_files:
        try:
            relative = local.relative_to(base).as_posix()
        except ValueError:
            relative = local.name
        target = f"{root}/{relative}"
        data = local.read_bytes()
        upload_file(w, target, data)
        notebook = local.suffix == ".py" and data.lstrip().startswith(_NOTEBOOK_HEADER) and \
            not target.startswith(("dbfs:/", "/Volumes/"))
        remote[local] = target[:-3] if notebook else target
    return remote


def _rewrite(settings: dict[str, Any], spec: JobSpec, remote: dict[Path, str]) -> dict[str, Any]:
    out = copy.deepcopy(settings)
    base = spec.path.parent

    def mapped(value: str) -> str:
        local = (base / value).resolve()
        return remote.get(local, value)

    for task in out.get("tasks", []):
        if "spark_python_task" in task:
            task["spark_python_task"]["python_file"] = mapped(task["spark_python_task"]["python_file"])
        if "notebook_task" in task:
            task["notebook_task"]["notebook_path"] = mapped(task["notebook_task"]["notebook_path"])
        for library in task.get("libraries", []) or []:
            for field in ("whl", "requirements"):
                if isinstance(library.get(field), str):
                    library[field] = mapped(library[field])
    return out


def _job_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    from databricks.sdk.service.jobs import JobSettings

    typed = JobSettings.from_dict(settings)
    return {f.name: getattr(typed, f.name) for f in dataclasses.fields(typed) if getattr(typed, f.name) is not None}


def deploy_job(w: Any, spec: JobSpec, upload_to: Optional[str] = None) -> tuple[int, bool]:
    """Creates or updates the spec's job by name; returns ``(job_id, created)``."""
    from databricks.sdk.service.jobs import JobSettings

    existing = [j for j in sdk_call("listing jobs", lambda: list(w.jobs.list(name=spec.name)))
                if j.settings and j.settings.name == spec.name]
    if len(existing) > 1:
        raise InvalidArgument(f"{len(existing)} jobs are named {spec.name!r} (ids "
                              f"{', '.join(str(j.job_id) for j in existing)}); delete the extra ones or rename the spec")
    root = f"{(upload_to or home_folder(w) + '/.deltaflow/jobs').rstrip('/')}/{_slug(spec.name)}"
    settings = _rewrite(spec.settings, spec, _upload_files(w, spec, root))
    if existing:
        job_id = existing[0].job_id
        sdk_call(f"updating job {spec.name!r}", w.jobs.reset, job_id, JobSettings.from_dict(settings))
        return job_id, False
    created = sdk_call(f"creating job {spec.name!r}", w.jobs.create, **_job_kwargs(settings))
    return created.job_id, True


def resolve_job(w: Any, name_or_id: str) -> int:
    """A job id from a number or an exact job name."""
    if re.fullmatch(r"\d+", name_or_id):
        sdk_call(f"reading job {name_or_id}", w.jobs.get, int(name_or_id))
        return int(name_or_id)
    found = [j.job_id for j in sdk_call("listing jobs", lambda: list(w.jobs.list(name=name_or_id)))
             if j.settings and j.settings.name == name_or_id]
    if not found:
        raise NotFound(f"no Databricks job is named {name_or_id!r}; deploy it with 'deltaflow jobs deploy <spec>'")
    if len(found) > 1:
        raise InvalidArgument(f"{len(found)} jobs are named {name_or_id!r} (ids {', '.join(map(str, found))}); "
                              "give the job id")
    return found[0]


def follow_run(w: Any, run_id: int, on_change: Callable[[Any], None], *, poll_s: float = 0.5,
               max_poll_s: float = 15.0, timeout: Optional[float] = None) -> Any:
    """Polls a job run with back-off until it ends; ``on_change(run)`` sees every new state."""
    deadline = time.monotonic() + timeout if timeout else None
    last = None
    interval = poll_s
    while True:
        run = sdk_call(f"reading run {run_id}", w.jobs.get_run, run_id)
        state = (run.state.life_cycle_state, run.state.result_state)
        if state != last:
            last = state
            on_change(run)
        if run.state.life_cycle_state and run.state.life_cycle_state.value in TERMINAL_STATES:
            return run
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"Databricks run {run_id} is still {state[0].value if state[0] else '?'} after "
                               f"{timeout} s")
        time.sleep(interval)
        interval = min(interval * 1.5, max_poll_s)


def failure_report(w: Any, run: Any, log_lines: int = 30) -> str:
    """Each failed task's error, trace and log tail, for a person to read."""
    from databricks.sdk.errors import DatabricksError

    parts = []
    for task in run.tasks or []:
        result = task.state.result_state.value if task.state and task.state.result_state else None
        life = task.state.life_cycle_state.value if task.state and task.state.life_cycle_state else None
        if result in ("SUCCESS", None) and life != "INTERNAL_ERROR" or result in ("UPSTREAM_FAILED", "EXCLUDED"):
            continue
        lines = [f"task {task.task_key} ({result or life}): {task.state.state_message or ''}".rstrip()]
        try:
            output = w.jobs.get_run_output(task.run_id)
        except DatabricksError as exc:
            lines.append(f"  (output not available: {exc})")
        else:
            if output.error:
                lines.append(f"  error: {output.error}")
            if output.error_trace:
                lines.append("  trace:\n" + "\n".join("    " + line for line in output.error_trace.rstrip().splitlines()))
            if output.logs:
                tail = output.logs.rstrip().splitlines()[-log_lines:]
                lines.append("  log tail:\n" + "\n".join("    " + line for line in tail))
        parts.append("\n".join(lines))
    return "\n".join(parts)
