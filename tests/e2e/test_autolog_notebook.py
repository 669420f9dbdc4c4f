"""The autologging quickstart notebook runs with plain ``python`` (autolog in test mode, so a logging bug
raises instead of warning) and leaves what it reports in the store, readable by the rust engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "autolog_quickstart.py"

# Runs in a second process on the rust engine (no Spark): what the notebook logged is committed Delta data.
CHECK = """
import json, os, sys
import deltaflow as mlflow
from deltaflow import MlflowClient

pipeline_run_id = sys.argv[1]
client = MlflowClient()
run = mlflow.get_run(pipeline_run_id)
exp = run.info.experiment_id
runs = mlflow.search_runs(experiment_ids=[exp], output_format="list")
parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.info.run_id != pipeline_run_id]
cv = parents[0] if len(parents) == 1 else None
children = [r for r in runs if cv is not None and r.data.tags.get("mlflow.parentRunId") == cv.info.run_id]


def describe(r):
    return {"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status, "params": r.data.params,
            "metrics": r.data.metrics, "tags": r.data.tags,
            "artifacts": sorted(f.path for f in mlflow.list_artifacts(run_id=r.info.run_id)),
            "model_files": sorted(f.path for f in mlflow.list_artifacts(run_id=r.info.run_id, artifact_path="model"))
                           if any(f.path == "model" for f in mlflow.list_artifacts(run_id=r.info.run_id)) else [],
            "inputs": [{"name": i.dataset.name, "source_type": i.dataset.source_type,
                        "source": json.loads(i.dataset.source), "tags": {t.key: t.value for t in i.tags}}
                       for i in r.inputs.dataset_inputs]}


import deltalake
from deltaflow.store.factory import get_store

