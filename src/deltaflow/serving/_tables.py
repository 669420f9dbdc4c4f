"""Delta tables named by the caller (a path or a catalog name): reading a pinned version, the latest
version, and the commits written.

Tables on the local disk, and every table on Spark Connect (no JVM in this process), have their log
read with delta-rs; the rest through delta-spark's ``DeltaTable``. On Connect a catalog name is turned
into its location with a parameterised ``DESCRIBE TABLE EXTENDED IDENTIFIER(:name)`` — the caller's
text is never SQL text.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Optional

from deltaflow.errors import InvalidArgument, NotFound

__all__ = ["TableRef", "table_ref", "latest_version", "reader", "find_commit"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_FORMS = ("a path (/data/t, ./t, s3://…, dbfs:/…, file:/…) or a catalog name (t, schema.t, catalog.schema.t)")


@dataclass(frozen=True)
class TableRef:
    """A Delta table: ``kind`` is ``path`` or ``name``; ``text`` as the lineage records it."""

    kind: str
    text: str

    def __str__(self) -> str:
        return self.text


def table_ref(value: Any, what: str) -> TableRef:
    """Classify ``value`` (InvalidArgument naming ``what`` when it is neither a path nor a name)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise InvalidArgument(f"{what} must be a Delta table: {_FORMS}; got {value!r}")
    text = os.fspath(value).strip()
    if "/" in text or "\\" in text or ":" in text:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", text) and not re.match(r"^[A-Za-z]:[\\/]", text):
            return TableRef("path", text)  # a URI: kept as given
        return TableRef("path", os.path.abspath(os.path.expanduser(text)))
    if not _NAME.match(text):
        raise InvalidArgument(f"{what} {text!r} is neither a path nor a table name; use {_FORMS}")
    return TableRef("name", text)


def _is_connect(spark: Any) -> bool:
    from deltaflow._spark import is_connect

    return is_connect(spark)


def _location(spark: Any, ref: TableRef) -> str:
    """The storage location of a catalog table, through Spark Connect (parameterised SQL)."""
    try:
        rows = spark.sql("DESCRIBE TABLE EXTENDED IDENTIFIER(:name)", args={"name": ref.text}).collect()
    except Exception as exc:  # noqa: BLE001 - Spark's analysis errors: the table is not there
        raise NotFound(f"table {ref.text!r} was not found: {str(exc).splitlines()[0]}") from None
    found = {str(r[0]).strip(): str(r[1]).strip() for r in rows if r[0] is not None and r[1] is not None}
    if found.get("Provider", "").lower() != "delta" or "Location" not in found:
        raise InvalidArgument(f"table {ref.text!r} is not a Delta table (provider {found.get('Provider')!r})")
    location = found["Location"]
    return location[len("file:"):] if location.startswith("file:") else location


def _rust_table(spark: Any, ref: TableRef) -> Any:
    import deltalake

    location = _location(spark, ref) if ref.kind == "name" else ref.text
    if location.startswith("file:"):
        from urllib.parse import unquote, urlparse

        location = unquote(urlparse(location).path)
    try:
        return deltalake.DeltaTable(location)
    except Exception as exc:  # noqa: BLE001 - delta-rs raises TableNotFoundError and OSErrors
        raise NotFound(f"{ref.text!r} is not a Delta table (nothing readable at {location!r}: "
                       f"{str(exc).splitlines()[0]})") from None


def _spark_table(spark: Any, ref: TableRef) -> Any:
    from delta.tables import DeltaTable

    try:
        if ref.kind == "name":
            return DeltaTable.forName(spark, ref.text)
        return DeltaTable.forPath(spark, ref.text)
    except Exception as exc:  # noqa: BLE001 - AnalysisException and friends
        raise NotFound(f"{ref.text!r} is not a Delta table: {str(exc).splitlines()[0]}") from None


def exists(spark: Any, ref: TableRef) -> bool:
    try:
        latest_version(spark, ref)
        return True
    except NotFound:
        return False


def _by_rust(spark: Any, ref: TableRef) -> bool:
    """Whether delta-rs reads this table's log: always on Spark Connect; on a classic session for
    tables on the local disk (milliseconds, where a Spark job on the log takes most of a second)."""
    if _is_connect(spark):
        return True
    return ref.kind == "path" and (ref.text.startswith("/") or ref.text.startswith("file:"))


def latest_version(spark: Any, ref: TableRef) -> int:
    """The table's newest version (NotFound when it is not a Delta table)."""
    if _by_rust(spark, ref):
        return int(_rust_table(spark, ref).version())
    row = _spark_table(spark, ref).history(1).select("version").first()
    if row is None:
        raise NotFound(f"{ref.text!r} has no commits")
    return int(row[0])


def reader(spark: Any, ref: TableRef, version: Optional[int] = None) -> Any:
    """A DataFrame of the table at ``version`` (the latest when None)."""
    read = spark.read.format("delta")
    if version is not None:
        read = read.option("versionAsOf", int(version))
    return read.table(ref.text) if ref.kind == "name" else read.load(ref.text)


def _history(spark: Any, ref: TableRef, limit: int) -> list[dict[str, Any]]:
    if _by_rust(spark, ref):
        return [{"version": h.get("version"), "userMetadata": h.get("userMetadata"),
                 "operation": h.get("operation"), "operationMetrics": h.get("operationMetrics") or {}}
                for h in _rust_table(spark, ref).history(limit)]
    rows = _spark_table(spark, ref).history(limit).select("version", "userMetadata", "operation",
                                                          "operationMetrics").collect()
    return [r.asDict() for r in rows]


def find_commit(spark: Any, ref: TableRef, marker: str, key: str, limit: int = 20) -> Optional[dict[str, Any]]:
    """The newest commit whose userMetadata JSON holds ``marker`` under ``key`` (concurrent writers may
    have committed after it, so the last few commits are searched)."""
    for entry in sorted(_history(spark, ref, limit), key=lambda h: -(h.get("version") or 0)):
        text = entry.get("userMetadata")
        if not text:
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get(key), dict) and data[key].get("scoring_id") == marker:
            return entry
    return None
