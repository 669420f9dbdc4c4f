"""Finding or building the SparkSession, and the Delta JARs it needs locally.

The rule: use the session that already exists (a Databricks cluster, a user's own session, the test
suite's shared one). Only when there is none do we build a small local session with Delta
configured. pyspark is imported here, late, so ``import deltaflow`` never pays for it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaflow.errors import MissingDependency, StorageError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

__all__ = ["get_spark", "active_spark", "delta_jars", "fetch_delta_jars", "jars_dir", "DELTA_VERSION"]

# The tested pair (see pyproject's `spark` extra). The JAR versions must match delta-spark's.
DELTA_VERSION = "3.3.2"
SCALA_BINARY = "2.12"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
_JARS = (
    ("io/delta", f"delta-spark_{SCALA_BINARY}", DELTA_VERSION),
    ("io/delta", "delta-storage", DELTA_VERSION),
)
_lock = threading.Lock()


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
    builder = (
        SparkSession.builder.master(master)
        .appName("deltaflow")
        .config("spark.jars", ",".join(str(p) for p in jars))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
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
            # C1 only starts fast, but its default 48 MB code cache fills in a long session (then the
            # JIT stops and everything slows down): give it room.
            "-XX:+UseParallelGC -XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m"))
        .config("spark.sql.warehouse.dir", os.environ.get("DELTAFLOW_WAREHOUSE_DIR", "spark-warehouse"))
        # A long-lived local session (a notebook, a test run) touches many tables: Delta keeps up to
        # 10,000 DeltaLogs with their snapshots and Spark keeps 1,000 query executions for the (off)
        # UI by default. In a 2 GB driver that ends in back-to-back full GCs (measured: 740 s of GC
        # in one test run), so bound both.
        .config("spark.databricks.delta.deltaLog.cacheSize", os.environ.get("DELTAFLOW_DELTALOG_CACHE_SIZE", "64"))
        .config("spark.sql.ui.retainedExecutions", "50")
        .config("spark.ui.retainedJobs", "100")
        .config("spark.ui.retainedStages", "100")
        .config("spark.ui.retainedTasks", "2000")
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
