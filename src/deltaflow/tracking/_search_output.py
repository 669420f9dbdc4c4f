"""Shaping search results: MLflow's pandas columns, or a Spark DataFrame for big results."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from deltaflow.entities import Run

__all__ = ["runs_to_pandas", "search_spark", "BASE_COLUMNS"]

BASE_COLUMNS = ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time")


def runs_to_pandas(runs: Sequence[Run]) -> Any:
    """MLflow's exact ``search_runs`` frame: base columns, then metrics.*, params.*, tags.* (sorted)."""
    import pandas as pd

    data: dict[str, list] = {c: [] for c in BASE_COLUMNS}
    metric_keys = sorted({k for r in runs for k in r.data.metrics})
    param_keys = sorted({k for r in runs for k in r.data.params})
    tag_keys = sorted({k for r in runs for k in r.data.tags})
    for run in runs:
        info = run.info
        data["run_id"].append(info.run_id)
        data["experiment_id"].append(info.experiment_id)
        data["status"].append(info.status)
        data["artifact_uri"].append(info.artifact_uri)
        data["start_time"].append(info.start_time)
        data["end_time"].append(info.end_time)
    frame = pd.DataFrame(data, columns=list(BASE_COLUMNS))
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column].astype("float64"), unit="ms", utc=True)
    extra: dict[str, Any] = {}
    for prefix, keys, getter, dtype in (
        ("metrics", metric_keys, lambda r: r.data.metrics, "float64"),
        ("params", param_keys, lambda r: r.data.params, "object"),
        ("tags", tag_keys, lambda r: r.data.tags, "object"),
    ):
        for key in keys:
            extra[f"{prefix}.{key}"] = pd.Series([getter(r).get(key) for r in runs], dtype=dtype)
    if extra:
        frame = pd.concat([frame, pd.DataFrame(extra, index=frame.index)], axis=1)
    return frame


def search_spark(store: Any, experiment_ids: Sequence[str], filter_string: Optional[str], run_view_type: int,
                 order_by: Optional[Sequence[str]], max_results: Optional[int]) -> Any:
    """The same search as a lazily evaluated Spark DataFrame (all matches up to ``max_results``)."""
    engine = store.spark_engine()  # MissingDependency naming deltaflow[spark] without pyspark
    from deltaflow.store.spark_search import order_columns, runs_wide_df, search_runs_df

    query = store.run_query(experiment_ids, filter_string, run_view_type, order_by)
    ordered = search_runs_df(engine, query)
    if max_results is not None:
        ordered = ordered.limit(max_results)
    wide = runs_wide_df(engine, ordered)
    order_cols = [c for c in wide.columns if c.startswith("_o")]
    return wide.orderBy(*order_columns(query)).drop(*order_cols)
