"""spark_udf on the suite's local SparkSession: every result type, the calling conventions, signature
enforcement on the driver and inside the UDF, params, registry URIs, one load per Python worker."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import deltaflow
import deltaflow.pyfunc
from scoring_data import FEATURES, expected
from deltaflow.errors import InvalidArgument
from scoring_models import loads

pytestmark = pytest.mark.spark

X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})


@pytest.fixture(scope="module")
def features_df(spark):
    return spark.createDataFrame(FEATURES)


@pytest.fixture(scope="module")
def x_df(spark):
    return spark.createDataFrame(X).repartition(1)


def _column(df, column):
    return [row[0] for row in df.select(column).collect()]


# -- result types ---------------------------------------------------------------------------------
def test_every_result_type_and_the_struct_inferred_from_a_multi_output_signature(spark, multi_path, x_df):
    from pyspark.sql.types import ArrayType, DoubleType, StructType

    udf = deltaflow.pyfunc.spark_udf(spark, multi_path)  # inferred: a struct of the seven outputs
    assert isinstance(udf.returnType, StructType)
    assert udf.returnType.simpleString() == ("struct<score:double,label:string,flag:boolean,count:bigint,"
                                             "small:int,ratio:float,items:array<double>>")
    rows = x_df.select(udf().alias("r")).collect()
    assert [r.r.score for r in rows] == [0.0, 2.0, 4.0, 6.0]
    assert [r.r.label for r in rows] == ["p0", "p1", "p2", "p3"]
    assert [r.r.flag for r in rows] == [False, False, True, True]
    assert [r.r["count"] for r in rows] == [0, 10, 20, 30] and [r.r.small for r in rows] == [1, 2, 3, 4]
    assert [r.r.ratio for r in rows] == [0.0, 0.5, 1.0, 1.5] and [r.r["items"] for r in rows][3] == [3.0, 4.0]

    # Each scalar type takes the leftmost output column of that kind (MLflow's rule).
    scored = x_df.select(
        deltaflow.pyfunc.spark_udf(spark, multi_path, result_type="double")("x").alias("double"),
        deltaflow.pyfunc.spark_udf(spark, multi_path, result_type="float")("x").alias("float"),
        deltaflow.pyfunc.spark_udf(spark, multi_path, result_type="int")("x").alias("int"),
        deltaflow.pyfunc.spark_udf(spark, multi_path, result_type="long")("x").alias("long"),
        deltaflow.pyfunc.spark_udf(spark, multi_path, result_type="string")("x").alias("string"),
        deltaflow.pyfunc.spark_udf(spark, multi_path, result_type="boolean")("x").alias("boolean"),
        deltaflow.pyfunc.spark_udf(spark, multi_path, result_type=ArrayType(DoubleType()))("x").alias("arr"),
        deltaflow.pyfunc.spark_udf(spark, multi_path, result_type="array<string>")("x").alias("arr_s"),
        deltaflow.pyfunc.spark_udf(spark, multi_path, result_type="label string, items array<double>")("x")
        .alias("st"),
    )
    assert [f.dataType.simpleString() for f in scored.schema.fields] == [
        "double", "float", "int", "bigint", "string", "boolean", "array<double>", "array<string>",
        "struct<label:string,items:array<double>>"]
    rows = scored.collect()
    assert [r["double"] for r in rows] == [0.0, 2.0, 4.0, 6.0]
    assert [r["float"] for r in rows] == [0.0, 2.0, 4.0, 6.0]
    assert [r["int"] for r in rows] == [1, 2, 3, 4]  # 'small', the first int32 column
    assert [r["long"] for r in rows] == [0, 10, 20, 30]  # 'count', the first integer column
    assert [r["string"] for r in rows] == ["0.0", "2.0", "4.0", "6.0"]
    assert [r["boolean"] for r in rows] == [False, False, True, True]
    assert rows[1]["arr"] == [2.0, 10.0, 2.0, 0.5]  # every numeric column: score, count, small, ratio
    assert rows[1]["arr_s"] == ["2.0", "p1", "False", "10", "2", "0.5", "[1.0, 2.0]"]
    assert rows[2]["st"].label == "p2" and rows[2]["st"]["items"] == [2.0, 3.0]


def test_a_single_output_model_defaults_to_its_signature_type_and_refuses_an_impossible_one(
        spark, sk_paths, features_df):
    udf = deltaflow.pyfunc.spark_udf(spark, sk_paths[1])
    assert udf.returnType.simpleString() == "double"
    np.testing.assert_allclose(_column(features_df.withColumn("p", udf()), "p"), expected(1, FEATURES))
    only_double = deltaflow.pyfunc.spark_udf(spark, sk_paths[1], result_type="boolean")
    with pytest.raises(Exception, match="did not produce any values compatible with the requested type 'boolean'"):
        features_df.withColumn("p", only_double()).collect()
    with pytest.raises(InvalidArgument, match="result_type 'map<string,double>' is not supported"):
        deltaflow.pyfunc.spark_udf(spark, sk_paths[1], result_type="map<string, double>")
    with pytest.raises(InvalidArgument, match="is not a Spark type"):
        deltaflow.pyfunc.spark_udf(spark, sk_paths[1], result_type="dubble")
    with pytest.raises(InvalidArgument, match="env_manager 'conda' is not supported"):
        deltaflow.pyfunc.spark_udf(spark, sk_paths[1], env_manager="conda")


# -- calling conventions ----------------------------------------------------------------------------
def test_columns_by_position_by_name_as_a_struct_or_from_the_signature(spark, sk_paths, features_df):
    from pyspark.sql import functions as F

    udf = deltaflow.pyfunc.spark_udf(spark, sk_paths[1])
    want = expected(1, FEATURES)
    renamed = features_df.select(F.col("a").alias("u"), F.col("b").alias("v"))
    scored = features_df.select(
        udf().alias("signature"),                       # no arguments: the signature's columns
        udf("b", "a").alias("by_name"),                 # every name is the model's: matched by name
        udf(F.struct("b", "a")).alias("struct"),        # a struct: its field names
        udf(F.col("a"), F.col("b")).alias("columns"),   # Column objects: by position
    ).toPandas()
    for column in scored.columns:
        np.testing.assert_allclose(scored[column], want, err_msg=column)
    positional = renamed.select(udf("u", "v").alias("p")).toPandas()["p"]  # other names: by position
    np.testing.assert_allclose(positional, want)
    swapped = renamed.select(udf("v", "u").alias("p")).toPandas()["p"]  # by position, so swapped
    np.testing.assert_allclose(swapped, expected(1, FEATURES.rename(columns={"a": "b", "b": "a"})))
    # A decimal column is read as double, as MLflow does (and as the driver-side check accepts).
    decimals = features_df.select(F.col("a").cast("decimal(20,10)").alias("a"), "b")
    rounded = features_df.select(F.col("a").cast("decimal(20,10)").cast("double").alias("a"), "b").toPandas()
    np.testing.assert_allclose(deltaflow.score(decimals, sk_paths[1]).toPandas()["prediction"],
                               expected(1, rounded[["a", "b"]]))
    np.testing.assert_allclose(decimals.select(udf("a", "b").alias("p")).toPandas()["p"], expected(1, rounded))
    spark.udf.register("scoring_lr_v1", udf.udf)  # in SQL, by position
    features_df.createOrReplaceTempView("scoring_features")
    np.testing.assert_allclose(spark.sql("SELECT scoring_lr_v1(a, b) AS p FROM scoring_features").toPandas()["p"], want)


# -- enforcement ------------------------------------------------------------------------------------
def test_signature_errors_name_the_column_on_the_driver_before_any_job(spark, sk_paths, features_df, no_jobs):
    from pyspark.sql import functions as F

    udf = deltaflow.pyfunc.spark_udf(spark, sk_paths[1])
    with no_jobs():
        with pytest.raises(InvalidArgument, match=r"expects 2 input columns \['a', 'b'\].*called with 1"):
            udf("a")
        with pytest.raises(InvalidArgument, match="input column 'b' is required by the model signature but missing"):
            deltaflow.score(features_df.drop("b"), sk_paths[1])
        with pytest.raises(InvalidArgument, match="input column 'a' has Spark type string, which cannot be converted "
                                                  "safely to the signature's type 'double'"):
            deltaflow.score(features_df.withColumn("a", F.col("a").cast("string")), sk_paths[1])
        with pytest.raises(InvalidArgument, match="output_col 'a' is already a column"):
            deltaflow.score(features_df, sk_paths[1], output_col="a")


def test_signature_errors_inside_the_udf_name_the_column(spark, sk_paths, features_df):
    from pyspark.errors import PythonException
    from pyspark.sql import functions as F

    udf = deltaflow.pyfunc.spark_udf(spark, sk_paths[1])
    as_text = features_df.withColumn("a", F.col("a").cast("string"))
    with pytest.raises(PythonException, match="input column 'a' has type .*cannot be converted safely to the "
                                              "signature's type 'double'"):
        as_text.select(udf("a", "b")).collect()
    with pytest.raises(PythonException, match="input column 'a' is required by the model signature but missing"):
        features_df.select(udf(F.struct(F.col("b"), F.col("b").alias("c")))).collect()


def test_params_are_checked_on_the_driver_and_reach_predict(spark, multi_path, x_df):
    udf = deltaflow.pyfunc.spark_udf(spark, multi_path, result_type="double", params={"scale": 10.0})
    assert _column(x_df.select(udf("x").alias("p")), "p") == [0.0, 20.0, 40.0, 60.0]
    with pytest.raises(InvalidArgument, match="param 'scale' has value 'big'"):
        deltaflow.pyfunc.spark_udf(spark, multi_path, params={"scale": "big"})


# -- model shipping -----------------------------------------------------------------------------------
def test_each_python_worker_loads_the_model_once_from_the_shipped_copy(spark, recorder):
    import os

    path, log_dir = recorder
    udf = deltaflow.pyfunc.spark_udf(spark, path, result_type="pid long, marker string, x2 double")
    # 8 partitions of 5,000 rows (batches of at most 10,000 rows), scored twice: many tasks, one load each worker.
    df = spark.range(40_000, numPartitions=8).selectExpr("cast(id as double) as x")
    first = df.select(udf("x").alias("r")).select("r.*").toPandas()
    second = df.select(udf("x").alias("r")).select("r.*").toPandas()
    assert first["x2"].tolist() == [2.0 * i for i in range(40_000)]
    scorers = set(first["pid"]) | set(second["pid"])
    loaded = loads(log_dir)
    assert sorted(set(loaded)) == loaded, f"a worker loaded the model more than once: {loaded}"
    assert set(loaded) == scorers and os.getpid() not in scorers
    # The workers read the copy the payload was extracted to, not the folder the driver resolved.
    assert set(first["marker"]) == set(second["marker"]) and len(set(first["marker"])) == 1
    marker = first["marker"][0]
    assert "deltaflow-scoring" in marker and not marker.startswith(os.path.dirname(path))


# -- registry URIs ------------------------------------------------------------------------------------
def test_registered_versions_through_alias_and_production(spark, registered, features_df):
    name = registered["name"]
    champion = deltaflow.pyfunc.spark_udf(spark, f"models:/{name}@champion")
    production = deltaflow.pyfunc.spark_udf(spark, f"models:/{name}/Production")
    scored = features_df.select(champion().alias("c"), production().alias("p")).toPandas()
    np.testing.assert_allclose(scored["c"], expected(2, FEATURES))
    np.testing.assert_allclose(scored["p"], expected(1, FEATURES))
    via_score = deltaflow.score(features_df, f"models:/{name}@champion", output_col="y").toPandas()
    np.testing.assert_allclose(via_score["y"], expected(2, FEATURES))
    assert list(via_score.columns) == ["a", "b", "y"]
