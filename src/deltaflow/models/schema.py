"""Model signatures: column and tensor specs, parameter specs, and their JSON form in ``MLmodel``.

The JSON is MLflow's, byte for byte in structure: ``signature.inputs`` is a JSON *string* holding a
list of specs such as ``{"type": "double", "name": "a", "required": true}`` or
``{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}``, so a signature written
here is read by MLflow and the other way round. Pure Python: no pandas, numpy or Spark at import
(inference, which needs them, lives in :mod:`deltaflow.models.infer`).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Union

from deltaflow.errors import InvalidArgument

__all__ = ["DATA_TYPES", "ColSpec", "TensorSpec", "Schema", "ParamSpec", "ParamSchema", "ModelSignature"]

# MLflow's ColSpec scalar types, in MLflow's order.
DATA_TYPES = ("string", "long", "integer", "double", "float", "boolean", "binary", "datetime")
# Composite types MLflow can write ("array", "object", "map", Spark vectors). We read and re-write
# them unchanged but do not enforce them; a model using them still loads and predicts.
_COMPOSITE_TYPES = ("array", "object", "map", "sparkml_vector", "any")


class ColSpec:
    """One column: an MLflow data type, an optional name, and whether it must be present."""

    def __init__(self, type: Union[str, dict], name: Optional[str] = None, required: bool = True) -> None:  # noqa: A002
        if isinstance(type, dict):  # a composite spec written by MLflow, kept verbatim
            if type.get("type") not in _COMPOSITE_TYPES:
                raise InvalidArgument(f"column spec type {type!r} is not supported; use one of "
                                      f"{', '.join(DATA_TYPES)}")
        elif type not in DATA_TYPES:
            raise InvalidArgument(f"column type {type!r} for column {name!r} is not supported; use one "
                                  f"of {', '.join(DATA_TYPES)}")
        self.type = type
        self.name = name
        self.required = bool(required)

    @property
    def is_scalar(self) -> bool:
        return isinstance(self.type, str)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.type) if isinstance(self.type, dict) else {"type": self.type}
        if self.name is not None:
            out["name"] = self.name
        out["required"] = self.required
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColSpec) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        req = "" if self.required else " (optional)"
        return f"{self.name!r}: {self.type}{req}" if self.name is not None else f"{self.type}{req}"


class TensorSpec:
    """A numpy array: dtype name and shape, ``-1`` for a variable dimension."""

    def __init__(self, dtype: str, shape: Iterable[int], name: Optional[str] = None) -> None:
        self.dtype = str(dtype)
        self.shape = tuple(int(d) for d in shape)
        self.name = name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.name is None else {"name": self.name}
        out["type"] = "tensor"
        out["tensor-spec"] = {"dtype": self.dtype, "shape": list(self.shape)}
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorSpec) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        prefix = f"{self.name!r}: " if self.name is not None else ""
        return f"{prefix}Tensor({self.dtype!r}, {self.shape})"


Spec = Union[ColSpec, TensorSpec]


class Schema:
    """An ordered list of specs, all columns or all tensors, all named or all unnamed (as in MLflow)."""

    def __init__(self, inputs: Iterable[Spec]) -> None:
        self.inputs: list[Spec] = list(inputs)
        kinds = {type(s) for s in self.inputs}
        if len(kinds) > 1:
            raise InvalidArgument("a schema must hold only column specs or only tensor specs, not both")
        named = {s.name is not None for s in self.inputs}
        if len(named) > 1:
            raise InvalidArgument("a schema's specs must be all named or all unnamed; got "
                                  f"{[s.name for s in self.inputs]}")

    @property
    def is_tensor_spec(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], TensorSpec)

    def has_input_names(self) -> bool:
        return bool(self.inputs) and self.inputs[0].name is not None

    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs if s.name is not None]

    def to_dict(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.inputs]

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: Union[str, list]) -> "Schema":
        try:
            items = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"schema JSON {text!r} is not valid JSON: {exc}") from exc
        if not isinstance(items, list):
            raise InvalidArgument(f"schema JSON must be a list of specs, got {type(items).__name__}")
        return cls([_spec_from_dict(item) for item in items])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.to_dict() == other.to_dict()

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self):  # noqa: ANN204
        return iter(self.inputs)

    def __repr__(self) -> str:
        return f"[{', '.join(repr(s) for s in self.inputs)}]"


def _spec_from_dict(item: Any) -> Spec:
    if not isinstance(item, dict) or "type" not in item:
        raise InvalidArgument(f"schema entry {item!r} must be an object with a 'type'")
    if item["type"] == "tensor":
        tensor = item.get("tensor-spec") or {}
        if "dtype" not in tensor or "shape" not in tensor:
            raise InvalidArgument(f"tensor spec {item!r} needs 'tensor-spec' with 'dtype' and 'shape'")
        return TensorSpec(tensor["dtype"], tensor["shape"], item.get("name"))
    name, required = item.get("name"), item.get("required", True)
    if item["type"] in DATA_TYPES:
        return ColSpec(item["type"], name, required)
    rest = {k: v for k, v in item.items() if k not in ("name", "required")}
    return ColSpec(rest, name, required)


class ParamSpec:
    """An inference parameter: name, MLflow data type, default, and shape (None or (-1,) for a list)."""

    def __init__(self, name: str, type: str, default: Any = None, shape: Optional[tuple] = None) -> None:  # noqa: A002
        if type not in DATA_TYPES:
            raise InvalidArgument(f"param {name!r} has type {type!r}; use one of {', '.join(DATA_TYPES)}")
        self.name, self.type, self.default = name, type, default
        self.shape = tuple(shape) if shape is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "default": self.default,
                "shape": list(self.shape) if self.shape is not None else None, "type": self.type}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamSpec) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{self.name!r}: {self.type} (default: {self.default!r})"


class ParamSchema:
    def __init__(self, params: Iterable[ParamSpec]) -> None:
        self.params = list(params)

    def to_json(self) -> str:
        return json.dumps([p.to_dict() for p in self.params])

    @classmethod
    def from_json(cls, text: Union[str, list]) -> "ParamSchema":
        items = json.loads(text) if isinstance(text, str) else text
        return cls([ParamSpec(i["name"], i["type"], i.get("default"), i.get("shape")) for i in items])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParamSchema) and self.params == other.params

    def __iter__(self):  # noqa: ANN204
        return iter(self.params)

    def __repr__(self) -> str:
        return f"[{', '.join(repr(p) for p in self.params)}]"


class ModelSignature:
    """Inputs, outputs and params of a model, as stored under ``signature`` in ``MLmodel``."""

    def __init__(self, inputs: Optional[Schema] = None, outputs: Optional[Schema] = None,
                 params: Optional[ParamSchema] = None) -> None:
        for label, value, kind in (("inputs", inputs, Schema), ("outputs", outputs, Schema),
                                   ("params", params, ParamSchema)):
            if value is not None and not isinstance(value, kind):
                raise InvalidArgument(f"signature {label} must be a {kind.__name__} or None, "
                                      f"got {type(value).__name__}")
        self.inputs, self.outputs, self.params = inputs, outputs, params

    def to_dict(self) -> dict[str, Optional[str]]:
        return {
            "inputs": self.inputs.to_json() if self.inputs is not None else None,
            "outputs": self.outputs.to_json() if self.outputs is not None else None,
            "params": self.params.to_json() if self.params is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSignature":
        if not isinstance(data, dict):
            raise InvalidArgument(f"a signature must be a mapping with inputs/outputs/params, got {data!r}")
        return cls(
            Schema.from_json(data["inputs"]) if data.get("inputs") else None,
            Schema.from_json(data["outputs"]) if data.get("outputs") else None,
            ParamSchema.from_json(data["params"]) if data.get("params") else None,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelSignature) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"inputs: {self.inputs!r}\noutputs: {self.outputs!r}\nparams: {self.params!r}"
