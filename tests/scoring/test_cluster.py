"""spark_udf on a real multi-process cluster (local-cluster: separate executor JVMs, each with its
own Python workers), in its own driver process since this one already holds the suite's session:
the model is shipped to the executors and loaded there once per Python worker, and the virtualenv
UDF runs there too."""

from __future__ import annotations

import os

import pytest

from scoring_data import child_env, run_script
from scoring_models import load_records

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

_DRIVER = r"""
import json, os, sys, time
from pyspark.sql import SparkSession

model, executor_scratch = sys.argv[1], sys.argv[2]
spark = (SparkSession.builder.master("local-cluster[2,1,1024]").appName("deltaflow-cluster-test")
         .config("spark.driver.memory", "1g").config("spark.executor.memory", "640m")
         .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
         .config("spark.executorEnv.DELTAFLOW_SCORING_DIR", executor_scratch)
         .getOrCreate())
deadline = time.time() + 180
while spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() < 3 and time.time() < deadline:
    time.sleep(0.5)  # both executors registered, so both get tasks

import deltaflow.pyfunc

out = {"driver_pid": os.getpid()}
df = spark.range(24_000, numPartitions=6).selectExpr("cast(id as double) as x")
kind = "pid long, prefix string, marker string, x2 double, outside boolean"
for manager in ("local", "virtualenv"):
    udf = deltaflow.pyfunc.spark_udf(spark, model, result_type=kind, env_manager=manager)
    runs = [df.select(udf("x").alias("r")).select("r.*").toPandas() for _ in range(2)]
    out[manager] = {"pids": sorted({int(p) for r in runs for p in r["pid"]}),
                    "prefixes": sorted({p for r in runs for p in r["prefix"]}),
                    "markers": sorted({m for r in runs for m in r["marker"]}),
                    "outside": sorted({bool(s) for r in runs for s in r["outside"]}),
                    "x2_ok": all(r["x2"].tolist() == [2.0 * i for i in range(24_000)] for r in runs)}
print("RESULT " + json.dumps(out))
"""


def test_models_are_shipped_to_executor_jvms_and_loaded_once_per_python_worker(recorder, env_cache, tmp_path):
    model, log_dir = recorder
    scratch = str(tmp_path / "executor-scratch")
    out = run_script(_DRIVER, [model, scratch], child_env(DELTAFLOW_ENV_CACHE=env_cache), str(tmp_path), timeout=900)
    records = load_records(log_dir)

    local = out["local"]
    assert local["x2_ok"] and out["driver_pid"] not in local["pids"] and local["outside"] == [True]
    local_loads = [r for r in records if r["pid"] in local["pids"]]
    assert sorted(r["pid"] for r in local_loads) == local["pids"]  # each Python worker loaded it once
    assert len({r["parent"] for r in local_loads}) == 2  # under two executors' Python daemons
    # Read from the copy the executors extracted from the shipped payload, not the driver's folder.
    assert len(local["markers"]) == 1 and local["markers"][0].startswith(os.path.join(scratch, "models"))

    venv = out["virtualenv"]
    assert venv["x2_ok"] and not set(venv["pids"]) & set(local["pids"])
    # The model's own environment: under the cache, and without the packages of the calling interpreter.
    assert len(venv["prefixes"]) == 1 and venv["prefixes"][0].startswith(env_cache + os.sep)
    built = [d for d in os.listdir(env_cache) if not d.startswith(".")]
    assert venv["prefixes"] == [os.path.join(env_cache, built[0])] and len(built) == 1  # one, by content hash
    assert venv["outside"] == [False]
    venv_loads = [r for r in records if r["pid"] in venv["pids"]]
    assert sorted(r["pid"] for r in venv_loads) == venv["pids"]  # one child per Python worker, loaded once
    assert {r["prefix"] for r in venv_loads} == set(venv["prefixes"]) and len(venv["prefixes"]) == 1
    assert len({r["parent"] for r in venv_loads}) == len(venv["pids"]) >= 2  # children of distinct Python workers
    assert len(records) == len(local["pids"]) + len(venv["pids"])
