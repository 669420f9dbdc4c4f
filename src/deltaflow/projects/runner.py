"""``deltaflow.projects.run``: fetch and validate a project, create its tracking run, hand it to a backend.

Order of work, so that bad input writes nothing: the arguments, the project URI (a checkout is made
for a git URI), the MLproject, the entry point, every parameter against its type and MLflow's param
rules, the backend configuration and the environment's tool are all checked first. Then the run is
created — SCHEDULED, with its params and MLflow's project tags (``mlflow.source.name``,
``mlflow.source.type`` = PROJECT, ``mlflow.source.git.*``, ``mlflow.project.entryPoint``,
``mlflow.project.backend``, ``mlflow.project.env``, ``mlflow.parentRunId`` when called inside an
active run) — and committed before the entry point can start and resume it. ``run_id=`` attaches to an
existing run instead (no second run is created; params it lacks are added).

The local backend builds the environment (the run stays SCHEDULED meanwhile), starts the entry point,
marks the run RUNNING and, with ``synchronous=True``, waits: the terminal status is durable when this
returns, and a run that did not finish raises :class:`~deltaflow.projects.submitted.RunFailed`. The
databricks backend is ``deltaflow.projects.databricks.run_databricks``.

The launcher itself uses the store's engine as ``auto`` picks it: delta-rs (no JVM) for every path
store it reaches.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any, Optional

from deltaflow.entities import LifecycleStage, Param, RunStatus
from deltaflow.errors import InvalidArgument, InvalidState, MissingDependency
from deltaflow.projects.submitted import RunFailed, SubmittedRun

__all__ = ["run", "BACKENDS", "parse_backend_config"]

BACKENDS = ("local", "databricks")
_log = logging.getLogger("deltaflow.projects")


def parse_backend_config(value: Any) -> dict[str, Any]:
    """A backend configuration: None, a dict, a JSON object's text, or the path of a JSON file."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise InvalidArgument(f"backend_config {value!r} must be a dict, a JSON object or the path of a JSON file")
    text, where = value, "backend_config"
    if os.path.isfile(os.path.expanduser(value)):
        where = f"backend_config file {value}"
        with open(os.path.expanduser(value), encoding="utf-8") as fh:
            text = fh.read()
    elif not value.lstrip().startswith("{"):
        raise InvalidArgument(f"backend_config {value!r} is neither a JSON object nor an existing JSON file")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument(f"{where} must hold a JSON object, got {type(parsed).__name__}")
    return parsed


def _check_arguments(entry_point: Any, parameters: Any, backend: Any, env_manager: Any, synchronous: Any,
                     experiment_name: Any, experiment_id: Any, run_name: Any, run_id: Any) -> None:
    from deltaflow.projects.environments import ENV_MANAGERS
    from deltaflow.tracking import _validation as V

    if backend not in BACKENDS:
        raise InvalidArgument(f"backend {backend!r} is not known; use one of {', '.join(BACKENDS)}")
    if env_manager is not None and env_manager not in ENV_MANAGERS:
        raise InvalidArgument(f"env_manager {env_manager!r} is not known; use one of {', '.join(ENV_MANAGERS)}")
    if not isinstance(entry_point, str) or not entry_point:
        raise InvalidArgument(f"entry_point {entry_point!r} must be non-empty text")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise InvalidArgument(f"parameters must be a dict of name to value, got {type(parameters).__name__}")
    if not isinstance(synchronous, bool):
        raise InvalidArgument(f"synchronous {synchronous!r} must be True or False")
    if experiment_name is not None and experiment_id is not None:
        raise InvalidArgument("give experiment_name or experiment_id, not both")
    if experiment_name is not None:
        V.validate_experiment_name(experiment_name)
    if experiment_id is not None:
        V.validate_experiment_id(experiment_id)
    V.validate_run_name(run_name)
    if run_id is not None:
        V.validate_run_id(run_id)


def _experiment_id(client: Any, experiment_name: Optional[str], experiment_id: Optional[str]) -> str:
    from deltaflow.errors import AlreadyExists
    from deltaflow.tracking.fluent import _experiment_for_new_run

    if experiment_id is not None:
        experiment = client.get_experiment(str(experiment_id))
    elif experiment_name is not None:
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            try:
                return client.create_experiment(experiment_name)
            except AlreadyExists:  # created by a concurrent launcher in between
                experiment = client.get_experiment_by_name(experiment_name)
    else:  # as a new fluent run: set_experiment(), then DELTAFLOW_/MLFLOW_EXPERIMENT_ID/_NAME, then Default
        return _experiment_for_new_run(None, client)
    if experiment.lifecycle_stage != LifecycleStage.ACTIVE:
        raise InvalidState(f"experiment {experiment.name!r} ({experiment.experiment_id}) is deleted; restore it or "
                           "choose another")
    return experiment.experiment_id


