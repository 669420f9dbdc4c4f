# Databricks notebook source
# MAGIC %md
# MAGIC # deltaflow end to end: train → register → batch score as a Databricks job
# MAGIC
# MAGIC Trains a scikit-learn classifier, logs and registers it with deltaflow, points the `champion`
# MAGIC alias at it, then deploys the repository's `jobs/batch_score.yml` as a Databricks job and runs
# MAGIC it: the job scores a Delta table with `models:/<name>@champion` through `deltaflow.batch_score`
# MAGIC and writes the predictions as a Delta table.
# MAGIC
# MAGIC On a Databricks cluster it uses the workspace the notebook runs in (databricks-sdk's notebook
# MAGIC authentication) and Unity Catalog Volume paths; set `DELTAFLOW_E2E_ROOT` to a Volume folder. Run
# MAGIC locally (`python notebooks/end_to_end_databricks.py`) it starts `deltaflow.testing.LocalDatabricks`,
# MAGIC a local emulator of the Databricks REST API, and the job really runs there as a local process.

# COMMAND ----------

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import deltaflow as mlflow
import deltaflow.sklearn
from deltaflow import MlflowClient

ON_DATABRICKS = bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
REPO = here.parent  # notebooks/ sits beside jobs/
ROOT = os.environ.get("DELTAFLOW_E2E_ROOT") or ("/Volumes/main/ml/deltaflow" if ON_DATABRICKS
                                                else tempfile.mkdtemp(prefix="deltaflow-e2e-"))
STORE = os.environ.get("DELTAFLOW_TRACKING_URI") or f"{ROOT}/store"
INPUT, OUTPUT = f"{ROOT}/tables/customers", f"{ROOT}/tables/customer_scores"
MODEL_NAME = "e2e_classifier"

emulator = None
if not ON_DATABRICKS:
    from deltaflow.testing import LocalDatabricks

    emulator = LocalDatabricks().start()
    os.environ.update(emulator.env())  # WorkspaceClient() and the job's own calls reach the emulator
    print(f"LocalDatabricks at {emulator.host}")
mlflow.set_tracking_uri(STORE)
print(f"store {STORE}, tables under {ROOT}/tables")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Train, log and register
# MAGIC Six numeric features `f0`…`f5` and a binary label. The model is logged with its signature and
# MAGIC registered; the alias `champion` marks the version the scoring job uses.

# COMMAND ----------

features, labels = make_classification(n_samples=800, n_features=6, n_informative=4, random_state=11)
columns = [f"f{i}" for i in range(6)]
frame = pd.DataFrame(features, columns=columns)
train, holdout = frame.iloc[:600], frame.iloc[600:]

mlflow.set_experiment("deltaflow-end-to-end")
with mlflow.start_run(run_name="train") as run:
    model = LogisticRegression(max_iter=500).fit(train, labels[:600])
    accuracy = float((model.predict(holdout) == labels[600:]).mean())
    mlflow.log_params({"max_iter": 500, "n_train": len(train)})
    mlflow.log_metric("holdout_accuracy", accuracy)
    info = mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL_NAME, input_example=holdout.head(3))
client = MlflowClient()
client.set_registered_model_alias(MODEL_NAME, "champion", info.registered_model_version)
print(f"run {run.info.run_id}: holdout accuracy {accuracy:.3f}; {MODEL_NAME} version "
      f"{info.registered_model_version} is @champion")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The table to score
# MAGIC Written with delta-rs (`deltalake`), so this notebook needs no Spark of its own; the job scores it with
# MAGIC Spark.

# COMMAND ----------

from deltalake import DeltaTable, write_deltalake

customers = holdout.reset_index(drop=True).assign(customer_id=np.arange(len(holdout), dtype="int64"))
write_deltalake(INPUT, customers, mode="overwrite")
print(f"{len(customers)} rows written to {INPUT} (Delta version {DeltaTable(INPUT).version()})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Deploy `jobs/batch_score.yml` and run it
# MAGIC `deploy_job` is what `deltaflow jobs deploy` does: create or update the job by name, uploading the
# MAGIC spec's task file. The run gets the job parameters; `follow_run` polls it with back-off.

# COMMAND ----------

from deltaflow.projects.databricks_jobs import deploy_job, failure_report, follow_run
from deltaflow.projects.databricks_workspace import workspace_client
from deltaflow.projects.jobs_spec import load_job_spec

w = workspace_client()
spec = load_job_spec(REPO / "jobs" / "batch_score.yml")
job_id, created = deploy_job(w, spec)
print(f"{'created' if created else 'updated'} job {spec.name!r} ({job_id})")
started = w.jobs.run_now(job_id, job_parameters={"tracking_uri": STORE, "input": INPUT, "output": OUTPUT,
                                                 "model_uri": f"models:/{MODEL_NAME}@champion", "mode": "overwrite"})
print(f"run {started.run_id}: {w.jobs.get_run(started.run_id).run_page_url}")


def show(current):
    state = current.state
    print(f"  {state.life_cycle_state.value} {state.result_state.value if state.result_state else ''}".rstrip())


finished = follow_run(w, started.run_id, show, poll_s=0.2, max_poll_s=5)
if finished.state.result_state is None or finished.state.result_state.value != "SUCCESS":
    raise RuntimeError(f"the batch-score job failed:\n{failure_report(w, finished)}")
print(w.jobs.get_run_output(finished.tasks[0].run_id).logs.strip().splitlines()[-1])

# COMMAND ----------

# MAGIC %md
# MAGIC ## Read the scores
# MAGIC The job's predictions match the model's own, row for row; the rows carry their lineage (model
# MAGIC version, input version).

# COMMAND ----------

scores = DeltaTable(OUTPUT).to_pandas().sort_values("customer_id").reset_index(drop=True)
expected = model.predict(customers[columns])
matches = int((scores["prediction"].to_numpy() == expected).sum())
print(f"{len(scores)} scored rows in {OUTPUT}; {matches} match the model's own predictions")
print(scores.head())
if matches != len(customers):
    raise AssertionError("the job's predictions differ from the model's")
if emulator is not None:
    emulator.stop()
print(f"END TO END OK {run.info.run_id} {started.run_id}")
