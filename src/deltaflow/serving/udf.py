"""``spark_udf``: any model with a python_function flavor as a Spark column function, with MLflow's
calling conventions.

The driver resolves the model URI once (through the store's own engine), checks ``params`` and the
result type, and ships the model folder to the executors as one content-addressed payload: a Spark
broadcast on a classic session, inside the UDF itself on Spark Connect (which has no broadcast).
Each Python worker extracts and loads it once and keeps it for every later batch, task and job.

Transport: an iterator pandas UDF (Arrow batches). It is the only transport that is a column
expression (``df.withColumn("p", udf(...))``, as MLflow's is), and Spark then sends only the
model's input columns to Python and keeps the rest in the JVM; ``mapInArrow`` must carry every
column both ways to keep them, which measured slower for the same rows (see the README's scoring
section and benchmarks/bench_scoring.py).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

from deltaflow.errors import InvalidArgument

__all__ = ["spark_udf", "ScoringUDF", "ENV_MANAGERS"]

ENV_MANAGERS = ("local", "virtualenv")
_BROADCASTS: dict[tuple[str, str], Any] = {}
_BROADCAST_LOCK = threading.Lock()
# Spark Connect carries the model inside the UDF's plan, in one gRPC message (128 MiB by default).
_CONNECT_PAYLOAD_LIMIT = 120 * 2**20


class ScoringUDF:
    """What :func:`spark_udf` returns: call it with columns (positionally, by name, or one
    ``struct``), or with none to use the signature's input columns. ``metadata`` is the MLmodel."""

    def __init__(self, udf: Any, metadata: Any, plan: Any) -> None:
        self._udf = udf
        self.metadata = metadata
        self.plan = plan
        self.returnType = plan.result_type

    @property
    def udf(self) -> Any:
        """The underlying pandas UDF, e.g. for ``spark.udf.register("churn", scoring_udf.udf)`` in SQL
        (called there with the columns, by position)."""
        return self._udf

    @property
    def _schema(self) -> Any:
        signature = self.metadata.signature
        return signature.inputs if signature is not None else None

    def input_columns(self) -> list[str]:
        """The columns a call without arguments scores: the signature's named inputs."""
        schema = self._schema
        if schema is None or not schema.inputs:
            raise InvalidArgument("the UDF was called without columns and the model has no input signature to "
                                  "take them from; pass the columns (or one struct) explicitly")
        if not schema.has_input_names():
            raise InvalidArgument(f"the UDF was called without columns and the model's {len(schema.inputs)} input "
                                  f"columns are unnamed ({schema!r}); pass the columns explicitly")
        optional = [s.name for s in schema.inputs if not s.required]
        if optional:
            raise InvalidArgument(f"the UDF was called without columns and the signature has optional columns "
                                  f"{optional}; pass the columns to score explicitly")
        return schema.input_names()

    def __call__(self, *cols: Any) -> Any:
        if not cols:
            return self._udf(*self.input_columns())
        names, required = self.plan.names, self.plan.required
        maybe_struct = len(cols) == 1 and not isinstance(cols[0], str)  # a Column: the worker tells
        if names is not None and not maybe_struct:
            if len(cols) < required:
                raise InvalidArgument(f"the model expects {required} input columns {list(names)}; the UDF was "
                                      f"called with {len(cols)} (columns are matched by position unless every "
                                      "one is named by its signature name)")
            if all(isinstance(c, str) for c in cols) and sorted(cols) == sorted(names):
                cols = tuple(sorted(cols, key=list(names).index))  # all the model's names: match by name
        return self._udf(*cols)

    def __repr__(self) -> str:
        return f"ScoringUDF(model={self.plan.key}, returnType={self.returnType.simpleString()})"


def _broadcast(spark: Any, key: str, data: bytes) -> Any:
    """One broadcast per model content and SparkContext: another UDF of the same model reuses it
    (executors then already hold the bytes, and the driver keeps one copy)."""
    context = spark.sparkContext
    cache_key = (context.applicationId, key)
    with _BROADCAST_LOCK:
        found = _BROADCASTS.get(cache_key)
        if found is None:
            found = _BROADCASTS[cache_key] = context.broadcast(data)
    return found


def _plan_names(schema: Any) -> tuple[Optional[tuple[str, ...]], int]:
    if schema is None or not schema.inputs or not schema.has_input_names():
        return None, 0
    return tuple(schema.input_names()), sum(1 for s in schema.inputs if getattr(s, "required", True))


