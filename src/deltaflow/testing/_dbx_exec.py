"""How :class:`~deltaflow.testing.LocalDatabricks` really runs a job run: one driver thread per run walks
the tasks in dependency order, and each task is a local subprocess of the emulator's Python.

The "cluster" is this machine: ``spark_python_task`` files, ``python_wheel_task`` entry points and
source-format notebooks run through a small stdlib runner (``_dbx_task_runner.py``) that records the
error, its trace and ``dbutils.notebook.exit`` values for ``runs/get-output``. Code is read from the
emulator's own workspace, DBFS and Volumes; wheels listed as libraries (or serverless environment
dependencies) are unpacked into the task's own site folder, and other requirements must already be
installed in the interpreter (otherwise the task fails as a library installation error, as on Databricks).
The task's environment carries ``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` of the emulator, so code in a
task reaches the workspace through databricks-sdk as it would on a cluster.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from deltaflow.testing._dbx_model import RunRecord, TaskRun
from deltaflow.testing._dbx_storage import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from deltaflow.testing.local_databricks import LocalDatabricks

__all__ = ["drive_run"]

RUNNER = Path(__file__).with_name("_dbx_task_runner.py")
LOG_LIMIT = 5 * 1024 * 1024  # runs/get-output returns the last 5 MB of a task's logs
_POLL_S = 0.05
_KILL_GRACE_S = 2.0
_REFERENCE = re.compile(r"\{\{\s*([\w.\-]+)\s*\}\}")


class _LaunchError(Exception):
    def __init__(self, message: str, code: str = "RESOURCE_NOT_FOUND", kind: str = "CLIENT_ERROR") -> None:
        super().__init__(message)
        self.message, self.code, self.kind = message, code, kind


def _now_ms() -> int:
    return int(time.time() * 1000)


def drive_run(ctx: "LocalDatabricks", run: RunRecord) -> None:
    """Takes one run from QUEUED/PENDING to a terminal state; called on the run's own thread."""
    try:
        _drive(ctx, run)
    except Exception as exc:  # noqa: BLE001 - an emulator bug must end the run, never hang it
        with ctx.lock:
            for task in run.tasks:
                if not task.done:
                    task.end_time = _now_ms()
                    task.set_state("INTERNAL_ERROR", None, f"LocalDatabricks failed: {exc!r}")
            run.end_time = _now_ms()
            run.set_state("INTERNAL_ERROR", None, f"LocalDatabricks failed: {exc!r}",
                          ("INTERNAL_ERROR", "INTERNAL_ERROR"))
    finally:
        ctx.run_finished(run)


def _drive(ctx: "LocalDatabricks", run: RunRecord) -> None:
    ctx.wait_for_slot(run)
    if not run.cancel_event.wait(ctx.startup_seconds) and not run.done:
        deadline = time.time() + run.timeout_seconds if run.timeout_seconds else None
        for task in run.tasks:
            if run.cancel_event.is_set():
                break
            skip = _skip_reason(run, task)
            with ctx.lock:
                if skip is not None:
                    task.start_time = task.end_time = _now_ms()
                    task.set_state("SKIPPED", skip[0], skip[1])
                    continue
            _run_task(ctx, run, task, deadline)
    _finish(ctx, run)


def _skip_reason(run: RunRecord, task: TaskRun) -> Optional[tuple[str, str]]:
    deps = [d["task_key"] for d in task.settings.get("depends_on", [])]
    if not deps:
        return None
    results = [t.result_state for t in run.tasks if t.task_key in deps]
    ok = [r == "SUCCESS" for r in results]
    condition = task.settings.get("run_if", "ALL_SUCCESS")
    passes = {"ALL_SUCCESS": all(ok), "ALL_DONE": True, "NONE_FAILED": not any(r == "FAILED" for r in results),
              "AT_LEAST_ONE_SUCCESS": any(ok), "ALL_FAILED": not any(ok),
              "AT_LEAST_ONE_FAILED": not all(ok)}[condition]
    if passes:
        return None
    if condition == "ALL_SUCCESS":
        return "UPSTREAM_FAILED", "Upstream task(s) failed."
    return "EXCLUDED", f"Excluded: the run_if condition {condition} is not met."


