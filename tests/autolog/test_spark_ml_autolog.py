"""Spark ML autologging on real Spark: what each kind of fit records, read back from the store.

Logistic and linear regression, random forest, k-means, a Pipeline with feature stages,
CrossValidator and TrainValidationSplit: params (every one, readable names), training metrics,
post-training metrics from ``Evaluator.evaluate``, the model (loads and predicts the same, with a
signature, an input example on request, registration on request), the training data as a dataset
input (the Delta version read at fit time, or schema + row count + digest), and tuning child runs.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

import deltaflow
import deltaflow.spark
from tests.autolog.conftest import (
    artifact_paths,
    experiment_runs,
    mlmodel,
    predictions,
    read_artifact,
    signature_inputs,
    signature_outputs,
)

pytestmark = pytest.mark.spark
# The tracking store on delta-rs (fast); Spark ML runs on the suite's shared session.
rust_only = pytest.mark.parametrize("engine", ["rust"], indirect=True)


def _flat_params(estimator) -> dict[str, str]:
    """A plain estimator's params as the run should hold them: every set-or-default param by name."""
    return {p.name: v for p, v in estimator.extractParamMap().items()}


def _training_input(run):
    """The run's one training dataset input."""
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1, inputs
    tags = {t.key: t.value for t in inputs[0].tags}
    assert tags["mlflow.data.context"] == "training"
    return inputs[0].dataset


def _finished_run(client, run_id):
    deltaflow.flush()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.autologging"] == "pyspark.ml"
    return run


@rust_only
def test_logistic_regression(autolog, client, binary_df, tmp_path):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    lr = LogisticRegression(maxIter=7, regParam=0.01)
    model = lr.fit(binary_df)
    run_id = deltaflow.last_active_run().info.run_id  # the autolog run, right after the fit
    assert deltaflow.active_run() is None  # autolog's run is never left as the user's active run

    test_df = binary_df.limit(15)
    auc = BinaryClassificationEvaluator().evaluate(model.transform(test_df))
    run = _finished_run(client, run_id)
    assert run.info.run_name == "LogisticRegression"

    # Every param, set or default, by its own name; values as Python prints them.
    expected = _flat_params(lr)
    assert set(run.data.params) == set(expected)
    assert run.data.params["maxIter"] == "7" and run.data.params["regParam"] == "0.01"
    assert run.data.params["family"] == "auto" and run.data.params["featuresCol"] == "features"

    summary = model.summary
    metrics = run.data.metrics
    assert metrics["training_accuracy"] == pytest.approx(summary.accuracy)
    assert metrics["training_areaUnderROC"] == pytest.approx(summary.areaUnderROC)
    assert metrics["training_weightedPrecision"] == pytest.approx(summary.weightedPrecision)
    assert metrics["training_weightedRecall"] == pytest.approx(summary.weightedRecall)
    assert metrics["training_weightedFMeasure"] == pytest.approx(summary.weightedFMeasure())
    assert 0.5 < metrics["training_accuracy"] < 1.0  # a real fit on non-separable data
    # Post-training: the evaluator's metric on the transform of `test_df`, named after the variable.
    assert metrics["areaUnderROC_test_df"] == pytest.approx(auc)

    # Training data that is not a Delta table: schema, row count and a digest.
    dataset = _training_input(run)
    assert dataset.source_type == "spark_dataframe"
    assert json.loads(dataset.profile) == {"num_rows": 40}
    assert [f["name"] for f in json.loads(dataset.schema)["spark_schema"]["fields"]] == ["features", "label"]
    assert len(dataset.digest) >= 8

    # The model: spark flavor, a signature with the vector input, no input example unless asked.
    assert "model/MLmodel" in artifact_paths(client, run_id, "model")
    assert "model/input_example.json" not in artifact_paths(client, run_id, "model")
    meta = mlmodel(client, run_id, tmp_path)
    assert meta["flavors"]["spark"]["model_class"] == "pyspark.ml.pipeline.PipelineModel"
    assert signature_inputs(meta) == [{"type": "sparkml_vector", "name": "features", "required": True}]
    assert signature_outputs(meta) == [{"type": "double", "required": True}]
    loaded = deltaflow.spark.load_model(f"runs:/{run_id}/model")
    assert predictions(loaded, binary_df, "probability") == predictions(model, binary_df, "probability")

    # log_model_signatures=False: no signature, even with an input example to infer one from.
    autolog(log_model_signatures=False, log_input_examples=True)
    LogisticRegression(maxIter=2).fit(binary_df)
    unsigned = _finished_run(client, deltaflow.last_active_run().info.run_id)
    meta = mlmodel(client, unsigned.info.run_id, tmp_path / "unsigned")
    assert "signature" not in meta and meta["saved_input_example_info"]["type"] == "dataframe"


