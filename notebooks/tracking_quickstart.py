# Databricks notebook source
# MAGIC %md
# MAGIC # deltaflow tracking quickstart
# MAGIC
# MAGIC deltaflow speaks MLflow's tracking API and keeps everything in Delta tables, so porting is a
# MAGIC one-line change: `import deltaflow as mlflow`. This notebook runs as-is on a Databricks cluster
# MAGIC (it uses the cluster's SparkSession) and locally with `python notebooks/tracking_quickstart.py`
# MAGIC (it starts a small local Spark with Delta).
# MAGIC
# MAGIC The store is `DELTAFLOW_TRACKING_URI` when set, else `./deltaflow-store` (on Databricks, a
# MAGIC folder under `dbfs:/tmp`; point it at a Unity Catalog schema with `metastore:<catalog>.<schema>`).

# COMMAND ----------

import math
import os
import random
import tempfile

import deltaflow as mlflow
from deltaflow.config import resolve_location
from deltaflow.tracking.datasets import from_delta

spark = mlflow.spark_session()  # the notebook's session on Databricks; a local one with Delta elsewhere

if os.environ.get("DATABRICKS_RUNTIME_VERSION") and not os.environ.get("DELTAFLOW_TRACKING_URI"):
    mlflow.set_tracking_uri("dbfs:/tmp/deltaflow-quickstart")

location = resolve_location(mlflow.get_tracking_uri())
print(f"tracking store: {location.uri} ({location.kind})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Training data as a Delta table
# MAGIC A tiny regression set, `y = 3x + 1 + noise`, written with Spark. Logging it with `log_input`
# MAGIC records the table's path and Delta version, so every run says exactly which data it read.

# COMMAND ----------

random.seed(7)
points = [(x / 10.0, 3.0 * x / 10.0 + 1.0 + random.gauss(0, 0.1)) for x in range(-20, 21)]
data_root = location.root if location.root else tempfile.mkdtemp(prefix="deltaflow-quickstart-")
data_path = f"{data_root.rstrip('/')}/quickstart_data/points"
spark.createDataFrame(points, "x double, y double").write.format("delta").mode("overwrite").save(data_path)
dataset = from_delta(path=data_path, name="points", spark=spark)
rows = [(r["x"], r["y"]) for r in spark.read.format("delta").load(data_path).collect()]
print(f"wrote {len(rows)} rows to {data_path} (Delta version {dataset.version})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## A toy model
# MAGIC Plain gradient descent for `y = w*x + b`: no ML library needed.

# COMMAND ----------


def train(data, lr, epochs):
    """Yield (epoch, mse, w, b) after each epoch of full-batch gradient descent."""
    w = b = 0.0
    n = len(data)
    for epoch in range(epochs):
        grad_w = sum(2 * (w * x + b - y) * x for x, y in data) / n
        grad_b = sum(2 * (w * x + b - y) for x, y in data) / n
        w, b = w - lr * grad_w, b - lr * grad_b
        mse = sum((w * x + b - y) ** 2 for x, y in data) / n
        yield epoch, mse, w, b


# COMMAND ----------

# MAGIC %md
# MAGIC ## A parent run with a small hyper-parameter sweep as nested child runs

# COMMAND ----------

experiment = mlflow.set_experiment("deltaflow-quickstart")
EPOCHS = 15
learning_rates = [0.01, 0.05, 0.1, 0.2]

with mlflow.start_run(run_name="quickstart-sweep") as parent:
    mlflow.log_params({"model": "linear-gd", "epochs": EPOCHS, "n_rows": len(rows)})
    mlflow.set_tags({"team": "quickstart", "purpose": "demo"})
    mlflow.log_input(dataset, context="training")

    results = {}
    for lr in learning_rates:
        with mlflow.start_run(run_name=f"lr={lr}", nested=True):
            mlflow.log_param("lr", lr)
            for epoch, mse, w, b in train(rows, lr, EPOCHS):
                mlflow.log_metric("mse", mse, step=epoch)
            mlflow.log_metrics({"final_mse": mse, "w": w, "b": b})
            results[lr] = mse

    best_lr = min(results, key=results.get)
    for epoch, mse, w, b in train(rows, best_lr, EPOCHS):
        mlflow.log_metric("loss", mse, step=epoch)  # the parent's curve: the best setting
    mlflow.log_metrics({"best_mse": results[best_lr], "rmse": math.sqrt(results[best_lr])})
    mlflow.log_param("best_lr", best_lr)
    mlflow.log_text(f"best lr {best_lr}: w={w:.3f}, b={b:.3f}\n", "summary.txt")
    mlflow.log_dict({"learning_rates": learning_rates, "final_mse": results}, "sweep.json")
    parent_id = parent.info.run_id

print(f"parent run {parent_id}: best lr {best_lr} (mse {results[best_lr]:.4f})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Query what was logged
# MAGIC `search_runs` takes MLflow's filter grammar and returns MLflow's pandas frame.

# COMMAND ----------

children = mlflow.search_runs(
    experiment_ids=[experiment.experiment_id],
    filter_string=f"tags.mlflow.parentRunId = '{parent_id}' AND metrics.final_mse < 100",
    order_by=["metrics.final_mse ASC"],
)
print(children[["run_id", "params.lr", "metrics.final_mse"]].to_string(index=False))
assert len(children) == len(learning_rates), children
assert children["params.lr"].iloc[0] == str(best_lr)

history = mlflow.get_metric_history(parent_id, "loss")
print("loss by epoch:", ", ".join(f"{m.step}:{m.value:.3f}" for m in history))
assert [m.step for m in history] == list(range(EPOCHS))
print("artifacts:", sorted(f.path for f in mlflow.list_artifacts(run_id=parent_id)))

# COMMAND ----------

mlflow.flush()  # make everything durable before reporting success
print(f"QUICKSTART OK {parent_id}")
