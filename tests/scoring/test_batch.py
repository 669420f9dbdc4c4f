"""batch_score: Delta in, Delta out, in each mode; the lineage read back from the output's columns and
from its Delta history; bad arguments refused with nothing written; the command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import deltaflow
import deltaflow.spark
from scoring_data import FEATURES, SPARK_ROWS, expected
from deltaflow.errors import InvalidArgument, NotFound

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def input_path(spark, tmp_path_factory):
    """A Delta table with rows 0-5 at version 0 and rows 6-8 appended at version 1."""
    path = str(tmp_path_factory.mktemp("batch-input") / "features")
    first = FEATURES.assign(id=range(len(FEATURES)))
    spark.createDataFrame(first).write.format("delta").save(path)
    more = pd.DataFrame({"a": [7.0, 8.0, 9.0], "b": [1.0, 0.0, 1.0], "id": [6, 7, 8]})
    spark.createDataFrame(more).write.format("delta").mode("append").save(path)
    return path, pd.concat([first, more], ignore_index=True)


def _history(spark, path):
    from delta.tables import DeltaTable

    return [r.asDict() for r in DeltaTable.forPath(spark, path).history().collect()]


def test_append_records_the_lineage_in_the_rows_and_the_commit(spark, registered, input_path, tmp_path):
    path, rows = input_path
    output = str(tmp_path / "scored")
    result = deltaflow.batch_score(path, "models:/scoring_lr@champion", output, version=0)
    scored = spark.read.format("delta").load(output).orderBy("id").toPandas()
    assert scored["id"].tolist() == list(range(6))  # version 0 only
    np.testing.assert_allclose(scored["prediction"], expected(2, FEATURES))
    assert scored["_model_name"].unique().tolist() == ["scoring_lr"]
    assert scored["_model_version"].unique().tolist() == [2]
    assert scored["_model_alias"].unique().tolist() == ["champion"]
    assert scored["_model_stage"].isna().all()
    assert scored["_model_run_id"].unique().tolist() == [registered["runs"][2]]
    assert scored["_model_uri"].unique().tolist() == ["models:/scoring_lr@champion"]
    assert scored["_input_table"].unique().tolist() == [path] and scored["_input_version"].unique().tolist() == [0]
    assert scored["_scoring_id"].nunique() == 1 and scored["_scored_at"].notna().all()

    commit = _history(spark, output)[0]
    facts = json.loads(commit["userMetadata"])["deltaflow.scoring"]
    assert facts["scoring_id"] == scored["_scoring_id"][0]
    assert (facts["model_name"], facts["model_version"], facts["model_alias"], facts["model_run_id"]) == (
        "scoring_lr", 2, "champion", registered["runs"][2])
    assert (facts["input_table"], facts["input_version"], facts["mode"]) == (path, 0, "append")
    assert result.output_version == commit["version"] == 0 and result.rows == 6
    assert result.lineage == facts
    # The lineage constant within the call partitions the new table (once per file, not per row).
    from deltalake import DeltaTable

    from deltaflow.serving.batch import PARTITION_COLUMNS

    assert DeltaTable(output).metadata().partition_columns == list(PARTITION_COLUMNS)
    assert spark.conf.get("spark.sql.optimizer.plannedWrite.enabled", None) in (None, "true")  # put back


def test_overwrite_pins_the_latest_input_version_and_records_the_stage(spark, registered, input_path, tmp_path):
    path, rows = input_path
    output = str(tmp_path / "scored")
    deltaflow.batch_score(path, "models:/scoring_lr@champion", output, version=0)
    result = deltaflow.batch_score(path, "models:/scoring_lr/Production", output, mode="overwrite")
    scored = spark.read.format("delta").load(output).orderBy("id").toPandas()
    assert scored["id"].tolist() == list(range(9))  # replaced, and the latest input (version 1) read
    np.testing.assert_allclose(scored["prediction"], expected(1, rows))
    assert scored["_model_version"].unique().tolist() == [1] and scored["_model_stage"].unique().tolist() == ["Production"]
    assert scored["_model_alias"].isna().all() and scored["_input_version"].unique().tolist() == [1]
    history = _history(spark, output)
    assert [h["version"] for h in history] == [1, 0] and result.output_version == 1 and result.rows == 9
    assert json.loads(history[0]["userMetadata"])["deltaflow.scoring"]["model_stage"] == "Production"


def test_merge_upserts_by_key_and_tags_the_merge_commit(spark, registered, input_path, tmp_path):
    path, rows = input_path
    output = str(tmp_path / "merged")
    first = deltaflow.batch_score(path, "models:/scoring_lr/1", output, mode="merge", key="id", version=0)
    assert first.output_version == 0 and first.rows == 6  # the first merge creates the table
    changed = str(tmp_path / "changed")
    update = pd.DataFrame({"a": [100.0, 9.0], "b": [0.0, 1.0], "id": [0, 8]})  # id 0 changed, id 8 new
    spark.createDataFrame(update).write.format("delta").save(changed)
    second = deltaflow.batch_score(changed, "models:/scoring_lr@champion", output, mode="merge", key=["id"])
    merged = spark.read.format("delta").load(output).orderBy("id").toPandas()
    assert merged["id"].tolist() == [0, 1, 2, 3, 4, 5, 8]
    by_id = merged.set_index("id")
    assert by_id.loc[0, "prediction"] == pytest.approx(1000.0) and by_id.loc[0, "_model_version"] == 2
    assert by_id.loc[8, "prediction"] == pytest.approx(89.0) and by_id.loc[8, "_input_table"] == changed
    assert by_id.loc[3, "prediction"] == pytest.approx(expected(1, FEATURES)[3]) and by_id.loc[3, "_model_version"] == 1
    commit = _history(spark, output)[0]
    assert commit["operation"] == "MERGE" and commit["version"] == second.output_version == 1
    assert json.loads(commit["userMetadata"])["deltaflow.scoring"]["scoring_id"] == by_id.loc[0, "_scoring_id"]
    assert spark.conf.get("spark.databricks.delta.commitInfo.userMetadata", None) is None  # put back
    duplicated = str(tmp_path / "duplicated")
    spark.createDataFrame(pd.concat([update, update])).write.format("delta").save(duplicated)
    with pytest.raises(InvalidArgument, match=r"merge key \['id'\] is not unique in the input"):
        deltaflow.batch_score(duplicated, "models:/scoring_lr/1", output, mode="merge", key="id")
    assert len(_history(spark, output)) == 2


def test_bad_arguments_are_refused_and_nothing_is_written(spark, registered, input_path, tmp_path):
    import os

    path, _ = input_path
    output = str(tmp_path / "never")
    cases = [
        (dict(mode="upsert"), InvalidArgument, "mode 'upsert' is not supported; use one of append, overwrite, merge"),
        (dict(mode="merge"), InvalidArgument, "mode='merge' needs key="),
        (dict(key="id"), InvalidArgument, "key= is used by mode='merge' only"),
        (dict(version=7), InvalidArgument, r"version 7 of input .* does not exist \(its latest is 1\)"),
        (dict(version=-1), InvalidArgument, "version must be a non-negative integer"),
        (dict(mode="merge", key="nope"), InvalidArgument, "merge key 'nope' is not a column of the input"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            deltaflow.batch_score(path, "models:/scoring_lr/1", output, **kwargs)
    with pytest.raises(NotFound, match="is not a Delta table"):
        deltaflow.batch_score(str(tmp_path / "missing"), "models:/scoring_lr/1", output)
    with pytest.raises(NotFound, match="registered model 'nobody'|nobody"):
        deltaflow.batch_score(path, "models:/nobody/1", output)
    with pytest.raises(InvalidArgument, match="input and output are the same table"):
        deltaflow.batch_score(path, "models:/scoring_lr/1", path)
    with pytest.raises(InvalidArgument, match="neither a path nor a table name"):
        deltaflow.batch_score("drop table x; --", "models:/scoring_lr/1", output)
    assert not os.path.exists(output)


def test_catalog_tables_and_the_command_line(spark, registered, store, input_path, tmp_path):
    from click.testing import CliRunner

    from deltaflow.cli import cli

    path, rows = input_path
    spark.read.format("delta").load(path).write.format("delta").saveAsTable("scoring_input")
    runner = CliRunner()
    result = runner.invoke(cli, ["--tracking-uri", store, "models", "score", "-m", "models:/scoring_lr@champion",
                                 "--input", "scoring_input", "--output", "scoring_output", "--output-format", "json"])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.output.strip().splitlines()[-1])
    assert reported["rows"] == 9 and reported["output"] == "scoring_output"
    assert reported["lineage"]["input_table"] == "scoring_input" and reported["lineage"]["input_version"] == 0
    scored = spark.read.table("scoring_output").orderBy("id").toPandas()
    np.testing.assert_allclose(scored["prediction"], expected(2, rows))
    assert scored["_input_table"].unique().tolist() == ["scoring_input"]

    text = runner.invoke(cli, ["--tracking-uri", store, "models", "score", "-m", "models:/scoring_lr/1",
                               "-i", "scoring_input", "-o", "scoring_output", "--mode", "merge", "--key", "id"])
    assert text.exit_code == 0, text.output
    assert "scored 9 rows into scoring_output (version 1, merge)" in text.output and "model_version: 1" in text.output
    bad = runner.invoke(cli, ["--tracking-uri", store, "models", "score", "-m", "models:/scoring_lr/1",
                              "-i", "scoring_input", "-o", "elsewhere", "--mode", "merge"])
    assert bad.exit_code == 2 and "mode='merge' needs key=" in bad.output


def test_a_spark_model_writes_the_input_columns_and_its_prediction(spark, pipeline_path, tmp_path):
    from deltaflow.serving.batch import LINEAGE_COLUMNS

    source, output = str(tmp_path / "source"), str(tmp_path / "scored")
    spark.createDataFrame(SPARK_ROWS, ["x", "y", "cat", "label"]).write.format("delta").save(source)
    result = deltaflow.batch_score(source, pipeline_path, output)
    scored = spark.read.format("delta").load(output)
    # The pipeline's vectors (features, rawPrediction, probability) stay out: every Delta reader reads it.
    assert scored.columns == ["x", "y", "cat", "label", "prediction", *LINEAGE_COLUMNS]
    reference = deltaflow.spark.load_model(pipeline_path).transform(spark.read.format("delta").load(source))
    assert sorted(r[0] for r in scored.select("prediction").collect()) == sorted(
        r[0] for r in reference.select("prediction").collect())
    assert result.rows == len(SPARK_ROWS) and result.lineage["model_uri"] == pipeline_path
