"""What every flavor's save_model/log_model shares: the directory, signature and example, the
environment files, MLmodel, and logging the directory under a run with the history tag."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from typing import Any, Callable, Iterable, Optional

from deltaflow.errors import AlreadyExists, InvalidArgument
from deltaflow.models.model import MLMODEL_FILE_NAME, Model, ModelInfo, mlflow_version

# Hidden folders a model is assembled in before one rename publishes it; listings and downloads skip
# this prefix (deltaflow.artifacts), and gc removes ones a crash left behind.
STAGING_PREFIX = ".deltaflow-tmp-"
from deltaflow.models.schema import ModelSignature

__all__ = ["save_model_dir", "log_model_dir", "LOG_MODEL_HISTORY_TAG"]

LOG_MODEL_HISTORY_TAG = "mlflow.log-model.history"
_TAG_LIMIT = 8000  # the tracking store's tag value limit
_history_lock = threading.Lock()  # one read-modify-write of a run's history tag at a time
# Set while log_model saves into its scratch folder: that copy is uploaded (and made durable) by
# publish_dir, so fsyncing it first would only double the cost.
_scratch = threading.local()


def _local_dir(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgument(f"model path must be a string or path, got {type(path).__name__}")
    path = os.fspath(path)
    if path.lower().startswith("file:"):
        from deltaflow.models.uri import parse_model_uri

        path = parse_model_uri(path).path
    elif ":" in path and len(path.split(":", 1)[0]) > 1:
        raise InvalidArgument(f"save_model writes to a local path (or /Volumes/…, /dbfs/…), not {path!r}; "
                              "use log_model to store a model in a run's artifacts")
    path = os.path.abspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise AlreadyExists(f"model path {path!r} already exists and is not empty; save to a new path")
    return path


def save_model_dir(path: Any, *, flavor: Optional[str], flavor_conf: Optional[dict[str, Any]],
                   pyfunc_conf: Optional[dict[str, Any]], write_data: Callable[[str], None],
                   libraries: Iterable[str], pickled: Optional[bytes] = None,
                   signature: Any = None, input_example: Any = None,
                   predict: Optional[Callable[[Any, str], Any]] = None,
                   metadata: Optional[dict[str, Any]] = None, mlflow_model: Optional[Model] = None,
                   pip_requirements: Optional[Iterable[str]] = None,
                   extra_pip_requirements: Optional[Iterable[str]] = None) -> Model:
    """Save one model directory; on any failure nothing is left behind.

    ``write_data(path)`` writes the flavor's own files. ``predict(example, path)``, when given, is called on the input
    example to infer the signature's outputs (MLflow does the same).
    """
    import platform

    from deltaflow.models.environment import requirements_for, write_environment
    from deltaflow.models.infer import infer_output_schema, infer_schema, save_input_example, to_dataframe

    target = _local_dir(path)
    if signature is not None and signature is not False and not isinstance(signature, ModelSignature):
        raise InvalidArgument(f"signature must be a ModelSignature (see deltaflow.models.infer_signature), "
                              f"got {type(signature).__name__}")
    example = to_dataframe(input_example) if input_example is not None else None
    model = mlflow_model or Model()
    # Written in a hidden staging folder beside the target, MLmodel last, then published with one
    # rename: a crash leaves no model or the whole model (and at most a hidden staging folder).
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    path = os.path.join(parent, f"{STAGING_PREFIX}{os.urandom(8).hex()}")
    os.mkdir(path)
    try:
        write_data(path)
        if signature is None and example is not None:
            outputs = None
            if predict is not None:
                try:
                    outputs = infer_output_schema(predict(example, path))
                except Exception:  # noqa: BLE001 - as in MLflow, a failing example only loses the outputs
                    outputs = None
            signature = ModelSignature(infer_schema(example), outputs)
        if example is not None:
            model.saved_input_example_info = save_input_example(path, example)
        requirements = requirements_for(libraries, pickled, pip_requirements, extra_pip_requirements)
        env = write_environment(path, requirements)
        if pyfunc_conf is not None:
            conf = dict(pyfunc_conf)
            conf["env"] = env
            conf["python_version"] = platform.python_version()
            model.add_flavor("python_function", **conf)
        if flavor is not None:  # None: a custom Python model, which has only python_function
            model.add_flavor(flavor, **(flavor_conf or {}))
        model.signature = signature or None
        model.metadata = metadata
        model.mlflow_version = mlflow_version()
        # Keys MLflow 3 writes into every MLmodel (its Model's public attributes), so the file
        # reads the same; ours never comes from type hints.
        model.extra.setdefault("model_id", None)
        model.extra.setdefault("prompts", None)
        if model.signature is not None:
            model.extra.setdefault("is_signature_from_type_hint", False)
            model.extra.setdefault("type_hint_from_example", False)
        model.model_size_bytes = sum(os.path.getsize(os.path.join(d, f))
                                     for d, _, files in os.walk(path) for f in files)
        model.save(os.path.join(path, MLMODEL_FILE_NAME))
        _publish(path, target)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return model


def _publish(staging: str, target: str) -> None:
    """Make the finished staging folder durable and rename it to ``target`` (absent or an empty folder)."""
    import contextlib

    for directory, _dirs, files in ([] if getattr(_scratch, "active", False) else os.walk(staging)):
        for name in files:
            with contextlib.suppress(OSError), open(os.path.join(directory, name), "rb") as fh:
                os.fsync(fh.fileno())  # some FUSE mounts cannot fsync; the rename is atomic regardless
    try:
        os.rename(staging, target)
    except OSError:
        # Some FUSE mounts refuse to rename over an empty folder: remove it, then rename.
        if not os.path.isdir(target) or os.listdir(target):
            raise AlreadyExists(f"model path {target!r} was created by someone else while the model was being "
                                "saved; save to a new path") from None
        os.rmdir(target)
        os.rename(staging, target)


def _history_entry(model: Model) -> dict[str, Any]:
    """One entry of the history tag, with the keys MLflow records there (its Model.get_tags_dict):
    where the model is, when it was made, and its flavors (without any flavor's ``config``)."""
    data = model.to_dict()
    entry = {k: data[k] for k in ("run_id", "utc_time_created", "artifact_path", "model_uuid") if k in data}
    entry["flavors"] = {name: ({k: v for k, v in conf.items() if k != "config"} if isinstance(conf, dict) else conf)
                        for name, conf in data.get("flavors", {}).items()}
    return entry


def log_model_dir(save: Callable[..., Model], *, name: Optional[str], artifact_path: Optional[str],
                  run_id: Optional[str], registered_model_name: Optional[str],
                  **save_kwargs: Any) -> ModelInfo:
    """Save with ``save(path, mlflow_model=..., **save_kwargs)`` to a temp dir, log it under the run,
    record the history tag, and (when asked) register it."""
    from deltaflow.artifacts import get_artifact_repository, validate_artifact_path
    from deltaflow.tracking import fluent

    if name is not None and artifact_path is not None and name != artifact_path:
        raise InvalidArgument(f"give the model's name once: name={name!r} and artifact_path={artifact_path!r} differ")
    rel = validate_artifact_path(name or artifact_path or "model")
    if rel is None:
        raise InvalidArgument("the model name must be a non-empty relative path such as 'model'")
    if registered_model_name is not None:
        from deltaflow.registry._rules import check_model_name

        check_model_name(registered_model_name)  # a bad name fails before anything is written
    client = fluent._client()
    run_id = run_id or fluent._run_id_or_start()
    active = _active_run(client, run_id)
    run = active if active is not None else client.get_run(run_id)  # the only read, when there is one
    model = Model(artifact_path=rel, run_id=run_id)
    with tempfile.TemporaryDirectory(prefix="deltaflow-model-") as tmp:
        local = os.path.join(tmp, "model")
        _scratch.active = True
        try:
            save(path=local, mlflow_model=model, **save_kwargs)
        finally:
            _scratch.active = False
        get_artifact_repository(run.info.artifact_uri).publish_dir(local, rel)  # whole or not at all
    with _history_lock:
        # The run's history as of start_run (or just read), or as this process last wrote it.
        raw = getattr(active, "_model_history", None) or run.data.tags.get(LOG_MODEL_HISTORY_TAG)
        history = _parse_history(raw)
        history.append(_history_entry(model))
        text = json.dumps(history)
        while len(text) > _TAG_LIMIT and len(history) > 1:  # keep the newest entries under the tag limit
            history.pop(0)
            text = json.dumps(history)
        if len(text) <= _TAG_LIMIT:
            client.set_tag(run_id, LOG_MODEL_HISTORY_TAG, text)
            if active is not None:
                object.__setattr__(active, "_model_history", text)
    info = ModelInfo(model, f"runs:/{run_id}/{rel}")
    if registered_model_name is not None:
        info.registered_model_version = client.register_model(info.model_uri, registered_model_name).version
    return info


def _active_run(client: Any, run_id: str) -> Any:
    """The fluent API's active run when it is ``run_id`` on the same store, else None. It carries the
    run's artifact location and its tags as of start_run, so logging a model to it reads no table
    (on the Spark engine each read of the run costs seconds: a flush, then a Delta query)."""
    from deltaflow.tracking import fluent

    active = fluent.active_run()
    if active is None or active.info.run_id != run_id:
        return None
    owner = getattr(active, "_client", None)
    return active if owner is not None and owner.tracking_uri == client.tracking_uri else None


def _parse_history(raw: Optional[str]) -> list:
    try:
        value = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        value = []
    return value if isinstance(value, list) else []
