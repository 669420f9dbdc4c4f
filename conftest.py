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
# One JVM serves the whole run (Spark ML, registry, both-engine store tests): its live heap grows to
# ~1.5 GB by the store tests (not yet understood; see the session-3 note), so give it room.
os.environ.setdefault("DELTAFLOW_DRIVER_MEMORY", "6g")
# Managed (metastore) tables of the test session live in a throwaway warehouse, not the repo.
os.environ.setdefault("DELTAFLOW_WAREHOUSE_DIR", tempfile.mkdtemp(prefix="deltaflow-warehouse-"))


@pytest.fixture(scope="session")
def spark():
    from deltaflow._spark import get_spark

    session = get_spark()
    yield session


ENGINES = ("spark", "rust")


@pytest.fixture(params=ENGINES)
def engine(request, monkeypatch):
    """Each store test runs once per engine; DELTAFLOW_ENGINE makes every store the test opens use it."""
    if request.param == "spark":
        request.getfixturevalue("spark")
    monkeypatch.setenv("DELTAFLOW_ENGINE", request.param)
    return request.param


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
