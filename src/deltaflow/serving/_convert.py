"""Predictions to the UDF's result type, with MLflow's spark_udf rules (runs in the Python workers).

* A scalar type takes the leftmost prediction column that has it: ``int`` the integer columns that fit
  32 bits, ``long`` any integer column, ``float``/``double`` any numeric column, ``boolean`` boolean
  columns, ``string`` any column (converted with ``str``). None fits: an error naming the type.
* ``array<scalar>``: every column of that kind, one list per row (a model that returns one sequence
  per row is taken as is); ``array<array<…>>``: the per-row values converted element-wise.
* ``struct<…>``: the prediction's columns by field name, each converted to its field's type.
"""

from __future__ import annotations

from typing import Any

from deltaflow.errors import InvalidArgument

__all__ = ["to_result"]


def _np_type(data_type: Any) -> Any:
    import numpy as np

    return {"IntegerType": np.int32, "LongType": np.int64, "FloatType": np.float32, "DoubleType": np.float64,
            "BooleanType": np.bool_, "StringType": object}.get(type(data_type).__name__)


def _fits(dtype: Any, type_name: str) -> bool:
    kind, size = getattr(dtype, "kind", "O"), getattr(dtype, "itemsize", 8)
    if type_name == "IntegerType":
        return (kind == "i" and size <= 4) or (kind == "u" and size <= 2)
    if type_name == "LongType":
        return kind == "i" or (kind == "u" and size <= 4)
    if type_name in ("FloatType", "DoubleType"):
        return kind in "iuf"
    if type_name == "BooleanType":
        return kind == "b"
    return type_name == "StringType"


def _frame(result: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result
    if isinstance(result, pd.Series):
        return result.to_frame()
    if isinstance(result, dict):
        return pd.DataFrame({k: list(v) if not np.isscalar(v) else [v] for k, v in result.items()})
    if np.isscalar(result):
        return pd.DataFrame([result])
    return pd.DataFrame(result)


def _none_or_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _array_value(value: Any, data_type: Any) -> Any:
    """One row of an array result: a numpy array of the element type (None stays null)."""
    import numpy as np

    element = data_type.elementType
    if type(element).__name__ == "ArrayType":
        return None if _none_or_nan(value) else [_array_value(v, element) for v in value]
    if type(element).__name__ == "StructType":
        return None if _none_or_nan(value) else [_struct_value(v, element) for v in value]
    if _none_or_nan(value):
        return None
    np_type = _np_type(element)
    if np_type is object:
        return np.array([str(v) for v in value], dtype=object)
    return np.asarray(value, dtype=np_type)


def _struct_value(value: Any, data_type: Any) -> Any:
    if value is None:
        return None
    return {f.name: _scalar_value(value.get(f.name) if isinstance(value, dict) else getattr(value, f.name),
                                  f.dataType) for f in data_type.fields}


def _scalar_value(value: Any, data_type: Any) -> Any:
    name = type(data_type).__name__
    if name == "ArrayType":
        return _array_value(value, data_type)
    if name == "StructType":
        return _struct_value(value, data_type)
    if _none_or_nan(value):
        return None
    return {"IntegerType": int, "LongType": int, "FloatType": float, "DoubleType": float, "BooleanType": bool,
            "StringType": str}[name](value)


def _column(values: Any, data_type: Any, label: str) -> Any:
    """One pandas column converted to ``data_type`` (a struct field or the whole result)."""
    import pandas as pd

    name = type(data_type).__name__
    if name == "ArrayType":
        return pd.Series([_array_value(v, data_type) for v in values], index=values.index, dtype=object)
    if name == "StructType":
        return pd.Series([_struct_value(v, data_type) for v in values], index=values.index, dtype=object)
    if name == "StringType":
        return values.map(lambda v: None if v is None else str(v)).astype(object)
    if not _fits(values.dtype, name):
        if values.dtype == object and all(_none_or_nan(v) for v in values):
            return values  # all nulls: nothing to convert
        raise InvalidArgument(f"the model's output {label} has type {values.dtype}, which is not "
                              f"{data_type.simpleString()}; pass a result_type that matches it")
    return values.astype(_np_type(data_type))


def _select(frame: Any, type_name: str) -> list[Any]:
    return [c for c in frame.columns if _fits(frame[c].dtype, type_name)]


def to_result(result: Any, data_type: Any, rows: int) -> Any:
    """The prediction ``result`` for ``rows`` input rows as a pandas Series (or, for a struct type, a
    DataFrame) of ``data_type``."""
    import numpy as np
    import pandas as pd

    name = type(data_type).__name__
    # The common case first: a 1-D numeric array for a numeric type needs one cast and no frame.
    if isinstance(result, (np.ndarray, pd.Series)) and getattr(result, "ndim", 1) == 1 and name in (
            "DoubleType", "FloatType", "LongType", "IntegerType", "BooleanType") and _fits(result.dtype, name):
        out = pd.Series(np.asarray(result).astype(_np_type(data_type), copy=False))
    elif name == "StructType":
        frame = _frame(result)
        missing = [f.name for f in data_type.fields if f.name not in frame.columns]
        if missing:
            raise InvalidArgument(f"the model's output has no column {missing[0]!r} for the struct result type "
                                  f"{data_type.simpleString()}; its columns are {[str(c) for c in frame.columns]}")
        out = pd.DataFrame({f.name: _column(frame[f.name].reset_index(drop=True), f.dataType, f"column {f.name!r}")
                            for f in data_type.fields})
    elif name == "ArrayType":
        out = _array_result(result, data_type)
    else:
        frame = _frame(result).reset_index(drop=True)
        picked = _select(frame, name)
        if not picked:
            raise InvalidArgument(f"the model did not produce any values compatible with the requested type "
                                  f"{data_type.simpleString()!r} (its output columns have types "
                                  f"{[str(t) for t in frame.dtypes]}); request string or array<string>, or a "
                                  "type that matches")
        out = _column(frame[picked[0]], data_type, f"column {picked[0]!r}")
    if len(out) != rows:
        raise InvalidArgument(f"the model returned {len(out)} predictions for {rows} input rows")
    return out


def _array_result(result: Any, data_type: Any) -> Any:
    import numpy as np
    import pandas as pd

    element = data_type.elementType
    frame = _frame(result).reset_index(drop=True)
    if type(element).__name__ in ("ArrayType", "StructType") or (
            frame.shape[1] == 1 and frame.dtypes.iloc[0] == object
            and any(isinstance(v, (list, tuple, np.ndarray)) for v in frame.iloc[:, 0])):
        # One sequence per row: convert each row's values.
        return pd.Series([_array_value(v, data_type) for v in frame.iloc[:, 0]], dtype=object)
    type_name = type(element).__name__
    if type_name == "StringType":
        values = frame.astype(str).to_numpy()
    else:
        picked = _select(frame, type_name)
        if not picked:
            raise InvalidArgument(f"the model did not produce any values compatible with the requested type "
                                  f"{data_type.simpleString()!r} (its output columns have types "
                                  f"{[str(t) for t in frame.dtypes]})")
        values = frame[picked].to_numpy().astype(_np_type(element))
    return pd.Series(list(values), dtype=object)
