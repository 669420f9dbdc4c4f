"""The local backend: the entry point as a process on this machine, logging into the tracking run.

The process is started as the leader of its own process group (so cancelling stops everything it
started) in the project folder, under ``bash -c`` (or ``docker run`` for a ``docker_env``), with the
variables that hand it the run: ``DELTAFLOW_RUN_ID`` / ``MLFLOW_RUN_ID``, ``DELTAFLOW_TRACKING_URI`` /
``MLFLOW_TRACKING_URI`` and ``DELTAFLOW_EXPERIMENT_ID`` / ``MLFLOW_EXPERIMENT_ID``. deltaflow's
``start_run()`` in that process (or its first log call) resumes the run, so what it logs lands there.

When the process ends, the launcher records the exit status (tag ``deltaflow.project.exitCode``) and
the run's terminal status, durably: FINISHED for exit status 0 (unless the entry point itself ended the
run FAILED or KILLED), FAILED for any other exit status, KILLED after a cancel.
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Any, Callable, Mapping, Optional

from deltaflow.entities import RunStatus
from deltaflow.projects.environments import Environment, docker_argv
from deltaflow.projects.submitted import LocalSubmittedRun

__all__ = ["EXIT_CODE_TAG", "ERROR_TAG", "run_env_vars", "launch", "recorder"]

EXIT_CODE_TAG = "deltaflow.project.exitCode"
ERROR_TAG = "deltaflow.project.error"
_log = logging.getLogger("deltaflow.projects")


def run_env_vars(run_id: str, experiment_id: str, tracking_uri: str) -> dict[str, str]:
    """The variables that make the entry point's process log into the run (deltaflow's and MLflow's names)."""
    return {
        "DELTAFLOW_RUN_ID": run_id, "MLFLOW_RUN_ID": run_id,
        "DELTAFLOW_TRACKING_URI": tracking_uri, "MLFLOW_TRACKING_URI": tracking_uri,
        "DELTAFLOW_EXPERIMENT_ID": experiment_id, "MLFLOW_EXPERIMENT_ID": experiment_id,
    }


def _child_env(variables: Mapping[str, str], environment: Environment) -> dict[str, str]:
    env = dict(os.environ)
    # Settings that name another run or experiment would contradict the ones handed over.
    for name in ("DELTAFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    if environment.kind in ("virtualenv", "conda"):
        env.pop("PYTHONHOME", None)
    env.update(environment.variables)
    env.update(variables)
    return env


def launch(command: str, work_dir: str, run_id: str, variables: Mapping[str, str], environment: Environment,
           on_exit: Callable[[str, int], Optional[str]], mounts: tuple[str, ...] = ()) -> LocalSubmittedRun:
    """Start ``command`` for ``run_id`` and return its handle (the watcher records its end)."""
    if environment.kind == "docker":
        assert environment.docker is not None  # noqa: S101 - set with kind docker
        argv = docker_argv(environment.docker, work_dir, command, variables, mounts)
    else:
        argv = ["bash", "-c", command]
    _log.info("deltaflow: run %s: %s", run_id, command)
    process = subprocess.Popen(argv, cwd=work_dir, env=_child_env(variables, environment), start_new_session=True)
    return LocalSubmittedRun(run_id, process, on_exit)


def recorder(client: Any, run_id: str, cleanup: Optional[Callable[[], None]] = None
             ) -> Callable[[str, int], Optional[str]]:
    """The ``on_exit`` of a local run: the exit code tag and the terminal status, made durable."""

    def record(status: str, exit_code: int) -> str:
        try:
            if status == RunStatus.FINISHED:
                # The runs table alone, as committed: what the entry point's process recorded is all
                # this needs, and the launcher's own pending RUNNING then goes in the same commit as
                # the end instead of one of its own.
                current = client._store.run_status(run_id, committed=True)
                if current in (RunStatus.FAILED, RunStatus.KILLED):
                    status = current  # the entry point ended its run so itself; keep its word
            client.set_tag(run_id, EXIT_CODE_TAG, str(exit_code))
            client.set_terminated(run_id, status)  # flushes: durable when it returns
            _log.info("deltaflow: run %s %s (exit status %s)", run_id, status, exit_code)
            return status
        finally:
            if cleanup is not None:
                cleanup()

    return record