@rust_only
def test_linear_regression_on_a_delta_path_records_the_version_read(autolog, client, spark, raw_df, tmp_path):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

    path = str(tmp_path / "houses.delta")  # a dot in the folder name is part of the name
    raw_df.select("x", "y", "target").write.format("delta").save(path)  # version 0
    assembler = VectorAssembler(inputCols=["x", "y"], outputCol="features")
    training = assembler.transform(spark.read.format("delta").load(path))
    model = LinearRegression(labelCol="target", maxIter=10).fit(training)
    run_id = deltaflow.last_active_run().info.run_id
    # Appended right after the fit, while the run's logging is still in flight: the run must keep
    # the version the fit read.
    raw_df.select("x", "y", "target").limit(5).write.format("delta").mode("append").save(path)

    holdout = training.limit(20)
    evaluator = RegressionEvaluator(labelCol="target", metricName="rmse")
    r2 = evaluator.evaluate(model.transform(holdout), {evaluator.metricName: "r2"})  # params override the name
    run = _finished_run(client, run_id)

    metrics, summary = run.data.metrics, model.summary
    assert metrics["training_rmse"] == pytest.approx(summary.rootMeanSquaredError)
    assert metrics["training_r2"] == pytest.approx(summary.r2)
    assert metrics["training_mae"] == pytest.approx(summary.meanAbsoluteError)
    assert metrics["training_r2"] > 0.8
    # Named after the caller's variable, as MLflow names post-training metrics.
    assert metrics["r2_holdout"] == pytest.approx(r2)
    assert run.data.params["labelCol"] == "target" and run.data.params["maxIter"] == "10"

    dataset = _training_input(run)
    assert dataset.source_type == "delta_path" and dataset.name == "houses.delta"
    source = json.loads(dataset.source)
    assert source["path"].rstrip("/").endswith("/houses.delta") and source["delta_table_version"] == 0
    assert spark.read.format("delta").load(path).count() == 65  # the append really happened

    meta = mlmodel(client, run_id, tmp_path)
    assert signature_inputs(meta) == [{"type": "sparkml_vector", "name": "features", "required": True}]
    loaded = deltaflow.spark.load_model(f"runs:/{run_id}/model")
    assert predictions(loaded, holdout) == pytest.approx(predictions(model, holdout))

    # A time-travel read records the version it pins, not the table's latest (now 1).
    autolog(log_models=False)
    LinearRegression(labelCol="target", maxIter=2).fit(
        assembler.transform(spark.read.format("delta").option("versionAsOf", 0).load(path)))
    pinned = _finished_run(client, deltaflow.last_active_run().info.run_id)
    assert json.loads(_training_input(pinned).source)["delta_table_version"] == 0

    # A cached training set is the version it was cached at (1), even after another writer —
    # delta-rs here, outside this Spark session, so the cache is not refreshed — appends (2).
    import pyarrow as pa
    from deltalake import write_deltalake

    cached = assembler.transform(spark.read.format("delta").load(path)).cache()
    try:
        assert cached.count() == 65
        write_deltalake(path, pa.table({"x": [1.0], "y": [2.0], "target": [3.0]}), mode="append")
        LinearRegression(labelCol="target", maxIter=2).fit(cached)
        from_cache = _finished_run(client, deltaflow.last_active_run().info.run_id)
        assert json.loads(_training_input(from_cache).source)["delta_table_version"] == 1
        assert cached.count() == 65  # what the fit really read
        assert spark.read.format("delta").option("versionAsOf", 2).load(path).count() == 66
    finally:
        cached.unpersist()


