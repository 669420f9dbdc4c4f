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

* ``local_databricks`` (one per test module): a started :class:`LocalDatabricks`, a Databricks
  workspace emulated on 127.0.0.1 (Jobs, Workspace, DBFS, Files/Volumes, SCIM Me) whose job tasks run as
  local subprocesses. Talk to it with the real databricks-sdk: ``local_databricks.workspace_client()``,
  or ``WorkspaceClient()`` with ``local_databricks_env``. Uses no Spark itself; tasks that start Spark do.
* ``local_databricks_env`` (one per test): sets ``DATABRICKS_HOST`` / ``DATABRICKS_TOKEN`` to the
  emulator (and hides ``DATABRICKS_CONFIG_PROFILE``) for the test, so code that builds its own
  ``WorkspaceClient()`` or runs ``deltaflow run --backend databricks`` talks to it; yields the emulator.

Example::

    def test_training_logs_auc(deltaflow_store):
        train_and_log()                      # your code, calling deltaflow / mlflow-style APIs
        runs = deltaflow.search_runs()
        assert runs["metrics.auc"].iloc[0] > 0.7

    def test_my_job_runs(local_databricks):
        w = local_databricks.workspace_client()
        w.workspace.upload("/Users/local-user@example.com/job.py", b"print('hi')", format=ImportFormat.AUTO)
        run = w.jobs.submit(run_name="smoke", tasks=[SubmitTask(
            task_key="main", existing_cluster_id=local_databricks.cluster_id,
            spark_python_task=SparkPythonTask(python_file="/Workspace/Users/local-user@example.com/job.py"))]
        ).result()
        assert run.state.result_state == RunResultState.SUCCESS
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

    from deltaflow.testing.local_databricks import LocalDatabricks

__all__ = ["LocalDatabricks", "deltaflow_spark", "deltaflow_store", "local_databricks", "local_databricks_env"]


def __getattr__(name: str) -> Any:
    # The emulator module loads on first use, so the plugin costs nothing to suites that do not use it.
    if name == "LocalDatabricks":
        from deltaflow.testing.local_databricks import LocalDatabricks

        return LocalDatabricks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


@pytest.fixture(scope="module")
def local_databricks(tmp_path_factory: Any) -> Iterator["LocalDatabricks"]:
    """A started LocalDatabricks shared by the tests of one module; stopped (runs cancelled) after them."""
    from deltaflow.testing.local_databricks import LocalDatabricks

    with LocalDatabricks(tmp_path_factory.mktemp("local-databricks")) as emulator:
        yield emulator


@pytest.fixture()
def local_databricks_env(local_databricks: "LocalDatabricks", monkeypatch: Any) -> "LocalDatabricks":
    """Points databricks-sdk's default configuration (env vars) at ``local_databricks`` for one test."""
    for name in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET",
                 "DATABRICKS_AUTH_TYPE", "DATABRICKS_ACCOUNT_ID", "DATABRICKS_USERNAME", "DATABRICKS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in local_databricks.env().items():
        monkeypatch.setenv(name, value)
    return local_databricks
