"""The ``sklearn`` flavor: scikit-learn estimators, cloudpickled, in MLflow's layout.

Mirrors ``mlflow.sklearn``. The MLmodel names ``loader_module: mlflow.sklearn`` and
``serialization_format: cloudpickle`` as MLflow writes them, so ``mlflow.pyfunc.load_model`` loads the
model. Loading honours ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` and ``DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION``
(see :mod:`deltaflow.models._trust`), for every format, as MLflow 3.17 does.
Models MLflow saved with ``pickle``, ``cloudpickle`` or ``skops`` (MLflow 3's default, needs skops)
load here too.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Optional

from deltaflow.errors import InvalidArgument, MissingDependency
from deltaflow.models.model import Model, ModelInfo

__all__ = ["save_model", "log_model", "load_model", "FLAVOR_NAME", "SERIALIZATION_FORMATS"]

FLAVOR_NAME = "sklearn"
SERIALIZATION_FORMATS = ("cloudpickle", "pickle")
_FILES = {"cloudpickle": "model.pkl", "pickle": "model.pkl"}
# What a scikit-learn model needs besides what its pickle references (found by scanning it).
_LIBRARIES = ("scikit-learn", "cloudpickle", "numpy", "scipy", "pandas")


def _sklearn_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("scikit-learn")
    except metadata.PackageNotFoundError as exc:
        raise MissingDependency("the sklearn flavor needs scikit-learn: pip install scikit-learn") from exc


def save_model(sk_model: Any, path: str, serialization_format: str = "cloudpickle", *,
               signature: Any = None, input_example: Any = None, pip_requirements: Any = None,
               extra_pip_requirements: Any = None, metadata: Optional[dict[str, Any]] = None,
               pyfunc_predict_fn: str = "predict", mlflow_model: Optional[Model] = None) -> Model:
    """Save a fitted estimator to a new local directory ``path``."""
    from deltaflow.models._save import save_model_dir

    if serialization_format not in SERIALIZATION_FORMATS:
        raise InvalidArgument(f"serialization_format {serialization_format!r} is not supported; use one of "
                              f"{', '.join(SERIALIZATION_FORMATS)}")
    if not callable(getattr(sk_model, pyfunc_predict_fn, None)):
        raise InvalidArgument(f"sk_model {type(sk_model).__name__} has no method {pyfunc_predict_fn!r} "
                              "(pyfunc_predict_fn); pass a fitted estimator")
    version = _sklearn_version()
    if serialization_format == "cloudpickle":
        try:
            import cloudpickle
        except ImportError as exc:
            raise MissingDependency("cloudpickle serialisation needs cloudpickle: pip install cloudpickle") from exc
        data = cloudpickle.dumps(sk_model)
    else:
        data = pickle.dumps(sk_model, protocol=pickle.DEFAULT_PROTOCOL)
    file = _FILES[serialization_format]

    def write(dir_: str) -> None:
        with open(os.path.join(dir_, file), "wb") as fh:
            fh.write(data)

    flavor = {"pickled_model": file, "sklearn_version": version, "serialization_format": serialization_format,
              "code": None, "skops_trusted_types": None}
    pyfunc = {"loader_module": "mlflow.sklearn", "model_path": file, "predict_fn": pyfunc_predict_fn}
    return save_model_dir(path, flavor=FLAVOR_NAME, flavor_conf=flavor, pyfunc_conf=pyfunc, write_data=write,
                          libraries=_LIBRARIES, pickled=data, signature=signature, input_example=input_example,
                          predict=lambda example, _dir: getattr(sk_model, pyfunc_predict_fn)(example),
                          metadata=metadata, mlflow_model=mlflow_model, pip_requirements=pip_requirements,
                          extra_pip_requirements=extra_pip_requirements)


def log_model(sk_model: Any, artifact_path: Optional[str] = None, *, name: Optional[str] = None,
              registered_model_name: Optional[str] = None, run_id: Optional[str] = None,
              **kwargs: Any) -> ModelInfo:
    """Save the estimator under the active (or given) run's artifacts; returns its ModelInfo."""
    from deltaflow.models._save import log_model_dir

    return log_model_dir(save_model, name=name, artifact_path=artifact_path, run_id=run_id,
                         registered_model_name=registered_model_name, sk_model=sk_model, **kwargs)


def _load_from_dir(model_dir: str, meta: Model) -> Any:
    from deltaflow.models._trust import model_file, require_pickle_allowed

    conf = meta.flavor(FLAVOR_NAME, model_dir)
    fmt = conf.get("serialization_format", "pickle")
    file = model_file(model_dir, conf.get("pickled_model") or "model.pkl", f"{FLAVOR_NAME}.pickled_model")
    if fmt not in ("skops", "cloudpickle", "pickle"):
        raise InvalidArgument(f"the model at {model_dir} uses serialization_format {fmt!r}; supported: "
                              "cloudpickle, pickle, skops")
    # As in MLflow 3.17, skops too: its trusted-types list is read from the model itself.
    require_pickle_allowed(file, f"a scikit-learn model in the {fmt} format")
    if fmt == "skops":
        try:
            import skops.io
        except ImportError as exc:
            raise MissingDependency(f"the model at {model_dir} was saved by MLflow in the skops format, "
                                    "which needs skops: pip install skops") from exc
        trusted = conf.get("skops_trusted_types")
        if trusted is None:  # MLflow saved it and trusts it; we load what the user asked us to load
            trusted = skops.io.get_untrusted_types(file=file)
        return skops.io.load(file, trusted=trusted)
    with open(file, "rb") as fh:
        if fmt == "cloudpickle":
            import cloudpickle

            return cloudpickle.load(fh)
        if fmt == "pickle":
            return pickle.load(fh)
    raise InvalidArgument(f"the model at {model_dir} uses serialization_format {fmt!r}; supported: "
                          "cloudpickle, pickle, skops")


def load_model(model_uri: str, dst_path: Optional[str] = None) -> Any:
    """The fitted estimator saved at ``model_uri`` (runs:/, models:/, or a path)."""
    from deltaflow.models.uri import download_model

    from deltaflow.models._trust import open_model

    local = download_model(model_uri, dst_path)
    return _load_from_dir(local, open_model(local))


class _SklearnImpl:
    def __init__(self, model: Any, predict_fn: str) -> None:
        self.model = model
        self.predict_fn = predict_fn

    def predict(self, data: Any, params: Optional[dict[str, Any]] = None) -> Any:
        return getattr(self.model, self.predict_fn)(data)


def _load_pyfunc_impl(model_dir: str, meta: Model, model_config: Optional[dict[str, Any]] = None) -> Any:
    conf = meta.flavors.get("python_function", {})
    return _SklearnImpl(_load_from_dir(model_dir, meta), conf.get("predict_fn") or "predict")
