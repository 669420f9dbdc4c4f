"""pytest fixtures for testing code that uses deltaflow.

Enable them in a ``conftest.py``::

    pytest_plugins = ["deltaflow.testing"]

Fixtures:

* ``deltaflow_spark`` (one per test run): the SparkSession deltaflow uses — the one already running,
  or a local session with Delta configured, tuned for one machine (small shuffles, no UI, no console
  progress bar, Python workers on the test's interpreter). Needs ``deltaflow[spark]``.
* ``deltaflow_store`` (one per test): a fresh, empty store in the test's ``tmp_path``, set as the
  tracking URI; yields its URI. Afterwards open runs are ended, what was logged is flushed, and the
  tracking URI and active experiment are put back as they were (autologging's background work for the
  test is waited for; autologging itself stays as the test left it). Uses no Spark.

Example::

    def test_training_logs_auc(deltaflow_store):
        train_and_log()                      # your code, calling deltaflow / mlflow-style APIs
        runs = deltaflow.search_runs()
        assert runs["metrics.auc"].iloc[0] > 0.7
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

__all__ = ["deltaflow_spark", "deltaflow_store"]


@pytest.fixture(scope="session")
def deltaflow_spark() -> "SparkSession":
    """The active SparkSession, or deltaflow's local one with Delta (built once per test run)."""
    from deltaflow._spark import spark_session

    return spark_session()


@pytest.fixture()
def deltaflow_store(tmp_path: Any) -> Iterator[str]:
    """A throwaway store under ``tmp_path`` as the tracking URI for one test; everything is reset
    after it."""
    import deltaflow
    from deltaflow import config
    from deltaflow.tracking import fluent

    previous = (config._explicit_uri, config._explicit_artifact_root)
    previous_experiments = dict(fluent._active_experiment)
    uri = str(tmp_path / "deltaflow-store")
    deltaflow.set_tracking_uri(uri)
    fluent._active_experiment.clear()
    fluent._last_run_id.set(None)
    try:
        yield uri
    finally:
        try:
            while deltaflow.active_run() is not None:
                deltaflow.end_run()
            deltaflow.flush()
        finally:
            with config._lock:
                config._explicit_uri, config._explicit_artifact_root = previous
            fluent._active_experiment.clear()
            fluent._active_experiment.update(previous_experiments)
            fluent._last_run_id.set(None)
