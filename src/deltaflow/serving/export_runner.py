"""Predict with an exported model: no Spark, no deltaflow, no tracking store.

This file is copied as ``predict.py`` into every folder ``deltaflow models export`` writes, beside
``model/`` (the model as saved), ``bundle.json`` (what kind of model it is and its signature) and
``requirements.txt`` (the pinned libraries it needs: pandas and numpy, cloudpickle, and the model's
own, e.g. scikit-learn). It uses only the standard library and those.

    pip install -r requirements.txt
    python predict.py input.csv                      # predictions as JSON on stdout
    python predict.py input.json -o predictions.json # MLflow's scoring payloads: dataframe_split, ...
    python predict.py input.parquet --output-format csv -o predictions.csv
    cat input.csv | python predict.py - --input-format csv

or from Python: ``import predict; model = predict.load(); model.predict(frame, params)``.

Unpickling runs code the model's author chose: run bundles you trust. Input is checked against the
model's signature as deltaflow's server checks it: missing columns, and values that cannot be
converted to the declared type without changing them, are errors naming the column.
"""

from __future__ import annotations

import argparse
import base64
import inspect
import io
import json
import os
import sys
import types
from typing import Any, Optional

__all__ = ["load", "BundleModel", "main"]

HERE = os.path.dirname(os.path.abspath(__file__))
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_NUMPY = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32"}


class InputError(ValueError):
    """Input the model cannot take; the message names the column or field."""


# -- stand-ins for what a pickled deltaflow custom model refers to -----------------------------
class PythonModel:
    """Stands in for deltaflow.pyfunc.PythonModel when deltaflow is not installed."""

    def load_context(self, context: Any) -> None:
        pass

    def predict(self, context: Any, model_input: Any, params: Optional[dict] = None) -> Any:
        raise NotImplementedError


class _FunctionModel(PythonModel):
    """A ``predict(model_input)`` function saved as a model (deltaflow's name for it)."""

    def __init__(self, func: Any) -> None:
        self.func = func

    def predict(self, context: Any, model_input: Any, params: Optional[dict] = None) -> Any:
        return self.func(model_input)


class PythonModelContext:
    def __init__(self, artifacts: dict, model_config: Optional[dict] = None) -> None:
        self.artifacts, self.model_config = artifacts, model_config or {}


def _install_stand_ins() -> None:
    """Register ``deltaflow.pyfunc`` stand-ins unless deltaflow is importable. The export checked that
    the pickle refers to nothing else of deltaflow; a model pickled by MLflow refers to MLflow's own
    code, so its bundle installs MLflow."""
    try:
        import deltaflow.pyfunc  # noqa: F401
        return
    except ImportError:
        pass
    stand_in = types.ModuleType("deltaflow.pyfunc")
    stand_in.PythonModel, stand_in.PythonModelContext = PythonModel, PythonModelContext  # type: ignore[attr-defined]
    stand_in._FunctionModel = _FunctionModel  # type: ignore[attr-defined]
    package = types.ModuleType("deltaflow")
    package.pyfunc = stand_in  # type: ignore[attr-defined]
    sys.modules["deltaflow"], sys.modules["deltaflow.pyfunc"] = package, stand_in


