"""The Delta tables of a deltaflow store, declared once with Arrow types.

Every table is append-only event data: writers never update a row in place, so concurrent writers
only ever make blind appends, which Delta never reports as conflicts. Readers fold events into current
state (latest-wins by ``(event_time, seq)``; params first-wins because they are immutable). The
README documents each table; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

__all__ = ["TableSpec", "TABLES", "TRACKING_TABLES", "TABLE_PROPERTIES", "SCHEMA_VERSION", "SCHEMA_VERSION_PROPERTY",
           "AUTO_COMPACT_PROPERTY", "LEASE_TABLE", "DEAD_LETTER_TABLE", "spec"]

SCHEMA_VERSION = 1
SCHEMA_VERSION_PROPERTY = "deltaflow.schemaVersion"

S, L, D = pa.string(), pa.int64(), pa.float64()

# Properties every deltaflow table is created with, by either engine. Only features both delta-spark
# and delta-rs read and write (protocol reader 1 / writer 2, no table features). Spark's
# auto-compaction is set per store by compaction.table_properties: off wherever delta-rs can write
# (compaction there is lease-guarded, see compaction.py), on where only Spark reaches the tables.
#
# A checkpoint every 10 commits (Spark's default; delta-rs's is 100) bounds the log a process replays
# when it opens a table: the CLI, a project launcher and every entry point open the store afresh, and
# opening a table of 85 JSON commits costs ~25 ms against ~4 ms from a checkpoint (delta-rs 1.x, local).
TABLE_PROPERTIES = {
    SCHEMA_VERSION_PROPERTY: str(SCHEMA_VERSION),
    "delta.checkpointInterval": "10",
}
AUTO_COMPACT_PROPERTY = "delta.autoOptimize.autoCompact"
LEASE_TABLE = "maintenance_leases"
DEAD_LETTER_TABLE = "dead_letters"


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    # Columns searches filter by; `deltaflow optimize` Z-orders on them.
    zorder_by: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=dict)


def _schema(*cols: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(n, t, nullable=nullable) for n, t, nullable in cols])


_EVENT = (("event_time", L, False), ("seq", L, False))

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "experiments",
            _schema(
                ("experiment_id", S, False),
                ("name", S, True),  # set on create and rename events
                ("artifact_location", S, True),
                ("lifecycle_stage", S, True),
                ("creation_time", L, True),
                *_EVENT,
            ),
        ),
        TableSpec(
            "experiment_tags",
            _schema(("experiment_id", S, False), ("key", S, False), ("value", S, True), *_EVENT),
        ),
        TableSpec(
            "runs",
            _schema(
                ("run_id", S, False),
                ("experiment_id", S, False),
                ("run_name", S, True),
                ("user_id", S, True),
                ("status", S, True),
                ("start_time", L, True),
                ("end_time", L, True),
                ("artifact_uri", S, True),
                ("lifecycle_stage", S, True),
                ("heartbeat_time", L, True),
                ("writer_id", S, True),
                *_EVENT,
            ),
            zorder_by=("experiment_id", "run_id"),
        ),
        TableSpec(
            "params",
            _schema(("run_id", S, False), ("experiment_id", S, False), ("key", S, False),
                    ("value", S, False), *_EVENT),
            zorder_by=("experiment_id", "key"),
        ),
        TableSpec(
            "tags",
            # value NULL marks a deleted tag
            _schema(("run_id", S, False), ("experiment_id", S, False), ("key", S, False),
                    ("value", S, True), *_EVENT),
            zorder_by=("experiment_id", "key"),
        ),
        TableSpec(
            "metrics",
            _schema(("run_id", S, False), ("experiment_id", S, False), ("key", S, False),
                    ("value", D, False), ("step", L, False), ("timestamp", L, False)),
            zorder_by=("run_id", "key"),
        ),
        TableSpec(
            # One candidate per (run, key) per flush; readers keep the max by (step, timestamp,
            # value), MLflow's definition of a run's latest metric. Keeps search off the history.
            "latest_metrics",
            _schema(("run_id", S, False), ("experiment_id", S, False), ("key", S, False),
                    ("value", D, False), ("step", L, False), ("timestamp", L, False)),
            zorder_by=("experiment_id", "key"),
        ),
        TableSpec(
            "inputs",
            _schema(
                ("run_id", S, False),
                ("experiment_id", S, False),
                ("name", S, False),
                ("digest", S, False),
                ("source_type", S, False),
                ("source", S, False),
                ("dataset_version", L, True),  # the Delta table version read, when known
                ("schema", S, True),
                ("profile", S, True),
                ("context", S, True),
                ("tags_json", S, True),
                *_EVENT,
            ),
            zorder_by=("experiment_id",),
        ),
        TableSpec(
            # The model registry's log: one row per change, revisions dense from 1. A writer claims
            # revision n+1 with a conflict-checked MERGE, so changes are serialised across processes;
            # the current registry is the fold of the log, and the log is the audit trail.
            "registry_events",
            _schema(
                ("revision", L, False),
                ("event_id", S, False),
                ("event_time", L, False),
                ("user_id", S, False),
                ("action", S, False),
                ("name", S, True),
                ("version", L, True),
                ("from_stage", S, True),
                ("to_stage", S, True),
                ("comment", S, True),
                ("details", S, True),  # JSON: everything else the fold needs
            ),
        ),
        TableSpec(
            # One row per webhook delivery attempt (blind appends; never in the registry's critical path).
            "webhook_deliveries",
            _schema(
                ("delivery_id", S, False),
                ("webhook_id", S, False),
                ("event", S, False),
                ("revision", L, False),
                ("attempt", L, False),
                ("status", S, False),
                ("http_status", L, True),
                ("error", S, True),
                ("event_time", L, False),
            ),
        ),
        TableSpec(
            # One row per table: who may compact it until when (compaction.py). Claimed by a
            # conflict-checked MERGE that only updates an expired row; never compacted itself.
            LEASE_TABLE,
            _schema(
                ("table_name", S, False),
                ("holder", S, False),
                ("token", S, False),
                ("acquired_at", L, False),
                ("expires_at", L, False),
            ),
        ),
        TableSpec(
            # Buffered rows a flush could not write (a value its table's types cannot hold), kept
            # with the error instead of failing every other row of the flush. Created when needed.
            DEAD_LETTER_TABLE,
            _schema(
                ("table_name", S, False),
                ("row_json", S, False),
                ("error", S, False),
                ("writer_id", S, False),
                ("event_time", L, False),
            ),
        ),
    )
}

TRACKING_TABLES = tuple(t for t in TABLES if t not in ("registry_events", "webhook_deliveries", LEASE_TABLE,
                                                       DEAD_LETTER_TABLE))


def spec(name: str) -> TableSpec:
    return TABLES[name]
