"""Autologging switched on with no autolog call in the code: DELTAFLOW_AUTOLOG or the Spark conf
spark.deltaflow.autolog.enabled, through the startup hook a real wheel install puts in site-packages.

The test builds deltaflow's wheel, installs it (no dependencies) into a fresh virtualenv whose
other packages come from this one, and runs a plain training script there in fresh processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import VectorAssembler
from deltaflow._spark import get_spark

spark = get_spark()
rows = [(float(i % 5), float(i % 3), float(i % 5 > 1)) for i in range(60)]
df = VectorAssembler(inputCols=["a", "b"], outputCol="features").transform(
    spark.createDataFrame(rows, "a double, b double, label double"))
model = LogisticRegression(maxIter=5).fit(df)
import deltaflow
deltaflow.flush()
runs = deltaflow.search_runs(output_format="list")  # autolog runs go to the Default experiment
print(json.dumps({"coefficients": list(model.coefficients), "deltaflow_file": deltaflow.__file__,
                  "runs": [{"tags": r.data.tags, "params": r.data.params, "metrics": r.data.metrics,
                            "status": r.info.status} for r in runs],
                  "hooked": "_deltaflow_autolog_hook" in __import__("sys").modules}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with deltaflow's wheel installed; dependencies from the test's environment."""
    work = tmp_path_factory.mktemp("autolog-switch")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"),
                            str(REPO)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (work / "dist").glob("deltaflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "deltaflow-autolog.pth" in names and "_deltaflow_autolog_hook.py" in names  # shipped at the root
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # Dependencies (pyspark, deltalake, ...) from this environment, after the venv's own packages.
    (Path(purelib) / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    assert (Path(purelib) / "deltaflow-autolog.pth").exists()
    return python, work


def _run(installed, tmp_path, **env_extra):
    python, work = installed
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "train.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("DELTAFLOW_AUTOLOG", "SPARK_CONF_DIR", "PYTHONPATH")}
    env.update(DELTAFLOW_TRACKING_URI=str(tmp_path / "store"), DELTAFLOW_ENGINE="rust",
               DELTAFLOW_AUTOLOG_TESTING="true", **env_extra)
    proc = subprocess.run([str(python), str(tmp_path / "train.py")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["hooked"]  # the .pth ran at interpreter start
    assert Path(result["deltaflow_file"]).is_relative_to(work / "venv")  # the installed wheel, not the repo
    return result


def _assert_autologged(result):
    (run,) = result["runs"]
    assert run["tags"]["mlflow.autologging"] == "pyspark.ml" and run["status"] == "FINISHED"
    assert run["params"]["maxIter"] == "5" and run["params"]["featuresCol"] == "features"
    assert "training_accuracy" in run["metrics"]


def test_env_var_switches_autolog_on(installed, tmp_path):
    _assert_autologged(_run(installed, tmp_path, DELTAFLOW_AUTOLOG="true"))


def test_spark_conf_switches_autolog_on(installed, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text("spark.deltaflow.autolog.enabled true\n")
    _assert_autologged(_run(installed, tmp_path, SPARK_CONF_DIR=str(conf)))


def test_neither_switch_leaves_fit_alone(installed, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text("spark.deltaflow.autolog.enabled true\n")
    off = _run(installed, tmp_path / "off", SPARK_CONF_DIR=str(conf), DELTAFLOW_AUTOLOG="false")  # env wins
    assert off["runs"] == [] and len(off["coefficients"]) == 2
    plain = _run(installed, tmp_path / "plain")  # hook installed, no switch: the probe steps aside
    assert plain["runs"] == [] and plain["coefficients"] == off["coefficients"]
