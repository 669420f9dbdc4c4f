"""The ``MLmodel`` file: a model directory's YAML description, in MLflow 3's layout.

Keys MLflow writes (``artifact_path``, ``flavors``, ``model_uuid``, ``run_id``, ``utc_time_created``,
``mlflow_version``, ``signature``, ``saved_input_example_info``, ``model_size_bytes``, ...) are
written with MLflow's names and sorted as MLflow's YAML dump sorts them; keys we do not know (from
newer MLflow versions) are kept and written back, so a round trip through deltaflow loses nothing.
"""

from __future__ import annotations

import datetime
import os
import uuid
from typing import Any, Optional

from deltaflow.errors import InvalidArgument, NotFound
from deltaflow.models.schema import ModelSignature

__all__ = ["Model", "ModelInfo", "MLMODEL_FILE_NAME", "MLFLOW_FORMAT_VERSION", "mlflow_version"]

MLMODEL_FILE_NAME = "MLmodel"
# The MLflow release whose model layout this module writes, recorded as ``mlflow_version`` when
# MLflow itself is not installed (MLflow reads it to warn about version skew).
MLFLOW_FORMAT_VERSION = "3.17.2"


def mlflow_version() -> str:
    """The installed MLflow's version when there is one, else the layout version we follow."""
    from importlib import metadata

    for dist in ("mlflow", "mlflow-skinny"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return MLFLOW_FORMAT_VERSION


class Model:
    """An MLmodel description. ``flavors`` maps flavor name to its configuration dict."""

    _KNOWN = ("artifact_path", "run_id", "utc_time_created", "flavors", "signature",
              "saved_input_example_info", "model_uuid", "mlflow_version", "metadata", "model_size_bytes")

    def __init__(self, artifact_path: Optional[str] = None, run_id: Optional[str] = None,
                 utc_time_created: Optional[str] = None, flavors: Optional[dict[str, dict]] = None,
                 signature: Optional[ModelSignature] = None,
                 saved_input_example_info: Optional[dict[str, Any]] = None,
                 model_uuid: Optional[str] = None, mlflow_version: Optional[str] = None,
                 metadata: Optional[dict[str, Any]] = None, model_size_bytes: Optional[int] = None,
                 **extra: Any) -> None:
        self.artifact_path = artifact_path
        self.run_id = run_id
        self.utc_time_created = utc_time_created or str(datetime.datetime.now(datetime.timezone.utc)
                                                        .replace(tzinfo=None))
        self.flavors: dict[str, dict] = dict(flavors or {})
        self.signature = signature
        self.saved_input_example_info = saved_input_example_info
        self.model_uuid = model_uuid or uuid.uuid4().hex
        self.mlflow_version = mlflow_version
        self.metadata = metadata
        self.model_size_bytes = model_size_bytes
        self.extra = extra

    def add_flavor(self, name: str, **params: Any) -> "Model":
        self.flavors[name] = params
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update({"flavors": self.flavors, "model_uuid": self.model_uuid,
                    "utc_time_created": self.utc_time_created})
        for key in ("artifact_path", "run_id", "mlflow_version", "saved_input_example_info", "metadata",
                    "model_size_bytes"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.signature is not None:
            out["signature"] = self.signature.to_dict()
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), default_flow_style=False)

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Model":
        if not isinstance(data, dict) or not isinstance(data.get("flavors", {}), dict):
            raise InvalidArgument("an MLmodel file must be a YAML mapping with a 'flavors' mapping")
        data = dict(data)
        signature = data.pop("signature", None)
        known = {k: data.pop(k) for k in cls._KNOWN if k in data}
        return cls(signature=ModelSignature.from_dict(signature) if signature else None, **known, **data)

    @classmethod
    def load(cls, path: str) -> "Model":
        """Read ``<dir>/MLmodel`` (or the MLmodel file itself); ``path`` may also be a model URI
        (``runs:/``, ``models:/``, storage URIs), whose model is downloaded first, as MLflow does."""
        import yaml

        if not os.path.exists(path) and ":" in str(path) and not os.path.isabs(str(path)):
            return cls._load_uri(str(path))
        file = os.path.join(path, MLMODEL_FILE_NAME) if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise NotFound(f"no MLmodel file at {file!r}; a model directory must contain one")
        with open(file, encoding="utf-8") as fh:
            try:
                data = yaml.safe_load(fh)
            except yaml.YAMLError as exc:
                raise InvalidArgument(f"the MLmodel file {file!r} is not valid YAML: {exc}") from exc
        return cls.from_dict(data or {})

    @classmethod
    def _load_uri(cls, uri: str) -> "Model":
        import shutil
        import tempfile

        from deltaflow.models.uri import download_model

        target = tempfile.mkdtemp(prefix="deltaflow-mlmodel-")
        try:
            return cls.load(download_model(uri, target))
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def flavor(self, name: str, model_dir: str = "") -> dict[str, Any]:
        if name not in self.flavors:
            raise InvalidArgument(f"the model at {model_dir or '?'} has no {name!r} flavor; it has "
                                  f"{sorted(self.flavors)}")
        return self.flavors[name]

    def __repr__(self) -> str:
        return f"Model(flavors={sorted(self.flavors)}, run_id={self.run_id!r}, artifact_path={self.artifact_path!r})"


class ModelInfo:
    """What ``log_model``/``save_model`` returns: where the model is and how it is described."""

    def __init__(self, model: Model, model_uri: str) -> None:
        self.model_uri = model_uri
        self.artifact_path = model.artifact_path
        self.run_id = model.run_id
        self.flavors = model.flavors
        self.model_uuid = model.model_uuid
        self.signature = model.signature
        self.saved_input_example_info = model.saved_input_example_info
        self.utc_time_created = model.utc_time_created
        self.mlflow_version = model.mlflow_version
        self.metadata = model.metadata
        self.registered_model_version: Optional[int] = None

    def __repr__(self) -> str:
        return f"ModelInfo(model_uri={self.model_uri!r}, flavors={sorted(self.flavors)})"