# -- the model ---------------------------------------------------------------------------------
class BundleModel:
    """The exported model: ``predict(data, params=None)`` with the signature checked first."""

    def __init__(self, folder: str = HERE) -> None:
        with open(os.path.join(folder, "bundle.json"), encoding="utf-8") as fh:
            self.spec = json.load(fh)
        self.folder = folder
        self.model_dir = os.path.join(folder, "model")
        self.inputs = self.spec.get("inputs")  # list of column / tensor specs, or None
        self.params_spec = self.spec.get("params")
        if self.spec.get("code"):
            sys.path.insert(0, self._path(self.spec["code"]))
        self._impl = self._load()

    def _path(self, rel: str) -> str:
        return os.path.join(self.model_dir, *rel.split("/"))

    def _unpickle(self, rel: str, opener: Any = open) -> Any:
        import pickle

        with opener(self._path(rel), "rb") as fh:
            if self.spec.get("serialization_format") == "pickle":
                return pickle.load(fh)
            import cloudpickle

            return cloudpickle.load(fh)

    def _load(self) -> Any:
        kind = self.spec["kind"]
        if kind == "sklearn":
            if self.spec.get("serialization_format") == "skops":
                import skops.io

                path = self._path(self.spec["model_file"])
                model = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
            else:
                model = self._unpickle(self.spec["model_file"])
            method = getattr(model, self.spec.get("predict_fn") or "predict")
            return lambda data, params: method(data)
        _install_stand_ins()
        openers = {"gzip": "gzip", "bzip2": "bz2", "lzma": "lzma"}
        compression = self.spec.get("compression")
        opener = __import__(openers[compression]).open if compression else open
        python_model = self._unpickle(self.spec["model_file"], opener)
        artifacts = {k: self._path(v) for k, v in (self.spec.get("artifacts") or {}).items()}
        context = PythonModelContext(artifacts, self.spec.get("model_config"))
        python_model.load_context(context)
        predict = python_model.predict
        names = [p.name for p in inspect.signature(predict).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "params"]
        takes_context = bool(names) and (names[0] == "context" or len(names) >= 2)
        takes_params = "params" in inspect.signature(predict).parameters

        def call(data: Any, params: Optional[dict]) -> Any:
            kwargs = {"params": params} if takes_params else {}
            return predict(context, data, **kwargs) if takes_context else predict(data, **kwargs)

        return call

    def predict(self, data: Any, params: Optional[dict] = None) -> Any:
        data = _enforce(data, self.inputs)
        if self.params_spec is not None:
            params = _enforce_params(params, self.params_spec)
        return self._impl(data, params)


def load(folder: str = HERE) -> BundleModel:
    """The model of the bundle in ``folder`` (this file's folder by default)."""
    return BundleModel(folder)


# -- signature checks ----------------------------------------------------------------------------
def _enforce(data: Any, inputs: Optional[list]) -> Any:
    import numpy as np
    import pandas as pd

    if not inputs:
        return data
    if inputs[0].get("type") == "tensor":
        if "name" in inputs[0]:
            if not isinstance(data, dict):
                raise InputError(f"the model takes named tensors {[s['name'] for s in inputs]}; got "
                                 f"{type(data).__name__}")
            return {s["name"]: _tensor(data.get(s["name"]), s) for s in inputs}
        return _tensor(data.to_numpy() if isinstance(data, pd.DataFrame) else data, inputs[0])
    if isinstance(data, dict):
        data = pd.DataFrame({k: v if np.ndim(v) else [v] for k, v in data.items()})
    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(data)
    if "name" not in inputs[0]:  # unnamed columns: by position
        if data.shape[1] < len(inputs):
            raise InputError(f"the model takes {len(inputs)} columns; the input has {data.shape[1]}")
        return data.iloc[:, :len(inputs)]
    missing = [s["name"] for s in inputs if s.get("required", True) and s["name"] not in data.columns]
    if missing:
        raise InputError(f"input column(s) {missing} are required by the model signature but missing; "
                         f"the model takes {[s['name'] for s in inputs]}")
    out = {}
    for spec in inputs:
        if spec["name"] in data.columns:
            out[spec["name"]] = _column(spec["name"], data[spec["name"]], spec.get("type"))
    return pd.DataFrame(out, index=data.index)


def _tensor(values: Any, spec: dict) -> Any:
    import numpy as np

    tensor = spec["tensor-spec"]
    try:
        array = np.asarray(values, dtype=tensor["dtype"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"input {spec.get('name', 'tensor')!r} cannot be read as {tensor['dtype']}: {exc}") from exc
    shape = tensor["shape"]
    if array.ndim != len(shape) or any(e not in (-1, a) for e, a in zip(shape, array.shape)):
        raise InputError(f"input {spec.get('name', 'tensor')!r} has shape {array.shape}; the model takes {shape}")
    return array


def _column(name: str, column: Any, expected: Any) -> Any:
    import pandas as pd

    if not isinstance(expected, str):
        return column  # arrays, objects, maps: passed as they are

    def refuse(detail: str = "") -> InputError:
        return InputError(f"input column {name!r} has type {column.dtype}, which cannot be converted to the "
                          f"signature's type {expected!r}{detail}")

    is_text = isinstance(column.dtype, pd.StringDtype) or column.dtype.kind in "OUS"
    try:
        if expected == "string":
            if not is_text:
                raise refuse()
            return column
        if expected == "binary":
            if not is_text:
                raise refuse()
            return column.map(lambda v: base64.b64decode(v) if isinstance(v, str) else v)
        if expected == "datetime":
            if not (is_text or column.dtype.kind == "M"):
                raise refuse()
            return pd.to_datetime(column)
        if column.dtype == object:
            column = column.infer_objects()
        kind = column.dtype.kind
        if expected == "boolean":
            if kind != "b":
                raise refuse()
            return column
        if expected in ("long", "integer") and kind == "f" and column.notna().all() and (column % 1 == 0).all():
            kind = "i"  # 1.0 read from JSON or CSV for an integer column
        if kind not in ("iuf" if expected in ("double", "float") else "iu"):
            raise refuse()
        return column.astype(_NUMPY[expected])
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, InputError):
            raise
        raise refuse(f": {exc}") from exc


