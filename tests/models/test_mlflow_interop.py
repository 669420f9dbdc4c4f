"""Interop both ways with MLflow, the issue's acceptance point: a scikit-learn model, a Spark ML
pipeline and a custom Python model saved by deltaflow load and predict in MLflow (pyfunc and flavor
loaders), and the same three saved by MLflow load and predict in deltaflow, with identical predictions
and the signature carried across (and enforced) both ways.

Real MLflow 3 and the suite's one local SparkSession; no mocks. MLflow's save calls get explicit
``pip_requirements`` so it does not infer them in a subprocess. Every test runs in its own temp
working directory with a temp tracking URI, so nothing lands in the repo's ./mlruns.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

import deltaflow
import deltaflow.pyfunc
import deltaflow.sklearn
import deltaflow.spark
from deltaflow.errors import InvalidArgument
from deltaflow.models import ModelSignature, infer_signature

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("sklearn")
import mlflow.pyfunc  # noqa: E402
import mlflow.sklearn  # noqa: E402
import mlflow.spark  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from sklearn.linear_model import LogisticRegression as SkLogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline as SkPipeline  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "b": [1, 0, 1, 0, 1, 1]})
Y = [0, 1, 0, 1, 1, 0]
SK_INPUTS = [("a", "double"), ("b", "long")]

ROWS = [(1.0, 2.0, "a", 0.0), (2.0, 1.0, "b", 1.0), (3.0, 0.5, "a", 1.0), (0.1, 3.0, "b", 0.0),
        (2.5, 0.7, "a", 1.0), (0.4, 2.2, "b", 0.0)]
FEATURES = pd.DataFrame({"x": [r[0] for r in ROWS], "y": [r[1] for r in ROWS], "cat": [r[2] for r in ROWS]})
SPARK_INPUTS = [("x", "double"), ("y", "double"), ("cat", "string")]
# What MLflow infers for a Spark model's output: one unnamed double column (the "prediction" column).
SPARK_OUTPUTS = [{"type": "double", "required": True}]

# Requirements for MLflow's saves: explicit, so MLflow skips its subprocess requirement inference.
SK_REQS = ["scikit-learn", "cloudpickle"]


class Affine(deltaflow.pyfunc.PythonModel):
    """deltaflow's custom model: reads an artifact in load_context, takes an inference param."""

    def load_context(self, context):
        with open(context.artifacts["offset"]) as fh:
            self.offset = float(fh.read())

    def predict(self, context, model_input, params=None):
        return model_input["a"] * (params or {}).get("scale", 2.0) + self.offset


class MlflowAffine(mlflow.pyfunc.PythonModel):
    """The same model written against MLflow's PythonModel."""

    def load_context(self, context):
        with open(context.artifacts["offset"]) as fh:
            self.offset = float(fh.read())

    def predict(self, context, model_input, params=None):
        return model_input["a"] * (params or {}).get("scale", 2.0) + self.offset


def _affine(frame, scale=2.0, offset=0.5):
    return frame["a"] * scale + offset