@rust_only
def test_random_forest_on_a_metastore_table(autolog, client, spark, raw_df, tmp_path):
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.feature import VectorAssembler

    spark.sql("DROP TABLE IF EXISTS autolog_rf_train")
    raw_df.select("x", "y", "label").write.format("delta").saveAsTable("autolog_rf_train")
    try:
        training = VectorAssembler(inputCols=["x", "y"], outputCol="features").transform(
            spark.table("autolog_rf_train"))
        rf = RandomForestClassifier(numTrees=4, maxDepth=3, seed=7)
        model = rf.fit(training)
        run_id = deltaflow.last_active_run().info.run_id
        # Scored data with no variable of its own is named after the Delta table it reads.
        accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(model.transform(
            VectorAssembler(inputCols=["x", "y"], outputCol="features").transform(spark.table("autolog_rf_train"))))
        run = _finished_run(client, run_id)

        assert set(run.data.params) == set(_flat_params(rf))
        assert run.data.params["numTrees"] == "4" and run.data.params["seed"] == "7"
        assert run.data.metrics["accuracy_autolog_rf_train"] == pytest.approx(accuracy)

        # Feature importances by the assembler's input names, as an artifact.
        importances = json.loads(read_artifact(client, run_id, "feature_importances.json", tmp_path))
        expected = model.featureImportances.toArray().tolist()
        assert importances == pytest.approx({"x": expected[0], "y": expected[1]})

        dataset = _training_input(run)
        assert dataset.source_type == "delta_table"
        source = json.loads(dataset.source)
        assert source["delta_table_name"].endswith("autolog_rf_train") and source["delta_table_version"] == 0

        loaded = deltaflow.spark.load_model(f"runs:/{run_id}/model")
        assert predictions(loaded, training) == predictions(model, training)
    finally:
        spark.sql("DROP TABLE IF EXISTS autolog_rf_train")


@rust_only
def test_kmeans(autolog, client, binary_df, tmp_path):
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.evaluation import ClusteringEvaluator

    autolog(log_input_examples=True)
    km = KMeans(k=3, seed=1, maxIter=10)
    points = binary_df.select("features")
    model = km.fit(points)
    run_id = deltaflow.last_active_run().info.run_id
    run = _finished_run(client, run_id)
    # Evaluated after the autolog run has ended: still recorded on it. A second evaluation of the
    # same data is the metric's next step.
    scored = model.transform(points)
    silhouette = ClusteringEvaluator().evaluate(scored)
    ClusteringEvaluator().evaluate(scored)
    deltaflow.flush()
    run = client.get_run(run_id)

    assert set(run.data.params) == set(_flat_params(km)) and run.data.params["k"] == "3"
    assert run.data.metrics["training_cost"] == pytest.approx(model.summary.trainingCost)
    history = client.get_metric_history(run_id, "silhouette_points")
    assert [(m.step, m.value) for m in history] == [(0, pytest.approx(silhouette)), (1, pytest.approx(silhouette))]
    meta = mlmodel(client, run_id, tmp_path)
    # A clustering model predicts cluster ids: integers, not doubles.
    assert signature_outputs(meta) == [{"type": "integer", "required": True}]
    # The input example's vectors are written as lists of floats (a vector is not JSON).
    example = json.loads(read_artifact(client, run_id, "model/input_example.json", tmp_path / "ex"))
    first = points.first().features.toArray().tolist()
    assert example["columns"] == ["features"] and example["data"][0] == [first] and len(example["data"]) == 5
    loaded = deltaflow.spark.load_model(f"runs:/{run_id}/model")
    assert predictions(loaded, points) == predictions(model, points)


