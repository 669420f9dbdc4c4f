"""The Jobs API 2.1/2.2 endpoints of :class:`~deltaflow.testing.LocalDatabricks`: jobs create / get /
list / reset / update / delete / run-now and runs submit / get / get-output / cancel / cancel-all /
list / delete.

Shapes and error answers follow Databricks: an unknown job or run is ``400 INVALID_PARAMETER_VALUE``
"Job 7 does not exist." (the SDK turns it into ``ResourceDoesNotExist``), ``get-output`` of a
multi-task parent run is refused, an idempotency token returns the run it first created, and a job's
``max_concurrent_runs`` queues further runs (or skips them when the job's queue is disabled).
"""

from __future__ import annotations

import copy
import itertools
import threading
from typing import TYPE_CHECKING, Any, Optional

from deltaflow.testing._dbx_exec import drive_run, read_logs
from deltaflow.testing._dbx_model import (ACTIVE, RunRecord, TaskRun, _durations, _state, _status, keyed, task_json,
                                          validate_job_settings, validate_tasks)
from deltaflow.testing._dbx_storage import invalid

if TYPE_CHECKING:  # pragma: no cover
    from deltaflow.testing.local_databricks import LocalDatabricks

__all__ = ["JobsService"]

_MULTI_TASK_OUTPUT = ("Retrieving the output of runs with multiple tasks is not supported. Please retrieve the "
                      "output of each individual task run instead.")


