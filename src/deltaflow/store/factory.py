"""One store per tracking location per process, and the exit hook that flushes them all."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
from typing import Optional

from deltaflow.config import StoreLocation, resolve_location, settings
from deltaflow.errors import InvalidArgument, MissingDependency, StorageError
from deltaflow.store.engine import Engine
from deltaflow.store.tracking_store import TrackingStore

__all__ = ["get_store", "store_exists", "check_store_path", "plain_text", "make_engine", "choose_engine", "spark_session_active",
           "running_spark_session", "connect_session_running", "close_all_stores", "register_exit_hook"]

_log = logging.getLogger(__name__)
_stores: dict[tuple[str, str, str], TrackingStore] = {}  # (uri, artifact root, engine)
_auto: dict[tuple[str, str], TrackingStore] = {}  # what "auto" resolved to, per location
# Fluent calls resolve the store on every call; remember the raw (uri, artifact_root) too so the
# hot path skips path normalisation.
_by_raw: dict[tuple, TrackingStore] = {}
_lock = threading.Lock()
_exit_hooks: list = []
_hook_installed = False

ENGINES = ("auto", "spark", "rust")
# The exit status of a process whose exit-time flush failed (sysexits' EX_IOERR).
EXIT_FLUSH_FAILED = 74


def _importable(module: str) -> bool:
    import importlib.util

    return module in sys.modules or importlib.util.find_spec(module) is not None


def running_spark_session() -> Optional[object]:
    """This process's live SparkSession (classic or Spark Connect), without importing pyspark."""
    session_module = sys.modules.get("pyspark.sql.session")
    if session_module is None:
        return None
    spark_session = session_module.SparkSession
    try:
        return spark_session.getActiveSession() or getattr(spark_session, "_instantiatedSession", None)
    except Exception:  # noqa: BLE001 - e.g. no JVM yet: none running
        return None


def spark_session_active() -> bool:
    """Whether this process already has a live classic SparkSession (one with a JVM in this
    process), without importing pyspark."""
    session = running_spark_session()
    if session is None:
        return False
    try:
        return getattr(session.sparkContext, "_jsc", None) is not None
    except Exception:  # noqa: BLE001 - Spark Connect has no sparkContext
        return False


def connect_session_running() -> bool:
    """Whether this process's SparkSession is a Spark Connect one (no JVM handle here)."""
    session = running_spark_session()
    if session is None:
        return False
    from deltaflow._spark import is_connect

    return is_connect(session)


def _refuse_spark_over_connect(location: StoreLocation) -> None:
    """A store written through Spark needs delta-spark's JVM-side table API: one clear error under
    Spark Connect (Spark-only reads of a delta-rs store still go through Connect)."""
    if connect_session_running():
        from deltaflow._spark import require_jvm

        require_jvm(running_spark_session(), f"store {location.uri!r} on the spark engine")


_told_rust_serves: set[str] = set()


def _rust_in_session(location: StoreLocation) -> bool:
    """With a classic SparkSession running, whether ``auto`` still gives a path store to delta-rs.

    Local folders: always (a commit costs ~10 ms instead of Spark jobs in the user's session, which
    took ~60 s before the first call returned there, with progress bars). Object stores: when the
    session has no Delta configured; otherwise Spark, whose Hadoop conf holds the credentials.
    """
    from deltaflow._spark import delta_configured

    if delta_configured(running_spark_session()):
        return location.is_local
    if location.uri not in _told_rust_serves:
        _told_rust_serves.add(location.uri)
        _log.info("deltaflow: the running SparkSession has no Delta Lake configured; the rust engine "
                  "(delta-rs) serves store %s", location.uri)
    return True


def choose_engine(location: StoreLocation, requested: Optional[str] = None) -> str:
    """The engine a store gets: an explicit choice is checked; ``auto`` picks as the README says."""
    from deltaflow.store.rust_engine import supports

    choice = (requested or settings.engine or "auto").strip().lower()
    if choice not in ENGINES:
        raise InvalidArgument(f"engine {choice!r} is not known; use one of {', '.join(ENGINES)}")
    if choice == "rust":
        if location.kind != "path":
            raise InvalidArgument(f"store {location.uri!r} is a metastore schema: only the spark engine "
                                  "serves metastore / Unity Catalog tables (DELTAFLOW_ENGINE=spark or auto)")
        if not supports(location):
            raise InvalidArgument(f"store {location.uri!r} is on a filesystem only Spark reaches; "
                                  "use the spark engine (DELTAFLOW_ENGINE=spark or auto)")
        return "rust"
    if choice == "spark":
        return "spark"
    # auto: Spark where only Spark reaches the store and on Databricks; delta-rs for path stores it
    # reaches, also next to a running SparkSession (see _rust_in_session).
    # Databricks serverless / shared clusters run Spark Connect: no JVM handle, so delta-rs where it reaches.
    on_databricks = ("DATABRICKS_RUNTIME_VERSION" in os.environ and _importable("pyspark")
                     and not connect_session_running())
    if location.kind != "path" or not supports(location) or on_databricks or not _importable("deltalake"):
        return "spark"
    if spark_session_active() and not _rust_in_session(location):
        return "spark"
    return "rust"


def make_engine(location: StoreLocation, engine: Optional[str] = None) -> Engine:
    name = choose_engine(location, engine)
    if name == "rust":
        from deltaflow.store.rust_engine import RustEngine

        return RustEngine(location)
    if not _importable("pyspark") or not _importable("delta"):
        missing = "pyspark" if not _importable("pyspark") else "delta"
        raise MissingDependency.for_extra(f"store {location.uri!r} on the spark engine", missing, "spark")
    from deltaflow.store.spark_engine import SparkEngine

    return SparkEngine(location)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BACKTRACE_LINE = re.compile(r"^\s*(?:\d+: \S|stack backtrace:)", re.IGNORECASE)


