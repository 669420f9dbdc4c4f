"""The Spark engine: delta-spark reads and writes for path-based and metastore tables.

Used wherever a SparkSession lives. pyspark and delta are imported inside methods so that importing
the store costs nothing without Spark.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pyarrow as pa

from deltaflow.config import StoreLocation
from deltaflow.errors import NotFound, StorageError
from deltaflow.store.engine import (
    RUN_STATE_COLUMNS,
    Engine,
    RunQuery,
    Where,
    retry_conflicts,
)
from deltaflow.store.schema import TABLES, TableSpec

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["SparkEngine", "is_conflict"]

_DDL = {pa.string(): "STRING", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}
_CONFLICT_MARKERS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "FileAlreadyExistsException",
    "DELTA_CONCURRENT",
    "already exists",
)



def is_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in _CONFLICT_MARKERS)


# Several processes creating the same path table at once: a loser may see the directory before the
# winner's first commit (table not found / location not empty) or lose the commit itself.
_CREATION_RACE_MARKERS = ("DELTA_TABLE_NOT_FOUND", "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION",
                          "TABLE_OR_VIEW_ALREADY_EXISTS", "DELTA_TABLE_ALREADY_EXISTS")


def _is_creation_race(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return is_conflict(exc) or any(marker in text for marker in _CREATION_RACE_MARKERS)


def _drop_staged(path: Optional[str]) -> None:
    if path:
        try:
            os.remove(path)
        except OSError:  # already gone; a leftover temp file is harmless
            pass


def _ddl_schema(schema: pa.Schema) -> str:
    return ", ".join(f"`{f.name}` {_DDL[f.type]}" for f in schema)


class SparkEngine(Engine):
    name = "spark"

    def __init__(self, location: StoreLocation, spark: "Optional[SparkSession]" = None) -> None:
        self.location = location
        self._spark = spark
        self._ready: set[str] = set()
        self._lock = threading.Lock()
        self._stage_dir: Optional[str] = None
        self._committed_before_retry: dict[tuple[str, str], bool] = {}
        self._compactor: Optional[Any] = None

    @property
    def compactor(self) -> Optional[Any]:
        """The lease-guarded delta-rs compactor, for stores delta-rs also reaches (compaction.py);
        None where only Spark reaches the tables and Delta's own auto-compaction is on."""
        from deltaflow.store.rust_engine import supports

        if self._compactor is None and supports(self.location):
            from deltaflow.store.compaction import Compactor

            self._compactor = Compactor(self.location)
        return self._compactor

    # -- session and table references ------------------------------------------------------
    @property
    def spark(self) -> "SparkSession":
        if self._spark is None:
            from deltaflow._spark import get_spark, require_delta

            # A user's session without Delta fails here with one clear error, not deep in delta.tables.
            self._spark = require_delta(get_spark(), f"store {self.location.uri!r} on the spark engine")
        return self._spark

    def _is_path(self) -> bool:
        return self.location.kind == "path"

    def _df(self, table: str) -> "DataFrame":
        """The table for a read; an empty frame of its schema while it does not exist (a read never
        creates a table, so a store the reader cannot write is still read)."""
        if table not in self._ready:
            if not self._exists(table):
                return self.spark.createDataFrame([], _ddl_schema(TABLES[table].schema))
            self._ready.add(table)
        reader = self.spark.read.format("delta")
        if self._is_path():
            return reader.load(self.location.table_path(table))
        return self.spark.read.table(self.location.table_name(table))

    def _jvm_spark(self, what: str) -> "SparkSession":
        """The session for delta-spark's table API, which needs the JVM handle (Spark Connect has none)."""
        from deltaflow._spark import require_jvm

        return require_jvm(self.spark, f"{what} on store {self.location.uri!r} through Spark")

    def _delta_table(self, table: str) -> Any:
        from delta.tables import DeltaTable

        spark = self._jvm_spark(f"writing table {table}")
        if self._is_path():
            return DeltaTable.forPath(spark, self.location.table_path(table))
        return DeltaTable.forName(spark, self.location.table_name(table))

    def _exists(self, table: str) -> bool:
        from delta.tables import DeltaTable

        from deltaflow._spark import is_connect

        if not self._is_path():
            return self.spark.catalog.tableExists(self.location.table_name(table))
        if is_connect(self.spark):
            from deltaflow.store.rust_engine import supports

            if supports(self.location):  # delta-rs answers without a JVM
                from deltalake import DeltaTable as RustTable

                return RustTable.is_deltatable(self.location.table_path(table))
        return DeltaTable.isDeltaTable(self._jvm_spark(f"reading table {table}"), self.location.table_path(table))

    # -- tables -----------------------------------------------------------------------------
    def ensure_tables(self, specs: Sequence[TableSpec]) -> None:
        for table_spec in specs:
            if table_spec.name in self._ready:
                continue
            with self._lock:
                if table_spec.name in self._ready:
                    continue
                if not self._exists(table_spec.name):
                    retry_conflicts(lambda s=table_spec: self._create(s), is_conflict=_is_creation_race,
                                    attempts=15, what=f"creating table {table_spec.name}")
                self._ready.add(table_spec.name)

    def _create(self, table_spec: TableSpec) -> None:
        from delta.tables import DeltaTable

        if self._exists(table_spec.name):  # another process won the race
            return
        self._jvm_spark(f"creating table {table_spec.name}")
        if not self._is_path():
            schema = self.location.schema or ""
            if not self.spark.catalog.databaseExists(schema.replace("`", "")):
                raise NotFound(
                    f"metastore schema {schema!r} does not exist; create it first "
                    f"(CREATE SCHEMA {schema}) or point the tracking URI at an existing one"
                )
        builder = DeltaTable.createIfNotExists(self.spark)
        if self._is_path():
            builder = builder.location(self.location.table_path(table_spec.name))
        else:
            builder = builder.tableName(self.location.table_name(table_spec.name))
        for field in table_spec.schema:
            builder = builder.addColumn(field.name, _DDL[field.type], nullable=field.nullable)
        from deltaflow.store.compaction import table_properties

        for key, value in {**table_properties(self.location), **table_spec.properties}.items():
            builder = builder.property(key, value)
        builder.execute()

    def _to_spark(self, table: str, data: pa.Table) -> "tuple[DataFrame, Optional[str]]":
        """The rows as a Spark DataFrame, plus the staged file to remove after the write (if any)."""
        schema = TABLES[table].schema
        data = data.select(schema.names).cast(schema)
        if self.spark.sparkContext.master.startswith("local"):
            # Staging through a Parquet file is ~5x faster than createDataFrame(pandas) for big
            # batches and exact for nullable integers; only valid where driver and executors share
            # a filesystem, i.e. local mode.
            import pyarrow.parquet as pq

            if self._stage_dir is None:
                self._stage_dir = tempfile.mkdtemp(prefix="deltaflow-stage-")
            path = os.path.join(self._stage_dir, f"{uuid.uuid4().hex}.parquet")
            pq.write_table(data, path)
            return self.spark.read.schema(_ddl_schema(schema)).parquet(path), path
        return self.spark.createDataFrame(
            [tuple(r.values()) for r in data.to_pylist()], _ddl_schema(schema)
        ), None

    def append(self, table: str, data: pa.Table, *, app_id: str, version: int) -> None:
        self.ensure_tables([TABLES[table]])
        # Idempotence: Delta's txnAppId/txnVersion options cost a full log-state reconstruction per
        # write (~2.5 s measured here), so instead each commit carries a unique marker in its
        # commitInfo.userMetadata, and only after a failure do we look for it in recent history:
        # a commit that landed but reported an error is then not written twice.
        marker = f"deltaflow:{app_id}:{version}"

        def attempt() -> None:
            df, staged = self._to_spark(table, data)
            try:
                if self._is_path():
                    (df.write.format("delta").mode("append").option("userMetadata", marker)
                     .save(self.location.table_path(table)))
                else:
                    # DataFrameWriterV2 goes through the DeltaCatalog; saveAsTable's V1 path
                    # mis-reads managed Delta tables' schema in a non-Hive session catalog.
                    df.writeTo(self.location.table_name(table)).option("userMetadata", marker).append()
            except Exception:
                if self._committed(table, marker):
                    return
                raise
            finally:
                _drop_staged(staged)

        if self._committed_before_retry.pop((table, marker), False) and self._committed(table, marker):
            return
        try:
            retry_conflicts(attempt, is_conflict=is_conflict, attempts=20, what=f"appending to {table}")
        except Exception:
            # The caller will retry this batch; check history first next time.
            self._committed_before_retry[(table, marker)] = True
            raise
        if self.compactor is not None:
            self.compactor.after_append(table)

    def _committed(self, table: str, marker: str) -> bool:
        try:
            rows = self._delta_table(table).history(200).select("userMetadata").collect()
        except Exception:  # noqa: BLE001 - unknown means "not proven committed"
            return False
        return any(r[0] == marker for r in rows)

    def read(self, table: str, where: Where = Where(), columns: Optional[Sequence[str]] = None) -> pa.Table:
        df = self._filtered(self._df(table), where)
        if columns:
            df = df.select(*columns)
        return self._collect(df)

    def insert_if_absent(self, table: str, data: pa.Table, key_columns: Sequence[str]) -> bool:
        from pyspark.sql import functions as F

        self.ensure_tables([TABLES[table]])

        def attempt() -> bool:
            # The existence check and the insert are one MERGE, so Delta's conflict detection makes
            # them atomic: a concurrent insert of the same key makes our commit fail and retry.
            source, staged = self._to_spark(table, data)
            try:
                condition = None
                for key in key_columns:
                    term = F.col(f"t.{key}") == F.col(f"s.{key}")
                    condition = term if condition is None else condition & term
                (self._delta_table(table).alias("t").merge(source.alias("s"), condition)
                 .whenNotMatchedInsertAll().execute())
            finally:
                _drop_staged(staged)
            return True

        retry_conflicts(attempt, is_conflict=is_conflict, attempts=30, what=f"inserting into {table}")
        # Did our row land, or was the key taken? Compare the stored row's seq/event marker.
        return self.row_stored(table, data, key_columns)

    def delete_where(self, table: str, where: Where) -> int:
        if not where.terms:
            raise StorageError("refusing to delete every row of a table")
        if table not in self._ready and not self._exists(table):
            return 0  # tables are created by their first write: nothing to delete yet
        condition = self._condition(where)
        retry_conflicts(lambda: self._delta_table(table).delete(condition), is_conflict=is_conflict,
                        attempts=20, what=f"deleting from {table}")
        return -1

    # -- folded views -----------------------------------------------------------------------
    def runs_state_df(self, where: Where = Where()) -> "DataFrame":
        from pyspark.sql import functions as F

        pre = Where(tuple(t for t in where.terms if t[0] in ("run_id", "experiment_id")))
        post = Where(tuple(t for t in where.terms if t[0] not in ("run_id", "experiment_id")))
        events = self._filtered(self._df("runs"), pre)
        order = F.struct("event_time", "seq")

        def last(column: str) -> "Column":
            return F.max_by(F.col(column), F.when(F.col(column).isNotNull(), order)).alias(column)

        state = events.groupBy("run_id").agg(
            F.first("experiment_id").alias("experiment_id"),
            *[last(c) for c in ("run_name", "user_id", "status", "start_time", "end_time",
                                "artifact_uri", "lifecycle_stage")],
            F.max("heartbeat_time").alias("heartbeat_time"),
        )
        return self._filtered(state, post).select(*RUN_STATE_COLUMNS)

    def read_many(self, requests: dict[str, tuple[Where, Optional[Sequence[str]]]]) -> dict[str, pa.Table]:
        # Spark runs jobs from several driver threads at once; point reads are latency-bound
        # (snapshot resolution, planning), so overlapping them cuts a get_run several-fold.
        from concurrent.futures import ThreadPoolExecutor

        if len(requests) <= 1:
            return super().read_many(requests)
        with ThreadPoolExecutor(max_workers=len(requests), thread_name_prefix="deltaflow-read") as pool:
            futures = {t: pool.submit(self.read, t, w, c) for t, (w, c) in requests.items()}
            return {t: f.result() for t, f in futures.items()}

    def tags_df(self, table: str, id_column: str, ids: Optional[Sequence[str]] = None) -> "DataFrame":
        from pyspark.sql import functions as F

        events = self._df(table)
        if ids is not None:
            events = events.where(F.col(id_column).isin(list(ids)))
        folded = events.groupBy(id_column, "key").agg(
            F.max_by("value", F.struct("event_time", "seq")).alias("value"))
        return folded.where(F.col("value").isNotNull())

    def params_df(self, run_ids: Optional[Sequence[str]] = None) -> "DataFrame":
        from pyspark.sql import functions as F

        events = self._df("params")
        if run_ids is not None:
            events = events.where(F.col("run_id").isin(list(run_ids)))
        return events.groupBy("run_id", "key").agg(
            F.min_by("value", F.struct("event_time", "seq")).alias("value"))

    def latest_metrics_df(self, run_ids: Optional[Sequence[str]] = None, *, events: "Optional[DataFrame]" = None) -> "DataFrame":
        from pyspark.sql import functions as F

        if events is None:
            events = self._df("latest_metrics")
        if run_ids is not None:
            events = events.where(F.col("run_id").isin(list(run_ids)))
        best = F.max_by(F.struct("value", "step", "timestamp"), F.struct("step", "timestamp", "value"))
        return (events.groupBy("run_id", "key").agg(best.alias("m"))
                .select("run_id", "key", "m.value", "m.step", "m.timestamp"))

    def search_runs(self, query: RunQuery) -> list[str]:
        from deltaflow.store.spark_search import search_run_ids

        return search_run_ids(self, query)

    # -- maintenance ------------------------------------------------------------------------
    def optimize(self, table: str, zorder_by: Sequence[str]) -> dict[str, Any]:
        before = self.file_count(table)
        if self.compactor is not None:
            # delta-rs reaches this store too: compaction must take the lease (compaction.py).
            result = self.compactor.compact(table, zorder_by)
            return {"table": table, "files_before": before, "files_after": self.file_count(table),
                    "rows_repaired": result.rows_repaired}
        builder = self._delta_table(table).optimize()

        def run() -> None:
            builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()

        retry_conflicts(run, is_conflict=is_conflict, attempts=5, what=f"optimizing {table}")
        return {"table": table, "files_before": before, "files_after": self.file_count(table)}

    def vacuum(self, table: str, retention_hours: float, force: bool = False) -> None:
        if force:
            # Delta refuses retention below 7 days unless its safety check is switched off; the
            # caller asked for it explicitly (maintenance.optimize validated that).
            self.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        try:
            self._delta_table(table).vacuum(retention_hours)
        finally:
            if force:
                self.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")

    def file_count(self, table: str) -> int:
        detail = self._delta_table(table).detail().select("numFiles").collect()
        return int(detail[0][0]) if detail else 0

    def table_version(self, table: str) -> int:
        rows = self._delta_table(table).history(1).select("version").collect()
        return int(rows[0][0]) if rows else -1

    def close(self) -> None:
        if self._stage_dir:
            shutil.rmtree(self._stage_dir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _condition(where: Where) -> "Column":
        from pyspark.sql import functions as F

        condition = F.lit(True)
        for column, op, value in where.terms:
            c = F.col(column)
            if op == "=":
                term = c == F.lit(value)
            elif op == "in":
                term = c.isin(list(value))
            elif op == "<":
                term = c < F.lit(value)
            elif op == "<=":
                term = c <= F.lit(value)
            elif op == ">":
                term = c > F.lit(value)
            elif op == ">=":
                term = c >= F.lit(value)
            else:  # pragma: no cover - Where is built by our own code
                raise ValueError(f"unsupported Where op {op!r}")
            condition = condition & term
        return condition

    def _filtered(self, df: "DataFrame", where: Where) -> "DataFrame":
        return df.where(self._condition(where)) if where.terms else df

    @staticmethod
    def _collect(df: "DataFrame") -> pa.Table:
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(df.schema)
        batches = df._collect_as_arrow()
        if not batches:
            return schema.empty_table()
        return pa.Table.from_batches(batches).cast(schema)