def run(uri: str, entry_point: str = "main", parameters: Optional[Mapping[str, Any]] = None,
        version: Optional[str] = None, experiment_name: Optional[str] = None, experiment_id: Optional[str] = None,
        run_name: Optional[str] = None, backend: str = "local", backend_config: Any = None,
        env_manager: Optional[str] = None, synchronous: bool = True, run_id: Optional[str] = None, *,
        tracking_uri: Optional[str] = None) -> SubmittedRun:
    """Run entry point ``entry_point`` of the project at ``uri`` (MLflow's ``mlflow.projects.run``).

    ``uri``: a project folder or git repository (``<uri>#<subdirectory>``; ``version``: commit, branch or
    tag). ``parameters``: values for the entry point's parameters (checked against their declared
    types) and extra ones (passed as ``--name value``). ``backend``: ``local`` or ``databricks`` (with
    ``backend_config``: a dict, JSON text or a JSON file). ``env_manager``: ``local``, ``virtualenv`` or
    ``conda`` (default: what the project declares, or ``local``). ``run_id``: log into this existing run.
    ``tracking_uri``: the store (default: the configured one).

    Returns the :class:`SubmittedRun`; with ``synchronous=True`` (the default) after the run ended, raising
    :class:`RunFailed` unless it FINISHED.
    """
    from deltaflow.config import resolve_location
    from deltaflow.projects.fetch import fetch_project
    from deltaflow.projects.spec import load_project

    _check_arguments(entry_point, parameters, backend, env_manager, synchronous, experiment_name, experiment_id,
                     run_name, run_id)
    config = parse_backend_config(backend_config)
    if backend == "local" and config:
        raise InvalidArgument(f"the local backend takes no backend_config (got keys {', '.join(sorted(config))})")
    location = resolve_location(tracking_uri)
    fetched = fetch_project(uri, version)
    try:
        project = load_project(fetched.directory)
        python_file = project.databricks_spark_job.python_file if project.databricks_spark_job else None
        if python_file is not None and backend != "databricks":
            raise InvalidArgument(f"project {fetched.directory} is a databricks_spark_job running {python_file!r}; it "
                                  "runs on the databricks backend only")
        entry = project.get_entry_point(entry_point) if python_file is None else None
        declared, extra = entry.resolve_parameters(parameters, local_paths=backend == "local") if entry else ({}, {})
        params = _checked_params({**declared, **extra})
        if backend == "local":
            from deltaflow.projects.environments import plan_environment

            plan = plan_environment(project, env_manager)
            env_tag = plan.kind
        else:
            run_databricks = _databricks_launcher(config)
            env_tag = env_manager
        from deltaflow.tracking._context import resolve_user
        from deltaflow.tracking.client import DeltaflowClient

        client = DeltaflowClient(location.uri)
        # A new run looks its experiment up first; an attached run is read whole.
        _open_run_tables(client, ("experiments", "experiment_tags") if run_id is None else ("latest_metrics", "inputs"))
        tags = {"mlflow.user": resolve_user(), "mlflow.source.name": fetched.source_name,
                "mlflow.source.type": "PROJECT", "mlflow.project.entryPoint": entry_point,
                "mlflow.project.backend": backend, **fetched.tags()}
        if env_tag:
            tags["mlflow.project.env"] = env_tag
        if run_id is None:
            run_id, exp_id = _create_run(client, experiment_name, experiment_id, run_name, tags, params)
        else:
            exp_id = _attach_run(client, run_id, experiment_name, experiment_id, run_name, params,
                                 {"mlflow.project.env": env_tag} if env_tag else {})
        client.flush()  # the entry point's process reads the run from the store: commit it first
    except BaseException:
        fetched.cleanup()
        raise
    if backend == "databricks":
        try:  # the backend packs the folder before it returns, so a checkout made for the run can go
            return run_databricks(fetched.directory, entry_point, dict(parameters or {}), run_id=run_id,
                                  experiment_id=exp_id, tracking_uri=location.uri, backend_config=config,
                                  synchronous=synchronous, env_manager=env_manager)
        finally:
            fetched.cleanup()
    assert entry is not None  # noqa: S101 - a local project always has its entry point resolved
    return _run_local(client, run_id, exp_id, location, fetched, plan, entry.render(declared, extra), synchronous)


def _databricks_launcher(config: dict[str, Any]) -> Any:
    """The databricks backend's entry, once its configuration is checked (before a run is created)."""
    try:
        from deltaflow.projects.databricks import run_databricks
        from deltaflow.projects.databricks_config import parse_databricks_config
    except ImportError as exc:
        if exc.name and exc.name.startswith("deltaflow"):
            raise MissingDependency("the databricks backend (deltaflow.projects.databricks) is not available in this "
                                    f"installation: {exc}") from None
        raise
    parse_databricks_config(config)
    return run_databricks


