"""sklearn and custom Python models: log -> load round trips on a real store, and interop with MLflow."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

import deltaflow
import deltaflow.pyfunc
import deltaflow.sklearn
from deltaflow.errors import AlreadyExists, InvalidArgument
from deltaflow.models import ModelSignature, infer_signature

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

rust_only = pytest.mark.parametrize("engine", ["rust"], indirect=True)

X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "b": [1, 0, 1, 0, 1, 1]})
Y = [0, 1, 0, 1, 1, 0]


@pytest.fixture(scope="module")
def sk_model():
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y)


class Doubler(deltaflow.pyfunc.PythonModel):
    """A custom model with an artifact read in load_context and an inference param."""

    def load_context(self, context):
        with open(context.artifacts["offset"]) as fh:
            self.offset = float(fh.read())

    def predict(self, context, model_input, params=None):
        scale = (params or {}).get("scale", 2.0)
        return model_input["a"] * scale + self.offset


@pytest.fixture()
def offset_file(tmp_path):
    path = tmp_path / "offset.txt"
    path.write_text("0.5")
    return str(path)


@pytest.fixture()
def allow_mlflow_pickles(monkeypatch):
    # MLflow 3 refuses to unpickle any model without this; it is MLflow's policy, not ours.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")


# -- round trips through a store ------------------------------------------------------------
@rust_only
def test_sklearn_log_and_load_by_runs_uri_and_path(store_uri, sk_model, tmp_path):
    expected = sk_model.predict(X)
    with deltaflow.start_run() as run:
        info = deltaflow.sklearn.log_model(sk_model, name="model", input_example=X.head(3))
    run_id = run.info.run_id
    assert info.model_uri == f"runs:/{run_id}/model" and info.run_id == run_id
    assert [c.name for c in info.signature.inputs] == ["a", "b"]

    by_uri = deltaflow.sklearn.load_model(info.model_uri)
    np.testing.assert_array_equal(by_uri.predict(X), expected)
    pyfunc = deltaflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(pyfunc.predict(X), expected)
    assert pyfunc.metadata.run_id == run_id and pyfunc.metadata.artifact_path == "model"

    names = {f.path for f in deltaflow.DeltaflowClient(store_uri).list_artifacts(run_id, "model")}
    assert {"model/MLmodel", "model/model.pkl", "model/requirements.txt", "model/python_env.yaml",
            "model/conda.yaml", "model/input_example.json", "model/serving_input_example.json"} <= names

    local = deltaflow.download_artifacts(run_id=run_id, artifact_path="model", dst_path=str(tmp_path))
    np.testing.assert_array_equal(deltaflow.pyfunc.load_model(local).predict(X), expected)
    np.testing.assert_array_equal(deltaflow.sklearn.load_model(f"file://{local}").predict(X), expected)

    history = json.loads(deltaflow.get_run(run_id).data.tags["mlflow.log-model.history"])
    assert history[0]["artifact_path"] == "model" and "sklearn" in history[0]["flavors"]
    assert history[0]["run_id"] == run_id


@rust_only
def test_second_log_appends_history_and_explicit_run_id(store_uri, sk_model):
    client = deltaflow.DeltaflowClient(store_uri)
    run = client.create_run(client.create_experiment("models"))
    deltaflow.sklearn.log_model(sk_model, name="m1", run_id=run.info.run_id)
    deltaflow.sklearn.log_model(sk_model, artifact_path="m2", run_id=run.info.run_id)
    history = json.loads(client.get_run(run.info.run_id).data.tags["mlflow.log-model.history"])
    assert [h["artifact_path"] for h in history] == ["m1", "m2"]
    assert deltaflow.active_run() is None  # an explicit run_id starts no fluent run


@rust_only
def test_pyfunc_custom_model_round_trip(store_uri, offset_file):
    signature = infer_signature(X, X["a"] * 2.0, params={"scale": 2.0})
    with deltaflow.start_run() as run:
        info = deltaflow.pyfunc.log_model(name="custom", python_model=Doubler(),
                                          artifacts={"offset": offset_file}, signature=signature)
    model = deltaflow.pyfunc.load_model(f"runs:/{run.info.run_id}/custom")
    np.testing.assert_allclose(model.predict(X), X["a"] * 2.0 + 0.5)
    np.testing.assert_allclose(model.predict(X, params={"scale": 3}), X["a"] * 3.0 + 0.5)
    assert isinstance(model.unwrap_python_model(), Doubler)
    assert model.metadata.flavors["python_function"]["artifacts"]["offset"]["path"] == "artifacts/offset.txt"
    assert info.signature == signature
    with pytest.raises(InvalidArgument, match="input column 'a' is required"):
        model.predict(X[["b"]])
    with pytest.raises(InvalidArgument, match="param 'scale'"):
        model.predict(X, params={"scale": "big"})


def test_pyfunc_function_model_and_example_signature(tmp_path):
    path = str(tmp_path / "fn")
    deltaflow.pyfunc.save_model(path, python_model=lambda df: df["a"] + 1, input_example=X.head(2))
    model = deltaflow.pyfunc.load_model(path)
    np.testing.assert_allclose(model.predict(X), X["a"] + 1)
    assert model.metadata.signature.outputs.to_dict() == [{"type": "double", "name": "a", "required": True}]
    saved = json.loads(open(os.path.join(path, "input_example.json")).read())
    assert saved == {"columns": ["a", "b"], "data": [[1.0, 1], [2.0, 0]]}
    serving = json.loads(open(os.path.join(path, "serving_input_example.json")).read())
    assert serving == {"dataframe_split": saved}


def test_sklearn_signature_enforcement_errors(tmp_path, sk_model):
    path = str(tmp_path / "sk")
    deltaflow.sklearn.save_model(sk_model, path, input_example=X.head(2))
    model = deltaflow.pyfunc.load_model(path)
    # int32 -> double and int32 -> long are safe (int64 -> double is not, as in MLflow: it can
    # lose precision); extra columns are dropped.
    ok = pd.DataFrame({"b": np.array([1, 0], dtype=np.int32), "a": np.array([1, 2], dtype=np.int32),
                       "junk": ["x", "y"]})
    np.testing.assert_array_equal(model.predict(ok), sk_model.predict(ok[["a", "b"]].astype({"a": float})))
    with pytest.raises(InvalidArgument, match="input column 'b' is required"):
        model.predict(X[["a"]])
    with pytest.raises(InvalidArgument, match="input column 'b' has type float64.*'long'"):
        model.predict(X.assign(b=[0.5] * len(X)))
    with pytest.raises(InvalidArgument, match="input column 'a' has type .*'double'"):
        model.predict(X.assign(a=["x"] * len(X)))
    with pytest.raises(InvalidArgument, match="input column 'a' has type int64.*'double'"):
        model.predict(X.assign(a=[10**15] * len(X)))


def test_save_errors_write_nothing(tmp_path, sk_model):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "f").write_text("x")
    with pytest.raises(AlreadyExists, match="already exists and is not empty"):
        deltaflow.sklearn.save_model(sk_model, str(target))
    with pytest.raises(InvalidArgument, match="serialization_format 'json'"):
        deltaflow.sklearn.save_model(sk_model, str(tmp_path / "a"), serialization_format="json")
    with pytest.raises(InvalidArgument, match="ModelSignature"):
        deltaflow.sklearn.save_model(sk_model, str(tmp_path / "b"), signature={"inputs": "x"})
    with pytest.raises(InvalidArgument, match="has no method 'predict'"):
        deltaflow.sklearn.save_model(object(), str(tmp_path / "c"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


@rust_only
def test_bad_registered_model_name_writes_nothing(store_uri, sk_model):
    from deltaflow.errors import InvalidArgument

    with deltaflow.start_run() as run:
        with pytest.raises(InvalidArgument, match="registered model name 'a/b'"):
            deltaflow.sklearn.log_model(sk_model, name="model", registered_model_name="a/b")
    assert deltaflow.DeltaflowClient(store_uri).list_artifacts(run.info.run_id) == []


@rust_only
def test_unknown_run_in_uri(store_uri):
    from deltaflow.errors import NotFound

    with pytest.raises(NotFound):
        deltaflow.pyfunc.load_model("runs:/0123456789abcdef0123456789abcdef/model")


# -- interop with MLflow ----------------------------------------------------------------------
def test_deltaflow_models_load_in_mlflow(tmp_path, sk_model, offset_file, allow_mlflow_pickles):
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    sk_path, py_path = str(tmp_path / "sk"), str(tmp_path / "py")
    deltaflow.sklearn.save_model(sk_model, sk_path, input_example=X.head(2))
    deltaflow.pyfunc.save_model(py_path, python_model=Doubler(), artifacts={"offset": offset_file},
                                input_example=X.head(2))
    np.testing.assert_array_equal(mlflow_pyfunc.load_model(sk_path).predict(X), sk_model.predict(X))
    np.testing.assert_allclose(mlflow_pyfunc.load_model(py_path).predict(X), X["a"] * 2.0 + 0.5)
    import mlflow.sklearn

    assert type(mlflow.sklearn.load_model(sk_path)).__name__ == "Pipeline"
    meta = mlflow_pyfunc.load_model(sk_path).metadata
    assert meta.get_input_schema().input_names() == ["a", "b"]


def test_mlflow_models_load_in_deltaflow(tmp_path, sk_model, offset_file):
    mlflow = pytest.importorskip("mlflow")
    import mlflow.pyfunc
    import mlflow.sklearn

    class MlflowDoubler(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            self.offset = float(open(context.artifacts["offset"]).read())

        def predict(self, context, model_input, params=None):
            return model_input["a"] * 2.0 + self.offset

    reqs = ["scikit-learn", "cloudpickle"]  # skips MLflow's slow subprocess requirement inference
    paths = {fmt: str(tmp_path / fmt) for fmt in ("skops", "cloudpickle", "custom")}
    mlflow.sklearn.save_model(sk_model, paths["skops"], pip_requirements=reqs, input_example=X.head(2))
    mlflow.sklearn.save_model(sk_model, paths["cloudpickle"], serialization_format="cloudpickle",
                              pip_requirements=reqs)
    mlflow.pyfunc.save_model(paths["custom"], python_model=MlflowDoubler(), artifacts={"offset": offset_file},
                             pip_requirements=reqs)
    for fmt in ("skops", "cloudpickle"):
        if fmt == "skops":
            pytest.importorskip("skops")
        np.testing.assert_array_equal(deltaflow.pyfunc.load_model(paths[fmt]).predict(X), sk_model.predict(X))
        np.testing.assert_array_equal(deltaflow.sklearn.load_model(paths[fmt]).predict(X), sk_model.predict(X))
    custom = deltaflow.pyfunc.load_model(paths["custom"])
    np.testing.assert_allclose(custom.predict(X), X["a"] * 2.0 + 0.5)
    assert isinstance(deltaflow.pyfunc.load_model(paths["skops"]).metadata.signature, ModelSignature)
