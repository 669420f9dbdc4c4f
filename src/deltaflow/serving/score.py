"""``score``: a Spark DataFrame scored by a model, by the fastest path the model allows.

A Spark ML model (the ``spark`` flavor) is applied natively: loaded with pyspark.ml and its own
``transform`` runs in the JVM, so no row crosses to Python and the result is exactly what
``model.transform`` returns (only the prediction column renamed when ``output_col`` asks for another
name). Any other model runs through :func:`deltaflow.serving.udf.spark_udf`'s UDF on the signature's
input columns; missing or wrongly typed columns are refused on the driver before any Spark job.
"""

from __future__ import annotations

from typing import Any, Optional

from deltaflow.errors import InvalidArgument, InvalidState

__all__ = ["score", "score_resolved"]


def _spark_of(df: Any) -> Any:
    session = getattr(df, "sparkSession", None)
    if session is None or not hasattr(df, "withColumn"):
        raise InvalidArgument(f"score() takes a Spark DataFrame, got {type(df).__module__}.{type(df).__name__}")
    return session


def _col(name: str) -> Any:
    """A column by its exact name (dots and backticks in it are part of the name)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _native(df: Any, resolved: Any, output_col: str) -> Any:
    from deltaflow._spark import is_connect
    from deltaflow.spark import _load_from_dir, _prediction_col

    if is_connect(df.sparkSession):
        raise InvalidState(
            f"the model at {resolved.uri!r} is a Spark ML model, which pyspark.ml applies through a JVM in this "
            "process, and this SparkSession is a Spark Connect one (pyspark 3.5's pyspark.ml does not run on Connect). "
            "Score it from a classic SparkSession, or save the model with a python_function-only flavor")
    model = _load_from_dir(resolved.local_dir, resolved.meta)
    predicted = _prediction_col(model)
    out = model.transform(df)
    if output_col != predicted:
        if output_col in out.columns:
            raise InvalidArgument(f"output_col {output_col!r} is already a column of the transformed DataFrame; "
                                  f"choose another name (the model writes its prediction to {predicted!r})")
        out = out.withColumnRenamed(predicted, output_col)
    return out


def score_resolved(df: Any, resolved: Any, output_col: str = "prediction", *, result_type: Any = None,
                   params: Optional[dict[str, Any]] = None, env_manager: str = "local") -> Any:
    """:func:`score` for a model already resolved on the driver."""
    from pyspark.sql import functions as F

    from deltaflow.serving._types import check_input_columns
    from deltaflow.serving.udf import build_udf

    if not isinstance(output_col, str) or not output_col:
        raise InvalidArgument(f"output_col must be a non-empty column name, got {output_col!r}")
    spark = _spark_of(df)
    if resolved.is_spark_model:
        if env_manager != "local" or params:
            raise InvalidArgument(f"the model at {resolved.uri!r} is a Spark ML model, applied by the session's own "
                                  "JVM with its transform: env_manager must be 'local' and params are not taken")
        return _native(df, resolved, output_col)
    if output_col in df.columns:
        raise InvalidArgument(f"output_col {output_col!r} is already a column of the DataFrame; choose another "
                              "name (scoring never overwrites an input column)")
    signature = resolved.meta.signature
    schema = signature.inputs if signature is not None else None
    udf = build_udf(spark, resolved, result_type, env_manager, params)
    if schema is not None and schema.inputs and schema.has_input_names():
        check_input_columns(schema, df.schema, list(df.columns))  # before any job: name the column
        present = [s.name for s in schema.inputs if s.name in df.columns]
        if len(present) == len(schema.inputs):
            return df.withColumn(output_col, udf(*[_col(name) for name in present]))
        return df.withColumn(output_col, udf(F.struct(*[_col(name) for name in present])))  # optional ones absent
    # No named inputs: the model takes every column, by name, as one struct.
    return df.withColumn(output_col, udf(F.struct(*[_col(c) for c in df.columns])))


def score(df: Any, model_uri: str, output_col: str = "prediction", *, result_type: Any = None,
          params: Optional[dict[str, Any]] = None, env_manager: str = "local",
          tracking_uri: Optional[str] = None) -> Any:
    """``df`` with the model's predictions in ``output_col``.

    A Spark ML model is applied with its own ``transform`` (its whole output, exactly); any other
    model through the scoring UDF on the signature's input columns. ``model_uri`` takes every form
    :func:`deltaflow.pyfunc.load_model` takes (``runs:/``, ``models:/name/1``, ``/Production``,
    ``/latest``, ``@alias``, paths).
    """
    from deltaflow.serving._model import resolve

    _spark_of(df)
    resolved = resolve(model_uri, tracking_uri)
    try:
        return score_resolved(df, resolved, output_col, result_type=result_type, params=params,
                              env_manager=env_manager)
    finally:
        resolved.cleanup()
