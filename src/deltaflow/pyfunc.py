"""The ``python_function`` flavor: the one interface every model has, and custom Python models.

Mirrors ``mlflow.pyfunc``: :class:`PythonModel` (``load_context``, ``predict(context, model_input,
params)``), :class:`PythonModelContext` with ``artifacts``, ``save_model``/``log_model`` with
``python_model=`` and ``artifacts=``, and :func:`load_model` returning a :class:`PyFuncModel` that
enforces the signature. Models are written in MLflow's layout (``python_model.pkl`` cloudpickled,
``loader_module: mlflow.pyfunc.model``), so MLflow loads them and we load MLflow's.
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import sys
from collections import namedtuple
from typing import Any, Optional

from deltaflow.errors import InvalidArgument, MissingDependency
from deltaflow.models.model import Model, ModelInfo

__all__ = ["PythonModel", "PythonModelContext", "PyFuncModel", "save_model", "log_model", "load_model",
           "spark_udf", "FLAVOR_NAME"]

FLAVOR_NAME = "python_function"
_PICKLE = "python_model.pkl"
# MLflow's loader modules -> ours. The MLmodel keeps MLflow's names so MLflow can load the model.
_OWN_LOADERS = {"mlflow.sklearn": "deltaflow.sklearn", "mlflow.pyfunc.model": "deltaflow.pyfunc",
                "mlflow.spark": "deltaflow.spark"}
_TypeHints = namedtuple("_TypeHints", ["input", "output"])


def _open_compressed(module: str) -> Any:
    return lambda path, mode: importlib.import_module(module).open(path, mode)


# MLflow compresses python_model.pkl when MLFLOW_LOG_MODEL_COMPRESSION is set, and records how
# under ``python_model_compression`` (the file then ends in .gz, .bz2 or .xz).
_OPENERS = {"": open, "gzip": _open_compressed("gzip"), "bzip2": _open_compressed("bz2"),
            "lzma": _open_compressed("lzma")}


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError as exc:
        raise MissingDependency("custom Python models need cloudpickle: pip install cloudpickle") from exc
    return cloudpickle


class PythonModelContext:
    """What ``load_context`` and ``predict`` receive: local paths of the model's artifacts."""

    def __init__(self, artifacts: dict[str, str], model_config: Optional[dict[str, Any]] = None) -> None:
        self._artifacts = dict(artifacts)
        self._model_config = dict(model_config or {})

    @property
    def artifacts(self) -> dict[str, str]:
        return self._artifacts

    @property
    def model_config(self) -> dict[str, Any]:
        return self._model_config


