"""A user's own SparkSession: a plain one (no Delta), one built with Delta, and deltaflow's public
session and pytest plugin.

A process holds one SparkContext, and the suite's shared one has Delta, so each user-built session
runs in its own subprocess (a JVM start each: keep them few).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_ENV = {**os.environ, "DELTAFLOW_DRIVER_MEMORY": "1g", "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable}
_ENV.pop("DELTAFLOW_ENGINE", None)
_ENV.pop("DELTAFLOW_TRACKING_URI", None)

_PLAIN = r"""
import io, json, logging, os, sys, tempfile
from pyspark.sql import SparkSession

log = io.StringIO()
handler = logging.StreamHandler(log)
logging.getLogger("deltaflow").addHandler(handler)
logging.getLogger("deltaflow").setLevel(logging.INFO)

spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "1g")
         .config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")

import deltaflow
import deltaflow.sql
from deltaflow import MlflowClient
from deltaflow.errors import MissingDependency

root = sys.argv[1]
uri = os.path.join(root, "store")
deltaflow.set_tracking_uri(uri)
out = {}
exp = deltaflow.set_experiment("plain")
with deltaflow.start_run() as run:
    deltaflow.log_metric("m", 1.0)
    import numpy as np
    from sklearn.linear_model import LinearRegression
    info = deltaflow.sklearn.log_model(LinearRegression().fit(np.array([[0.0], [1.0]]), [0.0, 1.0]), "model")
client = MlflowClient()
client.create_run(exp.experiment_id)
out["runs"] = len(deltaflow.search_runs())
out["experiments"] = sorted(e.name for e in deltaflow.search_experiments())
out["engine"] = client._store.engine.name
out["prediction"] = float(deltaflow.pyfunc.load_model(info.model_uri).predict(np.array([[2.0]]))[0])

# autologging: a DataFrame that is not Delta is recorded without a version
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.linalg import Vectors
deltaflow.autolog()
df = spark.createDataFrame([(Vectors.dense([float(i % 3)]), float(i % 2)) for i in range(20)], ["features", "label"])
LogisticRegression(maxIter=3).fit(df)
deltaflow.flush()
auto = deltaflow.last_active_run()
auto = deltaflow.get_run(auto.info.run_id)
out["autolog_params"] = sorted(auto.data.params)[:3]
out["autolog_inputs"] = [(i.dataset.source_type, getattr(i.dataset, "version", None))
                         for i in auto.inputs.dataset_inputs]
deltaflow.autolog(disable=True)

errors = {}
for name, call in [
    ("register_views", lambda: deltaflow.sql.register_views()),
    ("output_format_spark", lambda: deltaflow.search_runs(output_format="spark")),
    ("spark_engine", lambda: deltaflow.DeltaflowClient(os.path.join(root, "s2"), engine="spark").search_experiments()),
]:
    try:
        call()
        errors[name] = None
    except MissingDependency as exc:
        errors[name] = str(exc)
    except Exception as exc:
        errors[name] = "WRONG " + type(exc).__name__ + ": " + str(exc)[:300]
out["errors"] = errors

from click.testing import CliRunner
from deltaflow.cli import cli
result = CliRunner().invoke(cli, ["--tracking-uri", uri, "doctor", "--no-spark-check"])
out["doctor"] = [result.exit_code, result.output]
out["log"] = log.getvalue()
print("RESULT " + json.dumps(out))
"""


def _run(script: str, tmp_path: Path, timeout: int = 420) -> dict:
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=timeout, env=_ENV, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1][len("RESULT "):])
    out["stderr"] = proc.stderr
    return out


def test_a_plain_spark_session_keeps_tracking_working_and_says_what_needs_delta(tmp_path):
    out = _run(_PLAIN, tmp_path)
    assert out["engine"] == "rust"
    assert out["runs"] == 2 and out["experiments"] == ["Default", "plain"]
    assert out["prediction"] == pytest.approx(2.0)
    assert out["log"].count("no Delta Lake configured; the rust engine (delta-rs) serves store") == 1, out["log"]
    assert out["autolog_params"], out
    assert out["autolog_inputs"] and all(t == "spark_dataframe" and v is None for t, v in out["autolog_inputs"])
    for name, message in out["errors"].items():
        assert message is not None and not message.startswith("WRONG"), (name, message)
        assert "configure_spark_with_delta_pip" in message and "deltaflow.spark_session()" in message, message
    code, text = out["doctor"]
    assert code == 1 and "NO Delta configured" in text and "configure_spark_with_delta_pip" in text, text
    assert "all checks passed" not in text


_DELTA = r"""
import json, os, sys, time
from pyspark.sql import SparkSession
from deltaflow._spark import DELTA_CATALOG, DELTA_EXTENSION, delta_jars

spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "1g")
         .config("spark.jars", ",".join(str(p) for p in delta_jars()))
         .config("spark.sql.extensions", DELTA_EXTENSION).config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
         .config("spark.ui.showConsoleProgress", "true").getOrCreate())
import deltaflow
import deltaflow.sql

deltaflow.set_tracking_uri(os.path.join(sys.argv[1], "store"))
print("TRACKING-START", file=sys.stderr, flush=True)
out = {}
started = time.monotonic()
deltaflow.set_experiment("user-delta")
out["first_call_s"] = time.monotonic() - started
with deltaflow.start_run():
    for step in range(20):
        deltaflow.log_metric("loss", 1.0 / (step + 1), step=step)
out["runs"] = len(deltaflow.search_runs())
out["engine"] = deltaflow.MlflowClient()._store.engine.name
sys.stderr.flush()
print("TRACKING-END", file=sys.stderr, flush=True)
frame = deltaflow.search_runs(output_format="spark")
out["spark_frame"] = [type(frame).__module__, int(frame.count())]
out["views"] = deltaflow.sql.register_views()
print("RESULT " + json.dumps(out))
"""


def test_a_users_delta_session_tracks_through_delta_rs_without_progress_bars(tmp_path):
    out = _run(_DELTA, tmp_path)
    assert out["engine"] == "rust" and out["runs"] == 1
    tracking = out["stderr"].split("TRACKING-START", 1)[1].split("TRACKING-END", 1)[0]
    assert "[Stage" not in tracking, tracking[-2000:]
    assert out["first_call_s"] < 10, out  # ~0.1 s measured; the bound only catches Spark jobs
    assert out["spark_frame"] == ["pyspark.sql.dataframe", 1]  # Spark features still go through Spark
    assert out["views"]


def test_the_public_session_runs_python_udfs_on_this_interpreter(spark):
    """deltaflow's own local session points Python workers at the running interpreter (the `python3`
    on PATH may lack numpy): OneVsRestModel.transform runs a Python UDF over numpy."""
    import deltaflow
    from pyspark.ml.classification import LogisticRegression, OneVsRest
    from pyspark.ml.linalg import Vectors

    assert "spark_session" in deltaflow.__all__ and deltaflow.spark_session() is spark
    if os.environ.get("PYSPARK_PYTHON") not in (None, sys.executable):
        pytest.skip("PYSPARK_PYTHON was set before the session started")
    df = spark.createDataFrame([(Vectors.dense([float(i % 3), float(i % 5)]), float(i % 3)) for i in range(30)],
                               ["features", "label"])
    model = OneVsRest(classifier=LogisticRegression(maxIter=5)).fit(df)
    predictions = [row.prediction for row in model.transform(df).select("prediction").collect()]
    assert len(predictions) == 30 and set(predictions) <= {0.0, 1.0, 2.0}


_PLUGIN_CONFTEST = '''
import deltaflow

pytest_plugins = ["deltaflow.testing"]
deltaflow.set_tracking_uri("/before")
'''

_PLUGIN_TEST = '''
import os

import deltaflow


def test_store_is_fresh_and_set(deltaflow_store, tmp_path):
    assert deltaflow.get_tracking_uri() == deltaflow_store and deltaflow_store.startswith(str(tmp_path))
    deltaflow.set_experiment("x")
    deltaflow.start_run()                       # left open: the fixture ends it
    deltaflow.log_metric("m", 1.0)
    assert len(deltaflow.search_runs()) == 1


def test_store_is_reset_after(deltaflow_store):
    assert not os.path.exists(deltaflow_store)              # a new, empty folder each test
    assert deltaflow.active_run() is None


def test_uri_is_put_back():
    assert deltaflow.get_tracking_uri() == "/before"
'''


def test_the_pytest_plugin_gives_a_throwaway_store(tmp_path):
    (tmp_path / "conftest.py").write_text(_PLUGIN_CONFTEST)
    (tmp_path / "test_plugin.py").write_text(_PLUGIN_TEST)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_plugin.py")],
                          capture_output=True, text=True, timeout=300, env={**_ENV, "DELTAFLOW_ENGINE": "rust"},
                          cwd=tmp_path)
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


# -- Spark Connect ---------------------------------------------------------------------------------
_CONNECT_JAR = "spark-connect_2.12-3.5.7.jar"
_CONNECT_URL = f"https://repo1.maven.org/maven2/org/apache/spark/spark-connect_2.12/3.5.7/{_CONNECT_JAR}"

_CONNECT_SERVER = r"""
import sys, time
from pyspark.sql import SparkSession
from deltaflow._spark import DELTA_CATALOG, DELTA_EXTENSION, delta_jars

