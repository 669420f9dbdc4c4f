"""Spark types for scoring: the UDF's result type (given, or inferred from the output signature as
MLflow infers it) and the driver-side check of a DataFrame's columns against the input signature.

Runs on the driver only; pyspark is imported inside the functions.
"""

from __future__ import annotations

from typing import Any, Optional

from deltaflow.errors import InvalidArgument
from deltaflow.models.schema import ColSpec, Schema, TensorSpec

__all__ = ["result_type_for", "check_result_type", "check_input_columns", "spark_type_of_spec"]

# MLflow column type -> pyspark.sql.types class name.
_SCALARS = {"string": "StringType", "long": "LongType", "integer": "IntegerType", "double": "DoubleType",
            "float": "FloatType", "boolean": "BooleanType", "binary": "BinaryType", "datetime": "TimestampType"}
_NUMPY = {"float64": "DoubleType", "float32": "FloatType", "int64": "LongType", "int32": "IntegerType",
          "int16": "IntegerType", "int8": "IntegerType", "bool": "BooleanType", "str": "StringType",
          "object": "StringType", "bytes": "BinaryType"}
_RESULT_KINDS = ("double", "float", "int", "integer", "long", "bigint", "string", "boolean", "bool",
                 "array<...> of those", "struct<...> (or 'a double, b string') of those and arrays")
# Spark type class name of an input column -> the MLflow types it satisfies without a lossy conversion
# (the same rules as deltaflow.models.enforce: widening only).
_ACCEPTS = {
    "double": {"DoubleType", "FloatType", "IntegerType", "ShortType", "ByteType", "DecimalType"},
    "float": {"FloatType", "ShortType", "ByteType"},
    "long": {"LongType", "IntegerType", "ShortType", "ByteType"},
    "integer": {"IntegerType", "ShortType", "ByteType"},
    "boolean": {"BooleanType"},
    "string": {"StringType", "VarcharType", "CharType"},
    "binary": {"BinaryType", "StringType"},
    "datetime": {"TimestampType", "TimestampNTZType", "DateType"},
}


def _types() -> Any:
    from pyspark.sql import types

    return types


def spark_type_of_spec(spec: Any) -> Any:
    """The Spark type of one output spec, following MLflow's spark_udf rules (a 1-D tensor is an
    array, a 2-D tensor an array of arrays)."""
    t = _types()
    if isinstance(spec, TensorSpec):
        name = _NUMPY.get(spec.dtype.lstrip("<>=|"))
        if name is None:
            raise InvalidArgument(f"output tensor dtype {spec.dtype!r} has no Spark type for spark_udf")
        element = getattr(t, name)()
        if len(spec.shape) == 1:
            return t.ArrayType(element)
        if len(spec.shape) == 2:
            return t.ArrayType(t.ArrayType(element))
        raise InvalidArgument(f"spark_udf returns 1-D or 2-D tensors only; output {spec.name!r} has shape "
                              f"{spec.shape}")
    return _spark_type_of(spec.type)


def _spark_type_of(kind: Any) -> Any:
    """An MLflow column type (a scalar name or a composite dict as MLflow writes it) as a Spark type."""
    t = _types()
    if isinstance(kind, str):
        return getattr(t, _SCALARS[kind])()
    composite = kind.get("type")
    if composite in _SCALARS:  # a nested {"type": "double"}
        return _spark_type_of(composite)
    if composite == "array":
        return t.ArrayType(_spark_type_of(kind["items"]))
    if composite == "object":
        return t.StructType([t.StructField(name, _spark_type_of(prop))
                             for name, prop in (kind.get("properties") or {}).items()])
    if composite == "map":
        return t.MapType(t.StringType(), _spark_type_of(kind["values"]))
    if composite == "sparkml_vector":
        return t.ArrayType(t.DoubleType())  # Arrow carries no vectors; MLflow's outputs hold them as arrays
    raise InvalidArgument(f"output type {kind!r} has no Spark type for spark_udf; pass result_type=")


def _infer(outputs: Optional[Schema]) -> Any:
    t = _types()
    if outputs is None or not outputs.inputs:
        return t.DoubleType()  # MLflow's fallback when the model has no output schema
    if len(outputs.inputs) == 1:
        return spark_type_of_spec(outputs.inputs[0])
    return t.StructType([t.StructField(spec.name or str(i), spark_type_of_spec(spec))
                         for i, spec in enumerate(outputs.inputs)])


