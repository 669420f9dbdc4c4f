"""Spark ML models: a PipelineModel with feature stages and a single model, round trips and MLflow interop.

Uses the suite's one shared SparkSession; the tracking store runs on the rust engine for speed.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

import deltaflow
import deltaflow.pyfunc
import deltaflow.spark
from deltaflow.errors import InvalidArgument

pytestmark = pytest.mark.spark
rust_only = pytest.mark.parametrize("engine", ["rust"], indirect=True)

ROWS = [(1.0, 2.0, "a", 0.0), (2.0, 1.0, "b", 1.0), (3.0, 0.5, "a", 1.0), (0.1, 3.0, "b", 0.0),
        (2.5, 0.7, "a", 1.0), (0.4, 2.2, "b", 0.0)]
FEATURES = pd.DataFrame({"x": [r[0] for r in ROWS], "y": [r[1] for r in ROWS], "cat": [r[2] for r in ROWS]})


@pytest.fixture(scope="module")
def training(spark):
    return spark.createDataFrame(ROWS, ["x", "y", "cat", "label"])


@pytest.fixture(scope="module")
def pipeline_model(training):
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer, VectorAssembler

    stages = [StringIndexer(inputCol="cat", outputCol="cat_idx"),
              VectorAssembler(inputCols=["x", "y", "cat_idx"], outputCol="features"),
              LogisticRegression(maxIter=5)]
    return Pipeline(stages=stages).fit(training)


def _spark_predictions(model, spark):
    rows = model.transform(spark.createDataFrame(FEATURES)).select("prediction").collect()
    return np.array([r[0] for r in rows])


@rust_only
def test_pipeline_log_and_load_by_runs_uri_and_path(store_uri, spark, pipeline_model, tmp_path):
    from pyspark.ml import PipelineModel

    expected = _spark_predictions(pipeline_model, spark)
    with deltaflow.start_run() as run:
        info = deltaflow.spark.log_model(pipeline_model, name="pipe", input_example=FEATURES.head(2))
    assert info.model_uri == f"runs:/{run.info.run_id}/pipe"
    assert [(c.name, c.type) for c in info.signature.inputs] == [("x", "double"), ("y", "double"),
                                                                 ("cat", "string")]
    spark_flavor = info.flavors["spark"]
    assert spark_flavor["model_class"] == "pyspark.ml.pipeline.PipelineModel"
    assert spark_flavor["model_data"] == "sparkml"
    assert info.signature.outputs.to_dict() == [{"type": "double", "required": True}]  # as MLflow infers it

    loaded = deltaflow.spark.load_model(info.model_uri)
    assert isinstance(loaded, PipelineModel) and len(loaded.stages) == 3
    np.testing.assert_array_equal(_spark_predictions(loaded, spark), expected)
    pyfunc = deltaflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(FEATURES)), expected)

    local = deltaflow.download_artifacts(run_id=run.info.run_id, artifact_path="pipe", dst_path=str(tmp_path))
    np.testing.assert_array_equal(np.asarray(deltaflow.pyfunc.load_model(local).predict(FEATURES)), expected)
    with pytest.raises(InvalidArgument, match="input column 'cat' is required"):
        pyfunc.predict(FEATURES[["x", "y"]])
    reqs = open(f"{local}/requirements.txt").read().splitlines()
    assert any(r.startswith("pyspark==") for r in reqs)


def test_single_model_and_spark_dataframe_example(spark, training, pipeline_model, tmp_path):
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegressionModel

    lr = pipeline_model.stages[-1]
    path = str(tmp_path / "lr")
    deltaflow.spark.save_model(lr, path)
    loaded = deltaflow.spark.load_model(path)
    # Saved as MLflow saves a lone model: a one-stage PipelineModel (so MLflow loads it too).
    assert isinstance(loaded, PipelineModel) and isinstance(loaded.stages[0], LogisticRegressionModel)
    assert loaded.stages[0].coefficients == lr.coefficients

    sig_path = str(tmp_path / "sig")
    deltaflow.spark.save_model(pipeline_model, sig_path, input_example=training.select("x", "y", "cat"))
    meta = deltaflow.pyfunc.load_model(sig_path).metadata
    assert meta.signature.inputs.input_names() == ["x", "y", "cat"]


def test_save_rejects_non_spark_models(spark, pipeline_model, tmp_path):
    from pyspark.ml.classification import LogisticRegression

    with pytest.raises(InvalidArgument, match="fitted pyspark.ml model"):
        deltaflow.spark.save_model(LogisticRegression(), str(tmp_path / "unfit"))
    with pytest.raises(InvalidArgument, match="fitted pyspark.ml model"):
        deltaflow.spark.save_model(object(), str(tmp_path / "obj"))


def test_spark_interop_with_mlflow(spark, pipeline_model, tmp_path):
    mlflow_spark = pytest.importorskip("mlflow.spark")
    import mlflow.pyfunc

    expected = _spark_predictions(pipeline_model, spark)
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    deltaflow.spark.save_model(pipeline_model, ours, input_example=FEATURES.head(2))
    np.testing.assert_array_equal(np.asarray(mlflow.pyfunc.load_model(ours).predict(FEATURES)), expected)
    np.testing.assert_array_equal(_spark_predictions(mlflow_spark.load_model(ours), spark), expected)

    # pip_requirements skips MLflow's subprocess requirement inference (the slow part of its save).
    mlflow_spark.save_model(pipeline_model, theirs, pip_requirements=["pyspark"])
    np.testing.assert_array_equal(np.asarray(deltaflow.pyfunc.load_model(theirs).predict(FEATURES)), expected)
    np.testing.assert_array_equal(_spark_predictions(deltaflow.spark.load_model(theirs), spark), expected)
