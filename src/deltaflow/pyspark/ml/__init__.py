"""Autologging for pyspark.ml, as ``mlflow.pyspark.ml.autolog``."""

from __future__ import annotations

from deltaflow.autologging._spark_ml import DEFAULT_ALLOWLIST, autolog

__all__ = ["autolog", "DEFAULT_ALLOWLIST"]
