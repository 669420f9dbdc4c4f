# Databricks notebook source
# MAGIC %md
# MAGIC # deltaflow autologging quickstart: Spark ML with no logging code
# MAGIC
# MAGIC `deltaflow.autolog()` records every Spark ML `fit` as a run, as `mlflow.pyspark.ml.autolog()`
# MAGIC does: the estimator's params (pipeline stages included), training metrics from the model's
# MAGIC summary, the training data (for a Delta table: its path and the exact version read), the fitted
# MAGIC model, post-training metrics when the model is evaluated, and one child run per grid point of a
# MAGIC `CrossValidator`. `fit` returns as soon as the model is trained; the heavy logging (metrics that
# MAGIC need Spark jobs, saving the model) finishes in the background, and `deltaflow.flush()` or the
# MAGIC end of the run waits for it.
# MAGIC
# MAGIC Runs on a Databricks cluster and locally with `python notebooks/autolog_quickstart.py`. The store
# MAGIC is `DELTAFLOW_TRACKING_URI` when set, else `./deltaflow-store` (on Databricks, `dbfs:/tmp`).

# COMMAND ----------

import json
import os
import random
import tempfile

from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import StringIndexer, VectorAssembler
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

import deltaflow as mlflow
import deltaflow.spark
from deltaflow.config import resolve_location

spark = mlflow.spark_session()  # the notebook's session on Databricks; a local one with Delta elsewhere
if os.environ.get("DATABRICKS_RUNTIME_VERSION") and not os.environ.get("DELTAFLOW_TRACKING_URI"):
    mlflow.set_tracking_uri("dbfs:/tmp/deltaflow-quickstart")
