"""The end-to-end notebook (train → register → batch score as a Databricks job) runs locally with plain
``python``: it starts LocalDatabricks, deploys jobs/batch_score.yml and the job scores with Spark in its own
process (the only JVM of tests/databricks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "end_to_end_databricks.py"


def test_the_notebook_is_in_databricks_source_format():
    text = NOTEBOOK.read_text()
    assert text.splitlines()[0] == "# Databricks notebook source"
    cells = text.split("\n# COMMAND ----------\n")
    assert len(cells) >= 9 and sum(cell.lstrip().startswith("# MAGIC %md") for cell in cells) >= 4
    assert "jobs\" / \"batch_score.yml\"" in text and "LocalDatabricks" in text
    compile(text, str(NOTEBOOK), "exec")


def test_the_notebook_trains_registers_and_scores_through_a_job(tmp_path):
    env = {**os.environ, "DELTAFLOW_E2E_ROOT": str(tmp_path / "e2e"), "DELTAFLOW_DRIVER_MEMORY": "1g",
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "PYTHONUNBUFFERED": "1",
           "DELTAFLOW_WAREHOUSE_DIR": str(tmp_path / "warehouse")}
    for name in ("DELTAFLOW_TRACKING_URI", "DELTAFLOW_ENGINE", "DATABRICKS_HOST", "DATABRICKS_TOKEN",
                 "DATABRICKS_RUNTIME_VERSION"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, str(NOTEBOOK)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    match = re.fullmatch(r"END TO END OK ([0-9a-f]{32}) (\d+)", proc.stdout.strip().splitlines()[-1])
    assert match, proc.stdout[-3000:]
    assert "created job 'deltaflow-batch-score'" in proc.stdout and "TERMINATED SUCCESS" in proc.stdout

    from deltalake import DeltaTable

    from deltaflow import DeltaflowClient

    client = DeltaflowClient(str(tmp_path / "e2e" / "store"))
    champion = client.get_model_version_by_alias("e2e_classifier", "champion")
    assert champion.run_id == match.group(1) and champion.version in ("1", 1)
    assert client.get_run(match.group(1)).data.metrics["holdout_accuracy"] > 0.8
    scores = DeltaTable(str(tmp_path / "e2e" / "tables" / "customer_scores")).to_pandas()
    assert len(scores) == 200 and set(scores["prediction"].unique()) <= {0, 1}
    lineage = [c for c in scores.columns if c.startswith("_")]
    assert lineage, scores.columns
    assert not (tmp_path / "deltaflow-store").exists()  # the notebook's store is the one it was given
