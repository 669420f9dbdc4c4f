"""The quickstart notebook runs with plain ``python`` and leaves the runs it reports in the store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "tracking_quickstart.py"

CHECK = """
import json, sys
import deltaflow as mlflow

run = mlflow.get_run(sys.argv[1])
children = mlflow.search_runs(experiment_ids=[run.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                              order_by=["params.lr ASC"], output_format="list")
print(json.dumps({
    "experiment": mlflow.get_experiment(run.info.experiment_id).name,
    "status": run.info.status,
    "params": run.data.params,
    "metrics": run.data.metrics,
    "tags": run.data.tags,
    "inputs": [{"name": i.dataset.name, "source_type": i.dataset.source_type,
                "tags": {t.key: t.value for t in i.tags}} for i in run.inputs.dataset_inputs],
    "loss_steps": [m.step for m in mlflow.get_metric_history(run.info.run_id, "loss")],
    "artifacts": sorted(f.path for f in mlflow.list_artifacts(run_id=run.info.run_id)),
    "children": [{"lr": c.data.params.get("lr"), "status": c.info.status,
                  "mse_points": len(mlflow.get_metric_history(c.info.run_id, "mse"))} for c in children],
}))
"""


def test_notebook_is_databricks_source_format() -> None:
    text = NOTEBOOK.read_text()
    assert text.splitlines()[0] == "# Databricks notebook source"
    cells = text.split("\n# COMMAND ----------\n")
    assert len(cells) >= 6
    assert sum(cell.lstrip().startswith("# MAGIC %md") for cell in cells) >= 3
    assert "import deltaflow as mlflow" in text
    compile(text, str(NOTEBOOK), "exec")  # also a plain Python script


def test_notebook_runs_locally_and_logs_the_sweep(tmp_path: Path) -> None:
    env = dict(os.environ, DELTAFLOW_TRACKING_URI=str(tmp_path / "store"),
               DELTAFLOW_WAREHOUSE_DIR=str(tmp_path / "warehouse"), PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(NOTEBOOK)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    last = proc.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"QUICKSTART OK ([0-9a-f]{32})", last)
    assert match, proc.stdout
    run_id = match.group(1)
    assert not (tmp_path / "deltaflow-store").exists()  # DELTAFLOW_TRACKING_URI was honoured

    check = subprocess.run([sys.executable, "-c", CHECK, run_id], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=420)
    assert check.returncode == 0, check.stderr[-4000:]
    got = json.loads(check.stdout.strip().splitlines()[-1])
    assert got["experiment"] == "deltaflow-quickstart"
    assert got["status"] == "FINISHED"
    assert got["params"]["model"] == "linear-gd" and got["params"]["epochs"] == "15"
    assert got["params"]["best_lr"] == "0.2" and got["params"]["n_rows"] == "41"
    assert 0 < got["metrics"]["best_mse"] < 0.05  # the toy fit recovers y = 3x + 1
    assert got["metrics"]["rmse"] ** 2 == pytest.approx(got["metrics"]["best_mse"])
    assert got["tags"]["team"] == "quickstart"
    assert got["loss_steps"] == list(range(15))
    assert got["artifacts"] == ["summary.txt", "sweep.json"]
    [dataset] = got["inputs"]
    assert dataset["name"] == "points" and dataset["source_type"] == "delta_path"
    assert dataset["tags"]["mlflow.data.context"] == "training"
    assert [c["lr"] for c in got["children"]] == ["0.01", "0.05", "0.1", "0.2"]
    assert all(c["status"] == "FINISHED" and c["mse_points"] == 15 for c in got["children"])


REGISTRY_NOTEBOOK = NOTEBOOK.parent / "model_registry_quickstart.py"

REGISTRY_CHECK = """
import json, sys
from deltaflow import MlflowClient

client = MlflowClient()
name = sys.argv[1]
versions = client.search_model_versions(f"name = '{name}'")
champion = client.get_model_version_by_alias(name, "champion")
activity = client.get_model_version_activity(name, champion.version)
print(json.dumps({
    "stages": {v.version: v.current_stage for v in versions},
    "champion": champion.version,
    "run_metrics": client.get_run(champion.run_id).data.metrics,
    "steps": [[a.user_id, a.action, a.to_stage] for a in activity],
}))
"""


def test_registry_notebook_trains_registers_and_promotes(tmp_path: Path) -> None:
    text = REGISTRY_NOTEBOOK.read_text()
    assert text.splitlines()[0] == "# Databricks notebook source" and "# MAGIC %md" in text
    env = dict(os.environ, DELTAFLOW_TRACKING_URI=str(tmp_path / "store"), DELTAFLOW_USER="owner@example.com",
               DELTAFLOW_WAREHOUSE_DIR=str(tmp_path / "warehouse"), PYTHONUNBUFFERED="1")
    # One run keeps CI lean; re-running (v2 archiving v1) is the same code path as archive tests elsewhere.
    proc = subprocess.run([sys.executable, str(REGISTRY_NOTEBOOK)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip().splitlines()[-1] == "REGISTRY QUICKSTART OK quickstart_regressor 1"
    assert "lacks CAN_MANAGE_PRODUCTION_VERSIONS" in proc.stdout  # the reviewer was refused
    check = subprocess.run([sys.executable, "-c", REGISTRY_CHECK, "quickstart_regressor"], cwd=tmp_path,
                           env=dict(env, DELTAFLOW_ENGINE="rust"), capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-4000:]
    got = json.loads(check.stdout.strip().splitlines()[-1])
    assert got["stages"] == {"1": "Production"} and got["champion"] == 1
    assert got["run_metrics"]["r2"] > 0.99  # the pipeline fits y = 3x - 2z + 1
    assert got["steps"] == [
        ["owner@example.com", "CREATE_MODEL_VERSION", "None"],
        ["owner@example.com", "UPDATE_MODEL_VERSION", None],
        ["data.scientist@example.com", "CREATE_TRANSITION_REQUEST", "Production"],
        ["owner@example.com", "APPROVE_TRANSITION_REQUEST", "Production"],
        ["owner@example.com", "SET_ALIAS", None],
    ]