def _parse(spark: Any, text: str) -> Any:
    """A DDL type string ("double", "array<int>", "a double, b string") as a DataType."""
    from deltaflow._spark import is_connect

    text = "boolean" if text.strip().lower() == "bool" else text
    try:
        if not is_connect(spark):
            from pyspark.sql.types import _parse_datatype_string

            return _parse_datatype_string(text)
        from pyspark.sql.functions import udf

        # Spark Connect parses DDL on the server: analyse a plan that declares the type (no job runs).
        return spark.range(0).select(udf(lambda x: x, returnType=text)("id")).schema[0].dataType
    except Exception as exc:  # noqa: BLE001 - Spark's parse errors come in several classes
        raise InvalidArgument(f"result_type {text!r} is not a Spark type: {str(exc).splitlines()[0]}; "
                              f"allowed: {', '.join(_RESULT_KINDS)}") from None


def check_result_type(data_type: Any) -> bool:
    t = _types()
    if isinstance(data_type, (t.IntegerType, t.LongType, t.FloatType, t.DoubleType, t.StringType, t.BooleanType)):
        return True
    if isinstance(data_type, t.ArrayType):
        return check_result_type(data_type.elementType)
    if isinstance(data_type, t.StructType):
        return bool(data_type.fields) and all(check_result_type(f.dataType) for f in data_type.fields)
    return False


def result_type_for(spark: Any, result_type: Any, outputs: Optional[Schema]) -> Any:
    """The UDF's return type: ``result_type`` (a DataType or DDL string), or inferred from the
    model's output signature (double when there is none), as MLflow's spark_udf does."""
    t = _types()
    if result_type is None:
        return _infer(outputs)
    if isinstance(result_type, str):
        parsed = _parse(spark, result_type)
    elif isinstance(result_type, t.DataType):
        parsed = result_type
    else:
        raise InvalidArgument(f"result_type must be a pyspark DataType or a DDL string, got "
                              f"{type(result_type).__name__} {result_type!r}")
    if not check_result_type(parsed):
        raise InvalidArgument(f"result_type {parsed.simpleString()!r} is not supported by spark_udf; allowed: "
                              f"{', '.join(_RESULT_KINDS)}")
    return parsed


def check_input_columns(schema: Optional[Schema], df_schema: Any, columns: list[str]) -> None:
    """Raise, before any Spark job, when a column the signature requires is missing from ``columns``
    of the DataFrame or has a Spark type that cannot be converted to the signature's type safely."""
    if schema is None or not schema.inputs or schema.is_tensor_spec or not schema.has_input_names():
        return
    fields = {f.name: f.dataType for f in df_schema.fields if f.name in columns}
    missing = [s.name for s in schema.inputs if s.required and s.name not in fields]
    if missing:
        more = f" (and {', '.join(repr(m) for m in missing[1:])})" if len(missing) > 1 else ""
        raise InvalidArgument(f"input column {missing[0]!r}{more} is required by the model signature but missing "
                              f"from the DataFrame (its columns: {sorted(fields) or list(df_schema.names)}); "
                              f"the signature's columns are {schema!r}")
    for spec in schema.inputs:
        if spec.name in fields:
            _check_one(spec, fields[spec.name])


def _check_one(spec: ColSpec, data_type: Any) -> None:
    kind = type(data_type).__name__
    if spec.is_scalar:
        if kind not in _ACCEPTS[spec.type]:
            raise InvalidArgument(f"input column {spec.name!r} has Spark type {data_type.simpleString()}, which "
                                  f"cannot be converted safely to the signature's type {spec.type!r} (accepted "
                                  f"Spark types: {', '.join(sorted(_ACCEPTS[spec.type]))}); cast it first")
        return
    composite = spec.type.get("type")
    if composite == "sparkml_vector" and kind not in ("ArrayType", "VectorUDT"):
        raise InvalidArgument(f"input column {spec.name!r} has Spark type {data_type.simpleString()}; the signature "
                              "expects a Spark ML vector (an array<double> or a vector column)")
    if composite == "array" and kind != "ArrayType":
        raise InvalidArgument(f"input column {spec.name!r} has Spark type {data_type.simpleString()}; the signature "
                              "expects an array")
