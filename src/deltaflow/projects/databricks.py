"""The databricks backend of ``deltaflow.projects.run``: a project run as a one-time Databricks job run.

``run_databricks`` packs the project folder into a content-hashed ``.tar.gz`` (same files → same
name, so an unchanged project is not uploaded again), uploads it with the launcher
(:mod:`deltaflow.projects._remote`) to workspace files, DBFS or a Volume, and submits one
``spark_python_task`` on a new cluster, an existing cluster or serverless compute. The submit carries
an idempotency token derived from the tracking run id, so a retried submit never starts a second run.
On the cluster the launcher unpacks the archive and runs the entry point with the local backend,
logging into the same tracking run. Here, :class:`DatabricksSubmittedRun` polls with back-off,
prints a progress line per state change, maps the life-cycle/result state to the run status,
propagates cancel, and on failure shows the task's error and log tail.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import tarfile
import time
from pathlib import Path
from typing import Any, Optional

from deltaflow.entities import RunStatus
from deltaflow.errors import DeltaflowError, InvalidArgument
from deltaflow.projects.databricks_config import DatabricksBackendConfig, parse_databricks_config
from deltaflow.projects.databricks_workspace import (home_folder, path_exists, sdk_call, translate_sdk_error,
                                                     upload_file, workspace_client)
from deltaflow.projects.submitted import SubmittedRun

__all__ = ["run_databricks", "DatabricksSubmittedRun", "project_archive", "status_for_state", "TAGS"]

_log = logging.getLogger("deltaflow.projects")
# MLflow's tag names, so MLflow tooling finds the job run of a project run.
TAGS = {"run_url": "mlflow.databricks.runURL", "run_id": "mlflow.databricks.shellJobRunID",
        "job_id": "mlflow.databricks.shellJobID", "webapp": "mlflow.databricks.webappURL"}
ERROR_TAG = "deltaflow.project.error"
_SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", ".pytest_cache", ".mypy_cache", "mlruns", ".ipynb_checkpoints"}
_TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")


def project_archive(project_dir: str) -> tuple[bytes, str]:
    """The project folder as a reproducible ``.tar.gz`` (sorted, no times or owners) and its sha256."""
    root = Path(project_dir)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
            for name in sorted(filenames):
                full = Path(dirpath, name)
                if name.endswith((".pyc", ".pyo")) or full.is_symlink() or not full.is_file():
                    continue
                info = tarfile.TarInfo(full.relative_to(root).as_posix())
                data = full.read_bytes()
                info.size, info.mtime, info.mode = len(data), 0, 0o755 if os.access(full, os.X_OK) else 0o644
                tar.addfile(info, io.BytesIO(data))
    blob = buffer.getvalue()
    return blob, hashlib.sha256(blob).hexdigest()


def status_for_state(life_cycle: str, result: Optional[str]) -> str:
    """A Databricks run's life-cycle / result state as a tracking run status."""
    if life_cycle in ("QUEUED", "PENDING", "BLOCKED", "WAITING_FOR_RETRY"):
        return RunStatus.SCHEDULED
    if life_cycle in ("RUNNING", "TERMINATING"):
        return RunStatus.RUNNING
    if life_cycle == "TERMINATED" and result == "SUCCESS":
        return RunStatus.FINISHED
    if result == "CANCELED":
        return RunStatus.KILLED
    return RunStatus.FAILED


def _check_reachable(tracking_uri: str, host: str) -> None:
    """A store in a folder of this machine cannot be reached from a workspace's cluster (only from a local
    emulator on this machine)."""
    from urllib.parse import urlsplit

    if urlsplit(host or "").hostname in ("127.0.0.1", "localhost", "::1"):
        return
    remote = ("dbfs:/", "/dbfs/", "/Volumes/", "/Workspace/", "metastore:", "s3://", "s3a://", "gs://", "abfss://",
              "az://", "wasbs://", "hdfs://", "databricks")
    if not tracking_uri.startswith(remote):
        raise InvalidArgument(f"the tracking store {tracking_uri!r} is a folder on this machine, which a Databricks "
                              f"cluster of {host} cannot reach; track into a Volume (/Volumes/...), dbfs:/..., an "
                              "object store URI or metastore:<catalog>.<schema>")


def _launcher_source() -> bytes:
    from deltaflow.projects import _remote

    return Path(_remote.__file__).read_bytes()