location = resolve_location(mlflow.get_tracking_uri())
print(f"tracking store: {location.uri} ({location.kind})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Training data as a Delta table
# MAGIC A few hundred synthetic customers: two usage figures and a plan, and whether they churned.
# MAGIC The model will read the table, so autolog can record which table and which Delta version.

# COMMAND ----------

random.seed(3)
PLANS = ["basic", "plus", "pro"]
customers = []
for i in range(400):
    usage, tenure, plan = random.uniform(0, 10), random.uniform(0, 5), random.choice(PLANS)
    risk = 1.2 * (5 - usage) / 5 - 0.6 * tenure / 5 + {"basic": 0.4, "plus": 0.0, "pro": -0.4}[plan]
    customers.append((usage, tenure, plan, 1.0 if risk + random.gauss(0, 0.3) > 0 else 0.0))
data_root = location.root if location.root else tempfile.mkdtemp(prefix="deltaflow-autolog-")
data_path = f"{data_root.rstrip('/')}/quickstart_data/churn"
(spark.createDataFrame(customers, "usage double, tenure double, plan string, churned double")
 .write.format("delta").mode("overwrite").save(data_path))
table_version = spark.sql(f"DESCRIBE HISTORY delta.`{data_path}` LIMIT 1").collect()[0]["version"]
train, test = spark.read.format("delta").load(data_path).randomSplit([0.75, 0.25], seed=42)
print(f"wrote {len(customers)} rows to {data_path} (Delta version {table_version})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Turn autologging on
# MAGIC One call, before the fits. `registered_model_name` also registers each logged model as the next
# MAGIC version of a registered model; `extra_tags` go on every autologged run.

# COMMAND ----------

MODEL_NAME = "autolog_quickstart_churn"
mlflow.set_experiment("deltaflow-autolog-quickstart")
mlflow.autolog(registered_model_name=MODEL_NAME, extra_tags={"team": "quickstart"})

# COMMAND ----------

# MAGIC %md
# MAGIC ## Fit a pipeline: feature stages and a classifier
# MAGIC The fit is the run: no `start_run`, no `log_*`. Feature estimators fitted inside the pipeline
# MAGIC (the `StringIndexer`) are part of it, not runs of their own.

# COMMAND ----------

indexer = StringIndexer(inputCol="plan", outputCol="plan_idx")
assembler = VectorAssembler(inputCols=["usage", "tenure", "plan_idx"], outputCol="features")
classifier = LogisticRegression(featuresCol="features", labelCol="churned", maxIter=25, regParam=0.01)
pipeline = Pipeline(stages=[indexer, assembler, classifier])

model = pipeline.fit(train)
pipeline_run_id = mlflow.last_active_run().info.run_id
print(f"pipeline fitted; autolog run {pipeline_run_id}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Evaluate on the held-out split
# MAGIC Scoring data with the autologged model and evaluating the predictions logs a post-training
# MAGIC metric on the model's run, named `<metric>_<dataset>`.

# COMMAND ----------

evaluator = BinaryClassificationEvaluator(labelCol="churned", metricName="areaUnderROC")
predictions = model.transform(test)
test_auc = evaluator.evaluate(predictions)
print(f"held-out areaUnderROC: {test_auc:.3f}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## A small hyper-parameter search
# MAGIC A `CrossValidator` over the same pipeline (2 grid points, 2 folds) is one parent run with a
# MAGIC child run per grid point; the parent gets the best point's params and metric and a
# MAGIC `search_results.csv`, and the best model is logged (and registered) from it.

# COMMAND ----------

grid = ParamGridBuilder().addGrid(classifier.regParam, [0.0, 0.5]).build()
cv = CrossValidator(estimator=pipeline, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2, seed=7)
cv_model = cv.fit(train)
cv_run_id = mlflow.last_active_run().info.run_id
print(f"cross-validated; autolog run {cv_run_id}, avg areaUnderROC by regParam: "
      + ", ".join(f"{m[classifier.regParam]}: {a:.3f}" for m, a in zip(grid, cv_model.avgMetrics)))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Read the runs back
# MAGIC `flush()` waits for the background logging (models still being saved) and commits everything
# MAGIC to Delta; then the runs are ordinary runs: params, metrics, datasets, child runs, models.

# COMMAND ----------

mlflow.flush()
mlflow.autolog(disable=True)  # the checks below fit nothing, but keep reads un-logged anyway

run = mlflow.get_run(pipeline_run_id)
params, metrics = run.data.params, run.data.metrics
print(f"{len(params)} params, e.g.", {k: params[k] for k in ("stages", "StringIndexer.inputCol",
                                                               "LogisticRegression.maxIter", "LogisticRegression.regParam")})
print("metrics:", {k: round(v, 4) for k, v in sorted(metrics.items())})
assert run.info.status == "FINISHED", run.info.status
assert json.loads(params["stages"]) == ["StringIndexer", "VectorAssembler", "LogisticRegression"]
assert params["LogisticRegression.maxIter"] == "25" and params["LogisticRegression.regParam"] == "0.01"
assert metrics["training_accuracy"] > 0.6 and "training_areaUnderROC" in metrics
test_metric = [k for k in metrics if k.startswith("areaUnderROC_")]
assert test_metric and abs(metrics[test_metric[0]] - test_auc) < 1e-9, (test_metric, metrics)
print(f"post-training metric: {test_metric[0]} = {metrics[test_metric[0]]:.4f}")
assert run.data.tags["team"] == "quickstart" and run.data.tags["mlflow.autologging"] == "pyspark.ml"

[dataset_input] = run.inputs.dataset_inputs
source = json.loads(dataset_input.dataset.source)
print(f"dataset: {dataset_input.dataset.name} ({dataset_input.dataset.source_type}) "
      f"{source.get('path')} at Delta version {source['delta_table_version']}")
assert source["delta_table_version"] == table_version
assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"

# COMMAND ----------

children = mlflow.search_runs(experiment_ids=[run.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{cv_run_id}'",
                              order_by=["params.`LogisticRegression.regParam` ASC"], output_format="list")
cv_run = mlflow.get_run(cv_run_id)
print("child runs:", [(c.data.params.get("LogisticRegression.regParam"),
                       round(c.data.metrics["avg_areaUnderROC"], 4)) for c in children])
print("best:", cv_run.data.params.get("best_LogisticRegression.regParam"),
      round(cv_run.data.metrics["best_areaUnderROC"], 4))
assert [c.data.params["LogisticRegression.regParam"] for c in children] == ["0.0", "0.5"]
assert all(c.info.status == "FINISHED" for c in children)
assert cv_run.data.metrics["best_areaUnderROC"] == max(cv_model.avgMetrics)
assert "search_results.csv" in [f.path for f in mlflow.list_artifacts(run_id=cv_run_id)]
all_runs = mlflow.search_runs(experiment_ids=[run.info.experiment_id], output_format="list")
assert len(all_runs) == 4, [r.info.run_name for r in all_runs]  # pipeline, CV parent, 2 children

# COMMAND ----------

# MAGIC %md
# MAGIC ## The logged models load and predict
# MAGIC The pipeline model from its run, and the CV's best model through the registry.

# COMMAND ----------

loaded = deltaflow.spark.load_model(f"runs:/{pipeline_run_id}/model")
expected = [r["prediction"] for r in predictions.orderBy("usage", "tenure").select("prediction").collect()]
got = [r["prediction"] for r in loaded.transform(test).orderBy("usage", "tenure").select("prediction").collect()]
assert got == expected and len(got) > 0
versions = mlflow.MlflowClient().search_model_versions(f"name = '{MODEL_NAME}'")
latest = max(versions, key=lambda v: int(v.version))
print(f"registered {MODEL_NAME}: versions {sorted(int(v.version) for v in versions)}; latest from run {latest.run_id}")
assert latest.run_id == cv_run_id
scorer = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{latest.version}")
sample = test.drop("churned").limit(5).toPandas()
print("registered model scores:", list(scorer.predict(sample)))
assert len(scorer.predict(sample)) == len(sample)

# COMMAND ----------

mlflow.flush()  # make everything durable before reporting success
print(f"AUTOLOG QUICKSTART OK {pipeline_run_id}")
