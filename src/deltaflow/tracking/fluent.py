"""The fluent API (``deltaflow.start_run``, ``deltaflow.log_metric`` ...), MLflow's names and semantics.

The active-run stack is a ``ContextVar`` holding an immutable tuple, so threads and asyncio tasks each
see their own stack (a new thread starts with none, a task inherits its creator's). Every call goes
through :class:`DeltaflowClient`; nothing here touches storage. Arguments are validated before a run is
started on the caller's behalf, so a malformed call writes nothing.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional, Sequence

from deltaflow.config import get_tracking_uri
from deltaflow.entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    InputTag,
    LifecycleStage,
    Metric,
    Param,
    Run,
    RunStatus,
    RunTag,
    ViewType,
)
from deltaflow.errors import InvalidArgument, InvalidState
from deltaflow.tracking import _validation as V
from deltaflow.tracking.client import DeltaflowClient, check_artifact_file, check_figure, serialize_dict

__all__ = [
    "ActiveRun", "start_run", "end_run", "active_run", "last_active_run", "set_experiment",
    "create_experiment", "get_experiment", "get_experiment_by_name", "search_experiments",
    "delete_experiment", "restore_experiment", "log_param", "log_params", "log_metric", "log_metrics",
    "set_tag", "set_tags", "delete_tag", "log_artifact", "log_artifacts", "log_text", "log_dict",
    "log_figure", "log_input", "get_run", "get_metric_history", "list_artifacts", "download_artifacts",
    "search_runs", "delete_run", "restore_run", "flush", "get_artifact_uri",
]

EXPERIMENT_ID_ENVS = ("DELTAFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_ID")
EXPERIMENT_NAME_ENVS = ("DELTAFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_NAME")
# Set by a launcher (deltaflow run, mlflow run) for the process it starts: that process's first
# start_run() resumes this run instead of creating one.
RUN_ID_ENVS = ("DELTAFLOW_RUN_ID", "MLFLOW_RUN_ID")

_run_stack: contextvars.ContextVar[tuple["ActiveRun", ...]] = contextvars.ContextVar("deltaflow_runs", default=())
_last_run_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("deltaflow_last_run", default=None)
# Process-wide: the experiment chosen by set_experiment (as in MLflow) and every run the fluent API
# started and has not ended, whatever context it lives in, so the exit hook can end them all.
_active_experiment: dict[str, str] = {}
_open_runs: dict[str, "ActiveRun"] = {}
_open_lock = threading.Lock()
_failed_exit = False


def _client() -> DeltaflowClient:
    return DeltaflowClient(get_tracking_uri())


class ActiveRun(Run):
    """The run returned by ``start_run``; a context manager that ends it (FAILED on an exception)."""

    def __init__(self, run: Run, client: DeltaflowClient) -> None:
        super().__init__(info=run.info, data=run.data, inputs=run.inputs)
        object.__setattr__(self, "_client", client)

    def __enter__(self) -> "ActiveRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:  # noqa: ANN001
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
        _end(self.info.run_id, status)
        return False  # the user's exception propagates untouched


def _experiment_for_new_run(experiment_id: Optional[str], client: DeltaflowClient) -> str:
    if experiment_id is not None:
        return str(experiment_id)
    uri = client.tracking_uri
    if uri in _active_experiment:
        return _active_experiment[uri]
    for env in EXPERIMENT_ID_ENVS:
        if os.environ.get(env):
            return os.environ[env]
    for env in EXPERIMENT_NAME_ENVS:
        if os.environ.get(env):
            return set_experiment(os.environ[env]).experiment_id
    return client._store.default_experiment_id()


def start_run(
    run_id: Optional[str] = None,
    experiment_id: Optional[str] = None,
    run_name: Optional[str] = None,
    nested: bool = False,
    parent_run_id: Optional[str] = None,
    tags: Optional[dict[str, Any]] = None,
    description: Optional[str] = None,
    log_system_metrics: Optional[bool] = None,
) -> ActiveRun:
    """Start a new run, or resume ``run_id``; use as a context manager to end it automatically.

    With no ``run_id`` and no active run, the run named by ``DELTAFLOW_RUN_ID`` or ``MLFLOW_RUN_ID``
    (set by ``deltaflow run`` for the entry point's process) is resumed, as in MLflow."""
    del log_system_metrics  # accepted for MLflow compatibility; not collected yet
    if run_id is not None:
        V.validate_run_id(run_id)
    if experiment_id is not None:
        experiment_id = V.validate_experiment_id(experiment_id)
    if parent_run_id is not None:
        V.validate_run_id(parent_run_id)
    V.validate_run_name(run_name)
    tags = dict(V.validate_tags(tags))
    if description is not None:
        if not isinstance(description, str):
            raise InvalidArgument(f"description {V._excerpt(description)} must be a string")
        V.validate_tag("mlflow.note.content", description)
    stack = _run_stack.get()
    client = _client()
    if stack and not nested:
        raise InvalidState(
            f"run {stack[-1].info.run_id} is already active; end it with end_run() first, or pass "
            "nested=True to start a child run"
        )
    if parent_run_id is None and nested and stack:
        parent_run_id = stack[-1].info.run_id
    if run_id is None and not stack:
        run_id = _run_id_from_env()
        if run_id is not None and experiment_id is None:
            # as in MLflow: the run must belong to the experiment set_experiment() chose, if any
            experiment_id = _active_experiment.get(client.tracking_uri)
    if run_id is not None:
        existing = client.get_run(run_id)
        if existing.info.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidState(f"run {run_id!r} is deleted; restore it before resuming it")
        if experiment_id is not None and str(experiment_id) != existing.info.experiment_id:
            raise InvalidArgument(
                f"run {run_id!r} belongs to experiment {existing.info.experiment_id!r}, not {experiment_id!r}"
            )
        client._store.update_run_info(run_id, status=RunStatus.RUNNING, run_name=run_name)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        if description is not None:
            client.set_tag(run_id, "mlflow.note.content", description)
        run = client.get_run(run_id)
    else:
        from deltaflow.tracking._context import resolve_context_tags

        all_tags = {**resolve_context_tags(), **tags}
        if parent_run_id is not None:
            all_tags["mlflow.parentRunId"] = parent_run_id
        if description is not None:
            all_tags["mlflow.note.content"] = description
        run = client.create_run(_experiment_for_new_run(experiment_id, client), tags=all_tags, run_name=run_name)
    active = ActiveRun(run, client)
    _run_stack.set(stack + (active,))
    with _open_lock:
        _open_runs[active.info.run_id] = active
    _ensure_exit_hook()
    return active


def _run_id_from_env() -> Optional[str]:
    """The run a launcher handed over in DELTAFLOW_RUN_ID (or MLflow's MLFLOW_RUN_ID); both are
    removed once read, as MLflow does, so later start_run() calls create runs of their own."""
    found = [os.environ.pop(env, None) for env in RUN_ID_ENVS]
    run_id = next((value for value in found if value), None)
    return V.validate_run_id(run_id) if run_id is not None else None


def _end(run_id: str, status: str) -> None:
    from deltaflow.tracking import _pending

    _pending.wait(run_id)  # work still finishing for this run (autolog's model) completes first
    stack = _run_stack.get()
    client = _client()
    client.set_terminated(run_id, status)
    _run_stack.set(tuple(r for r in stack if r.info.run_id != run_id))
    _last_run_id.set(run_id)
    with _open_lock:
        _open_runs.pop(run_id, None)


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End the innermost active run of this context (a no-op when there is none)."""
    stack = _run_stack.get()
    if stack:
        _end(stack[-1].info.run_id, status)


def active_run() -> Optional[ActiveRun]:
    stack = _run_stack.get()
    return stack[-1] if stack else None


def last_active_run() -> Optional[Run]:
    run = active_run()
    run_id = run.info.run_id if run else _last_run_id.get()
    return _client().get_run(run_id) if run_id else None


def _run_id_or_start() -> str:
    run = active_run()
    return run.info.run_id if run else start_run().info.run_id


def _target_run(run_id: Optional[str], check: Callable[[], Any]) -> str:
    """The run a fluent call writes to: ``run_id``, else the active run, else a new run, started only
    once ``check()`` (the call's argument validation) has passed, so a bad call starts nothing."""
    if run_id is not None:
        return V.validate_run_id(run_id)
    run = active_run()
    if run is not None:
        return run.info.run_id
    check()
    return start_run().info.run_id


# -- experiments -----------------------------------------------------------------------------
def set_experiment(experiment_name: Optional[str] = None, experiment_id: Optional[str] = None) -> Experiment:
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidArgument("set_experiment needs exactly one of experiment_name or experiment_id")
    if experiment_id is not None:
        experiment_id = V.validate_experiment_id(experiment_id)
    else:
        V.validate_experiment_name(experiment_name)
    client = _client()
    if experiment_id is not None:
        experiment = client.get_experiment(experiment_id)
    else:
        experiment = client.get_experiment_by_name(experiment_name)  # type: ignore[arg-type]
        if experiment is None:
            from deltaflow.errors import AlreadyExists

            try:
                client.create_experiment(experiment_name)  # type: ignore[arg-type]
            except AlreadyExists:  # created by a concurrent process in between
                pass
            experiment = client.get_experiment_by_name(experiment_name)  # type: ignore[arg-type]
    assert experiment is not None  # noqa: S101 - created just above
    if experiment.lifecycle_stage != LifecycleStage.ACTIVE:
        raise InvalidState(
            f"experiment {experiment.name!r} ({experiment.experiment_id}) is deleted; restore it with "
            "restore_experiment() or choose another name"
        )
    _active_experiment[client.tracking_uri] = experiment.experiment_id
    return experiment


def create_experiment(name: str, artifact_location: Optional[str] = None, tags: Optional[dict] = None) -> str:
    return _client().create_experiment(name, artifact_location, tags)


def get_experiment(experiment_id: str) -> Experiment:
    return _client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Optional[Experiment]:
    return _client().get_experiment_by_name(name)


def search_experiments(view_type: int = ViewType.ACTIVE_ONLY, max_results: Optional[int] = None,
                       filter_string: Optional[str] = None, order_by: Optional[Sequence[str]] = None) -> list[Experiment]:
    _check_max_results(max_results, allow_none=True)
    client = _client()
    out: list[Experiment] = []
    token = None
    while True:
        page = client.search_experiments(view_type, min(max_results or 50_000, 50_000), filter_string, order_by, token)
        out.extend(page)
        token = page.token
        if not token or (max_results is not None and len(out) >= max_results):
            return out[:max_results] if max_results is not None else out


def _check_max_results(max_results: Any, allow_none: bool) -> None:
    if max_results is None and allow_none:
        return
    if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
        raise InvalidArgument(f"max_results {V._excerpt(max_results)} must be a positive integer")


def delete_experiment(experiment_id: str) -> None:
    _client().delete_experiment(experiment_id)


def restore_experiment(experiment_id: str) -> None:
    _client().restore_experiment(experiment_id)


# -- logging ---------------------------------------------------------------------------------
def log_param(key: str, value: Any, synchronous: Optional[bool] = None) -> Any:
    return _client().log_param(_target_run(None, lambda: V.validate_param(key, value)), key, value,
                               synchronous=synchronous)


def _mapping(value: Any, what: str) -> Any:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{what} must be a dict, got {type(value).__name__} {V._excerpt(value)}")
    return value


def log_params(params: dict[str, Any], synchronous: Optional[bool] = None, run_id: Optional[str] = None) -> None:
    items = [Param(k, v) for k, v in _mapping(params, "log_params' params").items()]
    rid = _target_run(run_id, lambda: V.validate_batch((), items, (), limits=False))
    _client().log_batch(rid, params=items, synchronous=synchronous)


def log_metric(key: str, value: float, step: Optional[int] = None, synchronous: Optional[bool] = None,
               timestamp: Optional[int] = None, run_id: Optional[str] = None) -> None:
    # The hot path: no client object, no run lookup beyond the context variable.
    stack = _run_stack.get()
    if run_id is not None:
        V.validate_run_id(run_id)
    if stack:
        rid = run_id or stack[-1].info.run_id
        store = stack[-1]._client._store  # type: ignore[attr-defined]
    else:
        rid = _target_run(run_id, lambda: V.validate_metric(key, value, 0 if timestamp is None else timestamp,
                                                            0 if step is None else step))
        store = _client()._store
    store.log_metric_fast(rid, key, value, timestamp, step)
    if synchronous:
        store.flush()


def log_metrics(metrics: dict[str, float], step: Optional[int] = None, synchronous: Optional[bool] = None,
                timestamp: Optional[int] = None, run_id: Optional[str] = None) -> None:
    ts = V.validate_timestamp(timestamp, "timestamp") if timestamp is not None else int(time.time() * 1000)
    items = [Metric(k, v, ts, 0 if step is None else step) for k, v in _mapping(metrics, "log_metrics' metrics").items()]
    rid = _target_run(run_id, lambda: V.validate_batch(items, (), (), limits=False))
    _client().log_batch(rid, metrics=items, synchronous=synchronous)


def set_tag(key: str, value: Any, synchronous: Optional[bool] = None) -> None:
    _client().set_tag(_target_run(None, lambda: V.validate_tag(key, value)), key, value, synchronous=synchronous)


def set_tags(tags: dict[str, Any], synchronous: Optional[bool] = None) -> None:
    items = [RunTag(k, v) for k, v in _mapping(tags, "set_tags' tags").items()]
    rid = _target_run(None, lambda: V.validate_batch((), (), items, limits=False))
    _client().log_batch(rid, tags=items, synchronous=synchronous)


def delete_tag(key: str) -> None:
    _client().delete_tag(_target_run(None, lambda: V.validate_key(key, "tag")), key)


def _check_local(path: Any, kind: str, artifact_path: Optional[str]) -> None:
    from deltaflow.artifacts import validate_artifact_path

    exists = os.path.isfile if kind == "file" else os.path.isdir
    if not isinstance(path, (str, os.PathLike)) or not exists(path):
        raise InvalidArgument(f"local {'path' if kind == 'file' else 'dir'} {path!r} is not a {kind}")
    validate_artifact_path(artifact_path)


def log_artifact(local_path: str, artifact_path: Optional[str] = None, run_id: Optional[str] = None) -> None:
    rid = _target_run(run_id, lambda: _check_local(local_path, "file", artifact_path))
    _client().log_artifact(rid, local_path, artifact_path)


def log_artifacts(local_dir: str, artifact_path: Optional[str] = None, run_id: Optional[str] = None) -> None:
    rid = _target_run(run_id, lambda: _check_local(local_dir, "directory", artifact_path))
    _client().log_artifacts(rid, local_dir, artifact_path)


def log_text(text: str, artifact_file: str, run_id: Optional[str] = None) -> None:
    def check() -> None:
        check_artifact_file(artifact_file)
        if not isinstance(text, str):
            raise InvalidArgument(f"log_text needs a str, got {type(text).__name__}")

    _client().log_text(_target_run(run_id, check), text, artifact_file)


def log_dict(dictionary: Any, artifact_file: str, run_id: Optional[str] = None) -> None:
    def check() -> None:
        check_artifact_file(artifact_file)
        serialize_dict(dictionary, artifact_file)

    _client().log_dict(_target_run(run_id, check), dictionary, artifact_file)


def log_figure(figure: Any, artifact_file: str, *, save_kwargs: Optional[dict] = None,
               run_id: Optional[str] = None) -> None:
    def check() -> None:
        check_artifact_file(artifact_file)
        check_figure(figure)

    rid = _target_run(run_id, check)
    _client().log_figure(rid, figure, artifact_file, save_kwargs=save_kwargs)


def log_input(dataset: Any, context: Optional[str] = None, tags: Optional[dict[str, str]] = None,
              run_id: Optional[str] = None) -> None:
    """Record a dataset input: a Dataset, a Delta table name or path, or a pandas/Spark DataFrame."""
    from deltaflow.tracking.datasets import to_dataset

    ds = to_dataset(dataset)
    if context is not None and not isinstance(context, str):
        raise InvalidArgument(f"log_input's context {V._excerpt(context)} must be a string")
    input_tags = [InputTag(k, v) for k, v in V.validate_tags(tags, "log_input's tags")]
    if context is not None:
        input_tags.append(InputTag("mlflow.data.context", context))
    inputs = V.validate_dataset_inputs([DatasetInput(dataset=ds, tags=input_tags)])
    _client().log_inputs(_target_run(run_id, lambda: None), inputs)


def flush(timeout: Optional[float] = None) -> None:
    """Block until everything logged in this process is committed to Delta (background logging
    work, such as autologged models still being saved, included)."""
    from deltaflow.tracking import _pending

    _pending.wait_all(timeout)
    _client().flush(timeout)


# -- reading ---------------------------------------------------------------------------------
def get_run(run_id: str) -> Run:
    return _client().get_run(run_id)


def get_metric_history(run_id: str, key: str) -> list[Metric]:
    return _client().get_metric_history(run_id, key)


def get_artifact_uri(artifact_path: Optional[str] = None, run_id: Optional[str] = None) -> str:
    from deltaflow.artifacts import join_uri, validate_artifact_path

    path = validate_artifact_path(artifact_path)
    base = _client().get_run(_target_run(run_id, lambda: None)).info.artifact_uri
    return join_uri(base, path) if path else base


def list_artifacts(artifact_path: Optional[str] = None, run_id: Optional[str] = None) -> list[FileInfo]:
    from deltaflow.artifacts import validate_artifact_path

    rid = _target_run(run_id, lambda: validate_artifact_path(artifact_path))
    return _client().list_artifacts(rid, artifact_path)


def download_artifacts(artifact_uri: Optional[str] = None, run_id: Optional[str] = None,
                       artifact_path: Optional[str] = None, dst_path: Optional[str] = None) -> str:
    """MLflow's ``mlflow.artifacts.download_artifacts``: by ``run_id`` (+ path) or by artifact URI."""
    if artifact_uri is not None:
        if run_id is not None or artifact_path is not None:
            raise InvalidArgument("give artifact_uri, or run_id with artifact_path, not both")
        from deltaflow.artifacts import get_artifact_repository

        if dst_path is not None:
            os.makedirs(dst_path, exist_ok=True)
        return get_artifact_repository(artifact_uri).download_artifacts("", dst_path)
    if run_id is None:
        raise InvalidArgument("download_artifacts needs artifact_uri or run_id")
    return _client().download_artifacts(run_id, artifact_path or "", dst_path)


def delete_run(run_id: str) -> None:
    _client().delete_run(run_id)


def restore_run(run_id: str) -> None:
    _client().restore_run(run_id)


def register_model(model_uri: str, name: str, tags: Optional[dict[str, Any]] = None) -> Any:
    """Register the model at ``model_uri`` as a new version of ``name`` (created if missing), as
    ``mlflow.register_model`` does; returns the ModelVersion."""
    return _client().register_model(model_uri, name, tags=tags)


def search_runs(
    experiment_ids: Optional[Sequence[str]] = None,
    filter_string: str = "",
    run_view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int = 100_000,
    order_by: Optional[Sequence[str]] = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: Optional[Sequence[str]] = None,
) -> Any:
    """Search runs; ``output_format`` is "pandas" (MLflow's columns), "list" or "spark"."""
    from deltaflow.tracking._search_output import runs_to_pandas, search_spark

    if output_format not in ("pandas", "list", "spark"):
        raise InvalidArgument(f"output_format {output_format!r} is not valid; use 'pandas', 'list' or 'spark'")
    _check_max_results(max_results, allow_none=False)
    if isinstance(experiment_ids, (str, int)) and not isinstance(experiment_ids, bool):
        experiment_ids = [experiment_ids]  # as mlflow.search_runs
    elif experiment_ids is not None and not isinstance(experiment_ids, (list, tuple)):
        raise InvalidArgument(f"experiment_ids {V._excerpt(experiment_ids)} must be a list of experiment ids")
    if experiment_names is not None and not isinstance(experiment_names, (list, tuple)):
        raise InvalidArgument(f"experiment_names {V._excerpt(experiment_names)} must be a list of names")
    client = _client()
    ids = [str(e) for e in (experiment_ids or [])]
    for name in experiment_names or []:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:  # MLflow skips names no experiment has
            ids.append(experiment.experiment_id)
    if not ids and experiment_names:  # every name unknown: no runs (MLflow: an empty result)
        if output_format == "spark":
            return search_spark(client._store, [], filter_string, run_view_type, order_by, max_results)
        return [] if output_format == "list" else runs_to_pandas([])
    if not ids:
        if search_all_experiments:
            ids = [e.experiment_id for e in search_experiments(view_type=ViewType.ALL)]
        else:
            ids = [_experiment_for_new_run(None, client)]
    if output_format == "spark":
        from deltaflow.tracking import _pending

        _pending.settle_for_read()  # the DataFrame sees this process's background logging too
        return search_spark(client._store, ids, filter_string, run_view_type, order_by, max_results)
    runs: list[Run] = []
    token = None
    while len(runs) < max_results:
        page = client.search_runs(ids, filter_string, run_view_type, min(max_results - len(runs), 50_000),
                                  order_by, token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs if output_format == "list" else runs_to_pandas(runs)


# -- interpreter exit ------------------------------------------------------------------------
_hook_lock = threading.Lock()
_hook_done = False


def _note_failure(exc_type, exc, tb) -> None:  # noqa: ANN001
    global _failed_exit
    _failed_exit = True
    _previous_excepthook(exc_type, exc, tb)


_previous_excepthook = sys.excepthook


def _end_open_runs() -> None:
    status = RunStatus.FAILED if _failed_exit else RunStatus.FINISHED
    with _open_lock:
        runs = list(_open_runs.values())
        _open_runs.clear()
    for run in runs:
        try:
            run._client.set_terminated(run.info.run_id, status)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - exit must go on
            pass


def _ensure_exit_hook() -> None:
    global _hook_done
    if _hook_done:
        return
    with _hook_lock:
        if _hook_done:
            return
        from deltaflow.store.factory import register_exit_hook

        register_exit_hook(_end_open_runs)
        if sys.excepthook is _previous_excepthook:
            sys.excepthook = _note_failure
        _hook_done = True
