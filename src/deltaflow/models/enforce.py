"""Signature enforcement at predict time, following MLflow's rules.

* A required column missing from the input is an error naming it; extra columns are dropped (with a
  warning), so the model sees exactly the columns it was trained on, in the signature's order.
* Types: conversions that cannot change values are made (int -> long, int/long -> double when the
  values fit, float -> double, any datetime64 precision -> datetime, object -> string), and decimal ->
  double, rounded, because MLflow reads Spark's decimals as doubles; anything else (double -> long,
  string -> double, ...) is an error naming the column and the expected type.
* Params: declared params get their defaults; a value of the wrong type is an error naming the
  param; undeclared params are ignored with a warning.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from deltaflow.errors import InvalidArgument
from deltaflow.models.schema import ParamSchema, Schema, TensorSpec

__all__ = ["enforce_schema", "enforce_params"]

_log = logging.getLogger(__name__)

_NUMPY_NAMES = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32",
                "boolean": "bool", "datetime": "datetime64[ns]"}
_ALLOWED = ("allowed conversions: integer -> long/double, float -> double, long -> double "
            "(values 0/1 or narrow ints), decimal -> double, any datetime precision -> datetime")


def _all_decimal(values: Any) -> bool:
    """Whether every non-null value is a ``decimal.Decimal`` (and at least one is)."""
    import decimal

    present = values.dropna()
    return len(present) > 0 and all(isinstance(v, decimal.Decimal) for v in present)


def _mismatch(name: Any, dtype: Any, expected: str, hint: str = "") -> InvalidArgument:
    return InvalidArgument(f"input column {name!r} has type {dtype}, which cannot be converted safely to "
                           f"the signature's type {expected!r} ({_ALLOWED}).{hint}")


def _enforce_column(name: Any, values: Any, expected: str) -> Any:
    import numpy as np
    import pandas as pd

    dtype = values.dtype
    if dtype == object and expected not in ("string", "binary"):
        values = values.infer_objects()
        dtype = values.dtype
    is_text = dtype == object or isinstance(dtype, pd.StringDtype)
    if expected == "string":
        if is_text:
            return values
        raise _mismatch(name, dtype, expected)
    if expected == "binary":
        if is_text or getattr(dtype, "kind", "") == "S":
            return values
        raise _mismatch(name, dtype, expected)
    if expected == "boolean" and (dtype == object or isinstance(dtype, pd.BooleanDtype)):
        return values  # converting would turn None into False
    if expected == "datetime":
        if getattr(dtype, "kind", "") == "M" or dtype == object:
            try:
                return values.astype("datetime64[ns]")
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"input column {name!r} could not be converted to the signature's "
                                      f"type 'datetime': {exc}") from exc
        raise _mismatch(name, dtype, expected)
    target = np.dtype(_NUMPY_NAMES[expected])
    if dtype == target:
        return values
    if expected == "double" and dtype == object and _all_decimal(values):
        # Spark's DecimalType reaches pandas as decimal.Decimal objects; MLflow reads it as double
        # (its signature inference says so, and deltaflow's too), accepting the rounding.
        return values.astype(np.float64)
    kind, size = getattr(dtype, "kind", "O"), getattr(dtype, "itemsize", 0)
    if kind == target.kind:
        upcast = size <= target.itemsize
    elif kind == "u" and target.kind == "i":
        upcast = size < target.itemsize
    elif kind in "iu" and target == np.float64:
        upcast = size <= 6  # up to 48-bit ints are exact in a double, as MLflow allows
    else:
        upcast = False
    if not upcast and dtype == np.int64 and target.kind == "f" and values.isin([0, 1]).all():
        upcast = True  # MLflow lets 0/1 long columns through to float/double
    if upcast:
        return values.astype(target)
    hint = ""
    if kind == "f" and target.kind in "iu" and values.hasnans:
        hint = (" Hint: integer columns cannot hold missing values, so pandas stored them as floats; "
                "declare the column as double in the signature if it may have missing values.")
    raise _mismatch(name, dtype, expected, hint)


def _enforce_tensor(name: Any, values: Any, spec: TensorSpec) -> Any:
    import numpy as np

    arr = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    label = f"tensor {name!r}" if name is not None else "the input tensor"
    expected = np.dtype(spec.dtype)
    if arr.dtype != expected:
        if not np.can_cast(arr.dtype, expected, casting="safe"):
            raise InvalidArgument(f"{label} has dtype {arr.dtype}, which cannot be converted safely to the "
                                  f"signature's dtype {spec.dtype!r}")
        arr = arr.astype(expected)
    if len(spec.shape) != arr.ndim or any(e not in (-1, a) for e, a in zip(spec.shape, arr.shape)):
        raise InvalidArgument(f"{label} has shape {arr.shape}; the signature expects {spec.shape} "
                              "(-1 means any size)")
    return arr


def enforce_schema(data: Any, schema: Optional[Schema]) -> Any:
    """Return ``data`` converted to what the signature's inputs describe, or raise InvalidArgument."""
    if schema is None or not schema.inputs:
        return data
    import numpy as np
    import pandas as pd

    if schema.is_tensor_spec:
        if schema.has_input_names():
            if not isinstance(data, dict):
                raise InvalidArgument(f"the model expects a dict of named tensors "
                                      f"{schema.input_names()}, got {type(data).__name__}")
            missing = [s.name for s in schema.inputs if s.name not in data]
            if missing:
                raise InvalidArgument(f"input tensor {missing[0]!r} is required by the model signature but "
                                      f"missing from the input data (expected: {schema.input_names()})")
            return {s.name: _enforce_tensor(s.name, data[s.name], s) for s in schema.inputs}
        return _enforce_tensor(None, data, schema.inputs[0])

    if isinstance(data, np.ndarray):
        if data.ndim != 2 or data.shape[1] != len(schema.inputs):
            raise InvalidArgument(f"a numpy input for this model must be 2-D with {len(schema.inputs)} "
                                  f"columns ({schema!r}); got shape {data.shape}")
        data = pd.DataFrame(data, columns=schema.input_names() or None)
    elif isinstance(data, dict):
        data = pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray, pd.Series)) else [v]
                             for k, v in data.items()})
    elif isinstance(data, (list, tuple)):
        data = pd.DataFrame(list(data)) if data and isinstance(data[0], dict) else pd.DataFrame({0: list(data)})
    elif isinstance(data, pd.Series):
        data = data.to_frame()
    if not isinstance(data, pd.DataFrame):
        raise InvalidArgument(f"model input of type {type(data).__name__} is not supported; use a pandas "
                              "DataFrame, a dict of columns, a list of records or a numpy array")

    if not schema.has_input_names():  # unnamed columns: by position
        if data.shape[1] < len(schema.inputs):
            raise InvalidArgument(f"the model expects {len(schema.inputs)} input columns ({schema!r}); "
                                  f"the input has {data.shape[1]}")
        cols = list(data.columns[: len(schema.inputs)])
        return pd.DataFrame({c: (_enforce_column(c, data[c], s.type) if s.is_scalar else data[c])
                             for c, s in zip(cols, schema.inputs)}, index=data.index)

    names = [str(c) for c in data.columns]
    present = dict(zip(names, data.columns))
    missing = [s.name for s in schema.inputs if s.required and s.name not in present]
    if missing:
        more = f" (and {', '.join(repr(m) for m in missing[1:])})" if len(missing) > 1 else ""
        raise InvalidArgument(f"input column {missing[0]!r}{more} is required by the model signature but "
                              f"missing from the input data; the signature's columns are {schema!r}")
    extra = [n for n in names if n not in set(schema.input_names())]
    if extra:
        _log.warning("ignoring input columns not in the model signature: %s", extra)
    out = {}
    changed = False
    for spec in schema.inputs:
        if spec.name not in present:
            continue  # optional and absent
        col = data[present[spec.name]]
        out[spec.name] = _enforce_column(spec.name, col, spec.type) if spec.is_scalar else col
        changed = changed or out[spec.name] is not col
    if not changed and list(data.columns) == list(out):
        # Already the signature's columns, order and types (a scoring server's parsed request): a
        # shallow copy keeps the frame's blocks and labels, where rebuilding costs ~0.3 ms per call.
        return data.copy(deep=False)
    return pd.DataFrame(out, index=data.index)


