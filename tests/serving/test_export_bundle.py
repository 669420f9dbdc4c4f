"""``deltaflow models export`` writes a folder that predicts in a fresh virtualenv holding only the
bundle's requirements.txt: no deltaflow, no MLflow, no pyspark.

The virtualenv is new on every run (no system site-packages, no pip of its own: the test's pip
installs into it with ``--python``). Only the downloaded wheels are cached, in a wheelhouse
(``DELTAFLOW_TEST_WHEELHOUSE``, default ``~/.cache/deltaflow/test-wheelhouse``): the install runs
``--no-index`` from it, so it also proves requirements.txt names everything needed; a missing
wheel is downloaded into it once (needs PyPI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving_support import deltaflow_command, expected

pytestmark = pytest.mark.e2e

FACTOR = 3.0
X, N = [1.0, 2.5, -4.0], [1, 2, 3]
WHEELHOUSE = Path(os.environ.get("DELTAFLOW_TEST_WHEELHOUSE",
                                 Path.home() / ".cache" / "deltaflow" / "test-wheelhouse"))


def _export(registry, uri: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*deltaflow_command(), "models", "export", "-m", uri, "-o", str(out)],
                          env=registry.env(), cwd=registry.root, capture_output=True, text=True, timeout=120)


def _pip(*args: str, python: str = "") -> subprocess.CompletedProcess:
    target = ["--python", python] if python else []
    return subprocess.run([sys.executable, "-m", "pip", *target, "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bundle(registry) -> Path:
    registry.register("exported", registry.save(FACTOR))
    registry.client.set_registered_model_alias("exported", "champion", 1)
    out = registry.root / "bundle"
    proc = _export(registry, "models:/exported@champion", out)
    assert proc.returncode == 0, proc.stderr
    assert "(version 1)" in proc.stdout and "custom Python model" in proc.stdout
    return out


@pytest.fixture(scope="module")
def fresh_venv(bundle, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    requirements = str(bundle / "requirements.txt")
    # --no-compile: byte-compiling all of pandas and numpy is most of an install's time; the bundle's
    # run compiles what it imports.
    install = ["install", "--no-compile", "--no-index", "--find-links", str(WHEELHOUSE), "-r", requirements]
    proc = _pip(*install, python=str(python))
    if proc.returncode != 0:  # a wheel not cached yet: fetch it once
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        fetched = _pip("download", "--only-binary", ":all:", "-d", str(WHEELHOUSE), "-r", requirements)
        assert fetched.returncode == 0, fetched.stderr
        proc = _pip(*install, python=str(python))
    assert proc.returncode == 0, proc.stderr
    return python


def test_bundle_layout_and_pins(bundle):
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "bundle.json", "model", "predict.py",
                                                        "requirements.txt"]
    assert (bundle / "model" / "MLmodel").exists()
    pins = (bundle / "requirements.txt").read_text().split()
    names = {p.split("==")[0].lower() for p in pins}
    assert all("==" in p for p in pins), pins
    assert {"pandas", "numpy", "cloudpickle"} <= names
    assert not names & {"deltaflow", "mlflow", "pyspark", "delta-spark", "deltalake", "databricks-sdk"}, pins
    spec = json.loads((bundle / "bundle.json").read_text())
    assert spec["kind"] == "python_model" and spec["version"] == 1
    assert [c["name"] for c in spec["inputs"]] == ["x", "n"]


def test_bundle_predicts_in_a_fresh_virtualenv_without_deltaflow(bundle, fresh_venv, tmp_path):
    probe = subprocess.run([str(fresh_venv), "-c", "import importlib.util as u, sys; print(sys.prefix); "
                            "print([m for m in ('deltaflow', 'mlflow', 'pyspark', 'sklearn') if u.find_spec(m)])"],
                           capture_output=True, text=True, timeout=60)
    prefix, found = probe.stdout.splitlines()
    assert prefix == str(fresh_venv.parent.parent) and found == "[]", probe.stdout + probe.stderr

    csv = tmp_path / "in.csv"
    csv.write_text("x,n\n" + "".join(f"{x},{n}\n" for x, n in zip(X, N)))
    run = subprocess.run([str(fresh_venv), str(bundle / "predict.py"), str(csv)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"predictions": expected(FACTOR, X, N)}

    payload = tmp_path / "in.json"
    payload.write_text(json.dumps({"dataframe_split": {"columns": ["x", "n"], "data": [[x, n] for x, n in zip(X, N)]},
                                   "params": {"offset": 0.5}}))
    out = tmp_path / "out.csv"
    run = subprocess.run([str(fresh_venv), str(bundle / "predict.py"), str(payload), "--output-format", "csv",
                          "-o", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = out.read_text().split()
    assert lines[0] == "prediction" and [float(v) for v in lines[1:]] == expected(FACTOR, X, N, offset=0.5)

    bad = tmp_path / "bad.csv"
    bad.write_text("x\n1.0\n")
    run = subprocess.run([str(fresh_venv), str(bundle / "predict.py"), str(bad)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and "'n'" in run.stderr, run.stderr


def test_scikit_learn_bundle(registry, tmp_path):
    """A scikit-learn model's bundle (run by this interpreter: scikit-learn is too large to install
    into a fresh virtualenv on every test run)."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import deltaflow.sklearn
    from deltaflow.serving.export import export_model

    frame = pd.DataFrame({"a": np.linspace(-2, 2, 40), "b": np.linspace(1, -1, 40) ** 2})
    model = LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))
    path = registry.root / "sk-model"
    deltaflow.sklearn.save_model(model, str(path), input_example=frame.head(2))
    bundle = export_model(str(path), str(tmp_path / "sk-bundle"))
    assert bundle.kind == "sklearn" and bundle.version is None
    names = {p.split("==")[0].lower() for p in bundle.requirements}
    assert {"scikit-learn", "numpy", "pandas", "cloudpickle"} <= names and "deltaflow" not in names
    (tmp_path / "in.csv").write_text(frame[["b", "a"]].to_csv(index=False))  # columns by name, not position
    run = subprocess.run([sys.executable, str(Path(bundle.path) / "predict.py"), str(tmp_path / "in.csv")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["predictions"] == model.predict(frame).tolist()


@pytest.mark.filterwarnings("ignore:Add type hints:UserWarning")  # MLflow's advice on the model class
def test_mlflow_saved_custom_model_keeps_its_mlflow_pin(tmp_path):
    """MLflow 3 wraps a custom model's predict with its own code, which the pickle then refers to: the
    bundle pins mlflow (run by this interpreter, where MLflow is installed)."""
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    import pandas as pd

    from deltaflow.serving.export import export_model

    class Tripler(mlflow_pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["x"] * 3

    path = tmp_path / "mlflow-model"
    mlflow_pyfunc.save_model(str(path), python_model=Tripler(), pip_requirements=["cloudpickle", "pandas"])
    bundle = export_model(str(path), str(tmp_path / "bundle"))
    assert any(r.startswith("mlflow==") for r in bundle.requirements), bundle.requirements
    pd.DataFrame({"x": [1.0, 2.0]}).to_csv(tmp_path / "in.csv", index=False)
    run = subprocess.run([sys.executable, str(Path(bundle.path) / "predict.py"), str(tmp_path / "in.csv")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["predictions"] == [{"x": 3.0}, {"x": 6.0}]  # a Series: one-key records


def test_export_refusals_write_nothing(registry, tmp_path):
    """Each refusal names the problem and leaves no folder behind (the CLI's form of these errors is
    in test_rest_start.py)."""
    from deltaflow.errors import InvalidArgument, NotFound
    from deltaflow.serving.export import export_model

    import deltaflow.pyfunc
    from deltaflow.models.schema import ColSpec, Schema
    from serving_support import model_classes

    holding = model_classes().Scaled(1.0)
    holding.schema = Schema([ColSpec("double", "x")])  # a deltaflow object inside the model
    holding_path = registry.root / "holds-deltaflow"
    deltaflow.pyfunc.save_model(str(holding_path), python_model=holding)
    cases = [
        (registry.save(spark=True), tmp_path / "a", InvalidArgument, "Spark ML model"),
        (str(holding_path), tmp_path / "c", InvalidArgument, "deltaflow.models.schema.ColSpec"),
        ("models:/absent/1", tmp_path / "b", NotFound, "registered model 'absent' does not exist"),
        (registry.save(1.0), registry.root, InvalidArgument, "already exists and is not empty"),
        (registry.save(1.0), tmp_path / "no" / "such" / "dir", InvalidArgument, "parent folder"),
    ]
    before = sorted(os.listdir(tmp_path))
    for uri, out, error, words in cases:
        with pytest.raises(error, match=words):
            export_model(uri, str(out), tracking_uri=registry.uri)
    assert sorted(os.listdir(tmp_path)) == before
    assert not [p for p in os.listdir(registry.root) if p.startswith(".export-")]