def _finish(ctx: "LocalDatabricks", run: RunRecord) -> None:
    with ctx.lock:
        cancelled = run.cancel_event.is_set()
        for task in run.tasks:
            if not task.done:
                task.start_time = task.start_time or _now_ms()
                task.end_time = _now_ms()
                task.user_cancelled_or_timedout = True
                task.set_state("TERMINATED", "CANCELED", "Run cancelled.")
        if run.done:
            return
        run.set_state("TERMINATING")
    errors = [t for t in run.tasks if t.life_cycle_state == "INTERNAL_ERROR"]
    failed = [t for t in run.tasks if t.result_state in ("FAILED", "TIMEDOUT")]
    with ctx.lock:
        run.end_time = _now_ms()
        if cancelled:
            run.user_cancelled_or_timedout = True
            run.set_state("TERMINATED", "CANCELED", "Run cancelled.")
        elif errors:
            first = errors[0]
            run.set_state("INTERNAL_ERROR", None, f"Task {first.task_key} failed: {first.state_message}",
                          first.termination)
        elif failed:
            first = failed[0]
            timed_out = first.result_state == "TIMEDOUT"
            run.user_cancelled_or_timedout = timed_out
            detail = first.error or first.state_message
            run.set_state("TERMINATED", "TIMEDOUT" if timed_out else "FAILED",
                          f"Task {first.task_key} failed with message: {detail}. This caused all downstream "
                          "tasks to get skipped." if not timed_out else f"Task {first.task_key} timed out.")
        else:
            run.set_state("TERMINATED", "SUCCESS", "")


