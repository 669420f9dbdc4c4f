"""Dataset descriptions for ``log_input``: a Delta table (by name or path, with its version), a Spark
or pandas DataFrame, or an explicit :class:`~deltaflow.entities.Dataset`."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Optional

from deltaflow.entities import Dataset
from deltaflow.errors import InvalidArgument

__all__ = ["DeltaDataset", "from_delta", "from_pandas", "from_spark", "to_dataset"]


@dataclass(frozen=True)
class DeltaDataset(Dataset):
    """A Dataset that also records the Delta table version read (lineage)."""

    version: Optional[int] = None


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# A metastore table name: one to three parts, each an identifier or a `backquoted` name.
_TABLE_NAME_RE = re.compile(r"(?:`[^`]+`|[A-Za-z0-9_]+)(?:\.(?:`[^`]+`|[A-Za-z0-9_]+)){0,2}")
_URI_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _check_delta_source(path: Optional[str], table_name: Optional[str]) -> None:
    """Refuse what cannot be a Delta table before Spark starts: a malformed table name, or a local
    path with no Delta log. Remote URIs (s3://, dbfs:/, abfss://...) are left to Spark."""
    if table_name is not None:
        if not isinstance(table_name, str) or not _TABLE_NAME_RE.fullmatch(table_name):
            raise InvalidArgument(
                f"{table_name!r} is not a Delta table name: use [catalog.][schema.]table, each part "
                "letters, digits and '_' (or `backquoted`), or pass a path containing '/'"
            )
        return
    if not isinstance(path, str) or not path.strip():
        raise InvalidArgument(f"Delta table path {path!r} must be a non-empty string")
    local = path[len("file:"):] if path.startswith("file:") else path
    if path.startswith("file:") or not _URI_SCHEME_RE.match(path):
        local = "/" + local.lstrip("/") if path.startswith("file:") else local
        if not os.path.isdir(os.path.join(local, "_delta_log")):
            raise InvalidArgument(f"{path!r} is not a Delta table: it has no _delta_log folder")


def _spark_schema_json(schema: Any) -> str:
    return json.dumps({"spark_schema": json.loads(schema.json())})


def from_delta(path: Optional[str] = None, table_name: Optional[str] = None, version: Optional[int] = None,
               name: Optional[str] = None, spark: Any = None) -> DeltaDataset:
    """Describe a Delta table; the version defaults to the table's current one."""
    if (path is None) == (table_name is None):
        raise InvalidArgument("from_delta needs exactly one of path= or table_name=")
    _check_delta_source(path, table_name)
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        raise InvalidArgument(f"version {version!r} must be a non-negative integer (a Delta table version)")
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidArgument(f"dataset name {name!r} must be a non-empty string")
    from delta.tables import DeltaTable

    from deltaflow._spark import get_spark, require_delta, require_jvm

    # A user's session without Delta (or a Spark Connect one) gets one clear error naming the fixes,
    # not delta.tables' own.
    feature = "describing a Delta table as a dataset"
    spark = require_jvm(require_delta(spark or get_spark(), feature), feature)
    try:
        table = DeltaTable.forPath(spark, path) if path else DeltaTable.forName(spark, table_name)
    except Exception as exc:  # noqa: BLE001 - Spark's AnalysisException/ParseException, as ours
        if not type(exc).__module__.startswith(("pyspark", "py4j")):
            raise
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        raise InvalidArgument(f"{path or table_name!r} is not a readable Delta table: {first_line}") from None
    if version is None:
        version = int(table.history(1).select("version").collect()[0][0])
    reader = spark.read.format("delta").option("versionAsOf", version)
    df = reader.load(path) if path else reader.table(table_name)
    source = path or table_name
    schema = _spark_schema_json(df.schema)
    return DeltaDataset(name=name or source.rstrip("/").split("/")[-1], digest=_digest(source, version, schema),
                        source_type="delta_table" if table_name else "delta_path", source=json.dumps(
                            {"path": path} if path else {"delta_table_name": table_name,
                                                         "delta_table_version": version}),
                        schema=schema, profile=None, version=version)


def from_pandas(df: Any, source: str = "in-memory", name: Optional[str] = None) -> Dataset:
    import pandas as pd

    schema = json.dumps({"columns": [{"name": str(c), "type": str(t)} for c, t in df.dtypes.items()]})
    digest = hashlib.sha256(pd.util.hash_pandas_object(df.head(10_000), index=False).values.tobytes()).hexdigest()[:16]
    return Dataset(name=name or "dataset", digest=digest, source_type="code", source=json.dumps({"source": source}),
                   schema=schema, profile=json.dumps({"num_rows": len(df), "num_elements": int(df.size)}))


def from_spark(df: Any, name: Optional[str] = None) -> Dataset:
    schema = _spark_schema_json(df.schema)
    plan = df._jdf.queryExecution().analyzed().toString()[:2000]
    return Dataset(name=name or "dataset", digest=_digest(schema, plan), source_type="spark_dataframe",
                   source=json.dumps({"plan": plan[:500]}), schema=schema, profile=None)


def to_dataset(obj: Any) -> Dataset:
    """Anything log_input accepts, as a Dataset."""
    if isinstance(obj, Dataset):
        return obj
    module = type(obj).__module__
    if module.startswith("pandas"):
        return from_pandas(obj)
    if module.startswith("pyspark"):
        return from_spark(obj)
    if isinstance(obj, str):
        looks_like_path = "/" in obj or (":" in obj and not obj.startswith("`"))
        return from_delta(path=obj) if looks_like_path else from_delta(table_name=obj)
    raise InvalidArgument(
        f"log_input takes a Dataset, a Delta table name or path, or a pandas/Spark DataFrame; got {type(obj).__name__}"
    )
