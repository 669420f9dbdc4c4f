"""deltaflow: the ML lifecycle on Spark and Delta Lake, with MLflow's API.

Port MLflow code by changing the import::

    import deltaflow as mlflow

    with mlflow.start_run():
        mlflow.log_param("lr", 0.01)
        mlflow.log_metric("loss", 0.3, step=1)

Importing this package is cheap: Spark, Delta and pandas load only when first needed.
"""

from __future__ import annotations

from deltaflow import errors
from deltaflow.config import get_tracking_uri, set_tracking_uri
from deltaflow.entities import Experiment, Metric, Param, Run, RunStatus, RunTag, ViewType
from deltaflow.tracking.client import DeltaflowClient, MlflowClient
from deltaflow.tracking.fluent import (
    ActiveRun,
    active_run,
    create_experiment,
    delete_experiment,
    delete_run,
    delete_tag,
    download_artifacts,
    end_run,
    flush,
    get_artifact_uri,
    get_experiment,
    get_experiment_by_name,
    get_metric_history,
    get_run,
    last_active_run,
    list_artifacts,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_input,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    register_model,
    restore_experiment,
    restore_run,
    search_experiments,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    start_run,
)

__version__ = "0.1.0"


def autolog(**kwargs):  # noqa: ANN003, ANN201 - the signature is documented on deltaflow.autologging.autolog
    """Enable autologging (pyspark.ml); ``deltaflow.autolog(disable=True)`` turns it off. Arguments as
    MLflow's ``mlflow.autolog``; see :func:`deltaflow.autologging.autolog`."""
    from deltaflow.autologging import autolog as _autolog

    return _autolog(**kwargs)


def spark_session():  # noqa: ANN201 - pyspark is imported only when this is called
    """The SparkSession deltaflow uses: the one already running, or a local one with Delta configured
    and tuned for one machine (see :func:`deltaflow._spark.spark_session`). pyspark is imported here."""
    from deltaflow._spark import spark_session as _spark_session

    return _spark_session()


def score(df, model_uri, output_col="prediction", **kwargs):  # noqa: ANN001, ANN003, ANN201
    """``df`` scored by the model at ``model_uri``: a Spark ML model natively with its own ``transform``,
    any other model through the scoring UDF. See :func:`deltaflow.serving.score.score`."""
    from deltaflow.serving.score import score as _score

    return _score(df, model_uri, output_col, **kwargs)


def batch_score(input, model_uri, output, mode="append", key=None, version=None, **kwargs):  # noqa: A002, ANN001, ANN003, ANN201
    """Score a Delta table into a Delta table (append, overwrite or merge by ``key``), recording the
    model's lineage in the rows and the commit. See :func:`deltaflow.serving.batch.batch_score`."""
    from deltaflow.serving.batch import batch_score as _batch_score

    return _batch_score(input, model_uri, output, mode, key, version, **kwargs)


def stream_score(input, model_uri, output, checkpoint_location, **kwargs):  # noqa: A002, ANN001, ANN003, ANN201
    """Score a Delta table as a structured stream into a Delta table, exactly once; returns the
    StreamingQuery. See :func:`deltaflow.serving.stream.stream_score`."""
    from deltaflow.serving.stream import stream_score as _stream_score

    return _stream_score(input, model_uri, output, checkpoint_location, **kwargs)


__all__ = [
    "__version__",
    "errors",
    "ActiveRun",
    "DeltaflowClient",
    "MlflowClient",
    "Experiment",
    "Metric",
    "Param",
    "Run",
    "RunStatus",
    "RunTag",
    "ViewType",
    "active_run",
    "autolog",
    "batch_score",
    "create_experiment",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "download_artifacts",
    "end_run",
    "flush",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_metric_history",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "list_artifacts",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "register_model",
    "restore_experiment",
    "restore_run",
    "score",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "spark_session",
    "start_run",
    "stream_score",
]

# Flavor modules load on first attribute access (``deltaflow.sklearn.log_model``), as in MLflow, so
# ``import deltaflow`` stays cheap; ``import deltaflow.sklearn`` works as well.
_LAZY_SUBMODULES = ("autologging", "models", "pyfunc", "pyspark", "registry", "sklearn", "spark", "sql")


def __getattr__(name: str):  # noqa: ANN202
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"deltaflow.{name}")
    raise AttributeError(f"module 'deltaflow' has no attribute {name!r}")
