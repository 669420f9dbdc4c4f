"""Autolog test helpers: autologging switched on per test (in test mode, so a bug in our logging
raises instead of warning) and off afterwards, tiny training frames, and read-back helpers.

Spark ML runs on the suite's one shared SparkSession; the tracking store uses the rust engine
(each test module parametrizes ``engine`` to "rust").
"""

from __future__ import annotations

import json

import pytest

import deltaflow


@pytest.fixture()
def autolog(store_uri, spark, monkeypatch):
    """Enables autologging (default arguments) for the test; call ``autolog(**kwargs)`` to re-enable
    with other arguments. Turned off, and pending background work waited for, afterwards."""
    from deltaflow.tracking import fluent

    monkeypatch.setenv("DELTAFLOW_AUTOLOG_TESTING", "true")
    fluent._last_run_id.set(None)  # last_active_run() must not see an earlier test's run

    def enable(**kwargs):
        deltaflow.autolog(**kwargs)

    enable()
    yield enable
    deltaflow.autolog(disable=True)
    # Our background work must land in this test's store, before store_uri points elsewhere.
    deltaflow.flush()


@pytest.fixture(scope="session")
def binary_df(spark):
    """40 rows: a 2-d vector ``features`` and a 0/1 ``label`` that is not perfectly separable."""
    from pyspark.ml.linalg import Vectors

    rows = [(Vectors.dense([float(i % 7), float(i % 5)]), float((i % 7) + (i % 3) > 4)) for i in range(40)]
    return spark.createDataFrame(rows, ["features", "label"]).cache()


@pytest.fixture(scope="session")
def raw_df(spark):
    """60 rows of raw columns: two doubles, a category and a numeric target/label."""
    rows = []
    for i in range(60):
        x, y, cat = float(i % 10), float((i * 7) % 11), "abc"[i % 3]
        target = 2.0 * x - 0.5 * y + (1.0 if cat == "a" else 0.0) + ((i * 13) % 5) * 0.1
        rows.append((x, y, cat, target, float(x + (i % 4) > 6)))
    return spark.createDataFrame(rows, ["x", "y", "cat", "target", "label"]).cache()


def experiment_runs(client) -> list:
    """Every run in the default experiment (where these tests' runs go)."""
    from deltaflow import ViewType

    experiment_id = client._store.default_experiment_id()
    return list(client.search_runs([experiment_id], "", run_view_type=ViewType.ALL, max_results=1000))


def artifact_paths(client, run_id: str, path: str = "") -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, path or None)}


def read_artifact(client, run_id: str, path: str, tmp_path) -> str:
    local = client.download_artifacts(run_id, path, str(tmp_path))
    with open(local, encoding="utf-8") as fh:
        return fh.read()


def mlmodel(client, run_id: str, tmp_path) -> dict:
    import yaml

    return yaml.safe_load(read_artifact(client, run_id, "model/MLmodel", tmp_path))


def signature_inputs(meta: dict) -> list:
    return json.loads(meta["signature"]["inputs"])


def signature_outputs(meta: dict) -> list:
    return json.loads(meta["signature"]["outputs"])


def predictions(model, df, col: str = "prediction") -> list:
    return [r[0] for r in model.transform(df).select(col).collect()]
