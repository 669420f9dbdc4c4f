"""Plain-SQL access to the tracking tables.

``register_views()`` registers, in the active SparkSession, one view per table (``deltaflow_<table>``;
the raw ``runs`` event table as ``deltaflow_run_events``) plus ``deltaflow_runs``: one row per run with its current attributes and ``metrics``/``params``/``tags``
maps (latest metric values), so a notebook or a Databricks SQL dashboard can read runs directly::

    SELECT run_id, status, metrics['rmse'] AS rmse, params['alpha'] AS alpha
    FROM deltaflow_runs WHERE experiment_id = '123' ORDER BY rmse

For a metastore store, ``persistent=True`` creates ``<schema>.runs_latest`` as a permanent view so SQL
warehouses see it too. Only our own identifiers are ever written into SQL text.
"""

from __future__ import annotations

from typing import Any, Optional


__all__ = ["runs_view", "register_views"]

# Raw tables whose view takes another name: ``<prefix>_runs`` is the one-row-per-run view.
_RAW_VIEW_NAMES = {"runs": "run_events"}


def _spark_engine(tracking_uri: Optional[str]) -> Any:
    """The store's Spark engine (a rust-engine store gets one over the same tables)."""
    from deltaflow.store.factory import get_store

    return get_store(tracking_uri).spark_engine()


def runs_view(tracking_uri: Optional[str] = None) -> Any:
    """A Spark DataFrame with one row per run: attributes plus metrics/params/tags maps."""
    from deltaflow.store.spark_search import runs_view_df

    return runs_view_df(_spark_engine(tracking_uri))


def register_views(tracking_uri: Optional[str] = None, prefix: str = "deltaflow", persistent: bool = False) -> list[str]:
    """Register temp views ``<prefix>_<table>`` for every table and ``<prefix>_runs`` (one row per run);
    returns their names, each once.

    The raw ``runs`` table holds one row per run event, so its view is ``<prefix>_run_events``, leaving
    ``<prefix>_runs`` to the one-row-per-run view.
    """
    import re

    from deltaflow.errors import InvalidArgument
    from deltaflow.store.schema import LEASE_TABLE, TABLES
    from deltaflow.store.spark_search import runs_view_df

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", prefix):
        raise InvalidArgument(f"view prefix {prefix!r} must be a plain identifier (letters, digits, _)")
    engine = _spark_engine(tracking_uri)
    names = []
    for table in (t for t in TABLES if t != LEASE_TABLE):
        name = f"{prefix}_{_RAW_VIEW_NAMES.get(table, table)}"
        engine._df(table).createOrReplaceTempView(name)
        names.append(name)
    runs_view_df(engine).createOrReplaceTempView(f"{prefix}_runs")
    names.append(f"{prefix}_runs")
    if persistent:
        if engine.location.kind != "metastore":
            raise InvalidArgument("persistent views need a metastore store (metastore:<schema>)")
        schema = engine.location.schema
        q = lambda t: f"{schema}.`{t}`"  # noqa: E731 - schema validated in config, tables are ours
        engine.spark.sql(
            f"""CREATE OR REPLACE VIEW {q('runs_latest')} AS
            WITH r AS (
              SELECT run_id, first(experiment_id) AS experiment_id,
                max_by(run_name, CASE WHEN run_name IS NOT NULL THEN struct(event_time, seq) END) AS run_name,
                max_by(user_id, CASE WHEN user_id IS NOT NULL THEN struct(event_time, seq) END) AS user_id,
                max_by(status, CASE WHEN status IS NOT NULL THEN struct(event_time, seq) END) AS status,
                max_by(start_time, CASE WHEN start_time IS NOT NULL THEN struct(event_time, seq) END) AS start_time,
                max_by(end_time, CASE WHEN end_time IS NOT NULL THEN struct(event_time, seq) END) AS end_time,
                max_by(artifact_uri, CASE WHEN artifact_uri IS NOT NULL THEN struct(event_time, seq) END) AS artifact_uri,
                max_by(lifecycle_stage, CASE WHEN lifecycle_stage IS NOT NULL THEN struct(event_time, seq) END)
                  AS lifecycle_stage,
                max(heartbeat_time) AS heartbeat_time
              FROM {q('runs')} GROUP BY run_id),
            m AS (SELECT run_id, map_from_entries(collect_list(struct(key, value))) AS metrics FROM (
                SELECT run_id, key, max_by(value, struct(step, timestamp, value)) AS value
                FROM {q('latest_metrics')} GROUP BY run_id, key) GROUP BY run_id),
            p AS (SELECT run_id, map_from_entries(collect_list(struct(key, value))) AS params FROM (
                SELECT run_id, key, min_by(value, struct(event_time, seq)) AS value
                FROM {q('params')} GROUP BY run_id, key) GROUP BY run_id),
            t AS (SELECT run_id, map_from_entries(collect_list(struct(key, value))) AS tags FROM (
                SELECT run_id, key, max_by(value, struct(event_time, seq)) AS value
                FROM {q('tags')} GROUP BY run_id, key) WHERE value IS NOT NULL GROUP BY run_id)
            SELECT r.*, m.metrics, p.params, t.tags FROM r
            LEFT JOIN m USING (run_id) LEFT JOIN p USING (run_id) LEFT JOIN t USING (run_id)"""
        )
        names.append(f"{schema}.runs_latest")
    return names