def _enforce_params(params: Optional[dict], specs: list) -> dict:
    params = dict(params or {})
    checks = {"double": (int, float), "float": (int, float), "long": (int,), "integer": (int,),
              "boolean": (bool,), "string": (str,)}
    out = {}
    for spec in specs:
        value = params.pop(spec["name"], spec.get("default"))
        allowed = checks.get(spec["type"])
        values = value if spec.get("shape") and isinstance(value, list) else [value]
        for v in values:
            if v is not None and allowed and (not isinstance(v, allowed) or
                                              (isinstance(v, bool) and spec["type"] != "boolean")):
                raise InputError(f"param {spec['name']!r} has value {v!r}; the signature declares it as "
                                 f"{spec['type']!r}")
        out[spec["name"]] = float(value) if spec["type"] in ("double", "float") and value is not None else value
    if params:
        print(f"ignoring params not in the model signature: {sorted(params)}", file=sys.stderr)
    return out


# -- files in, JSON out ------------------------------------------------------------------------
def read_input(raw: bytes, fmt: str) -> tuple[Any, Optional[dict]]:
    """The model input (and params, from JSON payloads) in ``fmt``: csv, json or parquet."""
    import numpy as np
    import pandas as pd

    if fmt == "csv":
        return pd.read_csv(io.BytesIO(raw)), None
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(raw)), None
    payload = json.loads(raw)
    if not isinstance(payload, dict) or sum(k in payload for k in FORMATS) != 1:
        raise InputError(f"a JSON input is an object with exactly one of {', '.join(FORMATS)} (and optionally "
                         f"'params'), as MLflow's scoring server takes it")
    params = payload.get("params")
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        return pd.DataFrame(data=split["data"], columns=split.get("columns"), index=split.get("index")), params
    if "dataframe_records" in payload:
        return pd.DataFrame(payload["dataframe_records"]), params
    value = payload.get("instances", payload.get("inputs"))
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return pd.DataFrame(value), params
    if isinstance(value, dict):
        return {k: np.asarray(v) for k, v in value.items()}, params
    return np.asarray(value), params


def jsonable(predictions: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        return predictions.to_dict(orient="records")
    if isinstance(predictions, pd.Series):
        return pd.DataFrame(predictions).to_dict(orient="records")
    if isinstance(predictions, np.ndarray):
        return predictions.tolist()
    return predictions


def _default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"a prediction of type {type(value).__name__} cannot be written as JSON")


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="Predict with the exported model in this folder.")
    parser.add_argument("input", help="a .csv, .json (MLflow scoring payload) or .parquet file; - for stdin")
    parser.add_argument("-o", "--output", default="-", help="where to write predictions (default: stdout)")
    parser.add_argument("--input-format", choices=("csv", "json", "parquet"), default=None,
                        help="default: from the input file's extension")
    parser.add_argument("--output-format", choices=("json", "csv"), default="json")
    args = parser.parse_args(argv)
    fmt = args.input_format or os.path.splitext(args.input)[1].lstrip(".").lower()
    if fmt not in ("csv", "json", "parquet"):
        parser.error(f"cannot tell the format of {args.input!r}; pass --input-format csv, json or parquet")
    try:
        if args.input == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(args.input, "rb") as fh:
                raw = fh.read()
        data, params = read_input(raw, fmt)
        predictions = load().predict(data, params)
    except (InputError, ValueError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output_format == "csv":
        import pandas as pd

        frame = predictions if isinstance(predictions, pd.DataFrame) else pd.DataFrame({"prediction": list(
            jsonable(predictions))})
        text = frame.to_csv(index=False)
    else:
        text = json.dumps({"predictions": jsonable(predictions)}, default=_default) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
