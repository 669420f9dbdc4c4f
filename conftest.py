"""Shared test fixtures: one real local SparkSession with Delta for the whole run, and a fresh
store folder per test. No mocks of our own storage anywhere."""

from __future__ import annotations

import os
import tempfile

import pytest

# The store's background flusher commits every few seconds; tests flush explicitly where they
# need durability, and a short interval keeps end_run-to-visible tests quick.
os.environ.setdefault("DELTAFLOW_FLUSH_INTERVAL_S", "1.0")
os.environ.setdefault("DELTAFLOW_SHUFFLE_PARTITIONS", "2")
# One JVM serves the whole run (Spark ML, registry, both-engine store tests); its live heap after each
# test folder is printed at the end of the run (see pytest_terminal_summary below).
os.environ.setdefault("DELTAFLOW_DRIVER_MEMORY", "6g")
# The suite is thousands of short Spark jobs, which C1-only compilation starts 10-15% faster than the
# full tiered JIT that local sessions otherwise get (see deltaflow._spark).
os.environ.setdefault("DELTAFLOW_DRIVER_JAVA_OPTIONS",
                      "-XX:+UseParallelGC -XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m")
# Managed (metastore) tables of the test session live in a throwaway warehouse, not the repo.
os.environ.setdefault("DELTAFLOW_WAREHOUSE_DIR", tempfile.mkdtemp(prefix="deltaflow-warehouse-"))


@pytest.fixture(scope="session")
def spark():
    from deltaflow._spark import get_spark

    session = get_spark()
    yield session


ENGINES = ("spark", "rust")


def _names_engine(marker: pytest.Mark) -> bool:
    names = marker.args[0] if marker.args else ""
    names = names.split(",") if isinstance(names, str) else list(names)
    return "engine" in [n.strip() for n in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A store test runs on the rust engine unless marked ``@pytest.mark.engines("spark", "rust")``.

    Behaviour above the engine seam (validation, the fluent API, run life cycle) is the same code on
    either engine, so it is tested once, on the fast one. Tests of what each engine does itself
    (commits, reads, search compiled to Spark or Arrow, maintenance) are marked for both, and
    tests/store/test_cross_engine.py runs both engines over the same data and requires equal results.
    """
    if "engine" not in metafunc.fixturenames:
        return
    if any(_names_engine(m) for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test names its engines itself
    marker = metafunc.definition.get_closest_marker("engines")
    engines = tuple(marker.args) if marker is not None else ("rust",)
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown engine(s) {sorted(unknown)}; use {ENGINES}")
    metafunc.parametrize("engine", engines, indirect=True)


@pytest.fixture()
def engine(request, monkeypatch):
    """The store engine of the test (see pytest_generate_tests); DELTAFLOW_ENGINE makes every store the
    test opens use it."""
    name = getattr(request, "param", "rust")
    if name == "spark":
        request.getfixturevalue("spark")
    monkeypatch.setenv("DELTAFLOW_ENGINE", name)
    return name


@pytest.fixture()
def store_uri(tmp_path, engine):
    """A fresh path-based store on the test's engine, set as the tracking URI; active runs are ended
    afterwards."""
    import deltaflow
    from deltaflow.tracking import fluent

    uri = str(tmp_path / "store")
    deltaflow.set_tracking_uri(uri)
    fluent._active_experiment.clear()
    yield uri
    while deltaflow.active_run() is not None:
        deltaflow.end_run()
    deltaflow.flush()
    deltaflow.set_tracking_uri(None)
    fluent._active_experiment.clear()


@pytest.fixture()
def client(store_uri):
    from deltaflow import DeltaflowClient

    return DeltaflowClient(store_uri)


# -- time and live JVM heap per test folder ------------------------------------------------------
_folder_seconds: dict[str, float] = {}
_folder_heap: dict[str, str] = {}


def _folder(nodeid: str) -> str:
    parts = nodeid.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0].split("::")[0]


def _live_heap_mb() -> "str":
    """The shared JVM's live heap after a full GC, if this run started it."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:
        return "-"
    runtime = session.sparkContext._jvm.java.lang.Runtime.getRuntime()
    session.sparkContext._jvm.java.lang.System.gc()
    return f"{(runtime.totalMemory() - runtime.freeMemory()) / 2**20:.0f} MB"


def pytest_runtest_logreport(report):
    folder = _folder(report.nodeid)
    _folder_seconds[folder] = _folder_seconds.get(folder, 0.0) + report.duration


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    folder = _folder(item.nodeid)
    if nextitem is None or _folder(nextitem.nodeid) != folder:
        try:
            import sys

            _folder_heap[folder] = _live_heap_mb() if "pyspark.sql" in sys.modules else "-"
        except Exception as exc:  # noqa: BLE001 - a report line must never fail the run
            _folder_heap[folder] = f"? ({type(exc).__name__})"


def pytest_terminal_summary(terminalreporter):
    if not _folder_seconds:
        return
    terminalreporter.section("time and live JVM heap per test folder")
    for folder, seconds in _folder_seconds.items():
        terminalreporter.write_line(f"{folder:<28} {seconds / 60:6.1f} min   heap after: {_folder_heap.get(folder, '-')}")
