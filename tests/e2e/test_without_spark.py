"""``pip install deltaflow`` without the spark extra: logging, search, non-Spark models and the CLI
work on the rust engine, and every Spark feature says which extra to install.

"Not installed" is real here, not a patched import: the child interpreter runs with ``-S`` (no site
hooks) on a folder holding links to every installed distribution except pyspark and delta-spark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SRC = Path(__file__).resolve().parents[2] / "src"
_SPARK_NAMES = ("pyspark", "delta", "delta_spark", "py4j")


@pytest.fixture(scope="module")
def no_spark_path(tmp_path_factory) -> str:
    site = Path(sysconfig.get_paths()["purelib"])
    folder = tmp_path_factory.mktemp("site-without-spark")
    for entry in site.iterdir():
        stem = entry.name.split("-")[0].split(".")[0].lower()
        if stem in _SPARK_NAMES or entry.suffix == ".pth":
            continue
        (folder / entry.name).symlink_to(entry)
    return os.pathsep.join([str(SRC), str(folder)])


def _run(no_spark_path: str, tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK"))}
    env.update({"PYTHONPATH": no_spark_path, "DELTAFLOW_TRACKING_URI": str(tmp_path / "store"),
                "DELTAFLOW_ENGINE": "auto"})
    return subprocess.run([sys.executable, "-S", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    assert importlib.util.find_spec("pyspark") is None, "pyspark must not be importable here"
    import deltaflow as mlflow
    from deltaflow.errors import DeltaflowError

    mlflow.set_experiment("no-spark")
    with mlflow.start_run(run_name="plain") as run:
        mlflow.log_params({"alpha": 0.5, "model": "ridge"})
        for step in range(10):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_dict({"k": 1}, "config.json")
    found = mlflow.search_runs(filter_string="metrics.loss < 0.2 AND params.model = 'ridge'",
                               output_format="list")
    # Non-Spark models: a scikit-learn model and a custom pyfunc model log and load without Spark.
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    with mlflow.start_run(run_name="models"):
        sk_info = mlflow.sklearn.log_model(LinearRegression().fit(frame, [1.0, 3.0, 5.0, 7.0]), name="lr")

        class Doubler(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input["x"] * 2

        py_info = mlflow.pyfunc.log_model(name="doubler", python_model=Doubler())
    sk_pred = [round(float(v), 6) for v in mlflow.pyfunc.load_model(sk_info.model_uri).predict(frame)]
    py_pred = [float(v) for v in mlflow.pyfunc.load_model(py_info.model_uri).predict(frame)]
    out = {"sk_pred": sk_pred, "py_pred": py_pred}
    out.update({"found": [r.info.run_id for r in found], "run_id": run.info.run_id,
           "history": len(mlflow.get_metric_history(run.info.run_id, "loss")),
           "artifacts": [f.path for f in mlflow.list_artifacts(run_id=run.info.run_id)]})
    errors = {}
    for label, call in [
        ("spark_output", lambda: mlflow.search_runs(output_format="spark")),
        ("spark_engine", lambda: mlflow.DeltaflowClient(engine="spark").search_experiments()),
        ("metastore", lambda: mlflow.DeltaflowClient("metastore:main.ml").search_experiments()),
        ("sql_views", lambda: __import__("deltaflow.sql", fromlist=["x"]).register_views()),
    ]:
        try:
            call()
            errors[label] = "no error"
        except DeltaflowError as exc:
            errors[label] = f"{type(exc).__name__}: {exc}"
    out["errors"] = errors
    out["engine"] = mlflow.DeltaflowClient()._store.engine.name
    out["pyspark_loaded"] = any(m.startswith(("pyspark", "py4j")) for m in sys.modules)
    print(json.dumps(out))
""")


LEAN = textwrap.dedent("""
    import sys
    import deltaflow as mlflow
    with mlflow.start_run():
        for step in range(10):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.flush()
    found = mlflow.search_runs(filter_string="metrics.loss < 0.5", output_format="list")
    assert len(found) == 1, found
    heavy = sorted(m for m in ("pandas", "pyarrow.compute", "pyarrow.dataset", "pyspark") if m in sys.modules)
    print("HEAVY", heavy)
""")


def test_a_logging_script_loads_no_heavy_modules(no_spark_path, tmp_path):
    """What keeps a ten-metric script under a second: no pandas (pyarrow's pandas probe is avoided),
    no pyarrow.compute on the write path, no pyarrow.dataset, no Spark. Searching needs compute."""
    proc = _run(no_spark_path, tmp_path, "-c", LEAN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HEAVY ['pyarrow.compute']" in proc.stdout, proc.stdout


def test_log_search_and_cli_without_spark(no_spark_path, tmp_path):
    proc = _run(no_spark_path, tmp_path, "-c", SCRIPT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["engine"] == "rust" and not out["pyspark_loaded"]
    assert out["sk_pred"] == [1.0, 3.0, 5.0, 7.0] and out["py_pred"] == [0.0, 2.0, 4.0, 6.0]
    assert out["found"] == [out["run_id"]] and out["history"] == 10 and out["artifacts"] == ["config.json"]
    for label in ("spark_output", "spark_engine", "sql_views"):
        assert out["errors"][label].startswith("MissingDependency"), out["errors"]
        assert "pip install 'deltaflow[spark]'" in out["errors"][label], out["errors"]
    # A metastore store can only be served by Spark: said clearly, with the extra to install.
    assert "deltaflow[spark]" in out["errors"]["metastore"], out["errors"]

    listed = _run(no_spark_path, tmp_path, "-m", "deltaflow.cli", "runs", "list", "--experiment-name", "no-spark",
                  "--filter", "attributes.run_name = 'plain'", "--output", "json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert [r["info"]["run_id"] for r in json.loads(listed.stdout)] == [out["run_id"]]

    doctor = _run(no_spark_path, tmp_path, "-m", "deltaflow.cli", "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "pyspark:       not installed (the spark engine: pip install 'deltaflow[spark]')" in doctor.stdout
    assert "rust check:    ok" in doctor.stdout and "spark check:   skipped (no pyspark)" in doctor.stdout
