"""Each flavor registered, then loaded by every models:/ URI form: identical predictions.

The custom-pyfunc case is in test_registry_api.py; here scikit-learn and a Spark ML PipelineModel
with feature stages. The registry runs on delta-rs (fast); the Spark flavor uses the shared session.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import deltaflow
import deltaflow.pyfunc
import deltaflow.sklearn
import deltaflow.spark

pytestmark = pytest.mark.parametrize("engine", ["rust"], indirect=True)

URI_FORMS = ("models:/{name}/1", "models:/{name}/Staging", "models:/{name}/latest", "models:/{name}@champion")


def _promote(client, name: str) -> None:
    client.transition_model_version_stage(name, 1, "Staging")
    client.set_registered_model_alias(name, "champion", 1)


def test_sklearn_every_uri_form(client, user):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=40), "b": rng.normal(size=40)})
    y = (X["a"] > X["b"]).astype(int)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    with deltaflow.start_run() as run:
        info = deltaflow.sklearn.log_model(model, name="model", input_example=X.head(2),
                                           registered_model_name="rf")
    assert info.registered_model_version == 1
    _promote(client, "rf")
    expected = model.predict_proba(X)
    for form in (f"runs:/{run.info.run_id}/model",) + URI_FORMS:
        uri = form.format(name="rf")
        np.testing.assert_array_equal(deltaflow.sklearn.load_model(uri).predict_proba(X), expected, err_msg=uri)
        np.testing.assert_array_equal(np.asarray(deltaflow.pyfunc.load_model(uri).predict(X)), model.predict(X),
                                      err_msg=uri)


def test_spark_pipeline_every_uri_form(client, user, spark):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer, VectorAssembler

    rows = [(1.0, 2.0, "a", 0.0), (2.0, 1.0, "b", 1.0), (3.0, 0.5, "a", 1.0), (0.1, 3.0, "b", 0.0),
            (2.5, 0.7, "a", 1.0), (0.4, 2.2, "b", 0.0)]
    training = spark.createDataFrame(rows, ["x", "y", "cat", "label"])
    pipeline = Pipeline(stages=[StringIndexer(inputCol="cat", outputCol="cat_idx"),
                                VectorAssembler(inputCols=["x", "y", "cat_idx"], outputCol="features"),
                                LogisticRegression(maxIter=5)]).fit(training)
    features = training.drop("label")
    expected = [r.probability.toArray().tolist() for r in pipeline.transform(features).select("probability").collect()]
    with deltaflow.start_run():
        deltaflow.spark.log_model(pipeline, name="pipe", input_example=features.limit(2).toPandas(),
                                  registered_model_name="pipe")
    _promote(client, "pipe")
    local = features.toPandas()
    for form in URI_FORMS:
        uri = form.format(name="pipe")
        loaded = deltaflow.spark.load_model(uri)
        assert isinstance(loaded, PipelineModel) and len(loaded.stages) == 3, uri  # feature stages included
        got = [r.probability.toArray().tolist() for r in loaded.transform(features).select("probability").collect()]
        assert got == expected, uri
        predictions = list(deltaflow.pyfunc.load_model(uri).predict(local))
        assert predictions == [r.prediction for r in pipeline.transform(features).select("prediction").collect()], uri