def _check_param(name: str, value: Any, expected: str) -> Any:
    import datetime

    ok = {
        "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "binary": lambda v: isinstance(v, (bytes, bytearray)),
        "datetime": lambda v: isinstance(v, (datetime.datetime, datetime.date, str)),
    }[expected]
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        value = value.item()  # numpy scalars
    if not ok(value):
        raise InvalidArgument(f"param {name!r} has value {value!r} of type {type(value).__name__}; the "
                              f"signature declares it as {expected!r}")
    return float(value) if expected in ("double", "float") else value


def enforce_params(params: Optional[dict[str, Any]], schema: Optional[ParamSchema]) -> Optional[dict[str, Any]]:
    """Declared params with defaults filled in and values type-checked; None when none are declared."""
    if schema is None:
        if params:
            _log.warning("ignoring params %s: the model signature declares no params", sorted(params))
        return None
    params = dict(params or {})
    out: dict[str, Any] = {}
    for spec in schema:
        if spec.name not in params:
            out[spec.name] = spec.default
            continue
        value = params.pop(spec.name)
        if spec.shape is not None:
            if not isinstance(value, (list, tuple)):
                raise InvalidArgument(f"param {spec.name!r} must be a list of {spec.type} values, got {value!r}")
            out[spec.name] = [_check_param(spec.name, v, spec.type) for v in value]
        else:
            out[spec.name] = _check_param(spec.name, value, spec.type)
    if params:
        _log.warning("ignoring params not in the model signature: %s", sorted(params))
    return out
