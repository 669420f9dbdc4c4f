"""Compaction that never duplicates a row: one compactor per table at a time, and an audit of every
compaction commit that undoes a double remove.

Why this exists: delta-rs (1.6.6) commits a compaction even when a concurrent commit already
removed the same files — its conflict checker lets two ``dataChange=false`` removes of one file
through, and ``optimize`` drops app-transaction fences from its commit. Two processes compacting
the same files at once therefore both commit, and every row of those files is then live twice
(measured: 4,000 rows for 2,000 with plain ``deltalake``). delta-spark's OPTIMIZE does check
delete/delete conflicts, so a Spark compaction that commits *after* another is refused; only a
delta-rs compaction that commits second duplicates.

The design, for every store delta-rs can reach (local folders, object stores):

1. **Only deltaflow compacts, with delta-rs, under a lease.** Tables are created with Spark's
   ``autoCompact`` off (existing tables are switched off the first time a compactor holds the
   lease), so neither engine compacts behind the store's back. A compactor first claims the
   table's lease: one row per table in ``maintenance_leases``, claimed by a conflict-checked MERGE
   that only updates an expired row (two claimants: Delta lets exactly one commit). The lease
   expires after ``compact_lease_s`` so a killed holder never blocks compaction for long.
2. **Every compaction commit is audited.** Its commit carries a marker; afterwards the commits
   between the version it read and its own are scanned for removes of the same files. A file
   removed twice means its rows are now live twice (a holder that stalled past its lease, or a
   compaction outside deltaflow), and the audit repairs it at once: the rows of the affected ids
   are rewritten with exactly one copy of each doubled row removed, in one conflict-checked
   commit, itself audited the same way.

Stores only Spark reaches (metastore tables, dbfs:/, hdfs://) have no delta-rs writer, so Spark's
own auto-compaction stays on there: Spark-against-Spark compaction is conflict-checked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence
from urllib.parse import unquote

import pyarrow as pa

from deltaflow.config import StoreLocation, settings
from deltaflow.errors import ConcurrentModification, StorageError
from deltaflow.store.schema import AUTO_COMPACT_PROPERTY, LEASE_TABLE, TABLE_PROPERTIES, TABLES

if TYPE_CHECKING:  # pragma: no cover
    from deltalake import DeltaTable

__all__ = ["Compactor", "CompactionResult", "audit_commit", "ID_COLUMNS"]

_log = logging.getLogger(__name__)

# The id column that scopes a repair: every table's rows are rewritten per id, and ids are values
# deltaflow generates (hex run ids, numeric experiment ids, revisions), never user text.
ID_COLUMNS = {
    "experiments": "experiment_id",
    "experiment_tags": "experiment_id",
    "registry_events": "revision",
    "webhook_deliveries": "delivery_id",
}
_MARKER_PREFIX = "deltaflow-compact"


@dataclass
class CompactionResult:
    table: str
    compacted: bool  # False: lease held elsewhere, or nothing to compact
    files_removed: int = 0
    files_added: int = 0
    rows_repaired: int = 0
    version: Optional[int] = None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_conflict(exc: BaseException) -> bool:
    from deltaflow.store.rust_engine import is_conflict

    return is_conflict(exc)


class Compactor:
    """Lease-guarded compaction of one store's tables through delta-rs, usable by either engine."""

    def __init__(self, location: StoreLocation, storage_options: Optional[dict[str, str]] = None) -> None:
        self.location = location
        self.storage_options = storage_options
        self.holder = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._appends: dict[str, int] = {}
        self._lock = threading.Lock()  # one compaction at a time within this process
        self._lease_dt: Optional["DeltaTable"] = None
        self._migrated: set[str] = set()
        self._handles: dict[str, "DeltaTable"] = {}

    # -- the write path's hook ----------------------------------------------------------------
    def after_append(self, table: str, dt: Optional["DeltaTable"] = None) -> Optional[CompactionResult]:
        """Called after each append: every few appends, compact once ``compact_min_files`` files are
        live. Never raises: a skipped compaction is only a missed optimisation."""
        if table == LEASE_TABLE:
            return None
        min_files = max(2, settings.compact_min_files)
        count = self._appends.get(table, 0) + 1
        self._appends[table] = count
        if count % max(1, min_files // 5):
            return None
        try:
            handle = dt if dt is not None else self._open(table)
            if len(handle.file_uris()) < min_files:
                return None
            return self.compact(table, handle=handle, wait_s=0.0)
        except Exception as exc:  # noqa: BLE001 - compaction must never fail a write
            _log.info("deltaflow: skipped compacting %s: %s", table, exc)
            return None

    # -- compaction ---------------------------------------------------------------------------
    def compact(self, table: str, zorder_by: Sequence[str] = (), *, handle: Optional["DeltaTable"] = None,
                wait_s: float = 60.0) -> CompactionResult:
        """Compact (or Z-order) ``table`` under its lease. ``wait_s``: how long to wait for a lease
        another process holds; 0 gives up at once (the write path's automatic compaction)."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            while True:
                token = self._acquire(table)
                if token is not None:
                    break
                if time.monotonic() >= deadline:
                    if wait_s > 0:
                        raise ConcurrentModification(
                            f"could not compact {table}: another process holds its compaction lease "
                            f"(it expires within {settings.compact_lease_s:.0f}s of being taken); try again later")
                    return CompactionResult(table, compacted=False)
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
            try:
                dt = handle if handle is not None else self._open(table)
                # Compact what is live now, not what was live before the previous holder's commit.
                dt.update_incremental()
                self._switch_off_spark_autocompact(table, dt)
                return self.compact_holding_lease(table, dt, zorder_by, token)
            finally:
                self._release(table, token)

    def compact_holding_lease(self, table: str, dt: "DeltaTable", zorder_by: Sequence[str],
                              token: str) -> CompactionResult:
        """The compaction itself, on the snapshot ``dt`` holds, then the audit of its commit."""
        from deltalake import CommitProperties

        read_version = dt.version()
        marker = f"{_MARKER_PREFIX}:{token}:{uuid.uuid4().hex[:8]}"
        props = CommitProperties(custom_metadata={"userMetadata": marker})
        metrics = (dt.optimize.z_order(list(zorder_by), commit_properties=props) if zorder_by
                   else dt.optimize.compact(commit_properties=props))
        result = CompactionResult(table, compacted=True, files_removed=int(metrics.get("numFilesRemoved", 0)),
                                  files_added=int(metrics.get("numFilesAdded", 0)))
        if result.files_removed == 0:
            return result  # nothing was committed
        audit = audit_commit(self.location, table, read_version, marker, self.storage_options)
        result.version, result.rows_repaired = audit
        return result

    # -- the lease ----------------------------------------------------------------------------
    def _lease_table(self) -> "DeltaTable":
        if self._lease_dt is None:
            from deltaflow.store.engine import retry_conflicts
            from deltaflow.store.rust_engine import _is_creation_race, open_or_create_table

            self._lease_dt = retry_conflicts(
                lambda: open_or_create_table(self.location, TABLES[LEASE_TABLE], self.storage_options),
                is_conflict=_is_creation_race, attempts=15, what=f"creating table {LEASE_TABLE}")
        return self._lease_dt

    def _acquire(self, table: str) -> Optional[str]:
        """Claim the table's lease; the token when we hold it, None when someone else does."""
        token = uuid.uuid4().hex
        now = _now_ms()
        source = pa.table({"table_name": [table], "holder": [self.holder], "token": [token],
                           "acquired_at": [now], "expires_at": [now + int(settings.compact_lease_s * 1000)]},
                          schema=TABLES[LEASE_TABLE].schema)
        dt = self._lease_table()
        try:
            dt.update_incremental()
            # Values travel in the source table; the only literal in the text is our own clock.
            metrics = (dt.merge(source, "t.table_name = s.table_name", source_alias="s", target_alias="t")
                       .when_matched_update_all(predicate=f"t.expires_at < {now}")
                       .when_not_matched_insert_all().execute())
        except Exception as exc:  # noqa: BLE001
            if _is_conflict(exc):
                return None  # another claimant committed first: the lease is theirs
            raise
        won = int(metrics.get("num_target_rows_updated", 0)) + int(metrics.get("num_target_rows_inserted", 0))
        return token if won == 1 else None

    def _release(self, table: str, token: str) -> None:
        source = pa.table({"table_name": [table], "holder": [self.holder], "token": [token],
                           "acquired_at": [0], "expires_at": [0]}, schema=TABLES[LEASE_TABLE].schema)
        for _ in range(5):
            try:
                dt = self._lease_table()
                dt.update_incremental()
                # token is a uuid hex we generated, never user text.
                (dt.merge(source, "t.table_name = s.table_name", source_alias="s", target_alias="t")
                 .when_matched_update(updates={"expires_at": "s.expires_at"}, predicate=f"t.token = '{token}'")
                 .execute())
                return
            except Exception as exc:  # noqa: BLE001 - an unreleased lease just expires
                if not _is_conflict(exc):
                    _log.info("deltaflow: could not release the compaction lease of %s: %s", table, exc)
                    return

    def _switch_off_spark_autocompact(self, table: str, dt: "DeltaTable") -> None:
        """Tables created before compaction moved under the lease have Spark's autoCompact on:
        switch it off once (a metadata commit; concurrent appends retry past it)."""
        if table in self._migrated:
            return
        if dt.metadata().configuration.get(AUTO_COMPACT_PROPERTY, "false").lower() == "true":
            dt.alter.set_table_properties({AUTO_COMPACT_PROPERTY: "false"}, raise_if_not_exists=False)
            dt.update_incremental()
        self._migrated.add(table)

    def _open(self, table: str) -> "DeltaTable":
        """A handle of our own (the engines' handles are guarded by their locks), kept up to date."""
        from deltalake import DeltaTable

        dt = self._handles.get(table)
        if dt is None:
            dt = self._handles[table] = DeltaTable(self.location.table_path(table),
                                                   storage_options=self.storage_options)
        else:
            dt.update_incremental()
        return dt


# -- the audit and the repair ---------------------------------------------------------------------
def _read_commit(table_uri: str, version: int, storage_options: Optional[dict[str, str]]) -> list[dict[str, Any]]:
    """The actions of one commit, read from the Delta log (delta-rs exposes no per-commit actions)."""
    name = f"_delta_log/{version:020d}.json"
    if "://" not in table_uri or table_uri.startswith("file://"):
        path = table_uri[len("file://"):] if table_uri.startswith("file://") else table_uri
        with open(os.path.join(path, name), "rb") as fh:
            text = fh.read().decode("utf-8")
    else:
        from pyarrow import fs as pafs

        filesystem, root = pafs.FileSystem.from_uri(table_uri)
        with filesystem.open_input_stream(f"{root.rstrip('/')}/{name}") as fh:
            text = fh.read().decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_data_file(table_uri: str, path: str, columns: Sequence[str]) -> pa.Table:
    """One data file a commit names (a path relative to the table, or absolute), read directly:
    it is still on storage after a remove until VACUUM."""
    import pyarrow.parquet as pq

    full = path if "://" in path else f"{table_uri.rstrip('/')}/{path}"
    return pq.read_table(full[len("file://"):] if full.startswith("file://") else full, columns=list(columns))


def _marker_of(actions: list[dict[str, Any]]) -> Optional[str]:
    for action in actions:
        info = action.get("commitInfo")
        if info is not None:
            return info.get("userMetadata")
    return None


def _removed(actions: list[dict[str, Any]]) -> set[str]:
    return {unquote(a["remove"]["path"]) for a in actions if "remove" in a}


def audit_commit(location: StoreLocation, table: str, read_version: int, marker: str,
                 storage_options: Optional[dict[str, str]] = None, *, depth: int = 0) -> tuple[int, int]:
    """Find our commit (the one carrying ``marker``) after ``read_version``; if a commit between the
    two removed a file ours removed too, repair the doubled rows. Returns (our version, rows repaired)."""
    from deltalake import DeltaTable

    uri = location.table_path(table)
    latest = DeltaTable(uri, storage_options=storage_options).version()
    removed_by_others: set[str] = set()
    for version in range(read_version + 1, latest + 1):
        actions = _read_commit(uri, version, storage_options)
        if _marker_of(actions) != marker:
            removed_by_others |= _removed(actions)
            continue
        doubled = _removed(actions) & removed_by_others
        if not doubled:
            return version, 0
        if depth >= 5:
            raise StorageError(f"{table}: compaction repair keeps racing concurrent compactions; "
                               f"run `deltaflow optimize` when writers are idle")
        _log.warning("deltaflow: %s: a concurrent compaction removed %d file(s) that compaction %s also "
                     "rewrote; removing the duplicated rows", table, len(doubled), marker)
        return version, _repair(location, table, doubled, marker, storage_options, depth=depth)
    raise StorageError(f"{table}: compaction commit {marker} not found after version {read_version}")


def _row_key(row: tuple) -> tuple:
    # NaN != NaN: compare floats by their repr so doubled NaN rows pair up like any other row.
    return tuple(repr(v) if isinstance(v, float) and math.isnan(v) else v for v in row)


def _repair(location: StoreLocation, table: str, doubled: set[str], cause: str,
            storage_options: Optional[dict[str, str]], *, depth: int) -> int:
    """Each row of a doubly removed file is live one time too many: rewrite the rows of the ids those
    files hold with one copy of each such row taken out (one commit, conflict-checked by delta-rs
    because it removes files with dataChange=true)."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    from deltaflow.store import _arrow
    from deltaflow.store.rust_engine import _literal

    schema = TABLES[table].schema
    id_column = ID_COLUMNS.get(table, "run_id")
    uri = location.table_path(table)
    extra = Counter()
    ids: set[Any] = set()
    for path in sorted(doubled):
        rows = read_data_file(uri, path, schema.names)
        ids.update(rows.column(id_column).to_pylist())
        extra.update(_row_key(r) for r in zip(*(rows.column(n).to_pylist() for n in schema.names)))
    predicate = f'"{id_column}" IN ({", ".join(_literal(v) for v in sorted(ids))})'
    for attempt in range(10):
        dt = DeltaTable(uri, storage_options=storage_options)
        read_version = dt.version()
        current = pa.RecordBatchReader.from_stream(dt.scan(columns=schema.names, predicate=predicate),
                                                   schema=schema).read_all()
        remaining = Counter(extra)
        keep: dict[str, list] = {n: [] for n in schema.names}
        cols = [current.column(n).to_pylist() for n in schema.names]
        for row in zip(*cols):
            key = _row_key(row)
            if remaining[key] > 0:
                remaining[key] -= 1
                continue
            for n, v in zip(schema.names, row):
                keep[n].append(v)
        removed = sum(extra.values()) - sum(remaining.values())
        marker = f"{_MARKER_PREFIX}-repair:{uuid.uuid4().hex}"
        try:
            write_deltalake(dt, _arrow.table(keep, schema), mode="overwrite", predicate=predicate,
                            commit_properties=CommitProperties(custom_metadata={"userMetadata": marker}))
        except Exception as exc:  # noqa: BLE001
            if _is_conflict(exc) and attempt < 9:
                time.sleep(0.05 * (attempt + 1))
                continue
            raise StorageError(f"{table}: could not remove rows duplicated by concurrent compactions "
                               f"(cause: {cause}): {exc}") from exc
        _, more = audit_commit(location, table, read_version, marker, storage_options, depth=depth + 1)
        return removed + more
    raise AssertionError("unreachable")  # pragma: no cover


def table_properties(location: StoreLocation) -> dict[str, str]:
    """Creation properties for a store's tables: Spark's auto-compaction only where no delta-rs
    writer can exist (see the module docstring)."""
    from deltaflow.store.rust_engine import supports

    return {**TABLE_PROPERTIES, AUTO_COMPACT_PROPERTY: "false" if supports(location) else "true"}
