"""Compiling the typed search tree (``deltaflow.tracking._search``) to Spark Column expressions.

User text only ever becomes literals (``F.lit``) and LIKE patterns on Column objects; no SQL string is
built from it. MLflow semantics kept: a run lacking the metric/param/tag a clause names does not
match; ORDER BY puts runs lacking the key last in either direction; ties break on start_time DESC,
run_id ASC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from deltaflow.errors import InvalidArgument
from deltaflow.store.engine import RunQuery, Where
from deltaflow.tracking._search import normalize_like

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

    from deltaflow.store.spark_engine import SparkEngine

__all__ = ["search_run_ids", "search_runs_df", "runs_wide_df", "runs_view_df"]

_DATASET_COLUMNS = {"name": "name", "digest": "digest", "context": "context"}


def _compare(column: "Column", op: str, value: Any) -> "Column":
    from pyspark.sql import functions as F

    if op == "=":
        return column == F.lit(value)
    if op == "!=":
        return column != F.lit(value)
    if op == ">":
        return column > F.lit(value)
    if op == ">=":
        return column >= F.lit(value)
    if op == "<":
        return column < F.lit(value)
    if op == "<=":
        return column <= F.lit(value)
    if op == "LIKE":
        return column.like(normalize_like(value))
    if op == "ILIKE":
        return column.ilike(normalize_like(value))
    if op == "IN":
        return column.isin(list(value))
    if op == "NOT IN":
        return ~column.isin(list(value))
    if op == "IS NULL":
        return column.isNull()
    if op == "IS NOT NULL":
        return column.isNotNull()
    raise InvalidArgument(f"comparator {op!r} is not supported")


def _candidates(engine: "SparkEngine", query: RunQuery) -> "DataFrame":
    from pyspark.sql import functions as F

    state = engine.runs_state_df(Where.of(experiment_id=list(query.experiment_ids)))
    return state.where(F.col("lifecycle_stage").isin(list(query.lifecycle_stages)))


def _key_values(engine: "SparkEngine", entity: str, key: str, query: RunQuery) -> "DataFrame":
    """(run_id, value) of one metric/param/tag key within the searched experiments."""
    from pyspark.sql import functions as F

    exp = F.col("experiment_id").isin(list(query.experiment_ids))
    if entity == "metric":
        events = engine._df("latest_metrics").where(exp & (F.col("key") == F.lit(key)))
        return engine.latest_metrics_df(events=events).select("run_id", "value")
    if entity == "param":
        events = engine._df("params").where(exp & (F.col("key") == F.lit(key)))
        return events.groupBy("run_id").agg(
            F.min_by("value", F.struct("event_time", "seq")).alias("value"))
    if entity == "tag":
        events = engine._df("tags").where(exp & (F.col("key") == F.lit(key)))
        folded = events.groupBy("run_id").agg(F.max_by("value", F.struct("event_time", "seq")).alias("value"))
        return folded.where(F.col("value").isNotNull())
    raise InvalidArgument(f"unknown entity {entity!r}")


def _apply_clause(engine: "SparkEngine", df: "DataFrame", clause: Any, query: RunQuery) -> "DataFrame":
    from pyspark.sql import functions as F

    entity, key, op, value = clause.entity, clause.key, clause.op, clause.value
    if entity == "attribute":
        return df.where(_compare(F.col(key), op, value))
    if entity == "dataset":
        inputs = engine._df("inputs").where(F.col("experiment_id").isin(list(query.experiment_ids)))
        matches = inputs.where(_compare(F.col(_DATASET_COLUMNS[key]), op, value)).select("run_id").distinct()
        return df.join(matches, "run_id", "left_semi")
    values = _key_values(engine, entity, key, query)
    if op == "IS NULL":
        return df.join(values, "run_id", "left_anti")
    if op == "IS NOT NULL":
        return df.join(values, "run_id", "left_semi")
    matches = values.where(_compare(F.col("value"), op, value)).select("run_id")
    return df.join(matches, "run_id", "left_semi")


def search_runs_df(engine: "SparkEngine", query: RunQuery) -> "DataFrame":
    """Filtered runs state with one ``_o<i>`` column per ORDER BY term, sorted."""
    from pyspark.sql import functions as F

    df = _candidates(engine, query)
    for clause in query.clauses:
        df = _apply_clause(engine, df, clause, query)
    sort_columns: list["Column"] = []
    for index, order in enumerate(query.order_by):
        name = f"_o{index}"
        if order.entity == "attribute":
            df = df.withColumn(name, F.col(order.key))
        else:
            values = _key_values(engine, order.entity, order.key, query).withColumnRenamed("value", name)
            df = df.join(values, "run_id", "left")
        sort_columns.append(F.col(name).asc_nulls_last() if order.ascending else F.col(name).desc_nulls_last())
    sort_columns += [F.col("start_time").desc_nulls_last(), F.col("run_id").asc()]
    return df.orderBy(*sort_columns)


def search_run_ids(engine: "SparkEngine", query: RunQuery) -> list[str]:
    df = search_runs_df(engine, query).select("run_id")
    if query.limit is not None:
        df = df.limit(query.offset + query.limit)
    ids = [row[0] for row in df.collect()]
    return ids[query.offset:]


def _pivot(long_df: "DataFrame", prefix: str, keys: list[str]) -> Optional["DataFrame"]:
    from pyspark.sql import functions as F

    if not keys:
        return None
    return long_df.groupBy("run_id").agg(
        *[F.first(F.when(F.col("key") == F.lit(k), F.col("value")), ignorenulls=True).alias(f"{prefix}.{k}")
          for k in keys])


def runs_wide_df(engine: "SparkEngine", runs: "DataFrame") -> "DataFrame":
    """MLflow's search_runs columns for the given runs-state rows, metrics/params/tags pivoted."""
    from pyspark.sql import functions as F

    ids = runs.select("run_id")
    metrics = engine.latest_metrics_df().join(ids, "run_id", "left_semi").select("run_id", "key", "value")
    params = engine.params_df().join(ids, "run_id", "left_semi")
    tags = engine.tags_df("tags", "run_id").join(ids, "run_id", "left_semi")
    wide = runs.select(
        "run_id", "experiment_id", "status", "artifact_uri",
        F.timestamp_millis("start_time").alias("start_time"),
        F.timestamp_millis("end_time").alias("end_time"),
        *[c for c in runs.columns if c.startswith("_o")],
    )
    for prefix, long_df in (("metrics", metrics), ("params", params), ("tags", tags)):
        keys = sorted(r[0] for r in long_df.select("key").distinct().collect())
        pivoted = _pivot(long_df, prefix, keys)
        if pivoted is not None:
            wide = wide.join(pivoted, "run_id", "left")
    return wide


def runs_view_df(engine: "SparkEngine") -> "DataFrame":
    """One row per run with maps of latest metrics, params and tags: the documented SQL view."""
    from pyspark.sql import functions as F

    def as_map(df: "DataFrame", name: str) -> "DataFrame":
        return df.groupBy("run_id").agg(
            F.map_from_entries(F.collect_list(F.struct("key", "value"))).alias(name))

    state = engine.runs_state_df()
    view = state
    for name, df in (("metrics", engine.latest_metrics_df().select("run_id", "key", "value")),
                     ("params", engine.params_df()),
                     ("tags", engine.tags_df("tags", "run_id"))):
        view = view.join(as_map(df, name), "run_id", "left")
    return view
