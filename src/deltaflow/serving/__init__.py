"""Scoring: models applied to data, in Spark and outside it.

* :func:`spark_udf` — any python_function model as a Spark column function (``deltaflow.pyfunc.spark_udf``).
* :func:`score` — a DataFrame scored: Spark ML models natively with their own ``transform``, any other
  model through the UDF.
* :func:`batch_score` — a Delta table scored into a Delta table (append, overwrite or merge), with the
  model's lineage in the rows and in the commit.
* :func:`stream_score` — the same on a structured stream, Delta in, Delta out, exactly once.
* ``deltaflow models score`` (:mod:`deltaflow.serving.cli`); the REST server and offline export live
  in ``rest*`` / ``export*`` modules of this package.

Importing this package is cheap: pyspark and pandas load only when a function is called.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["spark_udf", "score", "batch_score", "stream_score", "ScoringResult"]

_LAZY = {"spark_udf": "deltaflow.serving.udf", "score": "deltaflow.serving.score",
         "batch_score": "deltaflow.serving.batch", "ScoringResult": "deltaflow.serving.batch",
         "stream_score": "deltaflow.serving.stream"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deltaflow.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
