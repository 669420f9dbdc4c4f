"""Job specs: YAML files in the shape of the Jobs API's job settings, checked before any call.

A spec is one job's settings (``name``, ``tasks``, ``job_clusters``, ``environments``, ``schedule``,
``parameters``, ...), so it is also a valid ``resources.jobs.<key>`` entry of a Databricks Asset
Bundle; a file holding ``resources: {jobs: {<key>: {...}}}`` with one job is read too. Paths in
``python_file``, ``notebook_path``, ``whl`` and ``requirements`` that are relative are relative to
the spec file, and ``deltaflow jobs deploy`` uploads them (as a bundle deploy does).

Validation is pure (no SDK import): unknown fields anywhere in the tree, a bad task graph, a
missing compute, a bad Quartz cron or time zone, and a missing local file are refused with the field's
path named, e.g. ``jobs/train.yml: tasks[0].spark_python_task.pyton_file: unknown field``.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltaflow.errors import InvalidArgument
from deltaflow.projects.jobs_spec_cron import CronError, validate_quartz_cron, validate_timezone

__all__ = ["JobSpec", "load_job_spec", "validate_job_spec", "FIELDS", "LOCAL_PATH_FIELDS"]

_ANY = None
# Each object type: field -> the type of its value ("list:<type>" for lists of objects, None for a
# leaf or a free-form map). Field names are the Jobs API's (tests check them against databricks-sdk).
FIELDS: dict[str, dict[str, Any]] = {
    "job": {"name": _ANY, "description": _ANY, "tags": _ANY, "tasks": "list:task", "job_clusters": "list:job_cluster",
            "environments": "list:environment", "schedule": "schedule", "parameters": "list:parameter",
            "max_concurrent_runs": _ANY, "timeout_seconds": _ANY, "queue": "queue",
            "email_notifications": "email_notifications", "webhook_notifications": _ANY,
            "notification_settings": _ANY, "health": _ANY, "run_as": _ANY, "git_source": _ANY, "trigger": _ANY,
            "continuous": _ANY, "budget_policy_id": _ANY, "edit_mode": _ANY, "deployment": _ANY, "format": _ANY,
            "performance_target": _ANY, "usage_policy_id": _ANY, "parent_path": _ANY},
    "task": {"task_key": _ANY, "description": _ANY, "depends_on": "list:dependency", "run_if": _ANY,
             "spark_python_task": "spark_python_task", "python_wheel_task": "python_wheel_task",
             "notebook_task": "notebook_task", "spark_jar_task": _ANY, "spark_submit_task": _ANY,
             "pipeline_task": _ANY, "sql_task": _ANY, "dbt_task": _ANY, "run_job_task": _ANY, "condition_task": _ANY,
             "for_each_task": _ANY, "existing_cluster_id": _ANY, "new_cluster": "cluster", "job_cluster_key": _ANY,
             "environment_key": _ANY, "libraries": "list:library", "timeout_seconds": _ANY, "max_retries": _ANY,
             "min_retry_interval_millis": _ANY, "retry_on_timeout": _ANY, "email_notifications": "email_notifications",
             "webhook_notifications": _ANY, "notification_settings": _ANY, "health": _ANY, "disabled": _ANY,
             "disable_auto_optimization": _ANY},
    "job_cluster": {"job_cluster_key": _ANY, "new_cluster": "cluster"},
    "cluster": {k: _ANY for k in (
        "spark_version", "num_workers", "autoscale", "node_type_id", "driver_node_type_id", "instance_pool_id",
        "driver_instance_pool_id", "policy_id", "apply_policy_default_values", "spark_conf", "spark_env_vars",
        "custom_tags", "aws_attributes", "azure_attributes", "gcp_attributes", "cluster_log_conf", "init_scripts",
        "data_security_mode", "single_user_name", "runtime_engine", "enable_elastic_disk", "kind",
        "enable_local_disk_encryption", "ssh_public_keys", "docker_image", "cluster_name", "is_single_node",
        "use_ml_runtime", "workload_type", "autotermination_minutes")},
    "environment": {"environment_key": _ANY, "spec": "environment_spec"},
    "environment_spec": {"client": _ANY, "environment_version": _ANY, "dependencies": _ANY},
    "schedule": {"quartz_cron_expression": _ANY, "timezone_id": _ANY, "pause_status": _ANY},
    "parameter": {"name": _ANY, "default": _ANY},
    "dependency": {"task_key": _ANY, "outcome": _ANY},
    "spark_python_task": {"python_file": _ANY, "parameters": _ANY, "source": _ANY},
    "python_wheel_task": {"package_name": _ANY, "entry_point": _ANY, "parameters": _ANY, "named_parameters": _ANY},
    "notebook_task": {"notebook_path": _ANY, "base_parameters": _ANY, "source": _ANY, "warehouse_id": _ANY},
    "library": {"whl": _ANY, "pypi": "pypi", "requirements": _ANY, "jar": _ANY, "egg": _ANY, "maven": _ANY,
                "cran": _ANY},
    "pypi": {"package": _ANY, "repo": _ANY},
    "queue": {"enabled": _ANY},
    "email_notifications": {k: _ANY for k in ("on_start", "on_success", "on_failure", "on_duration_warning_threshold_exceeded",
                                              "on_streaming_backlog_exceeded", "no_alert_for_skipped_runs")},
}
_TASK_TYPES = ("spark_python_task", "python_wheel_task", "notebook_task", "spark_jar_task", "spark_submit_task",
               "pipeline_task", "sql_task", "dbt_task", "run_job_task", "condition_task", "for_each_task")
_RUN_IF = ("ALL_SUCCESS", "ALL_DONE", "NONE_FAILED", "AT_LEAST_ONE_SUCCESS", "ALL_FAILED", "AT_LEAST_ONE_FAILED")
_TASK_KEY = re.compile(r"^[\w\-]{1,100}$")
_REMOTE = re.compile(r"^([a-z][a-z0-9+.\-]*:/|/)")  # dbfs:/, s3://, /Workspace/..., /Volumes/...
# Where tasks name files: (task type or "library", field).
LOCAL_PATH_FIELDS = (("spark_python_task", "python_file"), ("notebook_task", "notebook_path"),
                     ("library", "whl"), ("library", "requirements"))


@dataclass(frozen=True)
class JobSpec:
    """A validated spec: the job settings (as written) and the local files its tasks name."""

    path: Path
    settings: dict[str, Any]
    local_files: tuple[Path, ...]

    @property
    def name(self) -> str:
        return str(self.settings["name"])


def _fail(where: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {message}")


def _check_fields(value: Any, kind: str, where: str) -> None:
    allowed = FIELDS[kind]
    if not isinstance(value, dict):
        raise _fail(where or "the spec", f"must be a mapping of {', '.join(sorted(allowed))}, got {value!r}")
    for key in value:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.75)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise _fail(f"{where}.{key}" if where else key,
                        f"unknown field{hint}; allowed here: {', '.join(sorted(allowed))}")
        path = f"{where}.{key}" if where else key
        child = allowed[key]
        if child is None:
            continue
        if child.startswith("list:"):
            if not isinstance(child_value := value[key], list):
                raise _fail(path, f"must be a list, got {child_value!r}")
            for index, item in enumerate(child_value):
                _check_fields(item, child[5:], f"{path}[{index}]")
        else:
            _check_fields(value[key], child, path)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"must be non-empty text, got {value!r}")
    return value


def _local(spec_dir: Path, value: str, where: str, files: list[Path]) -> None:
    if _REMOTE.match(value):
        return
    local = (spec_dir / value).resolve()
    if not local.is_file():
        raise _fail(where, f"{value!r} is relative to the spec, so it must be a file beside it: {local} does not exist")
    files.append(local)


def validate_job_spec(settings: Any, spec_path: Path) -> JobSpec:
    where_file = str(spec_path)
    try:
        _check_fields(settings, "job", "")
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where_file}: {exc.message}") from None

    def fail(where: str, message: str) -> InvalidArgument:
        return _fail(f"{where_file}: {where}", message)

    _text(settings.get("name"), f"{where_file}: name")
    tasks = settings.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise fail("tasks", "a job needs at least one task")
    clusters = {c.get("job_cluster_key") for c in settings.get("job_clusters", []) or []}
    environments = {e.get("environment_key") for e in settings.get("environments", []) or []}
    for index, cluster in enumerate(settings.get("job_clusters", []) or []):
        _text(cluster.get("job_cluster_key"), f"{where_file}: job_clusters[{index}].job_cluster_key")
        if not isinstance((cluster.get("new_cluster") or {}).get("spark_version"), str):
            raise fail(f"job_clusters[{index}].new_cluster.spark_version", "is required (e.g. '15.4.x-scala2.12')")
    files: list[Path] = []
    keys: list[str] = []
    for index, task in enumerate(tasks):
        at = f"tasks[{index}]"
        key = _text(task.get("task_key"), f"{where_file}: {at}.task_key")
        if not _TASK_KEY.match(key) or key in keys:
            raise fail(f"{at}.task_key", f"{key!r} must be unique and made of up to 100 letters, digits, '_' or '-'")
        keys.append(key)
        types = [t for t in _TASK_TYPES if t in task]
        if len(types) != 1:
            raise fail(at, f"task {key!r} needs exactly one task type ({', '.join(_TASK_TYPES[:3])}, ...); got "
                           f"{types or 'none'}")
        body = task[types[0]]
        for field in {"spark_python_task": ("python_file",), "python_wheel_task": ("package_name", "entry_point"),
                      "notebook_task": ("notebook_path",)}.get(types[0], ()):
            _text(body.get(field), f"{where_file}: {at}.{types[0]}.{field}")
        compute = [c for c in ("existing_cluster_id", "new_cluster", "job_cluster_key", "environment_key") if task.get(c)]
        if len(compute) > 1:
            raise fail(at, f"task {key!r} names more than one compute: {', '.join(compute)}")
        if not compute and types[0] != "notebook_task":
            raise fail(at, f"task {key!r} needs a compute: job_cluster_key, new_cluster, existing_cluster_id or "
                           "environment_key (serverless)")
        if task.get("job_cluster_key") and task["job_cluster_key"] not in clusters:
            raise fail(f"{at}.job_cluster_key", f"{task['job_cluster_key']!r} is not a job_clusters key "
                                                f"({', '.join(sorted(map(str, clusters))) or 'none defined'})")
        if task.get("environment_key") and task["environment_key"] not in environments:
            raise fail(f"{at}.environment_key", f"{task['environment_key']!r} is not an environments key "
                                                f"({', '.join(sorted(map(str, environments))) or 'none defined'})")
        if task.get("new_cluster") and not isinstance(task["new_cluster"].get("spark_version"), str):
            raise fail(f"{at}.new_cluster.spark_version", "is required (e.g. '15.4.x-scala2.12')")
        if "run_if" in task and task["run_if"] not in _RUN_IF:
            raise fail(f"{at}.run_if", f"{task['run_if']!r} is not one of {', '.join(_RUN_IF)}")
        for kind, field in LOCAL_PATH_FIELDS:
            if kind == types[0] and isinstance(body.get(field), str):
                _local(spec_path.parent, body[field], f"{where_file}: {at}.{kind}.{field}", files)
        for lib_index, library in enumerate(task.get("libraries", []) or []):
            if len(library) != 1:
                raise fail(f"{at}.libraries[{lib_index}]", "must name exactly one library kind")
            for kind, field in LOCAL_PATH_FIELDS:
                if kind == "library" and isinstance(library.get(field), str):
                    _local(spec_path.parent, library[field], f"{where_file}: {at}.libraries[{lib_index}].{field}",
                           files)
    for index, task in enumerate(tasks):
        for dep in task.get("depends_on", []) or []:
            if dep.get("task_key") not in keys:
                raise fail(f"tasks[{index}].depends_on", f"{dep.get('task_key')!r} is not a task of this job "
                                                         f"({', '.join(keys)})")
    _check_graph(tasks, lambda m: fail("tasks", m))
    schedule = settings.get("schedule")
    if schedule is not None:
        try:
            validate_quartz_cron(schedule.get("quartz_cron_expression"))
            validate_timezone(schedule.get("timezone_id"))
        except CronError as exc:
            raise fail("schedule", str(exc)) from None
        if schedule.get("pause_status", "UNPAUSED") not in ("PAUSED", "UNPAUSED"):
            raise fail("schedule.pause_status", f"{schedule['pause_status']!r} must be PAUSED or UNPAUSED")
    names: list[str] = []
    for index, param in enumerate(settings.get("parameters", []) or []):
        name = _text(param.get("name"), f"{where_file}: parameters[{index}].name")
        if "default" not in param or name in names:
            raise fail(f"parameters[{index}]", f"parameter {name!r} needs a default and a name of its own")
        names.append(name)
    mcr = settings.get("max_concurrent_runs", 1)
    if not isinstance(mcr, int) or isinstance(mcr, bool) or not 0 <= mcr <= 1000:
        raise fail("max_concurrent_runs", f"{mcr!r} must be a whole number from 0 to 1000")
    return JobSpec(spec_path, settings, tuple(dict.fromkeys(files)))


def _check_graph(tasks: list[dict[str, Any]], fail: Any) -> None:
    deps = {t["task_key"]: {d["task_key"] for d in t.get("depends_on", []) or []} for t in tasks}
    done: set[str] = set()
    while len(done) < len(deps):
        ready = [k for k, d in deps.items() if k not in done and d <= done]
        if not ready:
            raise fail(f"the task dependencies form a cycle among {', '.join(sorted(set(deps) - done))}")
        done.update(ready)


def load_job_spec(path: str | os.PathLike[str]) -> JobSpec:
    """Reads and validates one job spec file (YAML)."""
    import yaml

    spec_path = Path(path)
    if not spec_path.is_file():
        raise InvalidArgument(f"job spec {str(path)!r} does not exist or is not a file")
    try:
        data = yaml.safe_load(spec_path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{spec_path}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and set(data) == {"resources"}:
        jobs = (data["resources"] or {}).get("jobs") if isinstance(data["resources"], dict) else None
        if not isinstance(jobs, dict) or len(jobs) != 1:
            raise InvalidArgument(f"{spec_path}: a bundle-style file must hold exactly one job under resources.jobs")
        data = next(iter(jobs.values()))
    return validate_job_spec(data, spec_path)
