"""Scoring fixtures: saved models shared by every test that only reads them, a registry with two
versions of one model, and a store on the rust engine (the suite's one SparkSession does the Spark
work)."""

from __future__ import annotations

import os

import pytest

import scoring_models
from scoring_data import COEFS, FEATURES, SPARK_ROWS, child_env, expected, run_script  # noqa: F401

pytestmark = pytest.mark.spark

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
            for key in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel"):
                spark.sparkContext.setLocalProperty(key, None)  # as it was: no group on this thread
            assert list(jobs) == [], f"Spark jobs ran: {list(jobs)}"

    return check


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory):
    """One virtualenv cache for the test session: the first virtualenv UDF builds the environment
    (from pip's own cache of wheels), later ones in the session reuse it by content hash."""
    return str(tmp_path_factory.mktemp("env-cache"))


# -- processes started early: their start-up overlaps the tests that run before theirs -------------
_JAR = "spark-connect_2.12-3.5.7.jar"
_URL = f"https://repo1.maven.org/maven2/org/apache/spark/spark-connect_2.12/3.5.7/{_JAR}"

_SERVER = r"""
import sys, time
from pyspark.sql import SparkSession
from deltaflow._spark import DELTA_CATALOG, DELTA_EXTENSION, delta_jars

port, jar, warehouse = sys.argv[1], sys.argv[2], sys.argv[3]
(SparkSession.builder.master("local[2]").config("spark.driver.memory", "1g")
 .config("spark.jars", ",".join([jar] + [str(p) for p in delta_jars()]))
 .config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
 .config("spark.connect.grpc.binding.port", port)
 .config("spark.sql.extensions", DELTA_EXTENSION).config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
 .config("spark.sql.shuffle.partitions", "2").config("spark.databricks.delta.snapshotPartitions", "2")
 .config("spark.sql.warehouse.dir", warehouse)
 .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").getOrCreate())
print("READY", flush=True)
while True:
    time.sleep(1)
"""



def _connect_jar():
    """The Spark Connect server JAR for pyspark 3.5.7, cached beside the Delta JARs (SHA-1 checked)."""
    import hashlib
    import urllib.request

    from deltaflow._spark import jars_dir

    path = jars_dir() / _JAR
    if not path.exists():
        data = urllib.request.urlopen(_URL, timeout=120).read()
        sha1 = urllib.request.urlopen(_URL + ".sha1", timeout=60).read().decode().split()[0]
        if hashlib.sha1(data).hexdigest() != sha1:
            raise RuntimeError(f"checksum mismatch for {_URL}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".part").write_bytes(data)
        path.with_suffix(".part").replace(path)
    return path


def _selected(request, *files: str) -> bool:
    return any(os.path.basename(str(item.fspath)) in files for item in request.session.items)


class _Early:
    """A Spark Connect server process and a virtualenv build, started with the session."""

    def __init__(self) -> None:
        self.server = None
        self.port = None
        self.server_error = None
        self.build = None
        self.stopped = False

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=60)
        self.stopped = True


_EARLY: list[_Early] = []  # the session's, for pytest_runtest_teardown
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def pytest_runtest_teardown(item, nextitem):
    """An idle Spark Connect server's JVM still takes ~20% of a core: stop it after this folder's last
    test instead of at the end of the session (the serving, store and unit tests run after it)."""
    if _EARLY and (nextitem is None or not os.path.abspath(str(nextitem.fspath)).startswith(_HERE)):
        _EARLY[0].stop_server()


@pytest.fixture(scope="session", autouse=True)
def early(request, env_cache, tmp_path_factory):
    """Starts, when the session will need them, the Spark Connect server (a JVM) and the build of the
    test models' virtualenv (pip), in the background; the tests that use them wait for them."""
    import socket
    import subprocess
    import sys
    import threading

    state = _Early()
    if _selected(request, "test_connect.py"):
        try:
            jar = _connect_jar()
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                state.port = str(probe.getsockname()[1])
            cwd = tmp_path_factory.mktemp("connect-server")
            state.server = subprocess.Popen([sys.executable, "-c", _SERVER, state.port, str(jar), str(cwd / "warehouse")],
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                            env=child_env(), cwd=cwd)
        except Exception as exc:  # noqa: BLE001 - reported by the test that needs the server
            state.server_error = exc
    if _selected(request, "test_cluster.py", "test_connect.py"):
        folder = tmp_path_factory.mktemp("env-model")

        def build() -> None:
            import deltaflow.pyfunc
            from deltaflow.serving._env import ensure_env, spec_for

            # A model with the same requirements as the tests' Recorder models: the same environment key.
            path = str(folder / "model")
            deltaflow.pyfunc.save_model(path, python_model=scoring_models.Recorder())
            ensure_env(spec_for(path, env_cache))

        state.build = threading.Thread(target=build, name="env-build", daemon=True)
        state.build.start()
    _EARLY.append(state)
    yield state
    _EARLY.clear()
    state.stop_server()
    if state.build is not None:
        state.build.join(timeout=600)


@pytest.fixture(scope="session")
def connect_server(early):
    """The port of the session's local Spark Connect server (with Delta), once it is ready."""
    pytest.importorskip("grpc", reason="pyspark's connect extra (the dev extra installs it)")
    if early.server_error is not None:
        pytest.fail(f"the local Spark Connect server did not start: {early.server_error}")
    if early.server is None:
        pytest.fail("the Spark Connect server was not started in this test run")
    if early.stopped:
        pytest.fail("the Spark Connect server was stopped after the last test of tests/scoring; a test "
                    "that needs it must run among them")
    if not getattr(early, "ready", False):
        assert early.server.stdout.readline().strip() == "READY"
        early.ready = True
    return early.port