port, connect_jar = sys.argv[1], sys.argv[2]
(SparkSession.builder.master("local[2]").config("spark.driver.memory", "1g")
 .config("spark.jars", ",".join([connect_jar] + [str(p) for p in delta_jars()]))
 .config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
 .config("spark.connect.grpc.binding.port", port)
 .config("spark.sql.extensions", DELTA_EXTENSION).config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
 .config("spark.sql.shuffle.partitions", "4").config("spark.databricks.delta.snapshotPartitions", "2")
 .config("spark.ui.enabled", "false").getOrCreate())
print("READY", flush=True)
while True:
    time.sleep(1)
"""

_CONNECT_CLIENT = r"""
import json, os, sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.remote("sc://localhost:" + sys.argv[2]).getOrCreate()
import deltaflow
import deltaflow.sql
from deltaflow.errors import InvalidState

root = sys.argv[1]
deltaflow.set_tracking_uri(os.path.join(root, "store"))
out = {}
deltaflow.set_experiment("connect")
with deltaflow.start_run():
    deltaflow.log_param("p", "1")
    deltaflow.log_metric("m", 0.5)
out["engine"] = deltaflow.MlflowClient()._store.engine.name
out["runs"] = deltaflow.search_runs()["metrics.m"].tolist()
frame = deltaflow.search_runs(output_format="spark")
out["spark_frame"] = [type(frame).__module__, int(frame.count())]
out["views"] = len(deltaflow.sql.register_views())
try:
    deltaflow.DeltaflowClient(os.path.join(root, "s2"), engine="spark").search_experiments()
    out["jvm_error"] = None
except InvalidState as exc:
    out["jvm_error"] = str(exc)
print("RESULT " + json.dumps(out))
"""


def _connect_jar() -> Path:
    """The Spark Connect server JAR for pyspark 3.5.7, cached next to the Delta JARs (SHA-1 checked)."""
    import hashlib
    import urllib.request

    from deltaflow._spark import jars_dir

    path = jars_dir() / _CONNECT_JAR
    if not path.exists():
        try:
            data = urllib.request.urlopen(_CONNECT_URL, timeout=120).read()
            expected = urllib.request.urlopen(_CONNECT_URL + ".sha1", timeout=60).read().decode().split()[0]
        except OSError as exc:
            pytest.skip(f"cannot download {_CONNECT_URL}: {exc}")
        assert hashlib.sha1(data).hexdigest() == expected
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def test_a_spark_connect_session_tracks_through_delta_rs_and_reads_through_connect(tmp_path):
    pytest.importorskip("grpc", reason="pyspark's connect extra (the dev extra installs it)")
    import socket

    jar = _connect_jar()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    server = subprocess.Popen([sys.executable, "-c", _CONNECT_SERVER, port, str(jar)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=_ENV, cwd=tmp_path)
    try:
        assert server.stdout.readline().strip() == "READY"
        proc = subprocess.run([sys.executable, "-c", _CONNECT_CLIENT, str(tmp_path), port], capture_output=True,
                              text=True, timeout=420, env=_ENV, cwd=tmp_path)
    finally:
        server.terminate()
        server.wait(timeout=60)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["engine"] == "rust" and out["runs"] == [0.5]
    assert out["spark_frame"] == ["pyspark.sql.connect.dataframe", 1]
    assert out["views"] > 0
    assert out["jvm_error"] and "needs a classic SparkSession" in out["jvm_error"] and "Spark Connect" in out["jvm_error"]
