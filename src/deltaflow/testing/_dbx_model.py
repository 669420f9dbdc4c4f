"""Jobs and runs of :class:`~deltaflow.testing.LocalDatabricks` as the Jobs API 2.1/2.2 describes them:
request validation with Databricks' messages, the records, and their JSON shapes.

A run holds one task run per task (``format: MULTI_TASK``); every state change is kept in
``history`` so tests can check the life cycle PENDING → RUNNING → TERMINATING → TERMINATED without
racing the poller.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from deltaflow.testing._dbx_storage import ApiError, invalid

__all__ = ["TaskRun", "RunRecord", "validate_tasks", "validate_job_settings", "TASK_TYPES"]

# Task types the emulator executes; the others are accepted by Databricks but not run here.
TASK_TYPES = ("spark_python_task", "python_wheel_task", "notebook_task")
_OTHER_TASK_TYPES = ("spark_jar_task", "spark_submit_task", "pipeline_task", "sql_task", "dbt_task",
                     "run_job_task", "condition_task", "for_each_task", "clean_rooms_notebook_task",
                     "dashboard_task", "power_bi_task", "gen_ai_compute_task")
_TASK_KEY = re.compile(r"^[\w\-]{1,100}$")
RUN_IF = ("ALL_SUCCESS", "ALL_DONE", "NONE_FAILED", "AT_LEAST_ONE_SUCCESS", "ALL_FAILED", "AT_LEAST_ONE_FAILED")
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
ACTIVE = ("QUEUED", "PENDING", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")
# Life-cycle / result state → the v2 ``status`` block's termination code and type.
TERMINATION = {
    "SUCCESS": ("SUCCESS", "SUCCESS"),
    "FAILED": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    "CANCELED": ("USER_CANCELED", "SUCCESS"),
    "TIMEDOUT": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    "UPSTREAM_FAILED": ("SKIPPED", "CLIENT_ERROR"),
    "UPSTREAM_CANCELED": ("SKIPPED", "CLIENT_ERROR"),
    "EXCLUDED": ("SKIPPED", "SUCCESS"),
}


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class TaskRun:
    run_id: int
    task_key: str
    settings: dict[str, Any]
    life_cycle_state: str = "PENDING"
    result_state: Optional[str] = None
    state_message: str = ""
    termination: Optional[tuple[str, str]] = None
    user_cancelled_or_timedout: bool = False
    start_time: int = 0
    running_since: int = 0
    end_time: int = 0
    cluster_instance: Optional[dict[str, str]] = None
    log_path: Optional[str] = None
    error: Optional[str] = None
    error_trace: Optional[str] = None
    notebook_result: Optional[str] = None
    pid: Optional[int] = None
    history: list[tuple[str, Optional[str], int]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.life_cycle_state in TERMINAL

    def set_state(self, life_cycle: str, result: Optional[str] = None, message: str = "",
                  termination: Optional[tuple[str, str]] = None) -> None:
        self.life_cycle_state, self.result_state, self.state_message = life_cycle, result, message
        if termination is not None:
            self.termination = termination
        elif result in TERMINATION:
            self.termination = TERMINATION[result]
        self.history.append((life_cycle, result, _now_ms()))


@dataclass
class RunRecord:
    run_id: int
    job_id: int
    run_name: str
    run_type: str  # JOB_RUN | SUBMIT_RUN
    creator: str
    tasks: list[TaskRun]
    job_clusters: dict[str, dict[str, Any]]
    environments: dict[str, dict[str, Any]]
    timeout_seconds: int = 0
    trigger: Optional[str] = None
    number_in_job: int = 0
    job_parameters: list[dict[str, Any]] = field(default_factory=list)
    overriding_parameters: Optional[dict[str, Any]] = None
    idempotency_token: Optional[str] = None
    life_cycle_state: str = "PENDING"
    result_state: Optional[str] = None
    state_message: str = ""
    termination: Optional[tuple[str, str]] = None
    user_cancelled_or_timedout: bool = False
    start_time: int = field(default_factory=_now_ms)
    running_since: int = 0
    end_time: int = 0
    queue_reason: Optional[str] = None
    max_concurrent: int = 0
    cancel_event: threading.Event = field(default_factory=threading.Event)
    history: list[tuple[str, Optional[str], int]] = field(default_factory=list)

    def set_state(self, life_cycle: str, result: Optional[str] = None, message: str = "",
                  termination: Optional[tuple[str, str]] = None) -> None:
        self.life_cycle_state, self.result_state, self.state_message = life_cycle, result, message
        if termination is not None:
            self.termination = termination
        elif result in TERMINATION:
            self.termination = TERMINATION[result]
        self.history.append((life_cycle, result, _now_ms()))

    @property
    def done(self) -> bool:
        return self.life_cycle_state in TERMINAL


# -- JSON shapes ---------------------------------------------------------------------------------
def _state(obj: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"life_cycle_state": obj.life_cycle_state, "state_message": obj.state_message,
                             "user_cancelled_or_timedout": obj.user_cancelled_or_timedout}
    if obj.result_state:
        state["result_state"] = obj.result_state
    if getattr(obj, "queue_reason", None) and obj.life_cycle_state == "QUEUED":
        state["queue_reason"] = obj.queue_reason
    return state


def _status(obj: Any) -> dict[str, Any]:
    life = obj.life_cycle_state
    v2 = {"SKIPPED": "TERMINATED", "INTERNAL_ERROR": "TERMINATED", "WAITING_FOR_RETRY": "WAITING"}.get(life, life)
    status: dict[str, Any] = {"state": v2}
    if v2 == "TERMINATED":
        code, kind = obj.termination or (("INTERNAL_ERROR", "INTERNAL_ERROR") if life == "INTERNAL_ERROR"
                                         else ("SUCCESS", "SUCCESS"))
        status["termination_details"] = {"code": code, "type": kind, "message": obj.state_message}
    elif v2 == "QUEUED" and getattr(obj, "queue_reason", None):
        status["queue_details"] = {"code": "ACTIVE_RUNS_LIMIT_REACHED", "message": obj.queue_reason}
    return status


def _durations(obj: Any) -> dict[str, int]:
    setup = (obj.running_since - obj.start_time) if obj.running_since else 0
    end = obj.end_time or _now_ms()
    execution = (end - obj.running_since) if obj.running_since else 0
    body = {"start_time": obj.start_time, "setup_duration": max(setup, 0),
            "execution_duration": max(execution, 0) if obj.end_time else 0, "cleanup_duration": 0,
            "end_time": obj.end_time}
    if obj.end_time:
        body["run_duration"] = obj.end_time - obj.start_time
    return body


def task_json(task: TaskRun, page_url: str) -> dict[str, Any]:
    body = {key: value for key, value in task.settings.items()}
    body.update({"run_id": task.run_id, "task_key": task.task_key, "state": _state(task), "status": _status(task),
                 "attempt_number": 0, "run_page_url": page_url, **_durations(task)})
    if task.cluster_instance:
        body["cluster_instance"] = dict(task.cluster_instance)
    return body


# -- validation ----------------------------------------------------------------------------------
def _require_dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{name} must be an object, got {type(value).__name__}.")
    return value


def _str_list(value: Any, name: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"{name} must be a list of strings.")


def validate_tasks(tasks: Any, *, job_clusters: dict[str, Any], environments: dict[str, Any],
                   clusters: dict[str, Any], allow_no_compute_notebooks: bool = True) -> list[dict[str, Any]]:
    """Checks task settings as the Jobs API does; returns them in dependency order."""
    if not isinstance(tasks, list) or not tasks:
        raise invalid("At least one task is required: tasks must be a non-empty list.")
    seen: dict[str, dict[str, Any]] = {}
    for index, task in enumerate(tasks):
        task = _require_dict(task, f"tasks[{index}]")
        key = task.get("task_key")
        if not isinstance(key, str) or not key:
            raise invalid(f"Missing required field: tasks[{index}].task_key.")
        if not _TASK_KEY.match(key):
            raise invalid(f"Invalid task_key {key!r}: up to 100 letters, digits, '_' and '-'.")
        if key in seen:
            raise invalid(f"Task key {key!r} is used by more than one task; task keys must be unique.")
        types = [t for t in TASK_TYPES + _OTHER_TASK_TYPES if t in task]
        if len(types) != 1:
            raise invalid(f"Task {key} must specify exactly one task type (e.g. spark_python_task, "
                          f"python_wheel_task, notebook_task); found {types or 'none'}.")
        if types[0] not in TASK_TYPES:
            raise ApiError(501, "NOT_IMPLEMENTED", f"Task {key}: LocalDatabricks runs {', '.join(TASK_TYPES)}; "
                                                   f"{types[0]} is not emulated.")
        _validate_task_body(key, types[0], _require_dict(task[types[0]], f"{key}.{types[0]}"))
        compute = [c for c in ("existing_cluster_id", "new_cluster", "job_cluster_key") if task.get(c)]
        if len(compute) > 1:
            raise invalid(f"Task {key}: only one of job_cluster_key, new_cluster or existing_cluster_id may be "
                          f"specified, got {compute}.")
        env_key = task.get("environment_key")
        if compute and env_key:
            raise invalid(f"Task {key}: environment_key (serverless) cannot be combined with {compute[0]}.")
        if not compute and not env_key and not (types[0] == "notebook_task" and allow_no_compute_notebooks):
            raise invalid("One of job_cluster_key, new_cluster, or existing_cluster_id must be specified.")
        if task.get("existing_cluster_id") and task["existing_cluster_id"] not in clusters:
            raise invalid(f"Cluster {task['existing_cluster_id']} does not exist")
        if task.get("new_cluster"):
            validate_cluster_spec(task["new_cluster"], f"Task {key}: new_cluster")
        if task.get("job_cluster_key") and task["job_cluster_key"] not in job_clusters:
            raise invalid(f"Task {key}: job_cluster_key {task['job_cluster_key']!r} is not one of the job's "
                          f"job_clusters {sorted(job_clusters)}.")
        if env_key and env_key not in environments:
            raise invalid(f"Task {key}: environment_key {env_key!r} is not one of the environments "
                          f"{sorted(environments)}.")
        if task.get("run_if") is not None and task["run_if"] not in RUN_IF:
            raise invalid(f"Task {key}: run_if {task['run_if']!r} is not one of {', '.join(RUN_IF)}.")
        for name in ("timeout_seconds", "max_retries"):
            if name in task and (not isinstance(task[name], int) or task[name] < -1):
                raise invalid(f"Task {key}: {name} must be an integer, got {task[name]!r}.")
        if "libraries" in task and not isinstance(task["libraries"], list):
            raise invalid(f"Task {key}: libraries must be a list.")
        seen[key] = task
    return _dependency_order(seen)


def _validate_task_body(key: str, kind: str, body: dict[str, Any]) -> None:
    if kind == "spark_python_task":
        if not isinstance(body.get("python_file"), str) or not body["python_file"]:
            raise invalid(f"Missing required field: {key}.spark_python_task.python_file.")
        if "parameters" in body:
            _str_list(body["parameters"], f"{key}.spark_python_task.parameters")
    elif kind == "python_wheel_task":
        for name in ("package_name", "entry_point"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise invalid(f"Missing required field: {key}.python_wheel_task.{name}.")
        if "parameters" in body and "named_parameters" in body:
            raise invalid(f"{key}.python_wheel_task: parameters and named_parameters are mutually exclusive.")
        if "parameters" in body:
            _str_list(body["parameters"], f"{key}.python_wheel_task.parameters")
    else:
        if not isinstance(body.get("notebook_path"), str) or not body["notebook_path"]:
            raise invalid(f"Missing required field: {key}.notebook_task.notebook_path.")
        if body.get("source", "WORKSPACE") not in ("WORKSPACE", "GIT"):
            raise invalid(f"{key}.notebook_task.source must be WORKSPACE or GIT.")
        if body.get("source") == "GIT":
            raise ApiError(501, "NOT_IMPLEMENTED", "LocalDatabricks runs notebooks from the workspace, not GIT.")
        if not body["notebook_path"].startswith("/"):
            raise invalid(f"{key}.notebook_task.notebook_path must be an absolute workspace path, "
                          f"got {body['notebook_path']!r}.")
        base = body.get("base_parameters", {})
        if not isinstance(base, dict):
            raise invalid(f"{key}.notebook_task.base_parameters must be a map of strings.")


def validate_cluster_spec(spec: Any, name: str) -> None:
    spec = _require_dict(spec, name)
    if not isinstance(spec.get("spark_version"), str) or not spec["spark_version"]:
        raise invalid(f"{name}: Missing required field: spark_version.")
    if "num_workers" in spec and (not isinstance(spec["num_workers"], int) or spec["num_workers"] < 0):
        raise invalid(f"{name}: num_workers must be a non-negative integer, got {spec['num_workers']!r}.")
    env = spec.get("spark_env_vars", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise invalid(f"{name}: spark_env_vars must map names to strings.")


def _dependency_order(tasks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    for key, task in tasks.items():
        deps = task.get("depends_on", [])
        if not isinstance(deps, list):
            raise invalid(f"Task {key}: depends_on must be a list of {{task_key}}.")
        for dep in deps:
            if not isinstance(dep, dict) or dep.get("task_key") not in tasks:
                raise invalid(f"Task {key} depends on {dep!r}, which is not a task of this job.")
    ordered: list[dict[str, Any]] = []
    placed: set[str] = set()
    while len(ordered) < len(tasks):
        ready = [k for k, t in tasks.items() if k not in placed
                 and all(d["task_key"] in placed for d in t.get("depends_on", []))]
        if not ready:
            raise invalid(f"The task dependency graph has a cycle among {sorted(set(tasks) - placed)}.")
        for key in ready:
            ordered.append(tasks[key])
            placed.add(key)
    return ordered


def keyed(items: Any, key: str, name: str) -> dict[str, dict[str, Any]]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise invalid(f"{name} must be a list.")
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get(key), str):
            raise invalid(f"Every entry of {name} needs a {key}.")
        if item[key] in out:
            raise invalid(f"{name}: {key} {item[key]!r} is used twice.")
        out[item[key]] = item
    for item in out.values():
        if name == "job_clusters":
            validate_cluster_spec(item.get("new_cluster"), f"job_clusters[{item[key]}].new_cluster")
        if name == "environments":
            spec = item.get("spec", {})
            if not isinstance(spec, dict) or not isinstance(spec.get("dependencies", []), list):
                raise invalid(f"environments[{item[key]}].spec.dependencies must be a list of strings.")
    return out


def validate_job_settings(settings: Any, clusters: dict[str, Any]) -> dict[str, Any]:
    """Checks job settings (``jobs/create`` body or ``new_settings``); returns them."""
    from deltaflow.projects.jobs_spec_cron import CronError, validate_quartz_cron, validate_timezone

    settings = _require_dict(settings, "settings")
    job_clusters = keyed(settings.get("job_clusters"), "job_cluster_key", "job_clusters")
    environments = keyed(settings.get("environments"), "environment_key", "environments")
    validate_tasks(settings.get("tasks"), job_clusters=job_clusters, environments=environments, clusters=clusters)
    if "name" in settings and not isinstance(settings["name"], str):
        raise invalid("name must be a string.")
    mcr = settings.get("max_concurrent_runs", 1)
    if not isinstance(mcr, int) or not 0 <= mcr <= 1000:
        raise invalid(f"max_concurrent_runs must be an integer between 0 and 1000, got {mcr!r}.")
    schedule = settings.get("schedule")
    if schedule is not None:
        schedule = _require_dict(schedule, "schedule")
        try:
            validate_quartz_cron(schedule.get("quartz_cron_expression"))
            validate_timezone(schedule.get("timezone_id"))
        except CronError as exc:
            raise invalid(f"schedule: {exc}") from exc
        if schedule.get("pause_status", "UNPAUSED") not in ("PAUSED", "UNPAUSED"):
            raise invalid(f"schedule.pause_status must be PAUSED or UNPAUSED, got {schedule['pause_status']!r}.")
    for param in settings.get("parameters", []) or []:
        if not isinstance(param, dict) or not isinstance(param.get("name"), str) or "default" not in param:
            raise invalid("Every job parameter needs a name and a default.")
    return settings
