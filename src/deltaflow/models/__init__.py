"""Models: the MLmodel directory format, signatures, input examples, environments and model URIs.

Flavors live beside this package, as in MLflow: :mod:`deltaflow.sklearn`, :mod:`deltaflow.spark`,
:mod:`deltaflow.pyfunc`. Everything here is pure Python until data is touched: importing it loads no
Spark, pandas or pyarrow.
"""

from __future__ import annotations

from deltaflow.models.infer import infer_signature
from deltaflow.models.model import Model, ModelInfo
from deltaflow.models.schema import ColSpec, ModelSignature, ParamSchema, ParamSpec, Schema, TensorSpec
from deltaflow.models.uri import (
    ModelUri,
    download_model,
    parse_model_uri,
)

__all__ = [
    "ColSpec",
    "Model",
    "ModelInfo",
    "ModelSignature",
    "ModelUri",
    "ParamSchema",
    "ParamSpec",
    "Schema",
    "TensorSpec",
    "download_model",
    "infer_signature",
    "parse_model_uri",
]
