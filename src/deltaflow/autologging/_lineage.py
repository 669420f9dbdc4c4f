"""Which data a Spark DataFrame reads: the Delta tables under its plan and the exact versions.

The version is the one Delta will read when the DataFrame is executed now, captured when ``fit``
starts, so a later append to the table does not change what the run records:

* a table read straight from storage: ``getSnapshot`` of the plan's Delta file index (the latest
  version, or the pinned one for a time-travel read);
* a DataFrame served from Spark's cache (``df.cache()``): the version the cache was planned on.
  An append made by another process leaves that cache as it was, so the latest version would be
  wrong: the cached physical plan's scan knows the version it holds.
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


def _is_delta(location: Any) -> bool:
    return location.getClass().getName().startswith("org.apache.spark.sql.delta.")


def _source(location: Any, table_name: Optional[str], pinned: bool) -> dict[str, Any]:
    """``pinned``: the index belongs to a planned (cached) scan, whose ``version`` is the snapshot
    it reads; otherwise ``getSnapshot`` gives the version a run of the plan reads now."""
    version = location.version() if pinned else location.getSnapshot().version()
    return {"path": location.path().toString(), "table_name": table_name, "version": int(version)}


def _cached_sources(relation: Any, out: list[dict[str, Any]]) -> None:
    """The Delta scans of a cached relation's physical plan (and of caches it reads in turn)."""
    plan = relation.cacheBuilder().cachedPlan()
    if plan.getClass().getSimpleName() == "AdaptiveSparkPlanExec":  # AQE: a leaf wrapping the plan
        plan = plan.executedPlan()
    for leaf in _iterate(plan.collectLeaves()):
        name = leaf.getClass().getSimpleName()
        if name == "InMemoryTableScanExec":
            _cached_sources(leaf.relation(), out)
        elif name == "FileSourceScanExec":
            location = leaf.relation().location()
            if _is_delta(location):
                table = leaf.tableIdentifier()  # Option[TableIdentifier]
                out.append(_source(location, table.get().unquotedString() if table.isDefined() else None,
                                   pinned=True))


def delta_sources(df: Any) -> list[dict[str, Any]]:
    """``[{"path", "table_name", "version"}]`` for each Delta table (version) the DataFrame reads."""
    # withCachedData: the analyzed plan with cached parts replaced by the cache (no Spark job).
    plan = df._jdf.queryExecution().withCachedData()
    found: list[dict[str, Any]] = []
    for leaf in _iterate(plan.collectLeaves()):
        name = leaf.getClass().getSimpleName()
        if name == "InMemoryRelation":
            _cached_sources(leaf, found)
            continue
        if name != "LogicalRelation":
            continue
        try:  # a HadoopFsRelation (Delta's is an anonymous subclass) has a file index
            location = leaf.relation().location()
        except Exception:  # noqa: BLE001 - py4j: another relation type, not files
            continue
        if _is_delta(location):
            table = leaf.catalogTable()  # Option[CatalogTable]
            found.append(_source(location, table.get().identifier().unquotedString() if table.isDefined() else None,
                                 pinned=False))
    unique: dict[tuple[str, Optional[str], int], dict[str, Any]] = {}
    for src in found:  # a self-join reads a table once; two versions of it are two inputs
        unique.setdefault((src["path"], src["table_name"], src["version"]), src)
    return list(unique.values())


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