def plain_text(exc: BaseException) -> str:
    """An exception's message as one line of plain text: delta-rs's error chains come with terminal
    colour codes, one cause per line (``↳ cause``), and with ``RUST_BACKTRACE`` set a numbered
    backtrace, which is dropped."""
    parts = []
    for line in _ANSI.sub("", str(exc)).splitlines():
        if _BACKTRACE_LINE.match(line):
            break
        parts.append(line.strip().lstrip("↳").strip().rstrip(":"))
    return ": ".join(part for part in parts if part) or type(exc).__name__


def check_store_path(location: StoreLocation) -> None:
    """Refuse a local store path that is (or lies under) a file, before any engine touches it."""
    if not location.is_local or location.root is None:
        return
    path = location.root  # local roots are absolute paths (config._normalise_folder)
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return
        probe = parent
    if probe and not os.path.isdir(probe):
        where = "is a file" if probe == path else f"lies under {probe!r}, which is a file"
        raise InvalidArgument(f"store path {path!r} {where}, not a folder; point the tracking URI at a "
                              "folder (a new one is created by the first write)")


def store_exists(location: StoreLocation) -> bool:
    """Whether the location holds a deltaflow store (any of its tables), reading nothing else and
    writing nothing. Stores only Spark reaches, and metastore schemas, count as present (their
    engine reports what is missing)."""
    from deltaflow.store.rust_engine import supports
    from deltaflow.store.schema import TABLES

    check_store_path(location)
    if not supports(location):
        return True
    if location.is_local:
        tables = os.path.join(location.root, "tables")
        return any(os.path.isdir(os.path.join(tables, name, "_delta_log")) for name in TABLES)
    from deltalake import DeltaTable

    try:
        return any(DeltaTable.is_deltatable(location.table_path(name)) for name in ("experiments", "runs",
                                                                                    "registry_events"))
    except Exception as exc:  # noqa: BLE001 - credentials, network, bucket: one plain error
        raise StorageError(f"cannot read store {location.uri!r}: {plain_text(exc)}") from None


def get_store(uri: Optional[str] = None, artifact_root: Optional[str] = None,
              engine: Optional[str] = None) -> TrackingStore:
    """The process's store for a location and engine.

    ``auto`` resolves once per location: later ``auto`` lookups get the same store even if a
    SparkSession starts meanwhile, so one process never splits a run's writes over two buffers.
    """
    choice = (engine or settings.engine or "auto").strip().lower()
    raw_key = (uri, artifact_root, os.getcwd() if uri is None or not os.path.isabs(uri) else "", choice)
    if uri is not None:
        store = _by_raw.get(raw_key)
        if store is not None:
            return store
    location = resolve_location(uri, artifact_root)
    loc_key = (location.uri, location.artifact_root)
    with _lock:
        store = _auto.get(loc_key) if choice == "auto" else None
        if store is None:
            name = choose_engine(location, choice)
            store = _stores.get((*loc_key, name))
            if store is None:
                check_store_path(location)
                if name == "spark":
                    _refuse_spark_over_connect(location)
                store = TrackingStore(location, make_engine(location, name))
                _stores[(*loc_key, name)] = store
                _install_hook()
            if choice == "auto":
                _auto[loc_key] = store
    if uri is not None:
        _by_raw[raw_key] = store
    return store


def register_exit_hook(fn) -> None:  # noqa: ANN001
    """Run ``fn`` at exit before stores are flushed (the fluent API ends active runs here)."""
    _exit_hooks.append(fn)
    _install_hook()


def _forget_after_fork() -> None:
    """In a forked child: drop the parent's stores and exit hooks.

    The child inherits the parent's buffers (rows the parent will commit itself) and its fluent run
    stack; flushing or ending them again at the child's exit would duplicate rows and end the
    parent's runs. The child opens fresh stores if it logs (the rust engine then refuses clearly:
    delta-rs's runtime does not survive fork, so workers must be spawned).
    """
    global _lock
    _stores.clear()
    _auto.clear()
    _by_raw.clear()
    _exit_hooks.clear()
    _lock = threading.Lock()  # it may have been held by a parent thread at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def close_all_stores(timeout: Optional[float] = None) -> list[str]:
    """End open runs and flush every store; returns one line per store that could not be flushed."""
    for fn in list(_exit_hooks):
        try:
            fn()
        except Exception:  # noqa: BLE001 - exit must go on
            _log.warning("deltaflow exit hook failed", exc_info=True)
    failures = []
    for store in list(_stores.values()):
        try:
            store.close(timeout)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"deltaflow: could not commit what was logged to {store.location.uri} before "
                            f"exit; those records are lost: {exc}")
    return failures


def _flush_at_exit() -> None:
    """The interpreter-exit flush. A flush that fails makes the process exit non-zero: a scheduled
    job must not report success for records that never reached the store."""
    failures = close_all_stores()
    if failures:
        for line in failures:
            _log.error("%s", line)
            print(line, file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_FLUSH_FAILED)


def _install_hook() -> None:
    """Flush at interpreter exit, *before* pyspark's own atexit handlers stop the JVM.

    ``threading._register_atexit`` callbacks run when the main thread finishes, ahead of ``atexit``
    handlers (concurrent.futures uses it for the same reason); fall back to atexit elsewhere.
    """
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_flush_at_exit)
            return
        except RuntimeError:  # interpreter already shutting down
            pass
    atexit.register(_flush_at_exit)
