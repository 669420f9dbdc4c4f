"""Dataset descriptions for ``log_input``: a Delta table (by name or path, with its version), a Spark
or pandas DataFrame, or an explicit :class:`~deltaflow.entities.Dataset`."""

from __future__ import annotations

import hashlib
import json
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


def _spark_schema_json(schema: Any) -> str:
    return json.dumps({"spark_schema": json.loads(schema.json())})


def from_delta(path: Optional[str] = None, table_name: Optional[str] = None, version: Optional[int] = None,
               name: Optional[str] = None, spark: Any = None) -> DeltaDataset:
    """Describe a Delta table; the version defaults to the table's current one."""
    if (path is None) == (table_name is None):
        raise InvalidArgument("from_delta needs exactly one of path= or table_name=")
    from delta.tables import DeltaTable

    from deltaflow._spark import get_spark

    spark = spark or get_spark()
    table = DeltaTable.forPath(spark, path) if path else DeltaTable.forName(spark, table_name)
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
        looks_like_path = "/" in obj or ":" in obj
        return from_delta(path=obj) if looks_like_path else from_delta(table_name=obj)
    raise InvalidArgument(
        f"log_input takes a Dataset, a Delta table name or path, or a pandas/Spark DataFrame; got {type(obj).__name__}"
    )
