"""Autologging: ``deltaflow.autolog()`` / ``deltaflow.pyspark.ml.autolog()`` record Spark ML fits
with no user code (params, training and post-training metrics, the model, the training data's
Delta version, tuning child runs). See ``_spark_ml.py`` for how, and ``_safety.py`` for the
contract that a logging failure never breaks the user's ``fit``."""

from __future__ import annotations

from typing import Any

__all__ = ["autolog"]


def autolog(**kwargs: Any) -> None:
    """Enable autologging for every supported library (today: pyspark.ml), with MLflow's arguments:
    ``log_models``, ``log_datasets``, ``disable``, ``exclusive``, ``disable_for_unsupported_versions``,
    ``silent``, ``log_post_training_metrics``, ``registered_model_name``, ``log_input_examples``,
    ``log_model_signatures``, ``log_model_allowlist``, ``extra_tags``."""
    from deltaflow.autologging._spark_ml import autolog as spark_ml_autolog

    spark_ml_autolog(**kwargs)