# -- one task --------------------------------------------------------------------------------------
def _run_task(ctx: "LocalDatabricks", run: RunRecord, task: TaskRun, deadline: Optional[float]) -> None:
    workdir = ctx.root / "runs" / str(run.run_id) / task.task_key
    workdir.mkdir(parents=True, exist_ok=True)
    with ctx.lock:
        task.start_time = _now_ms()
        task.log_path = str(workdir / "driver.log")
    try:
        env, site, wheels, requirements = _compute(ctx, run, task)
        _install(ctx, wheels, requirements, site)
        spec = _runner_spec(ctx, run, task, workdir, site)
    except _LaunchError as exc:
        with ctx.lock:
            task.end_time = _now_ms()
            task.error = exc.message
            task.set_state("INTERNAL_ERROR", None, exc.message, (exc.code, exc.kind))
        return
    task_deadline = time.time() + task.settings["timeout_seconds"] if task.settings.get("timeout_seconds") else None
    if deadline and (task_deadline is None or deadline < task_deadline):
        task_deadline = deadline
    spec_path = workdir / "task.json"
    spec_path.write_text(json.dumps(spec))
    with open(task.log_path, "ab") as log:
        process = subprocess.Popen([ctx.python, str(RUNNER), str(spec_path)], cwd=workdir, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    with ctx.lock:
        task.pid = process.pid
        task.running_since = _now_ms()
        task.set_state("RUNNING")
        if run.life_cycle_state in ("PENDING", "QUEUED"):
            run.running_since = task.running_since
            run.set_state("RUNNING")
    outcome = _wait(process, run, task_deadline)
    result = _read_result(Path(spec["result"]))
    with ctx.lock:
        task.end_time = _now_ms()
        task.pid = None
        task.notebook_result = result.get("notebook_result")
        if outcome == "cancelled":
            task.user_cancelled_or_timedout = True
            task.set_state("TERMINATED", "CANCELED", "Run cancelled.")
        elif outcome == "timeout":
            task.user_cancelled_or_timedout = True
            task.error = "Run timed out."
            task.set_state("TERMINATED", "TIMEDOUT", "Run timed out.")
        elif process.returncode == 0 and result.get("status") == "ok":
            task.set_state("TERMINATED", "SUCCESS", "")
        else:
            task.error = result.get("error") or f"The Python process exited with code {process.returncode}."
            task.error_trace = result.get("error_trace") or _tail(Path(task.log_path), 4000)
            task.set_state("TERMINATED", "FAILED", task.error.splitlines()[0] if task.error else "")


def _wait(process: subprocess.Popen, run: RunRecord, deadline: Optional[float]) -> str:
    while process.poll() is None:
        if run.cancel_event.wait(_POLL_S):
            _kill(process)
            return "cancelled"
        if deadline is not None and time.time() > deadline:
            _kill(process)
            return "timeout"
    return "exited"


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a task may start processes in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(process: subprocess.Popen) -> None:
    """Ends the task's process group and every process it started (a cancelled driver leaves nothing)."""
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, 10.0)):
        victims = _descendants(process.pid)
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        for pid in victims:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.time() + grace
        while time.time() < deadline and any(_alive(pid) for pid in victims):
            time.sleep(0.05)
        if not any(_alive(pid) for pid in victims):
            break


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _read_result(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _tail(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def read_logs(task: TaskRun) -> tuple[str, bool]:
    if not task.log_path or not Path(task.log_path).exists():
        return "", False
    size = Path(task.log_path).stat().st_size
    return _tail(Path(task.log_path), LOG_LIMIT), size > LOG_LIMIT


# -- compute, libraries, code ----------------------------------------------------------------------
def _compute(ctx: "LocalDatabricks", run: RunRecord, task: TaskRun) -> tuple[dict[str, str], Path, list[str], list[str]]:
    settings = task.settings
    env_vars: dict[str, str] = {}
    deps: list[str] = []
    cluster_id: Optional[str] = None
    if settings.get("existing_cluster_id"):
        cluster_id = settings["existing_cluster_id"]
        env_vars.update(ctx.clusters[cluster_id].get("spark_env_vars", {}))
    elif settings.get("new_cluster"):
        cluster_id = ctx.new_cluster_id()
        env_vars.update(settings["new_cluster"].get("spark_env_vars", {}))
    elif settings.get("job_cluster_key"):
        cluster_id = ctx.job_cluster_id(run, settings["job_cluster_key"])
        env_vars.update(run.job_clusters[settings["job_cluster_key"]]["new_cluster"].get("spark_env_vars", {}))
    elif settings.get("environment_key"):
        deps = list(run.environments[settings["environment_key"]].get("spec", {}).get("dependencies", []))
    if cluster_id:
        task.cluster_instance = {"cluster_id": cluster_id, "spark_context_id": str(abs(hash((cluster_id, run.run_id))))}
    wheels, requirements = [], []
    for library in settings.get("libraries", []) or []:
        if not isinstance(library, dict) or len(library) != 1:
            raise _LaunchError(f"Library {library!r} must name exactly one kind (whl, pypi, requirements, ...).",
                               "LIBRARY_INSTALLATION_ERROR")
        (kind, value), = library.items()
        if kind == "whl":
            wheels.append(value)
        elif kind == "pypi":
            requirements.append(value.get("package", "") if isinstance(value, dict) else "")
        elif kind == "requirements":
            requirements.extend(_requirements_file(ctx, value))
        else:
            raise _LaunchError(f"Library installation failed: LocalDatabricks installs whl, pypi and requirements "
                               f"libraries, not {kind}.", "LIBRARY_INSTALLATION_ERROR")
    for dep in deps:
        (wheels if dep.strip().endswith(".whl") else requirements).append(dep.strip())
    site = ctx.root / "runs" / str(run.run_id) / task.task_key / "site"
    env = ctx.task_env(env_vars)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    return env, site, wheels, requirements


def _requirements_file(ctx: "LocalDatabricks", path: str) -> list[str]:
    local = resolve_code_path(ctx, path)
    return [line.strip() for line in local.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _install(ctx: "LocalDatabricks", wheels: list[str], requirements: list[str], site: Path) -> None:
    site.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        local = resolve_code_path(ctx, wheel)
        try:
            with zipfile.ZipFile(local) as archive:
                archive.extractall(site)  # a wheel is a zip laid out as site-packages
        except (zipfile.BadZipFile, OSError) as exc:
            raise _LaunchError(f"Library installation failed for {wheel}: not a wheel ({exc}).",
                               "LIBRARY_INSTALLATION_ERROR") from None
    missing = [r for r in requirements if not ctx.requirement_installed(r)]
    if missing:
        raise _LaunchError(f"Library installation failed: {', '.join(missing)} is not installed in "
                           f"LocalDatabricks' Python ({ctx.python}) and this emulator does not download packages.",
                           "LIBRARY_INSTALLATION_ERROR")


def resolve_code_path(ctx: "LocalDatabricks", path: str, notebook: bool = False) -> Path:
    """The local file behind a task's ``dbfs:/``, ``/Volumes/``, ``/Workspace/`` or workspace path."""
    try:
        if path.startswith("dbfs:/"):
            local = ctx.dbfs.local_path(path)
        elif path.startswith("/Volumes/"):
            local = ctx.volumes.local_path(path)
        elif path.startswith("file:/"):
            local = Path(path[len("file:"):])
        elif path.startswith("/"):
            obj = ctx.workspace.get(path)
            if notebook and obj.object_type != "NOTEBOOK":
                raise _LaunchError(f"{path} is a {obj.object_type.lower()}, not a notebook.")
            if not notebook and obj.object_type != "FILE":
                raise _LaunchError(f"{path} is a {obj.object_type.lower()}, not a file.")
            local = ctx.workspace.local_path(obj.path)
        else:
            raise _LaunchError(f"Cannot read {path!r}: LocalDatabricks reads dbfs:/, /Volumes/, /Workspace/ "
                               "and workspace paths.")
    except ApiError as exc:
        what = "Notebook" if notebook else "File"
        raise _LaunchError(f"{what} {path} does not exist ({exc.message})") from None
    if not local.is_file():
        raise _LaunchError(f"{'Notebook' if notebook else 'File'} {path} does not exist.")
    return local


def substitute(value: str, refs: dict[str, str]) -> str:
    """Replaces Databricks dynamic value references ({{job.id}}, {{job.parameters.x}}, ...) it knows."""
    return _REFERENCE.sub(lambda m: refs.get(m.group(1), m.group(0)), value)


def _references(run: RunRecord, task: TaskRun) -> dict[str, str]:
    refs = {"job.id": str(run.job_id), "job.run_id": str(run.run_id), "job.name": run.run_name,
            "task.name": task.task_key, "task.run_id": str(task.run_id),
            "job.trigger.type": run.trigger or "ONE_TIME",
            "job.start_time.iso_datetime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(run.start_time / 1000))}
    for param in run.job_parameters:
        refs[f"job.parameters.{param['name']}"] = str(param.get("value", param.get("default", "")))
    return refs


def _runner_spec(ctx: "LocalDatabricks", run: RunRecord, task: TaskRun, workdir: Path, site: Path) -> dict[str, Any]:
    refs = _references(run, task)
    settings = task.settings
    spec: dict[str, Any] = {"result": str(workdir / f"result-{uuid.uuid4().hex}.json"), "site": str(site)}
    if "spark_python_task" in settings:
        body = settings["spark_python_task"]
        spec.update(kind="python_file", path=str(resolve_code_path(ctx, body["python_file"])),
                    argv=[substitute(p, refs) for p in body.get("parameters", [])])
    elif "python_wheel_task" in settings:
        body = settings["python_wheel_task"]
        argv = [substitute(p, refs) for p in body.get("parameters", [])]
        argv += [f"--{k}={substitute(str(v), refs)}" for k, v in (body.get("named_parameters") or {}).items()]
        spec.update(kind="wheel", package=body["package_name"], entry_point=body["entry_point"], argv=argv)
    else:
        body = settings["notebook_task"]
        widgets = {p["name"]: str(p.get("value", p.get("default", ""))) for p in run.job_parameters}
        widgets.update({k: substitute(str(v), refs) for k, v in (body.get("base_parameters") or {}).items()})
        spec.update(kind="notebook", path=str(resolve_code_path(ctx, body["notebook_path"], notebook=True)),
                    notebook_path=body["notebook_path"], widgets=widgets)
    return spec