@rust_only
def test_pipeline_with_feature_stages_registered_with_input_example(autolog, client, raw_df, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer, VectorAssembler
    from pyspark.sql import functions as F

    autolog(log_input_examples=True, registered_model_name="autolog_pipeline")
    # A string label indexed by the pipeline, and a column ("target") no stage reads.
    training = raw_df.select("x", "y", "cat", "target",
                             F.when(F.col("label") == 1.0, "high").otherwise("low").alias("grade"))
    stages = [StringIndexer(inputCol="grade", outputCol="label"),
              StringIndexer(inputCol="cat", outputCol="cat_idx"),
              VectorAssembler(inputCols=["x", "y", "cat_idx"], outputCol="features"),
              LogisticRegression(maxIter=6)]
    model = Pipeline(stages=stages).fit(training)
    run_id = deltaflow.last_active_run().info.run_id
    run = _finished_run(client, run_id)

    # Only the Pipeline is a run: its stages' fits are nested.
    assert [r.info.run_id for r in experiment_runs(client)] == [run_id]
    assert run.info.run_name == "Pipeline"
    # Every param of every stage, prefixed by the stage's class name (numbered from the second).
    params = run.data.params
    names = ["StringIndexer", "StringIndexer_2", "VectorAssembler", "LogisticRegression"]
    expected = {"stages"} | {f"{n}.{p.name}" for n, s in zip(names, stages) for p in s.extractParamMap()}
    assert set(params) == expected
    assert json.loads(params["stages"]) == names
    assert params["StringIndexer.inputCol"] == "grade" and params["StringIndexer_2.inputCol"] == "cat"
    assert params["LogisticRegression.maxIter"] == "6"
    assert json.loads(params["VectorAssembler.inputCols"]) == ["x", "y", "cat_idx"]
    # Training metrics come from the stage that has a summary.
    assert run.data.metrics["training_accuracy"] == pytest.approx(model.stages[-1].summary.accuracy)

    # Signature and input example: the raw columns the stages read to predict — not the label's
    # source column, not the unused one.
    meta = mlmodel(client, run_id, tmp_path)
    assert [(c["name"], c["type"]) for c in signature_inputs(meta)] == [("x", "double"), ("y", "double"),
                                                                       ("cat", "string")]
    assert signature_outputs(meta) == [{"type": "double", "required": True}]
    example = json.loads(read_artifact(client, run_id, "model/input_example.json", tmp_path / "ex"))
    assert example["columns"] == ["x", "y", "cat"] and len(example["data"]) == 5

    features = training.select("x", "y", "cat")  # what the signature says suffices
    expected_predictions = predictions(model, training)
    for uri in (f"runs:/{run_id}/model", "models:/autolog_pipeline/1"):
        loaded = deltaflow.spark.load_model(uri)
        assert isinstance(loaded, PipelineModel) and len(loaded.stages) == 4, uri
        assert predictions(loaded, features) == expected_predictions, uri
    assert client.get_model_version("autolog_pipeline", "1").run_id == run_id


def _children(client, parent_id: str) -> list:
    runs = [r for r in experiment_runs(client) if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return sorted(runs, key=lambda r: r.info.run_name)


@rust_only
def test_cross_validator_parallel(autolog, client, binary_df, tmp_path):
    import numpy as np
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    lr = LogisticRegression(maxIter=5)
    grid = ParamGridBuilder().addGrid(lr.regParam, [0.0, 2.0]).build()
    cv = CrossValidator(estimator=lr, estimatorParamMaps=grid, evaluator=BinaryClassificationEvaluator(),
                        numFolds=2, parallelism=2, seed=3)
    cv_model = cv.fit(binary_df)
    parent_id = deltaflow.last_active_run().info.run_id
    parent = _finished_run(client, parent_id)
    assert parent.info.run_name == "CrossValidator"

    params = parent.data.params
    expected = ({p.name for p in cv.extractParamMap()} | {f"estimator.{k}" for k in _flat_params(lr)}
                | {f"evaluator.{p.name}" for p in cv.getEvaluator().extractParamMap()} | {"best_regParam"})
    assert set(params) == expected
    assert params["estimator"] == "LogisticRegression" and params["estimator.maxIter"] == "5"
    assert params["evaluator"] == "BinaryClassificationEvaluator"
    assert params["evaluator.metricName"] == "areaUnderROC"
    assert params["numFolds"] == "2" and params["parallelism"] == "2"
    assert params["estimatorParamMaps"] == "2 param maps"

    # One child run per param map, and no run for the folds' fits on the tuner's worker threads.
    children = _children(client, parent_id)
    assert len(children) == 2 and len(experiment_runs(client)) == 3
    for i, child in enumerate(children):
        assert child.info.status == "FINISHED"
        assert child.data.params == {"regParam": str(grid[i][lr.regParam])}
        assert child.data.metrics["avg_areaUnderROC"] == pytest.approx(cv_model.avgMetrics[i])
        assert child.data.metrics["std_areaUnderROC"] == pytest.approx(cv_model.stdMetrics[i])
    best = int(np.argmax(cv_model.avgMetrics))
    assert params["best_regParam"] == str(grid[best][lr.regParam]) == str(cv_model.bestModel.getRegParam())
    assert parent.data.metrics["best_areaUnderROC"] == pytest.approx(max(cv_model.avgMetrics))
    assert parent.data.metrics["training_accuracy"] == pytest.approx(cv_model.bestModel.summary.accuracy)

    rows = list(csv.DictReader(io.StringIO(read_artifact(client, parent_id, "search_results.csv", tmp_path))))
    assert [r["regParam"] for r in rows] == ["0.0", "2.0"]
    assert [float(r["mean_areaUnderROC"]) for r in rows] == pytest.approx(cv_model.avgMetrics)
    assert [r["best"] for r in rows] == [str(i == best) for i in range(2)]

    # The logged model is the best model.
    loaded = deltaflow.spark.load_model(f"runs:/{parent_id}/model")
    assert type(loaded.stages[0]).__name__ == "LogisticRegressionModel"
    assert predictions(loaded, binary_df, "probability") == predictions(cv_model, binary_df, "probability")


@rust_only
def test_train_validation_split_over_a_pipeline(autolog, client, raw_df, tmp_path):
    from pyspark.ml import Pipeline
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression
    from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit

    lin = LinearRegression(labelCol="target", maxIter=5)
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["x", "y"], outputCol="features"), lin])
    grid = ParamGridBuilder().addGrid(lin.regParam, [0.0, 5.0]).build()
    training = raw_df.select("x", "y", "target")
    tvs = TrainValidationSplit(estimator=pipeline, estimatorParamMaps=grid, trainRatio=0.7, seed=5,
                               evaluator=RegressionEvaluator(labelCol="target", metricName="rmse"))
    tvs_model = tvs.fit(training)
    parent_id = deltaflow.last_active_run().info.run_id
    parent = _finished_run(client, parent_id)

    params = parent.data.params
    assert params["estimator"] == "Pipeline"
    assert json.loads(params["estimator.stages"]) == ["VectorAssembler", "LinearRegression"]
    assert params["estimator.LinearRegression.labelCol"] == "target"
    assert json.loads(params["estimator.VectorAssembler.inputCols"]) == ["x", "y"]
    assert params["evaluator.metricName"] == "rmse" and params["trainRatio"] == "0.7"

    children = _children(client, parent_id)
    assert len(children) == 2 and len(experiment_runs(client)) == 3
    for i, child in enumerate(children):
        # Grid params named as in the parent: by the stage they belong to.
        assert child.data.params == {"LinearRegression.regParam": str(grid[i][lin.regParam])}
        assert child.data.metrics == {"avg_rmse": pytest.approx(tvs_model.validationMetrics[i])}
    # rmse: smaller is better.
    best = min(range(2), key=lambda i: tvs_model.validationMetrics[i])
    assert params["best_LinearRegression.regParam"] == str(grid[best][lin.regParam])
    assert parent.data.metrics["best_rmse"] == pytest.approx(min(tvs_model.validationMetrics))
    assert parent.data.metrics["training_rmse"] == pytest.approx(
        tvs_model.bestModel.stages[-1].summary.rootMeanSquaredError)
    assert "search_results.csv" in artifact_paths(client, parent_id)

    meta = mlmodel(client, parent_id, tmp_path)
    assert [c["name"] for c in signature_inputs(meta)] == ["x", "y"]
    loaded = deltaflow.spark.load_model(f"runs:/{parent_id}/model")
    assert [type(s).__name__ for s in loaded.stages] == ["VectorAssembler", "LinearRegressionModel"]
    assert predictions(loaded, training) == pytest.approx(predictions(tvs_model, training))


