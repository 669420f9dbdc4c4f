"""Finding or building the SparkSession, and the Delta JARs it needs locally.

The rule: use the session that already exists (a Databricks cluster, a user's own session, the test
suite's shared one). Only when there is none do we build a small local session with Delta
configured. pyspark is imported here, late, so ``import deltaflow`` never pays for it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import urllib.request
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaflow.errors import MissingDependency, StorageError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

__all__ = ["get_spark", "spark_session", "active_spark", "is_connect", "delta_configured", "require_delta",
           "no_delta_message", "require_jvm",
           "delta_jars", "fetch_delta_jars", "jars_dir", "DELTA_VERSION"]

# The tested pair (see pyproject's `spark` extra). The JAR versions must match delta-spark's.
DELTA_VERSION = "3.3.2"
SCALA_BINARY = "2.12"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
_JARS = (
    ("io/delta", f"delta-spark_{SCALA_BINARY}", DELTA_VERSION),
    ("io/delta", "delta-storage", DELTA_VERSION),
)
_lock = threading.Lock()
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# Whether each live session has Delta configured, found once per session (sessions are weakly held).
_delta_checked: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def jars_dir() -> Path:
    return Path(os.environ.get("DELTAFLOW_JARS_DIR") or Path.home() / ".cache" / "deltaflow" / "jars")


def delta_jars() -> list[Path]:
    return [jars_dir() / f"{artifact}-{version}.jar" for _, artifact, version in _JARS]


def fetch_delta_jars(*, quiet: bool = True) -> list[Path]:
    """Download the Delta JARs from Maven Central once, verified against Maven's SHA-1 files.

    A cached copy is reused, so after the first set-up Spark starts offline.
    """
    target = jars_dir()
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for group, artifact, version in _JARS:
        path = target / f"{artifact}-{version}.jar"
        if not path.exists():
            url = f"{MAVEN_CENTRAL}/{group}/{artifact}/{version}/{artifact}-{version}.jar"
            if not quiet:
                print(f"fetching {url}")
            try:
                data = urllib.request.urlopen(url, timeout=120).read()
                expected = urllib.request.urlopen(url + ".sha1", timeout=60).read().decode().split()[0]
            except OSError as exc:
                raise StorageError(f"could not download {url}: {exc}") from exc
            actual = hashlib.sha1(data).hexdigest()
            if actual != expected:
                raise StorageError(f"checksum mismatch for {url}: got {actual}, Maven says {expected}")
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(path)  # atomic: a half-written JAR never looks cached
        paths.append(path)
    return paths


def _import_pyspark() -> Any:
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise MissingDependency.for_extra("The Spark engine", "pyspark", "spark") from exc
    return SparkSession


def active_spark() -> "SparkSession | None":
    """The session already running in this process, if any; never starts one."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    session = SparkSession.getActiveSession()
    if session is None:
        session = SparkSession._instantiatedSession  # a session created on another thread
    return session


def is_connect(session: Any) -> bool:
    """Whether ``session`` is a Spark Connect session (no JVM in this process, no ``sparkContext``)."""
    return type(session).__module__.startswith("pyspark.sql.connect")


def delta_configured(session: Any) -> bool:
    """Whether a classic SparkSession can run Delta: its SQL extensions or catalog name Delta, and the
    Delta classes load in its JVM. Reads two conf values and resolves one class (no Spark job);
    the answer is kept per session."""
    try:
        return _delta_checked[session]
    except (KeyError, TypeError):
        pass
    ready = False
    if not is_connect(session):
        try:
            from py4j.java_gateway import JavaClass

            # The class first (no Delta JARs: done); then the context's own conf; session.conf last,
            # as reading it builds the session state (~1 s the first time) and getConf() copies
            # every entry over py4j.
            if isinstance(session.sparkContext._jvm.io.delta.tables.DeltaTable, JavaClass):
                ready = "DATABRICKS_RUNTIME_VERSION" in os.environ  # the runtime builds Delta in
                for conf in (lambda: session.sparkContext._conf, lambda: session.conf):
                    if ready:
                        break
                    ready = (DELTA_EXTENSION in (conf().get("spark.sql.extensions", "") or "")
                             or conf().get("spark.sql.catalog.spark_catalog", "") == DELTA_CATALOG)
        except Exception:  # noqa: BLE001 - a stopped or odd session: not usable for Delta
            ready = False
    try:
        _delta_checked[session] = ready
    except TypeError:  # not weakly referenceable: check again next time
        pass
    return ready


def no_delta_message(feature: str) -> str:
    return (f"{feature} needs a SparkSession with Delta Lake, but the running SparkSession has none "
            f"configured (spark.sql.extensions does not name {DELTA_EXTENSION}, or the Delta JARs are "
            "not on its classpath). Either build your session with Delta: "
            "`from delta import configure_spark_with_delta_pip; "
            "spark = configure_spark_with_delta_pip(SparkSession.builder"
            f'.config("spark.sql.extensions", "{DELTA_EXTENSION}")'
            f'.config("spark.sql.catalog.spark_catalog", "{DELTA_CATALOG}")).getOrCreate()`; '
            "or let deltaflow build it: call `deltaflow.spark_session()` before any other code creates "
            "a SparkSession.")


