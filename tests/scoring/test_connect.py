"""Scoring on a Spark Connect session (no JVM in the client process): spark_udf (local and
virtualenv), score, batch_score and stream_score work; a Spark ML model and mode='merge', which need a
JVM in the client, each fail with one clear error. One local Spark Connect server (the spark-connect
JAR from Maven Central) and one client process."""

from __future__ import annotations

import os

import pytest

from scoring_data import FEATURES, child_env, expected, run_script

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

_CLIENT = r"""
import json, os, sys
import pandas as pd
from pyspark.sql import SparkSession

root, port, store, sk_model, spark_model, recorder = sys.argv[1:7]
spark = SparkSession.builder.remote("sc://localhost:" + port).getOrCreate()
import deltaflow, deltaflow.pyfunc
from deltaflow.errors import DeltaflowError

deltaflow.set_tracking_uri(store)
out = {"session": type(spark).__module__}
features = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "b": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]})
df = spark.createDataFrame(features.assign(id=range(6)))

udf = deltaflow.pyfunc.spark_udf(spark, "models:/scoring_lr@champion")
out["udf"] = [r[0] for r in df.orderBy("id").select(udf().alias("p")).collect()]
out["score"] = [r[0] for r in deltaflow.score(df, sk_model).orderBy("id").select("prediction").collect()]

def error(call):
    try:
        call()
    except DeltaflowError as exc:
        return type(exc).__name__ + ": " + str(exc)
    return None

out["spark_model"] = error(lambda: deltaflow.score(df, spark_model))

source = os.path.join(root, "source")
df.write.format("delta").save(source)
result = deltaflow.batch_score(source, "models:/scoring_lr/Production", os.path.join(root, "batch"))
out["batch"] = result.as_dict()
batch = spark.read.format("delta").load(os.path.join(root, "batch")).orderBy("id").toPandas()
out["batch_rows"] = {c: batch[c].tolist() for c in ("prediction", "_model_version", "_model_stage", "_input_version")}
df.write.format("delta").saveAsTable("connect_source")
named = deltaflow.batch_score("connect_source", sk_model, os.path.join(root, "named"))
out["named"] = named.as_dict()
out["merge"] = error(lambda: deltaflow.batch_score(source, sk_model, os.path.join(root, "m"), mode="merge", key="id"))

query = deltaflow.stream_score(source, sk_model, os.path.join(root, "stream"), os.path.join(root, "checkpoint"),
                               trigger={"availableNow": True})
query.awaitTermination(300)
stream = spark.read.format("delta").load(os.path.join(root, "stream")).orderBy("id").toPandas()
out["stream"] = {"ids": stream["id"].tolist(), "prediction": stream["prediction"].tolist()}

venv = deltaflow.pyfunc.spark_udf(spark, recorder, result_type="prefix string, outside boolean, x2 double",
                                  env_manager="virtualenv")
rows = spark.createDataFrame(pd.DataFrame({"x": [1.0, 2.0]})).select(venv("x").alias("r")).select("r.*").toPandas()
out["venv"] = {"prefixes": sorted(set(rows["prefix"])), "outside": sorted(set(rows["outside"].tolist())),
               "x2": rows["x2"].tolist()}
print("RESULT " + json.dumps(out, default=str))
"""


def test_scoring_on_a_spark_connect_session(connect_server, registered, store, sk_paths, pipeline_path, recorder,
                                            env_cache, tmp_path):
    model, _ = recorder
    out = run_script(_CLIENT, [str(tmp_path), connect_server, store, sk_paths[1], pipeline_path, model],
                     child_env(DELTAFLOW_ENV_CACHE=env_cache), str(tmp_path), timeout=900)
    assert out["session"].startswith("pyspark.sql.connect")
    assert out["udf"] == pytest.approx(list(expected(2, FEATURES)))
    assert out["score"] == pytest.approx(list(expected(1, FEATURES)))
    assert out["spark_model"].startswith("InvalidState: ") and "Spark Connect" in out["spark_model"]
    assert "classic SparkSession" in out["spark_model"]

    batch = out["batch"]
    assert batch["rows"] == 6 and batch["output_version"] == 0
    assert (batch["lineage"]["model_version"], batch["lineage"]["model_stage"], batch["lineage"]["input_version"]) == (
        1, "Production", 0)
    assert out["batch_rows"]["prediction"] == pytest.approx(list(expected(1, FEATURES)))
    assert set(out["batch_rows"]["_model_version"]) == {1} and set(out["batch_rows"]["_model_stage"]) == {"Production"}
    assert out["named"]["lineage"]["input_table"] == "connect_source" and out["named"]["lineage"]["input_version"] == 0
    assert out["named"]["rows"] == 6
    assert out["merge"].startswith("InvalidState: ") and "mode='merge'" in out["merge"] and "Spark Connect" in out["merge"]

    assert out["stream"]["ids"] == list(range(6))
    assert out["stream"]["prediction"] == pytest.approx(list(expected(1, FEATURES)))
    venv = out["venv"]
    assert venv["x2"] == [2.0, 4.0] and venv["outside"] == [False]
    built = [d for d in os.listdir(env_cache) if not d.startswith(".")]
    assert venv["prefixes"] == [os.path.join(env_cache, built[0])] and len(built) == 1  # one, by content hash