def _shares_disk(spark: Any) -> bool:
    """Whether executors run on this machine (local and local-cluster masters)."""
    from deltaflow._spark import is_connect

    if is_connect(spark):
        return False
    return spark.sparkContext.master.startswith("local")


def build_udf(spark: Any, resolved: Any, result_type: Any = None, env_manager: str = "local",
              params: Optional[dict[str, Any]] = None) -> ScoringUDF:
    """The UDF for a model already resolved on the driver (see :mod:`deltaflow.serving._model`)."""
    import pandas as pd
    from typing import Iterator, Tuple

    from pyspark.sql.functions import pandas_udf

    from deltaflow._spark import is_connect
    from deltaflow.models.enforce import enforce_params
    from deltaflow.serving._types import result_type_for
    from deltaflow.serving._worker import UdfPlan, run

    if env_manager not in ENV_MANAGERS:
        raise InvalidArgument(f"env_manager {env_manager!r} is not supported; use one of {', '.join(ENV_MANAGERS)}")
    if params is not None and not isinstance(params, dict):
        raise InvalidArgument(f"params must be a dict of inference parameters, got {type(params).__name__}")
    meta = resolved.meta
    if "python_function" not in meta.flavors:
        raise InvalidArgument(f"the model at {resolved.uri!r} has no python_function flavor (it has "
                              f"{sorted(meta.flavors)}), so it cannot run in a UDF")
    signature = meta.signature
    schema = signature.inputs if signature is not None else None
    checked_params = enforce_params(params, signature.params if signature is not None else None)
    rtype = result_type_for(spark, result_type, signature.outputs if signature is not None else None)
    env = None
    if env_manager == "virtualenv":
        from deltaflow.serving._env import ensure_env, spec_for

        env = spec_for(resolved.local_dir, os.environ.get("DELTAFLOW_ENV_CACHE"))
        if _shares_disk(spark):
            ensure_env(env)  # built here once, so no task waits for it (and a pip failure surfaces here)
    key, data = resolved.payload()
    if is_connect(spark):
        if len(data) > _CONNECT_PAYLOAD_LIMIT:
            raise InvalidArgument(f"the model at {resolved.uri!r} is {len(data) / 2**20:.0f} MiB packed; on Spark "
                                  "Connect the model travels inside the UDF's plan, which is limited to "
                                  f"{_CONNECT_PAYLOAD_LIMIT / 2**20:.0f} MiB; use a classic session")
        source: Any = data
    else:
        source = _broadcast(spark, key, data)
    names, required = _plan_names(schema)
    plan = UdfPlan(key, source, names, required, schema, checked_params, rtype, env)
    struct_result = type(rtype).__name__ == "StructType"

    def predict(batches):  # noqa: ANN001, ANN202 - the hints are set below, as pandas_udf reads them
        return run(plan, batches)

    predict.__annotations__ = {"batches": Iterator[Tuple[pd.Series, ...]],
                               "return": Iterator[pd.DataFrame if struct_result else pd.Series]}
    return ScoringUDF(pandas_udf(predict, returnType=rtype), meta, plan)


def spark_udf(spark: Any, model_uri: str, result_type: Any = None, env_manager: str = "local",
              params: Optional[dict[str, Any]] = None, *, tracking_uri: Optional[str] = None) -> ScoringUDF:
    """A Spark UDF that scores with the model at ``model_uri`` (``runs:/``, ``models:/name/1``,
    ``models:/name/Production``, ``models:/name/latest``, ``models:/name@alias``, a path or storage URI).

    ``result_type``: a pyspark DataType or DDL string (double, float, int, long, string, boolean,
    arrays of those, structs of those); inferred from the output signature when None (double when the
    model has none). ``env_manager``: ``"local"`` (this environment) or ``"virtualenv"`` (the model's
    pinned requirements, built once per machine and cached). ``params``: inference parameters,
    checked against the signature now.
    """
    from deltaflow.serving._model import resolve

    if env_manager not in ENV_MANAGERS:
        raise InvalidArgument(f"env_manager {env_manager!r} is not supported; use one of {', '.join(ENV_MANAGERS)}")
    resolved = resolve(model_uri, tracking_uri)
    try:
        return build_udf(spark, resolved, result_type, env_manager, params)
    finally:
        resolved.cleanup()  # the payload holds the model now; the driver's copy is not needed
