"""stream_score: Delta in, Delta out with a checkpoint, exactly once — across a crash in the middle of
a stream, a restart, and a micro-batch replayed after its commit was written but not checkpointed."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

import deltaflow
import deltaflow.pyfunc
import scoring_models
from scoring_data import FEATURES, expected

pytestmark = pytest.mark.spark


@pytest.fixture()
def poisoned(tmp_path):
    """A model doubling ``id`` that raises on id 15 while ``poison`` exists."""
    poison = tmp_path / "poison"
    path = str(tmp_path / "poisoned")
    deltaflow.pyfunc.save_model(path, python_model=scoring_models.Poisoned(),
                                model_config={"poison_file": str(poison), "poison_id": 15})
    return path, poison


def _append(spark, path, ids):
    spark.createDataFrame(pd.DataFrame({"id": list(ids)})).coalesce(1).write.format("delta").mode("append").save(path)


def _ids(spark, path):
    return sorted(r[0] for r in spark.read.format("delta").load(path).select("id").collect())


def _history(spark, path):
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).history().collect()


def test_each_row_is_scored_exactly_once_across_a_crash_a_restart_and_a_replay(spark, tmp_path, poisoned):
    from pyspark.errors import StreamingQueryException

    model, poison = poisoned
    source, sink, checkpoint = (str(tmp_path / n) for n in ("source", "sink", "checkpoint"))
    for start in (0, 10, 20):  # three commits, one file each: one micro-batch each
        _append(spark, source, range(start, start + 10))
    poison.write_text("on")
    options = dict(trigger={"availableNow": True}, read_options={"maxFilesPerTrigger": 1})

    query = deltaflow.stream_score(source, model, sink, checkpoint, **options)
    with pytest.raises(StreamingQueryException, match="poisoned row 15"):
        query.awaitTermination(300)
    assert _ids(spark, sink) == list(range(10))  # the first batch committed, the failing one nothing

    poison.unlink()
    _append(spark, source, range(30, 40))  # more input while the query is down
    query = deltaflow.stream_score(source, model, sink, checkpoint, **options)
    query.awaitTermination(300)
    assert query.exception() is None
    scored = spark.read.format("delta").load(sink).toPandas()
    assert sorted(scored["id"]) == list(range(40))  # none lost, none twice
    assert (scored["prediction"] == scored["id"] * 2.0).all()
    assert scored["_model_uri"].unique().tolist() == [model] and scored["_input_version"].isna().all()
    assert scored["_input_table"].unique().tolist() == [source]

    # A crash between the sink's commit and the checkpoint's: the batch is replayed on restart and the
    # Delta sink recognises it (same query id and batch id) instead of appending it again.
    commits = os.path.join(checkpoint, "commits")
    last = max(int(n) for n in os.listdir(commits) if n.isdigit())
    os.remove(os.path.join(commits, str(last)))
    os.remove(os.path.join(commits, f".{last}.crc"))  # Hadoop's checksum file of it
    versions_before = len(_history(spark, sink))
    query = deltaflow.stream_score(source, model, sink, checkpoint, **options)
    query.awaitTermination(300)
    assert query.exception() is None and os.path.exists(os.path.join(commits, str(last)))
    assert _ids(spark, sink) == list(range(40))
    history = _history(spark, sink)
    assert len(history) == versions_before  # the replayed batch wrote no new commit
    facts = json.loads(history[0]["userMetadata"])["deltaflow.scoring"]
    assert facts["mode"] == "stream" and facts["model_uri"] == model and facts["input_table"] == source


def test_a_streaming_dataframe_is_scored_too_and_a_batch_one_refused(spark, tmp_path, sk_paths):
    from deltaflow.errors import InvalidArgument

    source, sink, checkpoint = (str(tmp_path / n) for n in ("source", "sink", "checkpoint"))
    spark.createDataFrame(FEATURES.assign(id=range(len(FEATURES)))).write.format("delta").save(source)
    stream = spark.readStream.format("delta").load(source)
    query = deltaflow.stream_score(stream, sk_paths[1], sink, checkpoint, trigger={"availableNow": True})
    query.awaitTermination(300)
    scored = spark.read.format("delta").load(sink).orderBy("id").toPandas()
    assert scored["prediction"].tolist() == pytest.approx(list(expected(1, FEATURES)))
    assert scored["_input_table"].isna().all() and scored["_model_uri"].unique().tolist() == [sk_paths[1]]
    with pytest.raises(InvalidArgument, match="this DataFrame is a batch one"):
        deltaflow.stream_score(spark.read.format("delta").load(source), sk_paths[1], sink, checkpoint)
    with pytest.raises(InvalidArgument, match="trigger must be one of"):
        deltaflow.stream_score(source, sk_paths[1], sink, checkpoint, trigger={"continuous": "1 second"})
