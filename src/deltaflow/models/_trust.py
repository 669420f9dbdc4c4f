"""What loading a model trusts: the pickle switch, and the files an MLmodel names.

Unpickling runs whatever code the pickle's author chose, so every loader that unpickles asks
:func:`require_pickle_allowed` first. The switch is MLflow's ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``
(default true, as in MLflow 3.17) and deltaflow's own name for it,
``DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION``; either one set to false refuses. Values are MLflow's:
true, false, 1 or 0, case-insensitive; unset or empty means the default.

Every file an MLmodel names (``python_model``, ``pickled_model``, ``model_path``, ``data``, ``code``,
artifacts ...) must resolve, symbolic links included, to a path inside the model folder, and must
exist: :func:`open_model` checks both before any loader reads a byte.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterator, Optional

from deltaflow.errors import InvalidArgument, InvalidState, PermissionDenied
from deltaflow.models.model import Model

__all__ = ["PICKLE_ENV", "MLFLOW_PICKLE_ENV", "pickle_allowed", "require_pickle_allowed", "model_file",
           "open_model", "check_model", "referenced_files"]

PICKLE_ENV = "DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION"
MLFLOW_PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
PICKLE_DEFAULT = True  # MLflow 3.17's default
_TRUE, _FALSE = ("true", "1"), ("false", "0")
_DRIVE = re.compile(r"^[A-Za-z]:")
# Flavor keys whose value is a path relative to the model folder (MLflow's names).
_FILE_KEYS = ("python_model", "pickled_model", "model_path", "data", "model_data", "code", "model_code_path")


def _switch(env: str) -> Optional[bool]:
    raw = os.environ.get(env)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f"environment variable {env}={raw!r} is not a boolean; use true, false, 1 or 0 "
                          "(case-insensitive)")


def _refused_by() -> Optional[str]:
    """The variable that refuses unpickling, or None when it is allowed."""
    values = {env: _switch(env) for env in (PICKLE_ENV, MLFLOW_PICKLE_ENV)}  # both validated
    for env, value in values.items():
        if value is False:
            return env
    return None if PICKLE_DEFAULT else PICKLE_ENV


def pickle_allowed() -> bool:
    """Whether models may be unpickled (neither switch is false)."""
    return _refused_by() is None


def require_pickle_allowed(file: str, what: str) -> None:
    """Raise PermissionDenied when the switch refuses unpickling ``file`` (``what`` says whose it is)."""
    env = _refused_by()
    if env is not None:
        raise PermissionDenied(
            f"refusing to unpickle {file!r} ({what}): {env} is false. Unpickling runs any code the model's "
            f"author put in it; load only models you trust, and set {env}=true to allow it")


def model_file(model_dir: str, rel: Any, key: str) -> str:
    """The path of the file ``key`` names, which must stay inside ``model_dir`` (InvalidArgument if not)."""
    where = f"{key} {rel!r} in the MLmodel of {model_dir}"
    if not isinstance(rel, str) or not rel.strip():
        raise InvalidArgument(f"{where} must be a non-empty relative path inside the model folder")
    if "\x00" in rel or os.path.isabs(rel) or _DRIVE.match(rel) or rel.startswith("~"):
        raise InvalidArgument(f"{where} is an absolute path; every file an MLmodel names must be a relative "
                              "path inside the model folder")
    root = os.path.realpath(model_dir)
    full = os.path.realpath(os.path.join(root, rel))
    if full != root and not full.startswith(root.rstrip(os.sep) + os.sep):
        raise InvalidArgument(f"{where} resolves to {full!r}, outside the model folder; every file an MLmodel "
                              "names must be inside the model folder")
    return full


def referenced_files(meta: Model) -> Iterator[tuple[str, Any]]:
    """``(flavor.key, path)`` for every file the MLmodel's flavors name."""
    for flavor, conf in meta.flavors.items():
        if not isinstance(conf, dict):
            continue
        for key in _FILE_KEYS:
            if conf.get(key) is not None:
                yield f"{flavor}.{key}", conf[key]
        artifacts = conf.get("artifacts")
        if isinstance(artifacts, dict):
            for name, spec in artifacts.items():
                yield f"{flavor}.artifacts.{name}", spec.get("path") if isinstance(spec, dict) else spec


def open_model(model_dir: str) -> Model:
    """The MLmodel of ``model_dir`` once every file it names is inside the folder and present.

    NotFound when there is no MLmodel; InvalidArgument for a path outside the folder; InvalidState
    naming the missing files when the model is incomplete (a copy interrupted by a crash)."""
    return check_model(model_dir, Model.load(model_dir))


def check_model(model_dir: str, meta: Model) -> Model:
    """``meta`` once every file it names is inside ``model_dir`` and present (see :func:`open_model`)."""
    missing = [f"{rel!r} ({key})" for key, rel in referenced_files(meta)
               if not os.path.exists(model_file(model_dir, rel, key))]
    if missing:
        raise InvalidState(f"the model at {model_dir} is incomplete: its MLmodel names {', '.join(missing)}, "
                           f"which {'is' if len(missing) == 1 else 'are'} missing. It was interrupted while being "
                           "written or copied; log or save it again")
    return meta
