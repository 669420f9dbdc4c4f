"""Signature inference from data, with MLflow's type rules, and input examples saved as MLflow saves them.

pandas and numpy are imported inside the functions; Spark DataFrames are recognised by their class
module, so pyspark is never imported unless the caller already passed a Spark object.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
from typing import Any, Optional

from deltaflow.errors import InvalidArgument
from deltaflow.models.schema import ColSpec, ModelSignature, ParamSchema, ParamSpec, Schema, TensorSpec

__all__ = ["infer_signature", "infer_schema", "infer_params", "save_input_example", "to_dataframe",
           "is_spark_dataframe"]

_SPARK_TYPES = {
    "StringType": "string", "LongType": "long", "IntegerType": "integer", "ShortType": "integer",
    "ByteType": "integer", "DoubleType": "double", "FloatType": "float", "BooleanType": "boolean",
    "BinaryType": "binary", "TimestampType": "datetime", "TimestampNTZType": "datetime",
    "DateType": "datetime", "DecimalType": "double",  # MLflow reads decimals as double
}


def is_spark_dataframe(data: Any) -> bool:
    cls = type(data)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pyspark.sql")


def _dtype_to_type(name: Any, dtype: Any, values: Any = None) -> str:
    """The MLflow data type of a pandas/numpy column dtype (object columns: by their values)."""
    import numpy as np
    import pandas as pd

    if isinstance(dtype, pd.StringDtype):
        return "string"
    if isinstance(dtype, pd.BooleanDtype):
        return "boolean"
    kind = getattr(dtype, "kind", "O")
    size = getattr(dtype, "itemsize", 8)
    if kind == "b":
        return "boolean"
    if kind in "iu":
        # int32 and narrower fit MLflow's 'integer'; uint32 does not, so it is 'long'.
        return "integer" if (kind == "i" and size <= 4) or (kind == "u" and size <= 2) else "long"
    if kind == "f":
        return "float" if size <= 4 else "double"
    if kind == "M":
        return "datetime"
    if kind in "US":
        return "string" if kind == "U" else "binary"
    if kind == "O" and values is not None:
        seen = {type(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))}
        if seen and all(issubclass(t, str) for t in seen):
            return "string"
        if seen and all(issubclass(t, (bytes, bytearray)) for t in seen):
            return "binary"
        if seen and all(issubclass(t, (bool, np.bool_)) for t in seen):
            return "boolean"
        if seen and all(issubclass(t, (datetime.datetime, datetime.date)) for t in seen):
            return "datetime"
        if not seen:
            return "string"
    raise InvalidArgument(f"column {name!r} has type {dtype} with values of types that no MLflow "
                          "column type describes; use string, long, integer, double, float, boolean, "
                          "binary or datetime data, or pass signature= explicitly")


def _spark_schema(df: Any) -> Schema:
    specs = []
    for field in df.schema.fields:
        type_name = type(field.dataType).__name__
        if type_name not in _SPARK_TYPES:
            raise InvalidArgument(
                f"column {field.name!r} has Spark type {field.dataType.simpleString()}, which no MLflow "
                f"column type describes; supported: {', '.join(sorted(_SPARK_TYPES))}. Pass signature= "
                "explicitly or select the raw feature columns")
        specs.append(ColSpec(_SPARK_TYPES[type_name], field.name))
    return Schema(specs)


def infer_schema(data: Any) -> Schema:
    """The schema MLflow would infer: columns for tabular data, tensors for numpy arrays."""
    import numpy as np
    import pandas as pd

    if is_spark_dataframe(data):
        return _spark_schema(data)
    if isinstance(data, pd.DataFrame):
        return Schema([ColSpec(_dtype_to_type(c, data[c].dtype, data[c]), str(c)) for c in data.columns])
    if isinstance(data, pd.Series):
        name = None if data.name is None else str(data.name)
        return Schema([ColSpec(_dtype_to_type(name, data.dtype, data), name)])
    if isinstance(data, np.ndarray):
        return Schema([TensorSpec(data.dtype.name, (-1, *data.shape[1:]))])
    if isinstance(data, dict):
        if data and all(isinstance(v, np.ndarray) for v in data.values()):
            return Schema([TensorSpec(v.dtype.name, (-1, *v.shape[1:]), str(k)) for k, v in data.items()])
        return infer_schema(pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray)) else [v]
                                          for k, v in data.items()}))
    if isinstance(data, (list, tuple)):
        if data and all(isinstance(v, dict) for v in data):
            return infer_schema(pd.DataFrame(list(data)))
        if data and all(isinstance(v, str) for v in data):
            return Schema([ColSpec("string")])
        return infer_schema(pd.Series(list(data)))
    if isinstance(data, (str, bytes, bool, int, float)):
        return infer_schema(pd.Series([data]))
    raise InvalidArgument(f"cannot infer a schema from {type(data).__module__}.{type(data).__name__}; "
                          "use a pandas or Spark DataFrame, a pandas Series, a numpy array, a dict or a list")


def _param_type(name: str, value: Any) -> str:
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, np.integer)):
        return "long"
    if isinstance(value, (float, np.floating)):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    if isinstance(value, datetime.datetime):
        return "datetime"
    raise InvalidArgument(f"param {name!r} has a value of type {type(value).__name__}; params must be "
                          "str, int, float, bool, bytes, datetime or a list of one of those")


def infer_params(params: dict[str, Any]) -> ParamSchema:
    specs = []
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            types = {_param_type(name, v) for v in value}
            if len(types) != 1:
                raise InvalidArgument(f"param {name!r}: a list value must be non-empty with one element "
                                      f"type, got {value!r}")
            specs.append(ParamSpec(name, types.pop(), list(value), (-1,)))
        else:
            specs.append(ParamSpec(name, _param_type(name, value), value))
    return ParamSchema(specs)


def infer_signature(model_input: Any = None, model_output: Any = None,
                    params: Optional[dict[str, Any]] = None) -> ModelSignature:
    """A signature from example inputs, outputs (e.g. ``model.predict(X)``) and inference params."""
    if is_spark_dataframe(model_output):
        model_output = model_output.limit(100).toPandas()
    return ModelSignature(
        infer_schema(model_input) if model_input is not None else None,
        infer_schema(model_output) if model_output is not None else None,
        infer_params(params) if params else None,
    )


def infer_output_schema(prediction: Any) -> Optional[Schema]:
    """The output schema from a prediction on the input example; MLflow describes 1-D numpy
    predictions as one unnamed column (not a tensor) in that case."""
    import numpy as np

    try:
        if isinstance(prediction, np.ndarray) and prediction.ndim == 1:
            return Schema([ColSpec(_dtype_to_type(None, prediction.dtype, prediction))])
        return infer_schema(prediction)
    except InvalidArgument:
        return None  # an output we cannot describe does not stop the model from being saved


def to_dataframe(example: Any) -> Any:
    """Tabular input examples as a pandas DataFrame (numpy arrays are returned unchanged)."""
    import numpy as np
    import pandas as pd

    if is_spark_dataframe(example):
        return example.limit(100).toPandas()
    if isinstance(example, (pd.DataFrame, np.ndarray)):
        return example
    if isinstance(example, pd.Series):
        return example.to_frame()
    if isinstance(example, dict):
        if example and all(isinstance(v, np.ndarray) for v in example.values()):
            return example
        return pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray)) else [v]
                             for k, v in example.items()})
    if isinstance(example, (list, tuple)):
        return pd.DataFrame(list(example))
    raise InvalidArgument(f"input_example of type {type(example).__name__} is not supported; use a pandas "
                          "or Spark DataFrame, a dict, a list of dicts or a numpy array")


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")  # as MLflow encodes binary columns
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_input_example(path: str, example: Any) -> dict[str, str]:
    """Write input_example.json and serving_input_example.json as MLflow 3 does; return the
    ``saved_input_example_info`` for MLmodel."""
    import numpy as np
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        body = {"columns": [str(c) for c in example.columns],
                "data": [list(row) for row in example.itertuples(index=False, name=None)]}
        serving = {"dataframe_split": body}
        info = {"artifact_path": "input_example.json", "pandas_orient": "split",
                "serving_input_path": "serving_input_example.json", "type": "dataframe"}
    elif isinstance(example, (np.ndarray, dict)):
        inputs = example.tolist() if isinstance(example, np.ndarray) else {k: v.tolist() for k, v in example.items()}
        body = serving = {"inputs": inputs}
        info = {"artifact_path": "input_example.json", "format": "tf-serving",
                "serving_input_path": "serving_input_example.json", "type": "ndarray"}
    else:
        raise InvalidArgument(f"input_example of type {type(example).__name__} is not supported")
    with open(os.path.join(path, "input_example.json"), "w", encoding="utf-8") as fh:
        json.dump(body, fh, default=_json_default)
    with open(os.path.join(path, "serving_input_example.json"), "w", encoding="utf-8") as fh:
        json.dump(serving, fh, default=_json_default, indent=2)
    return info


def load_input_example(path: str, info: Optional[dict[str, Any]]) -> Any:
    """Read back a saved input example (a DataFrame or numpy data), or None when there is none."""
    if not info or not info.get("artifact_path"):
        return None
    import numpy as np
    import pandas as pd

    with open(os.path.join(path, info["artifact_path"]), encoding="utf-8") as fh:
        body = json.load(fh)
    if info.get("type") == "ndarray":
        inputs = body["inputs"]
        return {k: np.asarray(v) for k, v in inputs.items()} if isinstance(inputs, dict) else np.asarray(inputs)
    return pd.DataFrame(body["data"], columns=body["columns"])