def _open_run_tables(client: Any, also: tuple[str, ...] = ()) -> None:
    """Open the tables a launch writes, and ``also`` those it reads first, in parallel: each open
    reads its table's log, and opened one after another as first used they were ~90 ms of a launch's
    ~0.4 s (rust engine only; the spark engine opens tables through its session)."""
    from concurrent.futures import ThreadPoolExecutor

    from deltaflow.store.schema import TABLES

    engine = client._store.engine
    if getattr(engine, "name", None) != "rust":
        return
    names = ("runs", "params", "tags", *also)
    with ThreadPoolExecutor(len(names), thread_name_prefix="deltaflow-open") as pool:
        for done in [pool.submit(engine.ensure_tables, [TABLES[name]]) for name in names]:
            done.result()


def _checked_params(values: Mapping[str, str]) -> list[Param]:
    from deltaflow.tracking import _validation as V

    out = []
    for key, value in values.items():
        key, text = V.validate_param(key, value)
        out.append(Param(key, text))
    return out


def _create_run(client: Any, experiment_name: Optional[str], experiment_id: Optional[str],
                run_name: Optional[str], tags: dict[str, str], params: list[Param]) -> tuple[str, str]:
    from deltaflow.tracking import fluent

    active = fluent.active_run()
    if active is not None:  # launched from inside a run: the project's run is its child, as in MLflow
        tags["mlflow.parentRunId"] = active.info.run_id
    exp_id = _experiment_id(client, experiment_name, experiment_id)
    created = client.create_run(exp_id, tags=tags, run_name=run_name, status=RunStatus.SCHEDULED)
    run_id = created.info.run_id
    if params:
        client.log_batch(run_id, params=params)
    return run_id, exp_id


def _attach_run(client: Any, run_id: str, experiment_name: Optional[str], experiment_id: Optional[str],
                run_name: Optional[str], params: list[Param], tags: dict[str, str]) -> str:
    existing = client.get_run(run_id)
    if existing.info.lifecycle_stage != LifecycleStage.ACTIVE:
        raise InvalidState(f"run {run_id!r} is deleted; restore it before launching into it")
    if experiment_id is not None and str(experiment_id) != existing.info.experiment_id:
        raise InvalidArgument(f"run {run_id!r} belongs to experiment {existing.info.experiment_id!r}, not "
                              f"{str(experiment_id)!r}")
    if experiment_name is not None:
        named = client.get_experiment_by_name(experiment_name)
        if named is None or named.experiment_id != existing.info.experiment_id:
            raise InvalidArgument(f"run {run_id!r} belongs to experiment {existing.info.experiment_id!r}, not to "
                                  f"{experiment_name!r}")
    have = existing.data.params
    clash = [p for p in params if p.key in have and have[p.key] != p.value]
    if clash:
        raise InvalidArgument(f"run {run_id!r} already has param {clash[0].key!r}={have[clash[0].key]!r}; this launch "
                              f"gives {clash[0].value!r} (params cannot change)")
    missing = [p for p in params if p.key not in have]
    if missing:
        client.log_batch(run_id, params=missing)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    if run_name is not None:
        client.update_run(run_id, name=run_name)
    return existing.info.experiment_id


def _run_local(client: Any, run_id: str, experiment_id: str, location: Any, fetched: Any, plan: Any,
               command: str, synchronous: bool) -> SubmittedRun:
    from deltaflow.projects.environments import prepare_environment
    from deltaflow.projects.local import ERROR_TAG, launch, recorder, run_env_vars

    try:
        environment = prepare_environment(plan, fetched.directory)
        variables = run_env_vars(run_id, experiment_id, location.uri)
        mounts = (location.root,) if location.is_local else ()
        # RUNNING is recorded before the process starts: its end, recorded by the watcher as soon as it
        # exits, must be the later event.
        client.update_run(run_id, status=RunStatus.RUNNING)
        submitted = launch(command, fetched.directory, run_id, variables, environment,
                           recorder(client, run_id, fetched.cleanup), mounts)
    except BaseException as exc:  # the entry point never started: the run ends, saying why
        try:
            client.set_tag(run_id, ERROR_TAG, f"{type(exc).__name__}: {exc}"[:8000])
            client.set_terminated(run_id, RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED)
        finally:
            fetched.cleanup()
        raise
    if not synchronous:
        return submitted
    try:
        finished = submitted.wait()
    except KeyboardInterrupt:
        _log.info("deltaflow: run %s interrupted; stopping the entry point", run_id)
        submitted.cancel()
        raise
    if not finished:
        raise RunFailed(run_id, submitted.get_status(), submitted.exit_code)
    return submitted