def require_delta(session: Any, feature: str) -> Any:
    """``session`` when it can run Delta; otherwise one clear error naming both fixes."""
    if is_connect(session):
        return session
    if not delta_configured(session):
        raise MissingDependency(no_delta_message(feature))
    return session


def require_jvm(session: Any, feature: str) -> Any:
    """``session`` when it has a JVM in this process (a classic session); a Spark Connect session
    gets one clear error instead of pyspark's ``sparkContext() is not implemented``."""
    if is_connect(session):
        from deltaflow.errors import InvalidState

        raise InvalidState(
            f"{feature} needs a classic SparkSession (a JVM in this process: delta-spark's table API "
            "runs through it), and this process runs Spark Connect (as Databricks serverless compute and "
            "shared clusters do). Tracking on a path store (a local folder, /Volumes/..., s3://, gs://, "
            "abfss://) works through delta-rs, and output_format=\"spark\" and deltaflow.sql read those "
            "stores through Spark Connect; for a metastore or dbfs:/ store use a classic cluster.")
    return session


def spark_session() -> "SparkSession":
    """The SparkSession deltaflow uses: the one already running in this process, or else a local
    session with Delta configured and tuned for one machine (small shuffles, no UI, no console
    progress bar, Arrow on, UTC, Python workers on this interpreter).

    Call it first in a notebook or script to get a session that deltaflow's Spark features
    (``output_format="spark"``, ``deltaflow.sql``, Spark ML autologging) can use.
    """
    return get_spark()


def get_spark() -> "SparkSession":
    """The active session, or a new local one with Delta when none exists."""
    session = active_spark()
    if session is not None:
        return session
    with _lock:
        session = active_spark()
        if session is not None:
            return session
        return _build_local_session()


def _build_local_session() -> "SparkSession":
    SparkSession = _import_pyspark()
    jars = delta_jars()
    missing = [str(p) for p in jars if not p.exists()]
    if missing:
        if os.environ.get("DELTAFLOW_OFFLINE"):
            raise MissingDependency(
                f"the Delta JARs are not cached ({', '.join(missing)}); run `deltaflow doctor --fetch-jars` "
                "once while online"
            )
        jars = fetch_delta_jars()
    master = os.environ.get("DELTAFLOW_SPARK_MASTER", "local[2]")
    # Python workers run the driver's interpreter (with its numpy, pandas, ...) unless told otherwise:
    # the `python3` on PATH may be another one (e.g. OneVsRestModel.transform's UDF then fails).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName("deltaflow")
        .config("spark.jars", ",".join(str(p) for p in jars))
        .config("spark.sql.extensions", DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        .config("spark.sql.shuffle.partitions", os.environ.get("DELTAFLOW_SHUFFLE_PARTITIONS", "4"))
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        # A long local session (a notebook, the test suite: Spark ML, registry, tracking on one JVM)
        # full-GC-thrashed at 2g; the heap is a ceiling, not a reservation.
        .config("spark.driver.memory", os.environ.get("DELTAFLOW_DRIVER_MEMORY", "4g"))
        # Delta's own commit retry handles concurrent blind appends; keep its log quiet.
        .config("spark.databricks.delta.retentionDurationCheck.enabled", "true")
        # Delta replays its log with 50 partitions by default: right for a cluster, pure overhead
        # for a 2-core local session (it dominated small reads here).
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.adaptive.coalescePartitions.initialPartitionNum", "4")
        # VACUUM lists files with this parallelism (default 10000 tasks: ~110 s per table locally).
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "4")
        .config("spark.driver.extraJavaOptions", os.environ.get(
            "DELTAFLOW_DRIVER_JAVA_OPTIONS",
            # The JVM's full tiered JIT, as clusters run it: C2 code moves rows through Arrow to
            # Python workers and back in ~60% of C1's time (a UDF returning zeros over 2M rows on two
            # cores: 1.24-1.33 s against 2.14 s), which outweighs the 10-15% C1-only (-XX:TieredStopAtLevel=1)
            # saves on a short job; the test suite, thousands of short jobs, sets C1-only through
            # DELTAFLOW_DRIVER_JAVA_OPTIONS. A long session fills a small code cache (the JIT then stops).
            "-XX:+UseParallelGC -XX:ReservedCodeCacheSize=256m"))
        .config("spark.sql.warehouse.dir", os.environ.get("DELTAFLOW_WAREHOUSE_DIR", "spark-warehouse"))
        # A long-lived local session (a notebook, a test run) touches many tables: Delta keeps up to
        # 10,000 DeltaLogs with their snapshots and Spark keeps 1,000 query executions for the (off)
        # UI by default. A DeltaLog with its snapshot holds ~3 MB, so a process that opens a store a
        # minute grows by ~30 MB a time until back-to-back full GCs (measured: 740 s of GC in one test
        # run), so bound both. Delta's key is "<prefix>delta.log.cacheSize" (read once, at the first
        # DeltaLog); an evicted table's log is simply replayed again from its last checkpoint.
        .config("spark.databricks.delta.delta.log.cacheSize", os.environ.get("DELTAFLOW_DELTALOG_CACHE_SIZE", "64"))
        .config("spark.sql.ui.retainedExecutions", "50")
        .config("spark.ui.retainedJobs", "100")
        .config("spark.ui.retainedStages", "100")
        .config("spark.ui.retainedTasks", "2000")
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