def _task_parameters(project_dir: str, entry_point: str, parameters: dict[str, str], archive: str, sha: str,
                     run_id: str, experiment_id: str, tracking_uri: str, env_manager: Optional[str]
                     ) -> tuple[list[str], list[str]]:
    """The launcher's arguments and the extra pip requirements (a databricks_spark_job's python_libraries)."""
    from deltaflow.projects.spec import load_project

    args = ["--archive", archive, "--sha256", sha, "--run-id", run_id, "--experiment-id", experiment_id,
            "--tracking-uri", tracking_uri]
    project = load_project(project_dir)
    job = project.databricks_spark_job
    if job is None or job.python_file is None:
        # An MLproject entry point (a databricks_spark_job's too): the local backend runs it on the cluster.
        args += ["--entry-point", entry_point] + (["--env-manager", env_manager] if env_manager else [])
        for name, value in parameters.items():
            args += ["--param", f"{name}={value}"]
        return args, list(job.python_libraries) if job is not None else []
    if entry_point != "main" or parameters:
        _log.warning("deltaflow: this project's databricks_spark_job names python_file %s and its parameters; "
                     "the entry point and parameters given are ignored (as MLflow does)", job.python_file)
    script, script_args = job.python_file, list(job.parameters)
    args += ["--python-file", script, "--"] + script_args
    return args, list(job.python_libraries)