def _int(value: Any, name: str, default: Optional[int] = None) -> int:
    if value is None or value == "":
        if default is None:
            raise invalid(f"Missing required field: {name}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"{name} must be an integer, got {value!r}.") from None


def _bool(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


class JobsService:
    def __init__(self, ctx: "LocalDatabricks") -> None:
        self.ctx = ctx
        self.cond = threading.Condition(ctx.lock)
        self.jobs: dict[int, dict[str, Any]] = {}
        self.runs: dict[int, RunRecord] = {}
        self.task_runs: dict[int, tuple[RunRecord, TaskRun]] = {}
        self.tokens: dict[str, int] = {}
        self.deleted_runs: set[int] = set()
        self.threads: list[threading.Thread] = []
        self._job_ids = itertools.count(1001)
        self._run_ids = itertools.count(50001)
        self._numbers: dict[int, itertools.count] = {}

    # -- jobs --------------------------------------------------------------------------------------
    def _job(self, job_id: Any) -> dict[str, Any]:
        job = self.jobs.get(_int(job_id, "job_id"))
        if job is None:
            raise invalid(f"Job {job_id} does not exist.")
        return job

    @staticmethod
    def _defaults(settings: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(settings)
        out.setdefault("name", "Untitled")
        out.setdefault("max_concurrent_runs", 1)
        out.setdefault("timeout_seconds", 0)
        out.setdefault("email_notifications", {})
        out.setdefault("webhook_notifications", {})
        out.setdefault("format", "MULTI_TASK")
        out.setdefault("queue", {"enabled": True})
        return out

    def create(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        settings = {k: v for k, v in body.items() if k not in ("access_control_list",)}
        validate_job_settings(settings, self.ctx.clusters)
        with self.ctx.lock:
            job_id = next(self._job_ids)
            self.jobs[job_id] = {"job_id": job_id, "creator_user_name": self.ctx.user_name,
                                 "run_as_user_name": self.ctx.user_name, "run_as_owner": True,
                                 "created_time": self.ctx.now_ms(), "settings": self._defaults(settings)}
        return {"job_id": job_id}

    def get(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            return copy.deepcopy(self._job(query.get("job_id")))

    def list(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        limit = _int(query.get("limit"), "limit", 20)
        if not 1 <= limit <= 100:
            raise invalid(f"limit must be between 1 and 100, got {limit}.")
        start = _int(query.get("page_token") or query.get("offset"), "offset", 0)
        name = query.get("name")
        expand = _bool(query.get("expand_tasks"))
        with self.ctx.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: -j["job_id"])
            if name:
                jobs = [j for j in jobs if j["settings"].get("name", "").lower() == name.lower()]
            page = copy.deepcopy(jobs[start:start + limit])
        for job in page:
            if not expand:
                job["settings"].pop("tasks", None)
                job["settings"].pop("job_clusters", None)
            job["has_more"] = False
        body_out: dict[str, Any] = {"jobs": page, "has_more": start + limit < len(jobs)}
        if start + limit < len(jobs):
            body_out["next_page_token"] = str(start + limit)
        if start:
            body_out["prev_page_token"] = str(max(0, start - limit))
        return body_out

    def reset(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body.get("new_settings"), dict):
            raise invalid("Missing required field: new_settings")
        validate_job_settings(body["new_settings"], self.ctx.clusters)
        with self.ctx.lock:
            self._job(body.get("job_id"))["settings"] = self._defaults(body["new_settings"])
        return {}

    def update(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            job = self._job(body.get("job_id"))
            merged = copy.deepcopy(job["settings"])
        for field in body.get("fields_to_remove", []) or []:
            merged.pop(field, None)
        new = body.get("new_settings") or {}
        if not isinstance(new, dict):
            raise invalid("new_settings must be an object.")
        for key, value in new.items():
            if key == "tasks" and isinstance(value, list):
                by_key = {t["task_key"]: t for t in merged.get("tasks", [])}
                by_key.update({t.get("task_key"): t for t in value if isinstance(t, dict)})
                merged["tasks"] = list(by_key.values())
            else:
                merged[key] = value
        validate_job_settings(merged, self.ctx.clusters)
        with self.ctx.lock:
            job["settings"] = self._defaults(merged)
        return {}

    def delete(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            job = self._job(body.get("job_id"))
            active = [r for r in self.runs.values() if r.job_id == job["job_id"] and not r.done]
            del self.jobs[job["job_id"]]
        for run in active:  # deleting a job cancels its active runs
            run.cancel_event.set()
        return {}

    def run_now(self, query: dict[str, Any], body: dict[str, Any], trigger: str = "ONE_TIME") -> dict[str, Any]:
        token = self._check_token(body.get("idempotency_token"))
        with self.ctx.lock:
            job = copy.deepcopy(self._job(body.get("job_id")))
            if token and token in self.tokens:
                run = self.runs[self.tokens[token]]
                return {"run_id": run.run_id, "number_in_job": run.number_in_job}
        settings = job["settings"]
        tasks = copy.deepcopy(settings["tasks"])
        _apply_overrides(tasks, body)
        defined = {p["name"]: p for p in settings.get("parameters", []) or []}
        values = body.get("job_parameters") or {}
        if not isinstance(values, dict):
            raise invalid("job_parameters must map parameter names to values.")
        unknown = sorted(set(values) - set(defined))
        if unknown:
            raise invalid(f"Job parameters {unknown} are not defined by job {job['job_id']}; defined: "
                          f"{sorted(defined)}.")
        params = [{"name": n, "default": p["default"], "value": str(values.get(n, p["default"]))}
                  for n, p in defined.items()]
        overriding = {k: body[k] for k in ("python_params", "notebook_params", "python_named_params") if k in body}
        run = self._start(job["job_id"], settings.get("name", "Untitled"), "JOB_RUN", tasks,
                          settings.get("job_clusters"), settings.get("environments"),
                          settings.get("timeout_seconds", 0), trigger, params, overriding or None, token,
                          max_concurrent=settings.get("max_concurrent_runs", 1),
                          queue=(settings.get("queue") or {}).get("enabled", True))
        return {"run_id": run.run_id, "number_in_job": run.number_in_job}

    # -- runs --------------------------------------------------------------------------------------
    def _check_token(self, token: Any) -> Optional[str]:
        if token is None:
            return None
        if not isinstance(token, str) or not 0 < len(token) <= 64:
            raise invalid(f"idempotency_token must be a string of at most 64 characters, got {token!r}.")
        with self.ctx.lock:
            if token in self.tokens and self.tokens[token] in self.deleted_runs:
                raise invalid(f"The run created with idempotency token {token!r} was deleted.")
        return token

    def submit(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        token = self._check_token(body.get("idempotency_token"))
        with self.ctx.lock:
            if token and token in self.tokens:
                return {"run_id": self.tokens[token]}
        timeout = body.get("timeout_seconds", 0)
        if not isinstance(timeout, int) or timeout < 0:
            raise invalid(f"timeout_seconds must be a non-negative integer, got {timeout!r}.")
        run = self._start(None, body.get("run_name") or "Untitled", "SUBMIT_RUN", body.get("tasks"),
                          body.get("job_clusters"), body.get("environments"), timeout, None, [], None, token)
        return {"run_id": run.run_id}

    def _start(self, job_id: Optional[int], name: str, run_type: str, tasks: Any, job_clusters: Any,
               environments: Any, timeout: int, trigger: Optional[str], params: list[dict[str, Any]],
               overriding: Optional[dict[str, Any]], token: Optional[str], max_concurrent: int = 0,
               queue: bool = True) -> RunRecord:
        clusters = keyed(job_clusters, "job_cluster_key", "job_clusters")
        envs = keyed(environments, "environment_key", "environments")
        ordered = validate_tasks(tasks, job_clusters=clusters, environments=envs, clusters=self.ctx.clusters)
        with self.ctx.lock:
            if token and token in self.tokens:  # a concurrent retry with the same token won the race
                return self.runs[self.tokens[token]]
            if job_id is None:
                job_id = next(self._job_ids)  # a one-time run belongs to a hidden job of its own
            number = next(self._numbers.setdefault(job_id, itertools.count(1)))
            run = RunRecord(run_id=next(self._run_ids), job_id=job_id, run_name=name, run_type=run_type,
                            creator=self.ctx.user_name, job_clusters=clusters, environments=envs,
                            timeout_seconds=timeout, trigger=trigger, number_in_job=number, job_parameters=params,
                            overriding_parameters=overriding, idempotency_token=token,
                            tasks=[TaskRun(next(self._run_ids), t["task_key"], copy.deepcopy(t)) for t in ordered])
            run.max_concurrent = max_concurrent
            active = [r for r in self.runs.values() if r.job_id == job_id and r.life_cycle_state in ACTIVE]
            skip = run_type == "JOB_RUN" and not queue and max_concurrent and len(active) >= max_concurrent
            self.runs[run.run_id] = run
            for task in run.tasks:
                self.task_runs[task.run_id] = (run, task)
                task.history.append(("PENDING", None, run.start_time))
            if token:
                self.tokens[token] = run.run_id
            if skip:
                run.end_time = run.start_time
                run.set_state("SKIPPED", None, f"Skipped: the job already has {len(active)} active run(s), its "
                                               f"max_concurrent_runs, and its queue is disabled.",
                              ("MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR"))
                for task in run.tasks:
                    task.set_state("SKIPPED", None, run.state_message)
                return run
            run.set_state("PENDING", None, "Waiting for cluster")
        thread = threading.Thread(target=drive_run, args=(self.ctx, run), name=f"local-databricks-run-{run.run_id}",
                                  daemon=True)
        self.threads.append(thread)
        thread.start()
        return run

    def wait_for_slot(self, run: RunRecord) -> None:
        limit = run.max_concurrent
        if run.run_type != "JOB_RUN" or not limit:
            return
        with self.cond:
            while not run.cancel_event.is_set():
                busy = [r for r in self.runs.values() if r.job_id == run.job_id and r is not run
                        and r.life_cycle_state in ("PENDING", "RUNNING", "TERMINATING")]
                earlier = [r for r in self.runs.values() if r.job_id == run.job_id and r.run_id < run.run_id
                           and r.life_cycle_state == "QUEUED"]
                if len(busy) < limit and not earlier:
                    if run.life_cycle_state == "QUEUED":
                        run.set_state("PENDING", None, "Waiting for cluster")
                    return
                if run.life_cycle_state != "QUEUED":
                    run.queue_reason = f"Queued due to reaching the job's max_concurrent_runs ({limit})."
                    run.set_state("QUEUED", None, run.queue_reason)
                self.cond.wait(0.5)

    def run_finished(self, run: RunRecord) -> None:
        with self.cond:
            self.cond.notify_all()

    def _lookup(self, run_id: Any) -> tuple[RunRecord, Optional[TaskRun]]:
        rid = _int(run_id, "run_id")
        if rid in self.runs and rid not in self.deleted_runs:
            return self.runs[rid], None
        if rid in self.task_runs and self.task_runs[rid][0].run_id not in self.deleted_runs:
            return self.task_runs[rid]
        raise invalid(f"Run {run_id} does not exist.")

    def page_url(self, job_id: int, run_id: int) -> str:
        return f"{self.ctx.host}/?o={self.ctx.workspace_id}#job/{job_id}/run/{run_id}"

    def run_json(self, run: RunRecord, with_tasks: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "job_id": run.job_id, "run_id": run.run_id, "number_in_job": run.number_in_job,
            "original_attempt_run_id": run.run_id, "creator_user_name": run.creator, "run_name": run.run_name,
            "run_type": run.run_type, "format": "MULTI_TASK", "attempt_number": 0, "state": _state(run),
            "status": _status(run), "run_page_url": self.page_url(run.job_id, run.run_id), **_durations(run),
            "job_clusters": list(run.job_clusters.values()), "has_more": False}
        if run.trigger:
            body["trigger"] = run.trigger
        if run.job_parameters:
            body["job_parameters"] = [dict(p) for p in run.job_parameters]
        if run.overriding_parameters:
            body["overriding_parameters"] = dict(run.overriding_parameters)
        if with_tasks:
            body["tasks"] = [task_json(t, self.page_url(run.job_id, t.run_id)) for t in run.tasks]
        return body

    def _task_as_run(self, run: RunRecord, task: TaskRun) -> dict[str, Any]:
        body = task_json(task, self.page_url(run.job_id, task.run_id))
        body.update({"job_id": run.job_id, "parent_run_id": run.run_id, "run_name": task.task_key,
                     "run_type": run.run_type, "creator_user_name": run.creator, "number_in_job": task.run_id,
                     "original_attempt_run_id": task.run_id, "tasks": [task_json(task, body["run_page_url"])]})
        return body

    def get_run(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            run, task = self._lookup(query.get("run_id"))
            return self._task_as_run(run, task) if task else self.run_json(run)

    def get_output(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            run, task = self._lookup(query.get("run_id"))
            if task is None:
                raise invalid(_MULTI_TASK_OUTPUT)
            out: dict[str, Any] = {"metadata": self._task_as_run(run, task)}
            if task.error:
                out["error"] = task.error
            if task.error_trace:
                out["error_trace"] = task.error_trace
            if "notebook_task" in task.settings:
                if task.notebook_result is not None:
                    out["notebook_output"] = {"result": task.notebook_result[:5 * 1024 * 1024],
                                              "truncated": len(task.notebook_result) > 5 * 1024 * 1024}
                return out
        logs, truncated = read_logs(task)
        out["logs"], out["logs_truncated"] = logs, truncated
        return out

    def cancel(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            run, _ = self._lookup(body.get("run_id"))
        if not run.done:
            run.cancel_event.set()
            with self.cond:
                self.cond.notify_all()
        return {}

    def cancel_all(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            if body.get("job_id") is not None:
                self._job(body["job_id"])
            victims = [r for r in self.runs.values() if not r.done and
                       (body.get("job_id") is None or r.job_id == int(body["job_id"]))]
            if body.get("job_id") is None and not _bool(body.get("all_queued_runs")):
                raise invalid("Either job_id or all_queued_runs must be given.")
            if body.get("job_id") is None:
                victims = [r for r in victims if r.life_cycle_state == "QUEUED"]
        for run in victims:
            run.cancel_event.set()
        with self.cond:
            self.cond.notify_all()
        return {}

    def delete_run(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        with self.ctx.lock:
            run, task = self._lookup(body.get("run_id"))
            if task is not None:
                raise invalid(f"Run {body.get('run_id')} is a task run; delete its job run {run.run_id}.")
            if not run.done:
                raise invalid(f"Run {run.run_id} is still active ({run.life_cycle_state}); cancel it first.")
            self.deleted_runs.add(run.run_id)
        return {}

    def list_runs(self, query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        limit = _int(query.get("limit"), "limit", 20) or 25
        if not 1 <= limit <= 25:
            raise invalid(f"limit must be between 1 and 25, got {limit}.")
        active_only, completed_only = _bool(query.get("active_only")), _bool(query.get("completed_only"))
        if active_only and completed_only:
            raise invalid("active_only and completed_only cannot both be true.")
        start = _int(query.get("page_token") or query.get("offset"), "offset", 0)
        with self.ctx.lock:
            runs = [r for r in self.runs.values() if r.run_id not in self.deleted_runs]
            if query.get("job_id"):
                job_id = _int(query["job_id"], "job_id")
                runs = [r for r in runs if r.job_id == job_id]
            if query.get("run_type"):
                runs = [r for r in runs if r.run_type == query["run_type"]]
            if active_only:
                runs = [r for r in runs if not r.done]
            if completed_only:
                runs = [r for r in runs if r.done]
            if query.get("start_time_from"):
                runs = [r for r in runs if r.start_time >= _int(query["start_time_from"], "start_time_from")]
            if query.get("start_time_to"):
                runs = [r for r in runs if r.start_time <= _int(query["start_time_to"], "start_time_to")]
            runs.sort(key=lambda r: (-r.start_time, -r.run_id))
            page = [self.run_json(r, with_tasks=_bool(query.get("expand_tasks"))) for r in runs[start:start + limit]]
        out: dict[str, Any] = {"runs": page, "has_more": start + limit < len(runs)}
        if start + limit < len(runs):
            out["next_page_token"] = str(start + limit)
        if start:
            out["prev_page_token"] = str(max(0, start - limit))
        return out


def _apply_overrides(tasks: list[dict[str, Any]], body: dict[str, Any]) -> None:
    """run-now's python_params / python_named_params / notebook_params replace or merge task parameters."""
    python_params = body.get("python_params")
    if python_params is not None and (not isinstance(python_params, list)
                                      or not all(isinstance(p, str) for p in python_params)):
        raise invalid("python_params must be a list of strings.")
    for name in ("notebook_params", "python_named_params"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise invalid(f"{name} must map names to values.")
    for task in tasks:
        if python_params is not None and "spark_python_task" in task:
            task["spark_python_task"]["parameters"] = list(python_params)
        if "python_wheel_task" in task:
            if python_params is not None:
                task["python_wheel_task"]["parameters"] = list(python_params)
                task["python_wheel_task"].pop("named_parameters", None)
            if body.get("python_named_params") is not None:
                task["python_wheel_task"]["named_parameters"] = dict(body["python_named_params"])
                task["python_wheel_task"].pop("parameters", None)
        if body.get("notebook_params") and "notebook_task" in task:
            merged = dict(task["notebook_task"].get("base_parameters") or {})
            merged.update({k: str(v) for k, v in body["notebook_params"].items()})
            task["notebook_task"]["base_parameters"] = merged
