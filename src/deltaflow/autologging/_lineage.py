"""Which data a Spark DataFrame reads: the Delta tables under its plan and the exact versions.

The version is the one Delta will read when the DataFrame is executed now (``getSnapshot`` of the
plan's Delta file index: the latest version, or the pinned one for a time-travel read), captured
when ``fit`` starts, so a later append to the table does not change what the run records.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from deltaflow.entities import Dataset
from deltaflow.tracking.datasets import DeltaDataset, _digest, _spark_schema_json

__all__ = ["delta_sources", "datasets_for"]


def _iterate(seq: Any) -> list[Any]:
    it, out = seq.iterator(), []
    while it.hasNext():
        out.append(it.next())
    return out


def delta_sources(df: Any) -> list[dict[str, Any]]:
    """``[{"path", "table_name", "version"}]`` for each Delta table the DataFrame's plan reads."""
    plan = df._jdf.queryExecution().analyzed()
    found: dict[tuple[str, Optional[str]], dict[str, Any]] = {}
    for leaf in _iterate(plan.collectLeaves()):
        if leaf.getClass().getSimpleName() != "LogicalRelation":
            continue
        try:  # a HadoopFsRelation (Delta's is an anonymous subclass) has a file index
            location = leaf.relation().location()
        except Exception:  # noqa: BLE001 - py4j: another relation type, not files
            continue
        if not location.getClass().getName().startswith("org.apache.spark.sql.delta."):
            continue
        catalog = leaf.catalogTable()
        table_name = catalog.get().identifier().unquotedString() if catalog.isDefined() else None
        path = location.path().toString()
        version = int(location.getSnapshot().version())
        found[(path, table_name)] = {"path": path, "table_name": table_name, "version": version}
    return list(found.values())


def datasets_for(df: Any, sources: list[dict[str, Any]], name: Optional[str] = None) -> list[Dataset]:
    """Dataset records for a training DataFrame: one per Delta table read (with its version), or, for
    other data, one describing the DataFrame (schema, row count, digest). Runs a count job for the
    latter, so call it off the user's path."""
    schema = _spark_schema_json(df.schema)
    if sources:
        out: list[Dataset] = []
        for src in sources:
            source = src["table_name"] or src["path"]
            short = source.rstrip("/").split("/")[-1]
            payload = ({"delta_table_name": src["table_name"], "delta_table_version": src["version"]}
                       if src["table_name"] else {"path": src["path"], "delta_table_version": src["version"]})
            out.append(DeltaDataset(
                name=name if (name and len(sources) == 1) else short, digest=_digest(source, src["version"], schema),
                source_type="delta_table" if src["table_name"] else "delta_path", source=json.dumps(payload),
                schema=schema, profile=None, version=src["version"]))
        return out
    rows = df.count()
    plan = df._jdf.queryExecution().analyzed().toString()[:2000]
    # The digest identifies the data, so it uses the plan's semantic hash (as MLflow does): the
    # plan's text carries session-specific expression ids (#12), so two reads of the same files
    # would get different digests.
    return [Dataset(name=name or "dataset", digest=_digest(schema, df.semanticHash(), rows),
                    source_type="spark_dataframe",
                    source=json.dumps({"plan": plan[:500]}), schema=schema,
                    profile=json.dumps({"num_rows": rows}))]
