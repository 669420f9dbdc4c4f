# Databricks notebook source
# MAGIC %md
# MAGIC # deltaflow model registry quickstart: train, log, register, promote
# MAGIC
# MAGIC Trains a Spark ML pipeline on a Delta table, logs it to a run, registers it, takes it through
# MAGIC an approval to Production, points the `champion` alias at it and scores through
# MAGIC `models:/…@champion`. Like MLflow's registry, with Databricks' governance on top: transition
# MAGIC requests, per-model permissions and an audit trail, all stored in Delta tables beside the
# MAGIC tracking tables. Runs on a Databricks cluster and locally with `python
# MAGIC notebooks/model_registry_quickstart.py`; run it again and it registers the next version.

# COMMAND ----------

import os
import random
import tempfile

from pyspark.ml import Pipeline
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import LinearRegression

import deltaflow as mlflow
import deltaflow.spark
from deltaflow import MlflowClient
from deltaflow.config import resolve_location
from deltaflow.tracking._context import resolve_user
from deltaflow.tracking.datasets import from_delta

spark = mlflow.spark_session()
if os.environ.get("DATABRICKS_RUNTIME_VERSION") and not os.environ.get("DELTAFLOW_TRACKING_URI"):
    mlflow.set_tracking_uri("dbfs:/tmp/deltaflow-quickstart")
location = resolve_location(mlflow.get_tracking_uri())
client = MlflowClient()
MODEL = "quickstart_regressor"
owner = resolve_user()  # on Databricks the workspace user; locally DELTAFLOW_USER or the OS user
print(f"store: {location.uri}; acting as {owner!r}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Train a Spark ML pipeline on a Delta table, and log it
# MAGIC `registered_model_name=` logs the model under the run and registers it as the next version in
# MAGIC one call. The registry keeps its own copy of the model, so the version outlives its run.

# COMMAND ----------

random.seed(11)
rows = [(x / 10.0, (x % 7) / 7.0, 3.0 * x / 10.0 - 2.0 * (x % 7) / 7.0 + 1.0 + random.gauss(0, 0.05))
        for x in range(-30, 31)]
data_root = location.root if location.root else tempfile.mkdtemp(prefix="deltaflow-registry-")
data_path = f"{data_root.rstrip('/')}/quickstart_data/regression"
spark.createDataFrame(rows, "x double, z double, y double").write.format("delta").mode("overwrite").save(data_path)
train_df = spark.read.format("delta").load(data_path)

mlflow.set_experiment("deltaflow-registry-quickstart")
with mlflow.start_run(run_name="spark-linear-regression") as run:
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["x", "z"], outputCol="features"),
                                LinearRegression(featuresCol="features", labelCol="y", regParam=0.0)])
    fitted = pipeline.fit(train_df)
    lr_model = fitted.stages[-1]
    mlflow.log_input(from_delta(path=data_path, name="regression", spark=spark), context="training")
    mlflow.log_params({"regParam": 0.0, "features": "x,z"})
    mlflow.log_metrics({"rmse": lr_model.summary.rootMeanSquaredError, "r2": lr_model.summary.r2})
    info = deltaflow.spark.log_model(fitted, name="model", input_example=train_df.select("x", "z").limit(3).toPandas(),
                                     registered_model_name=MODEL)
version = info.registered_model_version
print(f"run {run.info.run_id}: rmse {lr_model.summary.rootMeanSquaredError:.4f}; registered {MODEL} v{version}")
client.update_model_version(MODEL, version, f"Linear regression on x, z; r2={lr_model.summary.r2:.4f}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Promote it through an approval
# MAGIC Every user may read a new model and request a transition; moving a version into Production
# MAGIC needs `CAN_MANAGE_PRODUCTION_VERSIONS`, which the model's creator holds (as `CAN_MANAGE`).
# MAGIC Here a reviewer (simulated with `DELTAFLOW_USER`, which works off Databricks only: there the
# MAGIC registry acts as the workspace user) asks for Production, is refused when trying to approve
# MAGIC their own request, and the owner approves it, archiving the previous Production version.

# COMMAND ----------

reviewer = "data.scientist@example.com"
on_databricks = bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))
if on_databricks:  # the registry acts as the workspace user: DELTAFLOW_USER cannot play a reviewer
    print("on Databricks the registry user is the workspace user; a colleague without "
          "CAN_MANAGE_PRODUCTION_VERSIONS would be refused the approval")
else:
    previous_user = os.environ.get("DELTAFLOW_USER")
    os.environ["DELTAFLOW_USER"] = reviewer
    try:
        client.create_transition_request(MODEL, version, "Production", comment=f"r2 {lr_model.summary.r2:.3f}")
        try:
            client.approve_transition_request(MODEL, version, "Production")
            raise AssertionError("a reader must not be able to approve a Production transition")
        except mlflow.errors.PermissionDenied as refused:
            print("as expected:", refused)
    finally:  # act as the owner again
        if previous_user is None:
            os.environ.pop("DELTAFLOW_USER", None)
        else:
            os.environ["DELTAFLOW_USER"] = previous_user

promote = client.transition_model_version_stage if on_databricks else client.approve_transition_request
promoted = promote(MODEL, version, "Production", archive_existing_versions=True, comment="approved in the quickstart")
client.set_registered_model_alias(MODEL, "champion", version)
print(f"v{promoted.version} is now {promoted.current_stage} and @champion")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Score with the registered model, and read the audit trail

# COMMAND ----------

champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
scored = champion.predict(train_df.select("x", "z").limit(5).toPandas())
print("predictions:", [round(float(p), 3) for p in scored])
assert len(scored) == 5

for stage_version in client.get_latest_versions(MODEL):
    print(f"  v{stage_version.version}: {stage_version.current_stage}")
print("audit trail of this version:")
for activity in client.get_model_version_activity(MODEL, version):
    print(f"  rev {activity.revision}: {activity.user_id} {activity.action} "
          f"{activity.from_stage or ''} -> {activity.to_stage or ''} {activity.comment or ''}")
assert client.get_model_version_by_alias(MODEL, "champion").current_stage == "Production"

# COMMAND ----------

mlflow.flush()
print(f"REGISTRY QUICKSTART OK {MODEL} {version}")
