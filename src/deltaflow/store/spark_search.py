"""Compiling the typed search tree (``deltaflow.tracking._search``) to Spark Column expressions.

User text only ever becomes literals (``F.lit``) and regexes built by ``like_to_linear_regex`` on
Column objects; no SQL string is built from it. MLflow semantics kept: a run lacking the
metric/param/tag a clause names does not match; ORDER BY puts runs lacking the key last in either
direction; ties break on start_time DESC, run_id ASC.

LIKE and ILIKE are not Spark's ``like``/``ilike``: those run a backtracking ``java.util.regex`` whose
time grows as (value length) ** (number of ``%``) — minutes for ``'%a%a%b'`` on a 5,000-character
value. They compile to ``rlike`` with a regex whose ``%``-separated segments are each matched
leftmost-first inside atomic groups, linear in the value's length and exact for LIKE.

Every search runs under the search time limit (``SearchDeadline``): its Spark jobs carry a job tag
(a job group before Spark 3.5; a session tag on Spark Connect), which is cancelled when the limit
passes, and the call raises :class:`~deltaflow.errors.SearchTimeout`.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from deltaflow.errors import InvalidArgument, SearchTimeout
from deltaflow.store.arrow_search import SearchDeadline
from deltaflow.store.engine import RunQuery, Where
from deltaflow.tracking._search import like_to_linear_regex

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

    from deltaflow.store.spark_engine import SparkEngine

__all__ = ["search_run_ids", "search_runs_df", "order_columns", "runs_wide_df", "runs_view_df", "run_bounded"]

T = TypeVar("T")

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
    if op in ("LIKE", "ILIKE"):
        return column.rlike(like_to_linear_regex(value, op == "ILIKE"))
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
    condition = _compare(F.col("value"), op, value)
    if entity == "metric" and op in ("=", ">", ">=", "<", "<="):
        # MLflow: a NaN metric matches none of =, >, >=, <, <= (Spark ranks NaN above every number).
        condition = condition & ~F.isnan(F.col("value"))
    matches = values.where(condition).select("run_id")
    return df.join(matches, "run_id", "left_semi")


def search_runs_df(engine: "SparkEngine", query: RunQuery) -> "DataFrame":
    """Filtered runs state with one ``_o<i>`` column per ORDER BY term, sorted."""
    from pyspark.sql import functions as F

    df = _candidates(engine, query)
    for clause in query.clauses:
        df = _apply_clause(engine, df, clause, query)
    for index, order in enumerate(query.order_by):
        name = f"_o{index}"
        if order.entity == "attribute":
            df = df.withColumn(name, F.col(order.key))
        else:
            values = _key_values(engine, order.entity, order.key, query).withColumnRenamed("value", name)
            df = df.join(values, "run_id", "left")
    return df.orderBy(*order_columns(query))


def order_columns(query: RunQuery) -> list["Column"]:
    """The sort of a search over its ``_o<i>`` columns: each ORDER BY term, then start_time DESC, run_id.

    A metric term sorts as MLflow's does in both directions: numbers, then NaN, then runs without it.
    """
    from pyspark.sql import functions as F

    sort_columns: list["Column"] = []
    for index, order in enumerate(query.order_by):
        column = F.col(f"_o{index}")
        if order.entity == "metric":
            sort_columns.append(F.when(column.isNull(), 2).when(F.isnan(column), 1).otherwise(0).asc())
        sort_columns.append(column.asc_nulls_last() if order.ascending else column.desc_nulls_last())
    sort_columns += [F.col("start_time").desc_nulls_last(), F.col("run_id").asc()]
    return sort_columns


def search_run_ids(engine: "SparkEngine", query: RunQuery) -> list[str]:
    """The ids of the matching runs, in order, within the search time limit."""
    deadline = SearchDeadline()

    def collect() -> list[Any]:
        df = search_runs_df(engine, query).select("run_id")
        if query.limit is not None:
            df = df.limit(query.offset + query.limit)
        deadline.check("while planning the query")
        return df.collect()

    ids = [row[0] for row in run_bounded(engine.spark, deadline, collect)]
    return ids[query.offset:]


_CANCEL_REPEAT_S = 0.2  # a job submitted after a cancel is not cancelled by it: repeat until done


class _Canceller:
    """Marks the Spark jobs this thread starts, and cancels them from another thread.

    Classic Spark 3.5+: a job tag (the thread's job group, e.g. a Databricks notebook cell's, is
    left alone) with interrupt-on-cancel. Older classic Spark: a job group, the thread's previous
    one restored afterwards. Spark Connect (no ``sparkContext``): a session operation tag.
    """

    def __init__(self, spark: Any, tag: str) -> None:
        self.spark, self.tag = spark, tag
        self.sc: Any = None
        self.mode = "none"
        self.saved: dict[str, Optional[str]] = {}
        try:
            self.sc = spark.sparkContext  # Spark Connect sessions raise here
        except Exception:  # noqa: BLE001 - any failure means "no SparkContext"
            self.sc = None
        if self.sc is not None:
            self.mode = "tag" if hasattr(self.sc, "addJobTag") else "group"
        elif hasattr(spark, "addTag") and hasattr(spark, "interruptTag"):
            self.mode = "connect"

    _PROPERTIES = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")

    def start(self) -> None:
        if self.mode in ("tag", "group"):
            self.saved = {key: self.sc.getLocalProperty(key) for key in self._PROPERTIES}
        if self.mode == "tag":
            self.sc.addJobTag(self.tag)
            self.sc.setInterruptOnCancel(True)
        elif self.mode == "group":
            self.sc.setJobGroup(self.tag, "deltaflow search_runs", interruptOnCancel=True)
        elif self.mode == "connect":
            self.spark.addTag(self.tag)

    def cancel(self) -> None:
        if self.mode == "tag":
            self.sc.cancelJobsWithTag(self.tag)
        elif self.mode == "group":
            self.sc.cancelJobGroup(self.tag)
        elif self.mode == "connect":
            self.spark.interruptTag(self.tag)

    def finish(self) -> None:
        if self.mode == "tag":
            self.sc.removeJobTag(self.tag)
        elif self.mode == "connect":
            self.spark.removeTag(self.tag)
        for key, value in self.saved.items():
            self.sc.setLocalProperty(key, value)


def run_bounded(spark: Any, deadline: SearchDeadline, work: Callable[[], T]) -> T:
    """``work()`` (which runs Spark jobs from this thread) within the deadline.

    When the limit passes, the jobs ``work`` started are cancelled (and cancelled again every
    0.2 s, so one submitted just after is caught too) and :class:`~deltaflow.errors.SearchTimeout`
    is raised. Where jobs cannot be cancelled, ``work`` runs on a helper thread and the caller gets
    the error at the limit while the jobs finish in the background.
    """
    if not deadline.bounded:
        return work()
    canceller = _Canceller(spark, f"deltaflow-search-{uuid.uuid4().hex}")
    if canceller.mode == "none":
        return _run_abandoning(deadline, work)
    done, fired = threading.Event(), threading.Event()

    def watch() -> None:
        if done.wait(deadline.remaining()):
            return
        fired.set()
        while not done.is_set():
            try:
                canceller.cancel()
            except Exception:  # noqa: BLE001 - a cancel that fails is retried; the caller still gets the error
                pass
            done.wait(_CANCEL_REPEAT_S)

    watcher = threading.Thread(target=watch, name="deltaflow-search-deadline", daemon=True)
    canceller.start()
    try:
        watcher.start()
        try:
            return work()
        except SearchTimeout:
            raise
        except Exception as exc:
            if fired.is_set() or deadline.expired():
                raise deadline.error("its Spark jobs were cancelled") from exc
            raise
    finally:
        done.set()
        watcher.join()
        canceller.finish()


def _run_abandoning(deadline: SearchDeadline, work: Callable[[], T]) -> T:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    helper = threading.Thread(target=target, name="deltaflow-search", daemon=True)
    helper.start()
    helper.join(deadline.remaining())
    if helper.is_alive():
        raise deadline.error("this Spark session cannot cancel jobs; they go on in the background")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


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