inputs = describe(run)["inputs"]
table = deltalake.DeltaTable(inputs[0]["source"]["path"]) if inputs else None
print(json.dumps({
    "engine": get_store().engine.name,
    "experiment": mlflow.get_experiment(exp).name,
    "run_count": len(runs),
    "pipeline": describe(run),
    "cv": describe(cv) if cv else None,
    "children": [describe(c) for c in sorted(children, key=lambda c: c.data.params.get("LogisticRegression.regParam"))],
    "table_version": table.version() if table else None,
    "model_versions": sorted((int(v.version), v.run_id)
                             for v in client.search_model_versions("name = 'autolog_quickstart_churn'")),
    "pyspark_imported": "pyspark" in sys.modules,
}))
"""


def test_autolog_notebook_is_databricks_source_format() -> None:
    text = NOTEBOOK.read_text()
    assert text.splitlines()[0] == "# Databricks notebook source"
    cells = text.split("\n# COMMAND ----------\n")
    assert len(cells) >= 8
    assert sum(cell.lstrip().startswith("# MAGIC %md") for cell in cells) >= 5
    assert "import deltaflow as mlflow" in text and "mlflow.autolog(" in text
    code = "\n".join(line for line in text.splitlines() if not line.startswith("# MAGIC"))
    assert "start_run" not in code and "mlflow.log_" not in code  # autologging does all the logging
    compile(text, str(NOTEBOOK), "exec")  # also a plain Python script


def test_autolog_notebook_runs_locally_and_the_rust_engine_reads_its_runs(tmp_path: Path) -> None:
    env = dict(os.environ, DELTAFLOW_TRACKING_URI=str(tmp_path / "store"),
               DELTAFLOW_WAREHOUSE_DIR=str(tmp_path / "warehouse"), DELTAFLOW_AUTOLOG_TESTING="true",
               PYSPARK_PYTHON=sys.executable, PYTHONUNBUFFERED="1")
    env.pop("DELTAFLOW_ENGINE", None)
    proc = subprocess.run([sys.executable, str(NOTEBOOK)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert "AutologWarning" not in proc.stderr, proc.stderr[-4000:]
    last = proc.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"AUTOLOG QUICKSTART OK ([0-9a-f]{32})", last)
    assert match, proc.stdout
    run_id = match.group(1)
    assert not (tmp_path / "deltaflow-store").exists()  # DELTAFLOW_TRACKING_URI was honoured
    assert not (tmp_path / "mlruns").exists()

    check = subprocess.run([sys.executable, "-c", CHECK, run_id], cwd=tmp_path,
                           env=dict(env, DELTAFLOW_ENGINE="rust"), capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-4000:]
    got = json.loads(check.stdout.strip().splitlines()[-1])
    assert got["engine"] == "rust" and not got["pyspark_imported"]
    assert got["experiment"] == "deltaflow-autolog-quickstart"
    # One run per outermost fit: the pipeline, the CrossValidator and its two grid points. No runs for the
    # StringIndexer inside the pipeline, nor for the fits the CrossValidator makes per fold.
    assert got["run_count"] == 4

    pipeline = got["pipeline"]
    assert pipeline["run_id"] == run_id and pipeline["status"] == "FINISHED"
    assert pipeline["name"] == "Pipeline"
    assert pipeline["tags"]["mlflow.autologging"] == "pyspark.ml" and pipeline["tags"]["team"] == "quickstart"
    params = pipeline["params"]
    assert json.loads(params["stages"]) == ["StringIndexer", "VectorAssembler", "LogisticRegression"]
    assert params["StringIndexer.inputCol"] == "plan" and params["VectorAssembler.outputCol"] == "features"
    assert params["LogisticRegression.maxIter"] == "25" and params["LogisticRegression.regParam"] == "0.01"
    assert params["LogisticRegression.labelCol"] == "churned"
    metrics = pipeline["metrics"]
    training = {k for k in metrics if k.startswith("training_")}
    assert {"training_accuracy", "training_areaUnderROC", "training_weightedPrecision"} <= training
    assert 0.6 < metrics["training_accuracy"] <= 1 and 0.6 < metrics["training_areaUnderROC"] <= 1
    post = [k for k in metrics if k.startswith("areaUnderROC_")]
    assert len(post) == 1 and 0.5 < metrics[post[0]] <= 1  # the held-out evaluation
    assert "model" in pipeline["artifacts"] and "model/MLmodel" in pipeline["model_files"]

    [dataset] = pipeline["inputs"]
    assert dataset["name"] == "churn" and dataset["source_type"] == "delta_path"
    assert dataset["tags"]["mlflow.data.context"] == "training"
    assert dataset["source"]["path"].rstrip("/").endswith("quickstart_data/churn")
    assert dataset["source"]["delta_table_version"] == got["table_version"] == 0  # the version delta-rs sees

    cv = got["cv"]
    assert cv is not None and cv["status"] == "FINISHED" and cv["name"] == "CrossValidator"
    assert cv["params"]["numFolds"] == "2" and cv["params"]["estimatorParamMaps"] == "2 param maps"
    assert cv["params"]["estimator"] == "Pipeline" and cv["params"]["best_LogisticRegression.regParam"] in ("0.0", "0.5")
    assert "search_results.csv" in cv["artifacts"] and "model/MLmodel" in cv["model_files"]
    assert [d["source"]["delta_table_version"] for d in cv["inputs"]] == [0]
    children = got["children"]
    assert [c["params"]["LogisticRegression.regParam"] for c in children] == ["0.0", "0.5"]
    assert all(c["status"] == "FINISHED" and c["tags"]["mlflow.autologging"] == "pyspark.ml" for c in children)
    assert all(0.5 < c["metrics"]["avg_areaUnderROC"] <= 1 and "std_areaUnderROC" in c["metrics"] for c in children)
    assert cv["metrics"]["best_areaUnderROC"] == max(c["metrics"]["avg_areaUnderROC"] for c in children)

    # registered_model_name: each autologged model is the next version (the CV logs its best model).
    assert got["model_versions"] == [[1, run_id], [2, cv["run_id"]]]