def test_model_input_columns_from_stage_params(spark):
    """Which training columns a fitted model's signature lists, from its stages' params alone (no
    fit needed: the rule reads params; an estimator stands in for its fitted model)."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import SQLTransformer, StringIndexerModel, VectorAssembler

    from deltaflow.autologging._ml_info import label_columns, model_input_columns

    label_indexer = StringIndexerModel.from_labels(["low", "high"], inputCol="grade", outputCol="label")
    assembler = VectorAssembler(inputCols=["x", "cat_idx", "y"], outputCol="features")
    cat_indexer = StringIndexerModel.from_labels(["a", "b"], inputCol="cat", outputCol="cat_idx")
    model = PipelineModel([label_indexer, PipelineModel([cat_indexer, assembler]), LogisticRegression()])
    columns = ["id", "y", "grade", "cat", "x", "label_weight"]
    # Stage inputs not produced by an earlier stage, in the frame's order; the label's source, the
    # id and the unused column are not inputs.
    assert model_input_columns(model, columns) == ["y", "cat", "x"]
    assert label_columns(model) == {"label"}
    assert model_input_columns(LogisticRegression(featuresCol="f"), ["f", "label"]) == ["f"]
    # A stage whose inputs its params do not tell, or an input the frame lacks: unknown (None),
    # and the caller falls back to every column but the labels.
    sql = SQLTransformer(statement="SELECT *, x * 2 AS x2 FROM __THIS__")
    assert model_input_columns(PipelineModel([sql, assembler, LogisticRegression()]), columns) is None
    assert model_input_columns(model, ["x", "y"]) is None
