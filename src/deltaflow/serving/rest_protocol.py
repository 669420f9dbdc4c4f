"""MLflow's scoring protocol without the server: request bodies to model input, predictions to JSON.

The contract is MLflow 3.17's ``/invocations``:

* ``application/json`` bodies are an object with exactly one of ``dataframe_split``,
  ``dataframe_records``, ``instances`` or ``inputs``, and optionally ``params`` (a JSON object);
* ``text/csv`` bodies are a CSV table with a header line; ``application/vnd.apache.parquet`` a Parquet
  file; the only accepted charset is UTF-8;
* JSON values are cast to the signature's column types the way MLflow casts them (JSON has no float32,
  no datetime and no bytes: those arrive as numbers, ISO strings and base64 text), then the pyfunc
  model enforces the signature itself;
* the answer is ``{"predictions": ...}`` (a DataFrame as records, a Series as one-key records, an
  array as nested lists), errors are ``{"error_code": ..., "message": ...}``.

Stricter than MLflow on purpose: an unknown top-level field next to the input (``"param"`` for
``"params"``) is a 400 naming it, where MLflow ignores it silently. Every malformed body is a
:class:`BadRequest` whose message names what is wrong; nothing here touches a store.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from typing import Any, Optional

from deltaflow.errors import InvalidArgument

__all__ = ["BadRequest", "UnsupportedMediaType", "FORMATS", "CONTENT_TYPES", "parse_request",
           "predictions_json", "error_json"]

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CSV, JSON, PARQUET = "text/csv", "application/json", "application/vnd.apache.parquet"
CONTENT_TYPES = (JSON, CSV, PARQUET)
_SPLIT_KEYS = ("columns", "data", "index")
_NUMPY = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool"}
_REQUIRED = (f"The input must be a JSON object with exactly one of the fields {', '.join(FORMATS)} "
             "(and optionally 'params')")


class BadRequest(InvalidArgument):
    """A request body the scoring protocol cannot read (HTTP 400, MLflow's ``BAD_REQUEST``)."""

    error_code = "BAD_REQUEST"
    http_status = 400


class UnsupportedMediaType(InvalidArgument):
    """A Content-Type the server does not read (HTTP 415, as MLflow answers)."""

    error_code = "BAD_REQUEST"
    http_status = 415


# -- request -----------------------------------------------------------------------------------
def _media_type(content_type: Optional[str]) -> str:
    allowed = f"use one of {', '.join(CONTENT_TYPES)}"
    if not content_type or not content_type.strip():
        raise UnsupportedMediaType(f"the request has no Content-Type header; {allowed}")
    mime, *rest = [part.strip() for part in content_type.split(";")]
    options = {k.strip().lower(): v.strip().strip('"') for k, _, v in (p.partition("=") for p in rest if p)}
    charset = options.pop("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"charset {charset!r} in Content-Type {content_type!r} is not supported; "
                                   "the scoring server reads UTF-8 only")
    if options:
        raise UnsupportedMediaType(f"Content-Type {content_type!r} has unrecognized parameter(s) "
                                   f"{', '.join(sorted(options))}; only charset is accepted")
    mime = mime.lower()
    if mime not in CONTENT_TYPES:
        raise UnsupportedMediaType(f"Content-Type {mime!r} is not supported; {allowed}")
    return mime


def parse_request(body: bytes, content_type: Optional[str], signature: Any = None) -> tuple[Any, Optional[dict]]:
    """The model input and the ``params`` a request carries. ``signature``: the model's (or None)."""
    mime = _media_type(content_type)
    inputs = signature.inputs if signature is not None else None
    if mime == JSON:
        return _parse_json(body, inputs)
    import io

    import pandas as pd

    if mime == CSV:
        try:
            frame = pd.read_csv(io.BytesIO(body), encoding="utf-8")
        except Exception as exc:  # noqa: BLE001 - pandas raises many kinds; each is a malformed body
            raise BadRequest(f"the text/csv body is not a CSV table with a header line: "
                             f"{type(exc).__name__}: {exc}") from exc
    else:
        try:
            frame = pd.read_parquet(io.BytesIO(body))
        except Exception as exc:  # noqa: BLE001
            raise BadRequest(f"the {PARQUET} body is not a Parquet file: {type(exc).__name__}: {exc}") from exc
    return _cast_frame(frame, inputs), None


def _parse_json(body: bytes, inputs: Any) -> tuple[Any, Optional[dict]]:
    try:
        payload = json.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the JSON body is not valid UTF-8: {exc}") from exc
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequest(f"{_REQUIRED}; got a JSON {_json_kind(payload)}")
    formats = [k for k in FORMATS if k in payload]
    if len(formats) != 1:
        raise BadRequest(f"{_REQUIRED}; got the fields {sorted(payload)}")
    unknown = sorted(set(payload) - {formats[0], "params"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(repr(k) for k in unknown)} next to {formats[0]!r}; "
                         "the only other accepted field is 'params'")
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadRequest(f"'params' must be a JSON object of name -> value, got a JSON {_json_kind(params)}")
    fmt = formats[0]
    value = payload[fmt]
    if fmt == "dataframe_split":
        data = _cast_frame(_split_frame(value, inputs), inputs)
    elif fmt == "dataframe_records":
        data = _cast_frame(_records_frame(value), inputs)
    else:
        data = _tensor_input(fmt, value, inputs)
    return data, params


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _frame(where: str, **kwargs: Any) -> Any:
    import pandas as pd

    columns = kwargs.get("columns")
    if columns is not None:
        if len(set(columns)) != len(columns):
            import collections

            repeated = sorted(str(c) for c, n in collections.Counter(columns).items() if n > 1)
            raise BadRequest(f"{where} names the column(s) {repeated} more than once; column names must be unique")
        # Plain object labels: pandas 3 would build an Arrow string index for every request (~0.1 ms),
        # and scikit-learn validates a frame with object labels faster too.
        kwargs["columns"] = pd.Index(columns, dtype=object)
    try:
        return pd.DataFrame(**kwargs)
    except Exception as exc:  # noqa: BLE001 - pandas' own message says which shape is wrong
        raise BadRequest(f"{where} is not a valid table: {exc}") from exc


def _all_floats(columns: list, inputs: Any) -> bool:
    """Whether the signature declares every one of ``columns`` as double (so one float64 block fits)."""
    if inputs is None or inputs.is_tensor_spec or not inputs.has_input_names():
        return False
    types = {s.name: s.type for s in inputs.inputs}
    return all(types.get(c) == "double" for c in columns)


def _split_frame(value: Any, inputs: Any = None) -> Any:
    import numpy as np

    if not isinstance(value, dict):
        raise BadRequest(f"'dataframe_split' must be an object with 'data' and optionally 'columns' and "
                         f"'index'; got a JSON {_json_kind(value)}")
    extra = sorted(set(value) - set(_SPLIT_KEYS))
    if "data" not in value or extra:
        problem = f"unknown key(s) {extra}" if extra else "no 'data' key"
        raise BadRequest(f"'dataframe_split' has {problem}; it takes 'data' and optionally 'columns' and 'index'")
    data, columns = value["data"], value.get("columns")
    if not isinstance(data, list):
        raise BadRequest(f"'dataframe_split.data' must be an array of rows, got a JSON {_json_kind(data)}")
    if columns is not None and (not isinstance(columns, list) or
                                not all(isinstance(c, (str, int)) for c in columns)):
        raise BadRequest(f"'dataframe_split.columns' must be an array of column names, got {columns!r}")
    if columns is not None:
        for i, row in enumerate(data):
            width = len(row) if isinstance(row, list) else 1
            if width != len(columns):
                raise BadRequest(f"row {i} of 'dataframe_split.data' has {width} value(s); 'columns' names "
                                 f"{len(columns)}")
        if data and _all_floats(columns, inputs):
            try:  # one float64 block, the common case of a numeric model: no per-column work
                block = np.asarray(data, dtype=np.float64)
            except (TypeError, ValueError):
                block = None  # strings or nulls somewhere: the general path, and the signature's message
            if block is not None and block.ndim == 2:
                return _frame("'dataframe_split'", data=block, columns=columns, index=value.get("index"))
    return _frame("'dataframe_split'", data=data, columns=columns, index=value.get("index"))


def _records_frame(value: Any) -> Any:
    if not isinstance(value, list):
        raise BadRequest(f"'dataframe_records' must be an array of records (objects of column -> value), "
                         f"got a JSON {_json_kind(value)}")
    for i, record in enumerate(value):
        if not isinstance(record, (dict, list)):
            raise BadRequest(f"record {i} of 'dataframe_records' is a JSON {_json_kind(record)}; each "
                             "record must be an object of column -> value")
    columns = list(dict.fromkeys(k for record in value if isinstance(record, dict) for k in record))
    return _frame("'dataframe_records'", data=value, columns=columns if columns else None)


def _tensor_input(fmt: str, value: Any, inputs: Any) -> Any:
    """``instances`` / ``inputs`` (TF-serving style): columns or tensors, as MLflow builds them."""
    import numpy as np

    tensors = inputs is not None and inputs.is_tensor_spec
    named = inputs is not None and inputs.has_input_names()
    specs = {s.name: s for s in inputs.inputs} if named else {}

    def array(values: Any, name: Any) -> Any:
        spec = specs.get(name) if named else (inputs.inputs[0] if tensors else None)
        dtype = spec.dtype if tensors and spec is not None else None
        try:
            return np.asarray(values, dtype=dtype)
        except (TypeError, ValueError) as exc:
            label = f"input {name!r}" if name is not None else f"'{fmt}'"
            raise BadRequest(f"{label} cannot be read as an array{f' of {dtype}' if dtype else ''}: {exc}") from exc

    if isinstance(value, dict):
        if fmt == "instances":
            raise BadRequest("'instances' must be an array (of rows or records); use 'inputs' for an object "
                             "of column -> values")
        columns = {k: array(v, k) for k, v in value.items()}
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(value[0])
        for i, record in enumerate(value):
            if set(record) != set(keys):
                raise BadRequest(f"record {i} of '{fmt}' has the keys {sorted(record)}, record 0 has "
                                 f"{sorted(keys)}; every record needs the same keys")
        columns = {k: array([r[k] for r in value], k) for k in keys}
    elif isinstance(value, list):
        if named and not tensors and len(specs) == 1:  # a single named column given as a bare list
            columns = {next(iter(specs)): array(value, next(iter(specs)))}
        else:
            return array(value, None)
    else:
        raise BadRequest(f"'{fmt}' must be an array or an object, got a JSON {_json_kind(value)}")
    lengths = {k: len(v) for k, v in columns.items() if getattr(v, "ndim", 0) > 0}
    if len(set(lengths.values())) > 1:
        raise BadRequest(f"the inputs of '{fmt}' have different lengths {lengths}; every input needs one "
                         "value per row")
    if inputs is not None and not tensors:  # a column model: one table, cast like the other formats
        if all(v.ndim == 0 for v in columns.values()):  # {"x": 1.0, "n": 2}: one row
            table = {k: [v.item()] for k, v in columns.items()}
        else:  # scalars next to lists are repeated, as pandas does; nested lists stay one cell per row
            table = {k: v.item() if v.ndim == 0 else (list(v) if v.ndim > 1 else v) for k, v in columns.items()}
        return _cast_frame(_frame(f"'{fmt}'", data=table), inputs)
    return columns


def _cast_frame(frame: Any, inputs: Any) -> Any:
    """Columns of ``frame`` cast to the signature's types where JSON/CSV could not carry the type."""
    if inputs is None or inputs.is_tensor_spec or not inputs.has_input_names():
        return frame
    for spec in inputs.inputs:
        if spec.name in frame.columns and spec.is_scalar:
            column = frame[spec.name]
            cast = _cast_column(spec.name, column, spec.type)
            if cast is not column:  # assigning a column costs ~0.1 ms: only when it changed
                frame[spec.name] = cast
    return frame


def _cast_column(name: str, column: Any, expected: str) -> Any:
    import numpy as np
    import pandas as pd

    kind = column.dtype.kind
    if _NUMPY.get(expected) == column.dtype:
        return column
    try:
        if expected in ("double", "float") and kind in "iuf":
            return column.astype(_NUMPY[expected])
        if expected in ("long", "integer") and kind == "f" and column.notna().all() and \
                bool((column == np.floor(column)).all()):
            return column.astype(_NUMPY[expected])  # 1.0 in JSON for an integer column
        if expected == "integer" and kind == "i" and column.between(-2**31, 2**31 - 1).all():
            return column.astype("int32")
        if expected == "datetime" and kind == "O":
            return pd.to_datetime(column)
        if expected == "binary" and kind == "O":
            return column.map(lambda v: v if not isinstance(v, str) else base64.b64decode(v, validate=True))
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise BadRequest(f"input column {name!r} cannot be read as the signature's type {expected!r}: {exc}") from exc
    return column  # anything else is the signature check's to accept or refuse, with its own message


# -- response ----------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, pd.Series):  # MLflow answers a Series as one-key records
        return pd.DataFrame(value).to_dict(orient="records")
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _default(value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (pd.Timestamp, datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return _jsonable(value)
    raise TypeError(f"a prediction of type {type(value).__name__} cannot be written as JSON")


def predictions_json(predictions: Any) -> bytes:
    """``{"predictions": ...}`` as UTF-8 bytes (NaN written as ``NaN``, as MLflow's server does)."""
    return json.dumps({"predictions": _jsonable(predictions)}, default=_default).encode("utf-8")


def error_json(error_code: str, message: str) -> bytes:
    return json.dumps({"error_code": error_code, "message": message}).encode("utf-8")
