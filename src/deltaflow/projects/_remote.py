"""The launcher a databricks project run executes on the cluster (uploaded next to the project archive
and run as the job's ``spark_python_task``).

It reads the archive (through the driver's ``/dbfs``, ``/Volumes`` or ``/Workspace`` mount when there
is one, else through databricks-sdk with the cluster's credentials), checks its sha256, unpacks it
and runs the project into the tracking run the client created:

* an MLproject entry point: ``deltaflow.projects.run(<dir>, entry_point, parameters, backend="local",
  run_id=...)`` — the local backend records the run's RUNNING and terminal status;
* a ``databricks_spark_job`` python file: run in this process with the run's variables
  (``DELTAFLOW_RUN_ID``/``MLFLOW_RUN_ID``, tracking URI, experiment id), the run marked RUNNING, then
  FINISHED or FAILED.

A failure raises, so the job task fails and ``runs/get-output`` carries the error and trace. Standard
library only at import time: the file runs by path before anything else is set up.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import runpy
import shutil
import sys
import tarfile
import tempfile
from typing import Optional

__all__ = ["main", "read_archive"]


def _mounted(uri: str) -> Optional[str]:
    """The path of ``uri`` on a Databricks driver's file mounts, if it is mounted here."""
    if uri.startswith("dbfs:/"):
        candidate = "/dbfs/" + uri[len("dbfs:/"):]
    elif uri.startswith(("/Volumes/", "/Workspace/")):
        candidate = uri
    else:
        candidate = "/Workspace" + uri
    return candidate if os.path.isfile(candidate) else None


def read_archive(uri: str) -> bytes:
    local = _mounted(uri)
    if local is not None:
        with open(local, "rb") as fh:
            return fh.read()
    from databricks.sdk import WorkspaceClient

    w = WorkspaceClient()
    if uri.startswith("dbfs:/"):
        return w.dbfs.download(uri).read()
    if uri.startswith("/Volumes/"):
        return w.files.download(uri).contents.read()
    path = uri[len("/Workspace"):] if uri.startswith("/Workspace/") else uri
    return w.workspace.download(path).read()


def _unpack(blob: bytes, sha256: str) -> str:
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sha256:
        raise RuntimeError(f"the project archive's sha256 is {actual}, expected {sha256}: it changed after upload")
    target = tempfile.mkdtemp(prefix="deltaflow-project-")
    archive = os.path.join(target, ".project.tar.gz")
    with open(archive, "wb") as fh:
        fh.write(blob)
    project = os.path.join(target, "project")
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(project, filter="data")  # no absolute paths, links out or device files
        else:  # pragma: no cover - Python before 3.11.4
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in member.name.split("/") or not member.isreg():
                    raise RuntimeError(f"refusing archive member {member.name!r}")
            tar.extractall(project)
    os.remove(archive)
    return project


def _run_script(project: str, script: str, script_args: list[str], args: argparse.Namespace) -> None:
    from deltaflow.entities import RunStatus
    from deltaflow.tracking.client import DeltaflowClient

    variables = {"DELTAFLOW_RUN_ID": args.run_id, "MLFLOW_RUN_ID": args.run_id,
                 "DELTAFLOW_TRACKING_URI": args.tracking_uri, "MLFLOW_TRACKING_URI": args.tracking_uri,
                 "DELTAFLOW_EXPERIMENT_ID": args.experiment_id, "MLFLOW_EXPERIMENT_ID": args.experiment_id}
    os.environ.update(variables)
    client = DeltaflowClient(args.tracking_uri)
    client.update_run(args.run_id, status=RunStatus.RUNNING)
    client.flush()
    path = os.path.join(project, script)
    os.chdir(project)
    sys.path.insert(0, project)
    sys.argv = [path, *script_args]
    status = RunStatus.FAILED
    try:
        runpy.run_path(path, run_name="__main__")
        status = RunStatus.FINISHED
    except SystemExit as exc:
        status = RunStatus.FINISHED if exc.code in (None, 0) else RunStatus.FAILED
        if status == RunStatus.FAILED:
            raise
    finally:
        import deltaflow

        while deltaflow.active_run() is not None:  # a script that left its run open
            deltaflow.end_run(status)
        deltaflow.flush()
        if client.get_run(args.run_id).info.status not in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED):
            client.set_terminated(args.run_id, status)
        client.flush()


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="deltaflow-databricks-launcher")
    for name in ("--archive", "--sha256", "--run-id", "--experiment-id", "--tracking-uri"):
        parser.add_argument(name, required=True)
    parser.add_argument("--entry-point", default="main")
    parser.add_argument("--env-manager", default=None)
    parser.add_argument("--param", action="append", default=[])
    parser.add_argument("--python-file", default=None)
    parser.add_argument("script_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    project = _unpack(read_archive(args.archive), args.sha256)
    try:
        _launch(project, args)
    finally:
        # The unpacked copy is the launcher's own; a cluster's driver runs many job runs and its
        # temporary folder would otherwise keep one copy per run.
        shutil.rmtree(os.path.dirname(project), ignore_errors=True)


def _launch(project: str, args: argparse.Namespace) -> None:
    print(f"deltaflow: project {args.archive} unpacked in {project}; tracking run {args.run_id}", flush=True)
    if args.python_file:
        extra = args.script_args[1:] if args.script_args[:1] == ["--"] else args.script_args
        _run_script(project, args.python_file, extra, args)
        return
    from deltaflow.projects import run

    parameters = dict(item.split("=", 1) for item in args.param)
    kwargs = {"env_manager": args.env_manager} if args.env_manager else {}
    run(project, entry_point=args.entry_point, parameters=parameters, backend="local", run_id=args.run_id,
        experiment_id=args.experiment_id, tracking_uri=args.tracking_uri, synchronous=True, **kwargs)

if __name__ == "__main__":
    main()