def _task(config: DatabricksBackendConfig, launcher: str, args: list[str], extra_requirements: list[str]
          ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The submit's task and environments (serverless) in Jobs API shape."""
    requirements = ([config.deltaflow_requirement] if config.deltaflow_requirement else []) + extra_requirements
    task: dict[str, Any] = {"task_key": "deltaflow_project",
                            "spark_python_task": {"python_file": launcher, "parameters": args}}
    environments: list[dict[str, Any]] = []
    if config.compute == "serverless":
        spec = {"client": "2", **config.environment}
        spec["dependencies"] = requirements + list(config.environment.get("dependencies", []))
        environments = [{"environment_key": "deltaflow", "spec": spec}]
        task["environment_key"] = "deltaflow"
    else:
        if config.compute == "new_cluster":
            task["new_cluster"] = dict(config.new_cluster or {})
        else:
            task["existing_cluster_id"] = config.existing_cluster_id
        libraries = [{"whl": r} if r.endswith(".whl") else {"pypi": {"package": r}} for r in requirements]
        task["libraries"] = libraries + list(config.libraries)
    if config.timeout_seconds:
        task["timeout_seconds"] = config.timeout_seconds
    return task, environments


def run_databricks(project_dir: str, entry_point: str, parameters: dict[str, str], *, run_id: str,
                   experiment_id: str, tracking_uri: str, backend_config: dict, synchronous: bool,
                   env_manager: Optional[str] = "local") -> "DatabricksSubmittedRun":
    """Submit the project at ``project_dir`` as a Databricks one-time run logging into tracking run ``run_id``.

    Returns the :class:`DatabricksSubmittedRun`; with ``synchronous`` after the run ended (raising
    :class:`~deltaflow.projects.submitted.RunFailed` unless it FINISHED).
    """
    from deltaflow.tracking.client import DeltaflowClient

    client = DeltaflowClient(tracking_uri)
    try:
        config = parse_databricks_config(backend_config)
        w = workspace_client(config.profile, config.host)
        _check_reachable(tracking_uri, w.config.host)
        root = config.upload_to or f"{home_folder(w)}/.deltaflow/projects"
        blob, sha = project_archive(project_dir)
        archive = f"{root}/{sha}.tar.gz"
        launcher_code = _launcher_source()
        launcher = f"{root}/launcher-{hashlib.sha256(launcher_code).hexdigest()[:16]}.py"
        for path, data in ((archive, blob), (launcher, launcher_code)):
            if not sdk_call(f"checking {path}", path_exists, w, path):  # content-addressed: present means same
                upload_file(w, path, data)
        args, extra = _task_parameters(project_dir, entry_point, parameters, archive, sha, run_id, experiment_id,
                                       tracking_uri, env_manager)
        task, environments = _task(config, launcher, args, extra)
        from databricks.sdk.service import jobs

        submitted = sdk_call("submitting the run", w.jobs.submit,
                             run_name=config.run_name or f"deltaflow project {Path(project_dir).name} ({entry_point})",
                             tasks=[jobs.SubmitTask.from_dict(task)],
                             environments=[jobs.JobEnvironment.from_dict(e) for e in environments] or None,
                             idempotency_token=f"deltaflow-{run_id}"[:64])
        databricks_run_id = submitted.run_id
        info = sdk_call("reading the run", w.jobs.get_run, databricks_run_id)
    except BaseException as exc:
        _fail_tracking_run(client, run_id, f"{type(exc).__name__}: {exc}")
        raise
    for key, value in ((TAGS["run_url"], info.run_page_url), (TAGS["run_id"], str(databricks_run_id)),
                       (TAGS["job_id"], str(info.job_id) if info.job_id else None), (TAGS["webapp"], w.config.host)):
        if value:
            client.set_tag(run_id, key, value)
    client.flush()
    _log.info("deltaflow: run %s is Databricks run %s: %s", run_id, databricks_run_id, info.run_page_url)
    submitted_run = DatabricksSubmittedRun(w, databricks_run_id, run_id, client, config, info.run_page_url)
    if synchronous:
        from deltaflow.projects.submitted import RunFailed

        if not submitted_run.wait():
            raise RunFailed(run_id, submitted_run.get_status())
    return submitted_run


def _fail_tracking_run(client: Any, run_id: str, error: str) -> None:
    try:
        client.set_tag(run_id, ERROR_TAG, error[:5000])
        client.set_terminated(run_id, RunStatus.FAILED)
    except Exception:  # noqa: BLE001 - the launch error is the one to report
        _log.warning("deltaflow: could not mark run %s FAILED", run_id, exc_info=True)


class DatabricksSubmittedRun(SubmittedRun):
    """A project run executing as Databricks job run ``databricks_run_id``."""

    def __init__(self, w: Any, databricks_run_id: int, run_id: str, client: Any, config: DatabricksBackendConfig,
                 run_page_url: Optional[str] = None) -> None:
        self._w = w
        self.databricks_run_id = databricks_run_id
        self.run_page_url = run_page_url
        self._run_id = run_id
        self._client = client
        self._config = config
        self._last: Optional[tuple[str, Optional[str]]] = None
        self._final: Optional[str] = None
        self.error: Optional[str] = None
        self.error_trace: Optional[str] = None
        self.logs: Optional[str] = None

    @property
    def run_id(self) -> str:
        return self._run_id

    def _poll(self) -> Any:
        run = sdk_call(f"reading run {self.databricks_run_id}", self._w.jobs.get_run, self.databricks_run_id)
        state = run.state
        now = (state.life_cycle_state.value if state.life_cycle_state else "PENDING",
               state.result_state.value if state.result_state else None)
        if now != self._last:
            self._last = now
            detail = f" ({state.state_message})" if state.state_message else ""
            _log.info("deltaflow: Databricks run %s: %s%s%s", self.databricks_run_id, now[0],
                      f" {now[1]}" if now[1] else "", detail)
        return run

    def get_status(self) -> str:
        if self._final is not None:
            return self._final
        run = self._poll()
        status = status_for_state(*self._last)  # type: ignore[misc]
        if self._last[0] in _TERMINAL:  # type: ignore[index]
            return self._finish(run)
        return status

    def wait(self, timeout: Optional[float] = None) -> bool:
        deadline = time.monotonic() + timeout if timeout is not None else None
        interval = self._config.poll_interval_s
        while True:
            status = self.get_status()
            if self._final is not None:
                return status == RunStatus.FINISHED
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self._run_id} (Databricks run {self.databricks_run_id}) is still {status} "
                                   f"after {timeout} s")
            pause = interval if deadline is None else min(interval, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            interval = min(interval * 1.5, self._config.max_poll_interval_s)

    def cancel(self) -> None:
        if self._final is not None:
            return
        sdk_call(f"cancelling run {self.databricks_run_id}", self._w.jobs.cancel_run, self.databricks_run_id)
        self.wait()

    def _finish(self, run: Any) -> str:
        """Records the terminal status (unless the launcher already did) and, on failure, the task's output."""
        status = status_for_state(*self._last)  # type: ignore[misc]
        if status in (RunStatus.FAILED, RunStatus.KILLED):
            self._read_output(run)
        try:
            current = self._client.get_run(self._run_id).info.status
            if current in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED):
                status = current  # the launcher recorded the entry point's own outcome: it stands
            else:
                if self.error and status == RunStatus.FAILED:
                    self._client.set_tag(self._run_id, ERROR_TAG, self.error[:5000])
                self._client.set_terminated(self._run_id, status)
            self._client.flush()
        except DeltaflowError:
            _log.warning("deltaflow: could not record run %s as %s", self._run_id, status, exc_info=True)
        self._final = status
        return status

    def _read_output(self, run: Any) -> None:
        from databricks.sdk.errors import DatabricksError

        state = run.state
        self.error = state.state_message or None
        tasks = run.tasks or []
        if tasks:
            try:
                output = self._w.jobs.get_run_output(tasks[0].run_id)
            except DatabricksError as exc:
                _log.warning("deltaflow: could not read the output of run %s: %s", self.databricks_run_id,
                             translate_sdk_error(exc, "reading the output"))
            else:
                self.error = output.error or self.error
                self.error_trace, self.logs = output.error_trace, output.logs
        if self._last and self._last[1] == "CANCELED":
            return
        tail = "\n".join((self.logs or "").splitlines()[-30:])
        _log.error("deltaflow: Databricks run %s ended %s: %s%s%s", self.databricks_run_id,
                   self._last[1] or self._last[0] if self._last else "?", self.error or "(no error message)",
                   f"\n--- error trace ---\n{self.error_trace.rstrip()}" if self.error_trace else "",
                   f"\n--- last lines of the task's log ---\n{tail}" if tail else "")
