"""The rust engine: the same Delta tables read and written through delta-rs (``deltalake``), no JVM.

Used for path-based stores when no SparkSession is active: plain Python scripts, the CLI, the
scoring server, the project runner. Tables are created with exactly the protocol and properties the
Spark engine uses (reader 1 / writer 2, no table features), so either engine reads and writes a
store the other created.

delta-rs's own commit retries are not enough under contention (measured: one of 4 processes
appending at once gave up with ``CommitFailedError`` and its rows were lost), so every commit goes
through :func:`~deltaflow.store.engine.retry_conflicts` with jittered backoff, and blind appends are
made idempotent with the same ``userMetadata`` commit marker the Spark engine writes.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pyarrow as pa

from deltaflow.config import StoreLocation, settings
from deltaflow.errors import InvalidArgument, InvalidState, MissingDependency, StorageError
from deltaflow.store import _arrow
from deltaflow.store.engine import Engine, RunQuery, Where, retry_conflicts
from deltaflow.store.schema import TABLES, TableSpec

if TYPE_CHECKING:  # pragma: no cover
    from deltalake import DeltaTable

    from deltaflow.store.compaction import Compactor

__all__ = ["RustEngine", "is_conflict", "supports", "arrow_mask", "split_where", "open_or_create_table", "RUST_SCHEMES"]

_log = logging.getLogger(__name__)

# Object stores delta-rs reaches with their usual credentials (environment, instance profiles).
# dbfs:/ and hdfs:// are Hadoop filesystems only the JVM speaks.
RUST_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "azure", "file", "memory")

# A listing of _delta_log that raced other writers' commits; retried like a conflict.
_LOG_GAP = "Expected contiguous commit files"
_CONFLICT_MARKERS = ("CommitFailed", "Commit failed", "Transaction failed", "version already exists",
                     "VersionAlreadyExists", "Concurrent", "conflict", _LOG_GAP)
# Values the rust engine may write into a delete predicate: our own ids only (run ids are hex, experiment
# ids digits). Anything else is refused rather than quoted, so user text never becomes SQL text.
_SAFE_LITERAL = re.compile(r"[A-Za-z0-9_.:\-]{1,256}")

# Columns holding ids deltaflow generates and validates (hex run ids, numeric experiment ids).
_PUSHDOWN_COLUMNS = frozenset({"run_id", "experiment_id"})

_forked_child = False


def _mark_forked() -> None:
    global _forked_child
    _forked_child = True


def forked_after_start() -> bool:
    """Whether this process was forked from one that had loaded delta-rs (which cannot be used here)."""
    return _forked_child


if hasattr(os, "register_at_fork"):
    # delta-rs drives I/O on a tokio runtime whose threads do not survive fork(); a forked child
    # that touches it deadlocks. Refuse clearly instead (see RustEngine._check_process).
    os.register_at_fork(after_in_child=_mark_forked)


def is_conflict(exc: BaseException) -> bool:
    try:
        from deltalake.exceptions import CommitFailedError
    except ImportError:  # pragma: no cover - engine not usable anyway
        return False
    if isinstance(exc, CommitFailedError):
        return True
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in _CONFLICT_MARKERS)


def _is_missing_file(exc: BaseException) -> bool:
    """A data file vanished between snapshot and read (a concurrent VACUUM or compaction), or the
    log was listed while other writers were adding commits (delta-rs then reports a gap between
    commit files that is gone on the next listing: seen under 4 concurrent writers)."""
    text = f"{type(exc).__name__}: {exc}"
    return (isinstance(exc, FileNotFoundError) or "No such file" in text or "NotFound" in text
            or _LOG_GAP in text)


def _literal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise StorageError(f"delete value {value!r} is not an id; the rust engine deletes by id only")
    if isinstance(value, int):
        return str(value)
    if not _SAFE_LITERAL.fullmatch(value):
        raise StorageError(f"delete value {value[:40]!r} is not an id (letters, digits, _ . : -)")
    return f"'{value}'"


def arrow_mask(table: pa.Table, where: Where) -> Any:
    """The Where conjunction as a boolean mask computed by pyarrow kernels (values stay values)."""
    import pyarrow.compute as pc

    mask = None
    for column, op, value in where.terms:
        values = table[column]
        if op == "in":
            term = pc.is_in(values, value_set=_arrow.array(list(value), values.type))
            mask = term if mask is None else pc.and_(mask, term)
            continue
        literal = _arrow.scalar(value, values.type)
        if op == "=":
            term = pc.equal(values, literal)
        elif op == "<":
            term = pc.less(values, literal)
        elif op == "<=":
            term = pc.less_equal(values, literal)
        elif op == ">":
            term = pc.greater(values, literal)
        elif op == ">=":
            term = pc.greater_equal(values, literal)
        else:  # pragma: no cover - Where is built by our own code
            raise ValueError(f"unsupported Where op {op!r}")
        mask = term if mask is None else pc.and_(mask, term)
    return mask


def split_where(where: Where) -> tuple[Optional[str], Where]:
    """Split a read filter into a scan predicate and the rest, which Arrow applies after the scan.

    Only id columns compared with = / IN against values that pass the strict id check go into the
    predicate (they let delta-rs skip files by their statistics); every other term — keys, names,
    anything with other characters — is filtered in Arrow, so user text never becomes SQL text.
    """
    pushed: list[str] = []
    rest: list[tuple[str, str, Any]] = []
    for column, op, value in where.terms:
        values = list(value) if op == "in" else [value]
        if column in _PUSHDOWN_COLUMNS and op in ("=", "in") and values and all(_is_safe_id(v) for v in values):
            pushed.append(f'"{column}" IN ({", ".join(_literal(v) for v in values)})')
        else:
            rest.append((column, op, value))
    return (" AND ".join(pushed) or None), Where(tuple(rest))


def _is_safe_id(value: Any) -> bool:
    return isinstance(value, str) and _SAFE_LITERAL.fullmatch(value) is not None


class RustEngine(Engine):
    name = "rust"

    def __init__(self, location: StoreLocation, storage_options: Optional[dict[str, str]] = None) -> None:
        if location.kind != "path":
            raise InvalidArgument(
                f"store {location.uri!r} is a metastore schema; only the spark engine can serve it "
                "(pip install 'deltaflow[spark]', DELTAFLOW_ENGINE=spark or auto)"
            )
        if not supports(location):
            raise InvalidArgument(
                f"store {location.uri!r} uses a filesystem delta-rs cannot reach; use the spark engine "
                f"(DELTAFLOW_ENGINE=spark) or a local path / one of {', '.join(RUST_SCHEMES)}"
            )
        try:
            import deltalake  # noqa: F401
        except ImportError:
            raise MissingDependency(
                "the rust engine needs the Python module 'deltalake', a dependency of deltaflow that is "
                "missing here; reinstall with: pip install deltaflow"
            ) from None
        self.location = location
        self.storage_options = storage_options
        self._tables: dict[str, "DeltaTable"] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in TABLES}
        self._create_lock = threading.Lock()
        self._compactor: Optional["Compactor"] = None
        self._committed_before_retry: dict[tuple[str, str], bool] = {}
        self._pid = os.getpid()

    # -- table handles ----------------------------------------------------------------------
    def _check_process(self) -> None:
        if _forked_child or os.getpid() != self._pid:
            raise InvalidState(
                "deltaflow's rust engine cannot be used in a process forked after it started (delta-rs's "
                "I/O runtime does not survive fork). Start workers with multiprocessing's 'spawn' start "
                "method or subprocess, and open the store in the child."
            )

    def _uri(self, table: str) -> str:
        return self.location.table_path(table)

    def _table(self, table: str) -> "DeltaTable":
        """The cached handle, brought up to the latest version (an incremental log read)."""
        self._check_process()
        dt = self._tables.get(table)
        if dt is None:
            self.ensure_tables([TABLES[table]])
            dt = self._tables[table]
        else:
            dt.update_incremental()
        return dt

    def _table_for_read(self, table: str) -> Optional["DeltaTable"]:
        """The latest handle for a read, or None when the table does not exist: a read never
        creates a table (a store the reader cannot write is still read)."""
        self._check_process()
        dt = self._tables.get(table)
        if dt is not None:
            dt.update_incremental()
            return dt
        from deltalake import DeltaTable

        uri = self._uri(table)
        try:
            if not DeltaTable.is_deltatable(uri, storage_options=self.storage_options):
                return None
            opened = DeltaTable(uri, storage_options=self.storage_options)
        except OSError as exc:  # credentials, network, permissions: one plain-text error
            raise _storage_error(f"cannot read table {uri!r}", exc) from None
        with self._create_lock:
            return self._tables.setdefault(table, opened)

    def ensure_tables(self, specs: Sequence[TableSpec]) -> None:
        """Open (creating where missing) each table. Safe to call from several threads at once: a
        table is opened outside the lock (delta-rs releases the GIL while it reads the log, so tables
        open in parallel) and the first handle stored wins."""
        self._check_process()
        for table_spec in specs:
            if table_spec.name in self._tables:
                continue
            opened = retry_conflicts(lambda s=table_spec: self._open_or_create(s), is_conflict=_is_creation_race,
                                     attempts=15, what=f"creating table {table_spec.name}")
            with self._create_lock:
                self._tables.setdefault(table_spec.name, opened)

    def _open_or_create(self, table_spec: TableSpec) -> "DeltaTable":
        try:
            return open_or_create_table(self.location, table_spec, self.storage_options)
        except OSError as exc:
            if _is_creation_race(exc):
                raise
            raise _storage_error(f"cannot open or create table {self._uri(table_spec.name)!r}", exc) from None

    # -- writes -----------------------------------------------------------------------------
    def _check_writable(self, table: str) -> None:
        """Refuse a write this process cannot make, before delta-rs tries it: on a local store
        without write access (a read-only mount, another user's files) delta-rs fails deep in
        its I/O runtime, which prints a Rust panic on stderr."""
        if not self.location.is_local:
            return
        path = self._uri(table)
        for folder in (path, os.path.join(path, "_delta_log")):
            if os.path.isdir(folder) and not os.access(folder, os.W_OK):
                raise StorageError(
                    f"cannot write to table {path!r}: this process has no write access to {folder!r} "
                    "(a read-only mount or another user's files); reading the store works, writing needs "
                    "write access")

    def append(self, table: str, data: pa.Table, *, app_id: str, version: int) -> None:
        from deltalake import CommitProperties, write_deltalake

        self._check_writable(table)
        schema = TABLES[table].schema
        data = _conform(data, schema)
        marker = f"deltaflow:{app_id}:{version}"
        lock = self._locks[table]

        def attempt() -> None:
            with lock:
                dt = self._table(table)
                try:
                    write_deltalake(dt, data, mode="append",
                                    commit_properties=CommitProperties(custom_metadata={"userMetadata": marker}))
                except Exception:
                    if self._committed(dt, marker):
                        return
                    raise

        with lock:
            recheck = self._committed_before_retry.pop((table, marker), False)
        if recheck and self._committed(self._table(table), marker):
            return
        try:
            retry_conflicts(attempt, is_conflict=is_conflict, attempts=settings.commit_retries,
                            what=f"appending to {table}")
        except Exception:
            self._committed_before_retry[(table, marker)] = True
            raise
        self._maybe_compact(table)

    def _committed(self, dt: "DeltaTable", marker: str) -> bool:
        """Whether a commit carrying ``marker`` is in the recent history (either engine's)."""
        try:
            dt.update_incremental()
            return any(entry.get("userMetadata") == marker for entry in dt.history(200))
        except Exception:  # noqa: BLE001 - unknown means "not proven committed"
            return False

    @property
    def compactor(self) -> "Compactor":
        if self._compactor is None:
            from deltaflow.store.compaction import Compactor

            self._compactor = Compactor(self.location, self.storage_options)
        return self._compactor

    def _maybe_compact(self, table: str) -> None:
        """delta-rs does not honour ``delta.autoOptimize.autoCompact``: compact like Spark would, once
        ``compact_min_files`` files are live, under the table's compaction lease (compaction.py)."""
        self._check_process()
        self.compactor.after_append(table)

    def insert_if_absent(self, table: str, data: pa.Table, key_columns: Sequence[str]) -> bool:
        schema = TABLES[table].schema
        data = _conform(data, schema)
        # Our own column names only; the values travel in the source table, never in the text.
        predicate = " AND ".join(f't."{k}" = s."{k}"' for k in key_columns)
        lock = self._locks[table]
        self._check_writable(table)

        def attempt() -> bool:
            # The existence check and the insert are one MERGE: delta-rs's conflict checker fails the
            # commit if another writer added rows meanwhile, and we retry against the new version.
            with lock:
                dt = self._table(table)
                metrics = (dt.merge(data, predicate, source_alias="s", target_alias="t")
                           .when_not_matched_insert_all().execute())
            return int(metrics.get("num_target_rows_inserted", 0)) > 0

        if retry_conflicts(attempt, is_conflict=is_conflict, attempts=30, what=f"inserting into {table}"):
            return True
        # Not inserted: the key was taken — possibly by our own earlier attempt whose commit landed
        # but reported an error. Our row (same event_time/seq) in the table means it was us.
        return self.row_stored(table, data, key_columns)

    def delete_where(self, table: str, where: Where) -> int:
        if not where.terms:
            raise StorageError("refusing to delete every row of a table")
        terms = []
        for column, op, value in where.terms:
            if column not in TABLES[table].schema.names:
                raise StorageError(f"table {table} has no column {column!r}")
            if op == "=":
                terms.append(f'"{column}" = {_literal(value)}')
            elif op == "in":
                if not value:
                    return 0
                terms.append(f'"{column}" IN ({", ".join(_literal(v) for v in value)})')
            else:
                raise StorageError(f"the rust engine deletes by = and IN only, not {op!r}")
        predicate = " AND ".join(terms)
        lock = self._locks[table]
        self._check_writable(table)

        def attempt() -> int:
            with lock:
                return int(self._table(table).delete(predicate).get("num_deleted_rows", -1))

        return retry_conflicts(attempt, is_conflict=is_conflict, attempts=20, what=f"deleting from {table}")

    # -- reads ------------------------------------------------------------------------------
    def read(self, table: str, where: Where = Where(), columns: Optional[Sequence[str]] = None) -> pa.Table:
        schema = TABLES[table].schema
        wanted = list(columns) if columns else schema.names
        target = pa.schema([schema.field(c) for c in wanted])
        if any(op == "in" and not value for _, op, value in where.terms):
            return _arrow.empty_table(target)  # "x IN ()" matches nothing
        predicate, rest = split_where(where)
        scanned = wanted + [c for c, _, _ in rest.terms if c not in wanted]
        # Asking the stream for our declared types makes the producer cast the scan's string_view
        # columns, so a plain read never loads pyarrow.compute (0.2-0.3 s to import).
        scanned_schema = pa.schema([schema.field(c) for c in scanned])
        for attempt in range(3):
            try:
                with self._locks[table]:
                    dt = self._table_for_read(table)
                    if dt is None:
                        return _arrow.empty_table(target)
                    # delta-rs's own scan (DataFusion): prunes files by their statistics, and unlike
                    # pyarrow.dataset it does not drag pandas in (0.5 s of a CLI call's budget).
                    reader = dt.scan(columns=scanned, predicate=predicate)
                    data = pa.RecordBatchReader.from_stream(reader, schema=scanned_schema).read_all()
                break
            except Exception as exc:  # noqa: BLE001 - retried only for vanished files
                if attempt == 2 or not _is_missing_file(exc):
                    raise
        if rest.terms and data.num_rows:
            data = data.filter(arrow_mask(data, rest))
        return data.select(wanted) if len(scanned) != len(wanted) else data

    def read_many(self, requests: dict[str, tuple[Where, Optional[Sequence[str]]]]) -> dict[str, pa.Table]:
        # Reads are a few milliseconds each and pyarrow already scans files in parallel; threads
        # would only add overhead here.
        return {table: self.read(table, where, columns) for table, (where, columns) in requests.items()}

    def search_runs(self, query: RunQuery) -> list[str]:
        from deltaflow.store.arrow_search import search_run_ids

        return search_run_ids(self, query)

    # -- maintenance ------------------------------------------------------------------------
    def optimize(self, table: str, zorder_by: Sequence[str]) -> dict[str, Any]:
        before = self.file_count(table)
        result = self.compactor.compact(table, zorder_by)
        return {"table": table, "files_before": before, "files_after": self.file_count(table),
                "rows_repaired": result.rows_repaired}

    def vacuum(self, table: str, retention_hours: float, force: bool = False) -> None:
        with self._locks[table]:
            self._table(table).vacuum(retention_hours=int(math.ceil(retention_hours)), dry_run=False,
                                      enforce_retention_duration=not force)

    def file_count(self, table: str) -> int:
        with self._locks[table]:
            return len(self._table(table).file_uris())

    def table_version(self, table: str) -> int:
        with self._locks[table]:
            return int(self._table(table).version())

    def history(self, table: str, limit: int = 20) -> list[dict[str, Any]]:
        with self._locks[table]:
            return list(self._table(table).history(limit))


def _storage_error(what: str, exc: BaseException) -> StorageError:
    """delta-rs's OSError as deltaflow's StorageError, in plain text (no terminal colour codes)."""
    from deltaflow.store.factory import plain_text

    return StorageError(f"{what}: {plain_text(exc)}")


def _conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """The rows with exactly the table's schema (casting loads pyarrow.compute; skip it when equal)."""
    return data if data.schema == schema else data.select(schema.names).cast(schema)


def _is_creation_race(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return is_conflict(exc) or "already exists" in text or "TableNotFound" in text or "No such file" in text


def open_or_create_table(location: StoreLocation, table_spec: TableSpec,
                         storage_options: Optional[dict[str, str]] = None) -> "DeltaTable":
    """Open a table, creating it with the store's properties if it does not exist yet."""
    from deltalake import DeltaTable

    from deltaflow.store.compaction import table_properties

    uri = location.table_path(table_spec.name)
    if DeltaTable.is_deltatable(uri, storage_options=storage_options):
        return DeltaTable(uri, storage_options=storage_options)
    if location.is_local:
        os.makedirs(uri, exist_ok=True)
    # mode="ignore": a table another process created first is kept as it is; losing the race
    # for version 0 raises, and the retry then opens the winner's table.
    return DeltaTable.create(
        uri, table_spec.schema, mode="ignore",
        configuration={**table_properties(location), **table_spec.properties},
        storage_options=storage_options, raise_if_key_not_exists=False,
    )


def supports(location: StoreLocation) -> bool:
    """Whether delta-rs can reach this store (a local folder or an object store it speaks)."""
    if location.kind != "path" or location.root is None:
        return False
    if location.is_local:
        return True
    scheme = location.root.split(":", 1)[0].lower()
    return scheme in RUST_SCHEMES