@pytest.fixture(autouse=True)
def mlflow_sandbox(tmp_path, monkeypatch):
    """MLflow tracks into a temp sqlite file from a temp working directory, and may unpickle models
    (MLflow 3 refuses to without this variable; that is MLflow's policy, not ours)."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    assert mlflow.get_tracking_uri() == uri  # nobody set a process-wide URI that would win over ours
    yield
    assert not (work / "mlruns").exists()


@pytest.fixture(scope="module")
def sk_model():
    return make_pipeline(StandardScaler(), SkLogisticRegression()).fit(X, Y)


@pytest.fixture(scope="module")
def pipeline_model(spark):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer, VectorAssembler

    training = spark.createDataFrame(ROWS, ["x", "y", "cat", "label"])
    stages = [StringIndexer(inputCol="cat", outputCol="cat_idx"),
              VectorAssembler(inputCols=["x", "y", "cat_idx"], outputCol="features"),
              LogisticRegression(maxIter=5)]
    return Pipeline(stages=stages).fit(training)


@pytest.fixture()
def offset_file(tmp_path):
    path = tmp_path / "offset.txt"
    path.write_text("0.5")
    return str(path)


def _transform(model, spark, column="prediction"):
    rows = model.transform(spark.createDataFrame(FEATURES)).select(column).collect()
    return [r[0] for r in rows]


def _mlflow_columns(schema):
    return [(spec.name, spec.type.name) for spec in schema.inputs]


def _deltaflow_columns(schema):
    return [(spec.name, spec.type) for spec in schema.inputs]


def _mlmodel(path):
    with open(os.path.join(path, "MLmodel")) as fh:
        return yaml.safe_load(fh)


def _assert_pinned(path, *dists):
    """requirements.txt pins each distribution at the installed version (MLflow's loader included)."""
    from importlib.metadata import version

    with open(os.path.join(path, "requirements.txt")) as fh:
        lines = fh.read().splitlines()
    for dist in ("mlflow", *dists):
        assert f"{dist}=={version(dist)}" in lines, (dist, lines)


# -- deltaflow -> MLflow ------------------------------------------------------------------------
def test_sklearn_saved_by_deltaflow_predicts_in_mlflow(tmp_path, sk_model):
    path = str(tmp_path / "sk")
    deltaflow.sklearn.save_model(sk_model, path, input_example=X.head(3))
    _assert_pinned(path, "scikit-learn", "cloudpickle", "numpy", "pandas", "scipy")
    expected = sk_model.predict(X)
    ours = deltaflow.pyfunc.load_model(path).predict(X)

    theirs = mlflow.pyfunc.load_model(path)
    predicted = theirs.predict(X)
    assert isinstance(predicted, np.ndarray) and predicted.dtype == expected.dtype
    np.testing.assert_array_equal(predicted, expected)
    np.testing.assert_array_equal(predicted, ours)
    assert theirs.loader_module == "mlflow.sklearn"

    estimator = mlflow.sklearn.load_model(path)
    assert isinstance(estimator, SkPipeline) and [type(s).__name__ for _, s in estimator.steps] == [
        "StandardScaler", "LogisticRegression"]
    np.testing.assert_array_equal(estimator.predict_proba(X), sk_model.predict_proba(X))

    # The signature deltaflow inferred from the example reads the same in MLflow and re-serialises
    # to the same JSON strings.
    meta = theirs.metadata
    assert _mlflow_columns(meta.get_input_schema()) == SK_INPUTS
    assert [s.type.name for s in meta.get_output_schema().inputs] == ["long"]
    assert meta.signature.to_dict() == deltaflow.pyfunc.load_model(path).metadata.signature.to_dict()
    # ...and MLflow enforces it: a missing column is MLflow's error naming the column.
    with pytest.raises(MlflowException, match=r"missing inputs \['b'\]"):
        theirs.predict(X[["a"]])


@pytest.mark.spark
def test_spark_pipeline_saved_by_deltaflow_predicts_in_mlflow(spark, tmp_path, pipeline_model):
    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession

    path = str(tmp_path / "spark")
    deltaflow.spark.save_model(pipeline_model, path, input_example=FEATURES.head(2))
    _assert_pinned(path, "pyspark", "numpy", "pandas")
    expected = _transform(pipeline_model, spark)
    ours = deltaflow.pyfunc.load_model(path).predict(FEATURES)

    theirs = mlflow.pyfunc.load_model(path)
    predicted = theirs.predict(FEATURES)
    assert predicted == expected and all(isinstance(p, float) for p in predicted)
    assert list(ours) == expected
    assert SparkSession.getActiveSession() is spark  # MLflow scored on our session, started none

    loaded = mlflow.spark.load_model(path)
    assert isinstance(loaded, PipelineModel)
    assert [type(s).__name__ for s in loaded.stages] == ["StringIndexerModel", "VectorAssembler",
                                                         "LogisticRegressionModel"]
    assert _transform(loaded, spark) == expected
    assert _transform(loaded, spark, "probability") == _transform(pipeline_model, spark, "probability")

    meta = theirs.metadata
    assert _mlflow_columns(meta.get_input_schema()) == SPARK_INPUTS
    assert meta.get_output_schema().to_dict() == SPARK_OUTPUTS
    assert meta.signature.to_dict() == deltaflow.pyfunc.load_model(path).metadata.signature.to_dict()


@pytest.mark.spark
def test_single_spark_model_saved_by_deltaflow_loads_in_mlflow(spark, tmp_path, pipeline_model):
    """MLflow stores every Spark model as a PipelineModel (a lone model as a one-stage pipeline) and
    loads the folder with PipelineModel.load; deltaflow saves it the same way."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegressionModel

    lr = pipeline_model.stages[-1]
    path = str(tmp_path / "lr")
    deltaflow.spark.save_model(lr, path)
    assert _mlmodel(path)["flavors"]["spark"]["model_class"] == "pyspark.ml.pipeline.PipelineModel"

    for loaded in (mlflow.spark.load_model(path), deltaflow.spark.load_model(path)):
        assert isinstance(loaded, PipelineModel) and len(loaded.stages) == 1
        assert isinstance(loaded.stages[0], LogisticRegressionModel)
        assert loaded.stages[0].coefficients == lr.coefficients
        assert loaded.stages[0].intercept == lr.intercept
    # Scored through pyfunc on a features frame, both give the original model's predictions.
    features = pipeline_model.stages[0].transform(spark.createDataFrame(FEATURES))
    features = pipeline_model.stages[1].transform(features).select("features")
    expected = [r[0] for r in lr.transform(features).select("prediction").collect()]
    frame = features.toPandas()
    assert mlflow.pyfunc.load_model(path).predict(frame) == expected
    assert list(deltaflow.pyfunc.load_model(path).predict(frame)) == expected


def test_custom_model_saved_by_deltaflow_predicts_in_mlflow(tmp_path, offset_file):
    path = str(tmp_path / "custom")
    signature = infer_signature(X, _affine(X), params={"scale": 2.0})
    deltaflow.pyfunc.save_model(path, python_model=Affine(), artifacts={"offset": offset_file},
                                signature=signature)
    os.remove(offset_file)  # the model folder holds its own copy; loaders must read that one
    ours = deltaflow.pyfunc.load_model(path)

    theirs = mlflow.pyfunc.load_model(path)
    assert isinstance(theirs.unwrap_python_model(), Affine)
    for params, scale in ((None, 2.0), ({"scale": 3.0}, 3.0)):
        predicted = theirs.predict(X, params=params)
        assert isinstance(predicted, pd.Series)
        pd.testing.assert_series_equal(predicted, _affine(X, scale))
        pd.testing.assert_series_equal(predicted, ours.predict(X, params=params))

    meta = theirs.metadata
    assert _mlflow_columns(meta.get_input_schema()) == SK_INPUTS
    assert [(p.name, p.dtype.name, p.default) for p in meta.get_params_schema().params] == [
        ("scale", "double", 2.0)]
    assert meta.signature.to_dict() == signature.to_dict()
    assert theirs.unwrap_python_model().offset == 0.5  # load_context read the copied artifact
    assert meta.flavors["python_function"]["artifacts"]["offset"]["path"] == "artifacts/offset.txt"


# -- MLflow -> deltaflow ------------------------------------------------------------------------
@pytest.mark.parametrize("serialization_format", ["skops", "cloudpickle"])
def test_sklearn_saved_by_mlflow_predicts_in_deltaflow(tmp_path, sk_model, serialization_format):
    if serialization_format == "skops":
        pytest.importorskip("skops")  # MLflow 3's default format
    path = str(tmp_path / "sk")
    mlflow.sklearn.save_model(sk_model, path, serialization_format=serialization_format,
                              pip_requirements=SK_REQS, input_example=X.head(3))
    assert _mlmodel(path)["flavors"]["sklearn"]["serialization_format"] == serialization_format
    expected = sk_model.predict(X)

    ours = deltaflow.pyfunc.load_model(path)
    predicted = ours.predict(X)
    assert isinstance(predicted, np.ndarray) and predicted.dtype == expected.dtype
    np.testing.assert_array_equal(predicted, expected)
    np.testing.assert_array_equal(predicted, mlflow.pyfunc.load_model(path).predict(X))

    estimator = deltaflow.sklearn.load_model(path)
    assert isinstance(estimator, SkPipeline)
    np.testing.assert_array_equal(estimator.predict_proba(X), sk_model.predict_proba(X))

    assert isinstance(ours.metadata.signature, ModelSignature)
    assert _deltaflow_columns(ours.metadata.signature.inputs) == SK_INPUTS
    assert ours.metadata.signature.outputs.to_dict() == [{"type": "long", "required": True}]
    assert ours.metadata.signature.to_dict() == _mlmodel(path)["signature"]  # same JSON strings


@pytest.mark.spark
def test_spark_pipeline_saved_by_mlflow_predicts_in_deltaflow(spark, tmp_path, pipeline_model):
    import pyspark
    from pyspark.ml import PipelineModel

    path = str(tmp_path / "spark")
    mlflow.spark.save_model(pipeline_model, path, input_example=FEATURES.head(2),
                            pip_requirements=[f"pyspark=={pyspark.__version__}"])
    expected = _transform(pipeline_model, spark)

    ours = deltaflow.pyfunc.load_model(path)
    predicted = ours.predict(FEATURES)
    assert predicted == expected and isinstance(predicted, list)  # a list, as MLflow returns
    assert list(predicted) == mlflow.pyfunc.load_model(path).predict(FEATURES)

    loaded = deltaflow.spark.load_model(path)
    assert isinstance(loaded, PipelineModel) and len(loaded.stages) == 3
    assert _transform(loaded, spark) == expected
    assert _transform(loaded, spark, "probability") == _transform(pipeline_model, spark, "probability")

    signature = ours.metadata.signature
    assert _deltaflow_columns(signature.inputs) == SPARK_INPUTS
    assert signature.outputs.to_dict() == SPARK_OUTPUTS
    assert signature.to_dict() == _mlmodel(path)["signature"]
    with pytest.raises(InvalidArgument, match="input column 'cat' is required"):
        ours.predict(FEATURES[["x", "y"]])


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_custom_model_saved_by_mlflow_predicts_in_deltaflow(tmp_path, offset_file, monkeypatch, compression):
    if compression:  # MLflow then writes python_model.pkl.gz and says so in MLmodel
        monkeypatch.setenv("MLFLOW_LOG_MODEL_COMPRESSION", compression)
    path = str(tmp_path / "custom")
    signature = mlflow.models.infer_signature(X, _affine(X), params={"scale": 2.0})
    mlflow.pyfunc.save_model(path, python_model=MlflowAffine(), artifacts={"offset": offset_file},
                             signature=signature, pip_requirements=["cloudpickle", "pandas"])
    conf = _mlmodel(path)["flavors"]["python_function"]
    assert conf.get("python_model_compression") == compression
    assert conf["python_model"] == ("python_model.pkl.gz" if compression else "python_model.pkl")
    os.remove(offset_file)  # the model folder holds its own copy; loaders must read that one
    theirs = mlflow.pyfunc.load_model(path)

    ours = deltaflow.pyfunc.load_model(path)
    assert isinstance(ours.unwrap_python_model(), MlflowAffine)
    assert ours.unwrap_python_model().offset == 0.5  # load_context read the copied artifact
    for params, scale in ((None, 2.0), ({"scale": 3.0}, 3.0)):
        predicted = ours.predict(X, params=params)
        assert isinstance(predicted, pd.Series)
        pd.testing.assert_series_equal(predicted, _affine(X, scale))
        pd.testing.assert_series_equal(predicted, theirs.predict(X, params=params))

    assert _deltaflow_columns(ours.metadata.signature.inputs) == SK_INPUTS
    assert [(p.name, p.type, p.default) for p in ours.metadata.signature.params] == [("scale", "double", 2.0)]
    assert ours.metadata.signature.to_dict() == signature.to_dict()


def test_mlflow_signature_is_enforced_by_deltaflow(tmp_path, sk_model, offset_file):
    """deltaflow enforces the signature of a model MLflow saved: its errors name the column or param."""
    sk_path, custom_path = str(tmp_path / "sk"), str(tmp_path / "custom")
    mlflow.sklearn.save_model(sk_model, sk_path, serialization_format="cloudpickle", pip_requirements=SK_REQS,
                              input_example=X.head(3))
    mlflow.pyfunc.save_model(custom_path, python_model=MlflowAffine(), artifacts={"offset": offset_file},
                             signature=mlflow.models.infer_signature(X, _affine(X), params={"scale": 2.0}),
                             pip_requirements=["cloudpickle", "pandas"])
    sk, custom = deltaflow.pyfunc.load_model(sk_path), deltaflow.pyfunc.load_model(custom_path)

    with pytest.raises(InvalidArgument, match="input column 'b' is required by the model signature"):
        sk.predict(X[["a"]])
    with pytest.raises(InvalidArgument, match="input column 'b' has type float64.*'long'"):
        sk.predict(X.assign(b=[0.5] * len(X)))
    with pytest.raises(InvalidArgument, match="input column 'a' is required"):
        custom.predict(X[["b"]])
    with pytest.raises(InvalidArgument, match="param 'scale'"):
        custom.predict(X, params={"scale": "big"})
    # Columns come in any order and extras are dropped, as in MLflow.
    shuffled = X[["b", "a"]].assign(extra="x")
    np.testing.assert_array_equal(sk.predict(shuffled), sk_model.predict(X))
    pd.testing.assert_series_equal(custom.predict(shuffled), _affine(X))


# -- the folder itself --------------------------------------------------------------------------
def _layout(path):
    """What a model folder is made of, minus what differs by design or by the moment: the top-level
    files, the sparkml folder's structure, MLmodel's keys, flavors, signature and example info, and
    the input example files. requirements.txt/conda.yaml differ by design (deltaflow pins from
    installed versions; MLflow infers, or is given pip_requirements here)."""
    mlmodel = _mlmodel(path)
    sparkml = os.path.join(path, "sparkml")
    examples = {}
    for name in ("input_example.json", "serving_input_example.json"):
        if os.path.exists(os.path.join(path, name)):
            with open(os.path.join(path, name)) as fh:
                examples[name] = json.load(fh)
    return {
        "files": sorted(os.listdir(path)),
        "sparkml": sorted(os.path.relpath(d, sparkml) for d, _, _ in os.walk(sparkml)
                          if not os.path.basename(d).startswith(("data", "."))),
        "keys": sorted(mlmodel),
        "flavors": mlmodel["flavors"],
        "signature": mlmodel.get("signature"),
        "saved_input_example_info": mlmodel.get("saved_input_example_info"),
        "examples": examples,
    }


@pytest.mark.parametrize("flavor", ["sklearn", "custom", pytest.param("spark", marks=pytest.mark.spark)])
def test_saved_folder_matches_mlflows(request, tmp_path, sk_model, offset_file, flavor):
    """The same model saved by deltaflow and by MLflow: same files, same MLmodel keys, same flavor
    configurations, signature and input example, value for value."""
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    if flavor == "sklearn":
        deltaflow.sklearn.save_model(sk_model, ours, input_example=X.head(3))
        mlflow.sklearn.save_model(sk_model, theirs, serialization_format="cloudpickle", input_example=X.head(3),
                                  pip_requirements=SK_REQS)
    elif flavor == "custom":
        signature = infer_signature(X, _affine(X), params={"scale": 2.0})
        deltaflow.pyfunc.save_model(ours, python_model=Affine(), artifacts={"offset": offset_file},
                                    signature=signature, input_example=X.head(3))
        mlflow.pyfunc.save_model(theirs, python_model=MlflowAffine(), artifacts={"offset": offset_file},
                                 signature=mlflow.models.infer_signature(X, _affine(X), params={"scale": 2.0}),
                                 input_example=X.head(3), pip_requirements=["cloudpickle", "pandas"])
    else:
        pipeline = request.getfixturevalue("pipeline_model")
        deltaflow.spark.save_model(pipeline, ours, input_example=FEATURES.head(2))
        mlflow.spark.save_model(pipeline, theirs, input_example=FEATURES.head(2), pip_requirements=["pyspark"])
    mine, reference = _layout(ours), _layout(theirs)
    for part in reference:
        assert mine[part] == reference[part], part


@pytest.mark.parametrize("engine", ["rust"], indirect=True)
def test_log_model_history_entries_are_mlflows(store_uri, tmp_path, sk_model, offset_file):
    """Two models logged in one fluent run: the run's ``mlflow.log-model.history`` tag lists both, in
    order, each entry exactly what MLflow records for that MLmodel (its Model.get_tags_dict())."""
    from mlflow.models import Model as MlflowModel

    with deltaflow.start_run() as run:
        deltaflow.sklearn.log_model(sk_model, name="sk")
        deltaflow.pyfunc.log_model(name="custom", python_model=Affine(), artifacts={"offset": offset_file})
    run_id = run.info.run_id
    history = json.loads(deltaflow.get_run(run_id).data.tags["mlflow.log-model.history"])
    assert [entry["artifact_path"] for entry in history] == ["sk", "custom"]
    for entry in history:
        local = deltaflow.download_artifacts(run_id=run_id, artifact_path=entry["artifact_path"],
                                             dst_path=str(tmp_path / entry["artifact_path"]))
        assert entry == MlflowModel.load(local).get_tags_dict()
        assert entry["run_id"] == run_id
