"""Scoring fixtures: saved models shared by every test that only reads them, a registry with two
versions of one model, and a store on the rust engine (the suite's one SparkSession does the Spark
work)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import scoring_models

pytestmark = pytest.mark.spark

FEATURES = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "b": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]})
COEFS = {1: (2.0, 1.0), 2: (10.0, -1.0)}
SPARK_ROWS = [(1.0, 2.0, "a", 0.0), (2.0, 1.0, "b", 1.0), (3.0, 0.5, "a", 1.0), (0.1, 3.0, "b", 0.0),
              (2.5, 0.7, "a", 1.0), (0.4, 2.2, "b", 0.0), (1.7, 1.1, "a", 1.0), (0.9, 2.6, "b", 0.0)]  # version -> (coef of a, coef of b): y = ca*a + cb*b


def expected(version: int, frame: pd.DataFrame) -> np.ndarray:
    ca, cb = COEFS[version]
    return ca * frame["a"].to_numpy() + cb * frame["b"].to_numpy()


@pytest.fixture(scope="session")
def sk_fitted():
    """Two fitted scikit-learn models, by the version number they get in the registry."""
    from sklearn.linear_model import LinearRegression

    return {version: LinearRegression().fit(FEATURES, ca * FEATURES["a"] + cb * FEATURES["b"])
            for version, (ca, cb) in COEFS.items()}


@pytest.fixture(scope="session")
def sk_paths(tmp_path_factory, sk_fitted):
    """The two models saved (signature a double, b double -> double), by version number."""
    import deltaflow.sklearn

    root = tmp_path_factory.mktemp("sk-models")
    paths = {}
    for version, model in sk_fitted.items():
        paths[version] = str(root / f"v{version}")
        deltaflow.sklearn.save_model(model, paths[version], input_example=FEATURES.head(2))
    return paths


@pytest.fixture(scope="session")
def multi_path(tmp_path_factory):
    """A custom model with one input ``x`` and seven typed outputs (and a ``scale`` param)."""
    import deltaflow.pyfunc
    from deltaflow.models.schema import ColSpec, ModelSignature, ParamSchema, ParamSpec, Schema

    outputs = Schema([ColSpec("double", "score"), ColSpec("string", "label"), ColSpec("boolean", "flag"),
                      ColSpec("long", "count"), ColSpec("integer", "small"), ColSpec("float", "ratio"),
                      ColSpec({"type": "array", "items": {"type": "double"}}, "items")])
    signature = ModelSignature(Schema([ColSpec("double", "x")]), outputs,
                               ParamSchema([ParamSpec("scale", "double", 1.0)]))
    path = str(tmp_path_factory.mktemp("multi") / "model")
    deltaflow.pyfunc.save_model(path, python_model=scoring_models.MultiOutput(), signature=signature)
    return path


@pytest.fixture(scope="session")
def pipeline_path(spark, tmp_path_factory):
    """A saved Spark ML pipeline (StringIndexer, VectorAssembler, LogisticRegression) on x, y, cat."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer, VectorAssembler

    import deltaflow.spark

    training = spark.createDataFrame(SPARK_ROWS, ["x", "y", "cat", "label"])
    model = Pipeline(stages=[StringIndexer(inputCol="cat", outputCol="cat_idx"),
                             VectorAssembler(inputCols=["x", "y", "cat_idx"], outputCol="features"),
                             LogisticRegression(maxIter=5)]).fit(training)
    path = str(tmp_path_factory.mktemp("pipeline") / "model")
    deltaflow.spark.save_model(model, path, input_example=training.drop("label").limit(2).toPandas())
    return path


@pytest.fixture()
def recorder(tmp_path):
    """``(model_path, log_dir)``: a Recorder model whose loads are logged to ``log_dir``."""
    import sysconfig

    import deltaflow.pyfunc
    from deltaflow.models.schema import ColSpec, ModelSignature, Schema

    log_dir = tmp_path / "loads"
    log_dir.mkdir()
    marker = tmp_path / "marker.txt"
    marker.write_text("shipped")
    outputs = Schema([ColSpec("long", "pid"), ColSpec("string", "prefix"), ColSpec("string", "marker"),
                      ColSpec("double", "x2"), ColSpec("boolean", "outside")])
    path = str(tmp_path / "recorder")
    deltaflow.pyfunc.save_model(path, python_model=scoring_models.Recorder(), artifacts={"marker": str(marker)},
                                signature=ModelSignature(Schema([ColSpec("double", "x")]), outputs),
                                model_config={"log_dir": str(log_dir), "outside": sysconfig.get_paths()["purelib"]})
    return path, str(log_dir)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store on the rust engine, set as the tracking URI for the module."""
    import deltaflow

    patch = pytest.MonkeyPatch()
    patch.setenv("DELTAFLOW_ENGINE", "rust")
    patch.setenv("DELTAFLOW_USER", "scorer")
    uri = str(tmp_path_factory.mktemp("scoring-store") / "store")
    deltaflow.set_tracking_uri(uri)
    yield uri
    deltaflow.flush()
    deltaflow.set_tracking_uri(None)
    patch.undo()


@pytest.fixture(scope="module")
def registered(store, sk_fitted):
    """Registered model ``scoring_lr``: version 1 in Production, version 2 under the alias ``champion``;
    each logged under its own run (so each version has a run id)."""
    import deltaflow
    import deltaflow.sklearn
    from deltaflow import MlflowClient

    client = MlflowClient(store)
    runs = {}
    for version in (1, 2):
        with deltaflow.start_run() as run:
            info = deltaflow.sklearn.log_model(sk_fitted[version], name="model", input_example=FEATURES.head(2),
                                               registered_model_name="scoring_lr")
        assert info.registered_model_version == version
        runs[version] = run.info.run_id
    client.transition_model_version_stage("scoring_lr", 1, "Production")
    client.set_registered_model_alias("scoring_lr", "champion", 2)
    return {"name": "scoring_lr", "client": client, "runs": runs}


@pytest.fixture()
def no_jobs(spark):
    """``with no_jobs(): ...`` asserts that the block ran no Spark job (a driver-side refusal)."""
    import contextlib
    import uuid

    @contextlib.contextmanager
    def check():
        group = f"no-jobs-{uuid.uuid4().hex}"
        spark.sparkContext.setJobGroup(group, "must stay empty")
        try:
            yield
        finally:
            jobs = spark.sparkContext.statusTracker().getJobIdsForGroup(group)
            spark.sparkContext.setJobGroup("", "")
            assert list(jobs) == [], f"Spark jobs ran: {list(jobs)}"

    return check


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory):
    """One virtualenv cache for the test session: the first virtualenv UDF builds the environment
    (from pip's own cache of wheels), later ones in the session reuse it by content hash."""
    return str(tmp_path_factory.mktemp("env-cache"))


def run_script(script: str, args: list[str], env: dict, cwd: str, timeout: int = 600) -> dict:
    """Run ``script`` in a new Python process; the JSON after its ``RESULT `` line."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(lines[-1][len("RESULT "):])


def child_env(**extra: str) -> dict:
    """The environment of a child Spark process: this interpreter for its Python workers, no store
    or engine choice inherited from the test process."""
    import sys

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "DELTAFLOW_DRIVER_MEMORY": "1g"}
    for name in ("DELTAFLOW_ENGINE", "DELTAFLOW_TRACKING_URI", "SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE"):
        env.pop(name, None)
    env.update(extra)
    return env