class PythonModel:
    """Base class of custom models. Override ``predict``; ``load_context`` runs once at load time."""

    def load_context(self, context: PythonModelContext) -> None:  # noqa: B027 - optional hook
        """Load what ``predict`` needs from ``context.artifacts``."""

    def predict(self, context: PythonModelContext, model_input: Any, params: Optional[dict[str, Any]] = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement predict(context, model_input, params)")

    @property
    def predict_type_hints(self) -> Any:
        # MLflow's pyfunc wrapper asks every PythonModel it loads for these; "no hints" makes it pass
        # the input through unchanged, which is what a deltaflow model expects.
        return _TypeHints(None, None)


class _FunctionModel(PythonModel):
    """A plain ``predict(model_input)`` function saved as a model (``python_model=callable``)."""

    def __init__(self, func: Any) -> None:
        self.func = func

    def predict(self, context: PythonModelContext, model_input: Any, params: Optional[dict[str, Any]] = None) -> Any:
        return self.func(model_input)


def _takes_context(func: Any) -> bool:
    params = [p for p in inspect.signature(func).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "params"]
    return bool(params) and (params[0].name == "context" or len(params) >= 2)


def _call_predict(func: Any, context: Any, data: Any, params: Optional[dict[str, Any]]) -> Any:
    kwargs = {"params": params} if "params" in inspect.signature(func).parameters else {}
    return func(context, data, **kwargs) if _takes_context(func) else func(data, **kwargs)


class _PythonModelImpl:
    def __init__(self, python_model: Any, context: PythonModelContext) -> None:
        self.python_model = python_model
        self.context = context

    def predict(self, data: Any, params: Optional[dict[str, Any]] = None) -> Any:
        return _call_predict(self.python_model.predict, self.context, data, params)


class PyFuncModel:
    """A loaded model with the generic interface: ``predict(data, params=None)`` and ``metadata``."""

    def __init__(self, model_meta: Model, model_impl: Any, model_path: str) -> None:
        self._meta = model_meta
        self._impl = model_impl
        self._path = model_path

    @property
    def metadata(self) -> Model:
        return self._meta

    @property
    def model_path(self) -> str:
        return self._path

    @property
    def loader_module(self) -> Optional[str]:
        return self._meta.flavors.get(FLAVOR_NAME, {}).get("loader_module")

    def predict(self, data: Any, params: Optional[dict[str, Any]] = None) -> Any:
        """Score ``data`` after enforcing the signature (columns, types, params) as MLflow does."""
        from deltaflow.models.enforce import enforce_params, enforce_schema

        signature = self._meta.signature
        if signature is not None:
            data = enforce_schema(data, signature.inputs)
            params = enforce_params(params, signature.params)
        return self._impl.predict(data, params)

    def unwrap_python_model(self) -> Any:
        """The user's PythonModel instance (custom models only)."""
        if not isinstance(self._impl, _PythonModelImpl):
            raise InvalidArgument(f"the model at {self._path} is not a custom Python model; its loader is "
                                  f"{self.loader_module!r}")
        return self._impl.python_model

    def get_raw_model(self) -> Any:
        return getattr(self._impl, "model", None) or self.unwrap_python_model()

    def __repr__(self) -> str:
        return f"PyFuncModel(flavors={sorted(self._meta.flavors)}, path={self._path!r})"


# -- save / log ------------------------------------------------------------------------------
def _copy_artifacts(artifacts: dict[str, str], model_dir: str) -> dict[str, dict[str, str]]:
    from deltaflow.models.uri import download_model

    out: dict[str, dict[str, str]] = {}
    root = os.path.join(model_dir, "artifacts")
    os.makedirs(root, exist_ok=True)
    used: set[str] = set()
    for key, uri in artifacts.items():
        if not isinstance(key, str) or not key or not isinstance(uri, (str, os.PathLike)):
            raise InvalidArgument(f"artifacts must map non-empty names to paths or URIs; got {key!r}: {uri!r}")
        uri = os.fspath(uri)
        base = os.path.basename(uri.rstrip("/")) or key
        rel = base if base not in used else f"{key}/{base}"
        used.add(rel)
        dst = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.exists(uri):
            (shutil.copytree if os.path.isdir(uri) else shutil.copy2)(uri, dst)
        else:  # runs:/…, dbfs:/…, file:…: fetched like a model, then moved into place
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                shutil.move(download_model(uri, tmp), dst)
        out[key] = {"path": f"artifacts/{rel}", "uri": uri}
    return out


def save_model(path: str, python_model: Any = None, artifacts: Optional[dict[str, str]] = None, *,
               signature: Any = None, input_example: Any = None, pip_requirements: Any = None,
               extra_pip_requirements: Any = None, metadata: Optional[dict[str, Any]] = None,
               model_config: Optional[dict[str, Any]] = None, mlflow_model: Optional[Model] = None) -> Model:
    """Save a custom model (a :class:`PythonModel`, or a ``predict(model_input)`` function)."""
    from deltaflow.models._save import save_model_dir

    if python_model is None:
        raise InvalidArgument("save_model needs python_model= (a PythonModel instance or a predict function)")
    if not callable(getattr(python_model, "predict", None)):
        if not callable(python_model):
            raise InvalidArgument(f"python_model must be a PythonModel or a callable, got "
                                  f"{type(python_model).__name__}")
        python_model = _FunctionModel(python_model)
    cloudpickle = _cloudpickle()
    try:
        pickled = cloudpickle.dumps(python_model)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the caller's object
        raise InvalidArgument(f"python_model {type(python_model).__name__} cannot be serialised with "
                              f"cloudpickle: {exc}") from exc
    conf: dict[str, Any] = {"loader_module": "mlflow.pyfunc.model", "python_model": _PICKLE,
                            "cloudpickle_version": cloudpickle.__version__, "code": None, "streamable": False}
    if model_config:
        conf["model_config"] = dict(model_config)

    def write(dir_: str) -> None:
        with open(os.path.join(dir_, _PICKLE), "wb") as fh:
            fh.write(pickled)
        if artifacts:
            conf["artifacts"] = _copy_artifacts(artifacts, dir_)

    def predict(example: Any, dir_: str) -> Any:
        impl = _load_python_model(dir_, conf, model_config, own_pickle=True)
        return impl.predict(example, None)

    model = save_model_dir(path, flavor=None, flavor_conf=None, pyfunc_conf=conf, write_data=write,
                           libraries=["cloudpickle", "pandas"], pickled=pickled, signature=signature,
                           input_example=input_example, predict=predict, metadata=metadata,
                           mlflow_model=mlflow_model, pip_requirements=pip_requirements,
                           extra_pip_requirements=extra_pip_requirements)
    return model


def log_model(artifact_path: Optional[str] = None, python_model: Any = None,
              artifacts: Optional[dict[str, str]] = None, *, name: Optional[str] = None,
              registered_model_name: Optional[str] = None, run_id: Optional[str] = None,
              **kwargs: Any) -> ModelInfo:
    """Save a custom model under the active (or given) run's artifacts; returns its ModelInfo."""
    from deltaflow.models._save import log_model_dir

    return log_model_dir(save_model, name=name, artifact_path=artifact_path, run_id=run_id,
                         registered_model_name=registered_model_name, python_model=python_model,
                         artifacts=artifacts, **kwargs)


# -- load --------------------------------------------------------------------------------------
def _load_python_model(model_dir: str, conf: dict[str, Any], model_config: Optional[dict[str, Any]], *,
                       own_pickle: bool = False) -> _PythonModelImpl:
    """Unpickle the PythonModel and run its load_context. ``own_pickle``: the pickle was written by
    this process a moment ago (save_model's signature inference), so the pickle switch does not apply."""
    from deltaflow.models._trust import model_file, require_pickle_allowed

    if conf.get("python_model") is None:
        raise InvalidArgument(f"the model at {model_dir} has no python_model entry; models-from-code "
                              "(python_model as a .py file) are not supported yet")
    file = model_file(model_dir, conf["python_model"], f"{FLAVOR_NAME}.python_model")
    artifacts = {k: model_file(model_dir, v.get("path") if isinstance(v, dict) else v, f"{FLAVOR_NAME}.artifacts.{k}")
                 for k, v in (conf.get("artifacts") or {}).items()}
    opener = _OPENERS.get(conf.get("python_model_compression") or "")
    if opener is None:
        raise InvalidArgument(f"the model at {model_dir} has python_model_compression "
                              f"{conf['python_model_compression']!r}; supported: gzip, bzip2, lzma")
    if not own_pickle:
        require_pickle_allowed(file, "a custom Python model")
    _add_code_path(model_dir, conf)  # only once loading is allowed: its modules shadow installed ones
    with opener(file, "rb") as fh:
        python_model = _cloudpickle().load(fh)
    context = PythonModelContext(artifacts, model_config if model_config is not None else conf.get("model_config"))
    python_model.load_context(context)
    return _PythonModelImpl(python_model, context)


def _add_code_path(model_dir: str, conf: dict[str, Any]) -> None:
    from deltaflow.models._trust import model_file

    code = conf.get("code")
    if code:
        path = model_file(model_dir, code, "code")
        if path not in sys.path:
            sys.path.insert(0, path)


def _load_pyfunc_impl(model_dir: str, meta: Model, model_config: Optional[dict[str, Any]] = None) -> Any:
    return _load_python_model(model_dir, meta.flavor(FLAVOR_NAME, model_dir), model_config)


def _load_impl(model_dir: str, meta: Model, model_config: Optional[dict[str, Any]]) -> Any:
    conf = meta.flavor(FLAVOR_NAME, model_dir)
    loader = conf.get("loader_module")
    if not loader:
        raise InvalidArgument(f"the python_function flavor of the model at {model_dir} names no loader_module")
    own = _OWN_LOADERS.get(loader) or (loader if loader.startswith("deltaflow.") else None)
    if own is not None:
        return importlib.import_module(own)._load_pyfunc_impl(model_dir, meta, model_config)
    # Another MLflow flavor (xgboost, pytorch, ...): MLflow's own loader, when MLflow is installed.
    # It honours MLFLOW_ALLOW_PICKLE_DESERIALIZATION itself, per format; deltaflow cannot tell which
    # of them unpickle, so a refusing switch refuses them all.
    from deltaflow.models._trust import model_file, require_pickle_allowed

    require_pickle_allowed(model_dir, f"a model loaded by MLflow's {loader!r}, which may unpickle")
    try:
        module = importlib.import_module(loader)
    except ImportError as exc:
        raise MissingDependency(f"the model at {model_dir} is loaded by {loader!r}, which is not installed; "
                                "deltaflow loads sklearn, spark and custom Python models itself, other "
                                "flavors need MLflow: pip install 'deltaflow[bench]'") from exc
    _add_code_path(model_dir, conf)
    data_path = model_file(model_dir, conf["data"], f"{FLAVOR_NAME}.data") if conf.get("data") else model_dir
    return module._load_pyfunc(data_path)


def load_model(model_uri: str, suppress_warnings: bool = False, dst_path: Optional[str] = None,
               model_config: Optional[dict[str, Any]] = None) -> PyFuncModel:
    """Load any model with a python_function flavor, by runs:/ URI, models:/ URI or path."""
    from deltaflow.models.uri import download_model

    from deltaflow.models._trust import check_model

    local = download_model(model_uri, dst_path)
    meta = Model.load(local)
    if FLAVOR_NAME not in meta.flavors:
        raise InvalidArgument(f"the model at {model_uri!r} has no python_function flavor (it has "
                              f"{sorted(meta.flavors)}); load it with its flavor's load_model")
    check_model(local, meta)  # whole, and every file it names inside the folder
    return PyFuncModel(meta, _load_impl(local, meta, model_config), local)


def spark_udf(spark: Any, model_uri: str, result_type: Any = None, env_manager: str = "local",
              params: Optional[dict[str, Any]] = None, **kwargs: Any) -> Any:
    """A Spark UDF scoring with the model at ``model_uri``, as ``mlflow.pyfunc.spark_udf``; see
    :func:`deltaflow.serving.udf.spark_udf`."""
    from deltaflow.serving.udf import spark_udf as _spark_udf

    return _spark_udf(spark, model_uri, result_type, env_manager, params, **kwargs)
