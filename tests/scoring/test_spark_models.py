"""Spark ML models: score() applies them natively (exactly model.transform's output, no Python in the
plan), and the spark flavor through pyfunc behaves as MLflow's (a list of predictions; vector inputs
arrive as lists) in the driver and inside the scoring UDF."""

from __future__ import annotations

import pandas as pd
import pytest

import deltaflow
import deltaflow.pyfunc
import deltaflow.spark
from scoring_data import SPARK_ROWS
from deltaflow.errors import InvalidArgument

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def training(spark):
    return spark.createDataFrame(SPARK_ROWS, ["x", "y", "cat", "label"])


@pytest.fixture(scope="module")
def vector_model(training, tmp_path_factory):
    """A lone LogisticRegression on a vector column, saved with MLflow's sparkml_vector input signature."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    from deltaflow.models.schema import ColSpec, ModelSignature, Schema

    vectors = VectorAssembler(inputCols=["x", "y"], outputCol="features").transform(training)
    model = LogisticRegression(maxIter=5).fit(vectors)
    signature = ModelSignature(Schema([ColSpec({"type": "sparkml_vector"}, "features")]), Schema([ColSpec("double")]))
    path = str(tmp_path_factory.mktemp("vector") / "model")
    deltaflow.spark.save_model(model, path, signature=signature)
    return path, vectors.select("features")


def test_score_applies_a_spark_model_natively_with_exactly_transforms_output(spark, training, pipeline_path):
    data = training.drop("label")
    scored = deltaflow.score(data, pipeline_path)
    reference = deltaflow.spark.load_model(pipeline_path).transform(data)
    assert scored.schema == reference.schema
    assert scored.collect() == reference.collect()  # every column, vectors and probabilities included
    plan = scored._jdf.queryExecution().executedPlan().toString()
    assert "Python" not in plan and "ArrowEval" not in plan  # no row crosses to Python
    renamed = deltaflow.score(data, pipeline_path, output_col="label_hat")
    assert renamed.columns == [c if c != "prediction" else "label_hat" for c in reference.columns]
    assert [r[0] for r in renamed.select("label_hat").collect()] == [r[0] for r in reference.select("prediction").collect()]
    with pytest.raises(InvalidArgument, match="env_manager must be 'local'"):
        deltaflow.score(data, pipeline_path, env_manager="virtualenv")


def test_pyfunc_predict_returns_what_mlflow_returns(spark, training, pipeline_path):
    import mlflow.pyfunc

    frame = training.drop("label").toPandas()
    ours = deltaflow.pyfunc.load_model(pipeline_path).predict(frame)
    theirs = mlflow.pyfunc.load_model(pipeline_path).predict(frame)
    assert isinstance(ours, list) and isinstance(theirs, list)
    assert ours == theirs
    assert ours == [r[0] for r in deltaflow.spark.load_model(pipeline_path).transform(training).select("prediction").collect()]


def test_a_lone_vector_input_model_predicts_through_pyfunc_and_the_udf(spark, vector_model):
    from pyspark.ml.functions import vector_to_array

    path, vectors = vector_model
    reference = [r[0] for r in deltaflow.spark.load_model(path).transform(vectors).select("prediction").collect()]
    as_lists = pd.DataFrame({"features": [v.toArray().tolist() for v in vectors.toPandas()["features"]]})
    assert deltaflow.pyfunc.load_model(path).predict(as_lists) == reference

    # Inside the UDF the Python worker has no session: the flavor starts a small local one there.
    arrays = vectors.select(vector_to_array("features").alias("features")).coalesce(1)
    udf = deltaflow.pyfunc.spark_udf(spark, path)
    assert [r[0] for r in arrays.select(udf("features")).collect()] == reference
    # score() takes the vector column natively.
    assert [r[0] for r in deltaflow.score(vectors, path).select("prediction").collect()] == reference
