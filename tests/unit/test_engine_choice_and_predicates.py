"""Engine choice and the rust engine's read predicates, without any engine running."""

from __future__ import annotations

import pyarrow as pa
import pytest

from deltaflow.config import resolve_location
from deltaflow.errors import InvalidArgument, StorageError
from deltaflow.store.engine import Where
from deltaflow.store.factory import choose_engine
from deltaflow.store.rust_engine import _literal, arrow_mask, split_where, supports


@pytest.mark.parametrize("uri, rust_ok", [
    ("/tmp/store", True), ("file:///tmp/store", True), ("s3://bucket/store", True),
    ("abfss://c@acct.dfs.core.windows.net/store", True), ("gs://bucket/store", True),
    ("/Volumes/main/ml/vol/store", True), ("dbfs:/ml/store", False), ("hdfs://nn/store", False),
    ("metastore:main.ml", False),
])
def test_which_stores_the_rust_engine_serves(uri, rust_ok, monkeypatch):
    from deltaflow.store import factory

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    # The suite's shared SparkSession may be running in this process; auto would rightly pick spark.
    monkeypatch.setattr(factory, "spark_session_active", lambda: False)
    location = resolve_location(uri)
    assert supports(location) is rust_ok
    # auto: no SparkSession in this process -> rust wherever it can serve the store
    assert choose_engine(location, "auto") == ("rust" if rust_ok else "spark")
    assert choose_engine(location, "spark") == "spark"
    if rust_ok:
        assert choose_engine(location, "rust") == "rust"
    else:
        with pytest.raises(InvalidArgument, match="spark engine"):
            choose_engine(location, "rust")


def test_engine_names_are_checked_and_env_is_read(monkeypatch):
    from deltaflow.store import factory

    monkeypatch.setattr(factory, "spark_session_active", lambda: False)
    location = resolve_location("/tmp/store")
    with pytest.raises(InvalidArgument, match=r"engine 'duckdb' is not known; use one of auto, spark, rust"):
        choose_engine(location, "duckdb")
    monkeypatch.setenv("DELTAFLOW_ENGINE", "spark")
    assert choose_engine(location) == "spark"
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setenv("DELTAFLOW_ENGINE", "auto")
    assert choose_engine(location) == "spark"  # on a Databricks cluster Spark is always there


def test_only_ids_reach_a_scan_predicate():
    where = (Where.of(run_id=["a1b2", "c3d4"], experiment_id="0")
             .and_("key", "=", "loss' OR 1=1 --").and_("step", ">", 5))
    predicate, rest = split_where(where)
    assert predicate == "\"run_id\" IN ('a1b2', 'c3d4') AND \"experiment_id\" IN ('0')"
    assert rest.terms == (("key", "=", "loss' OR 1=1 --"), ("step", ">", 5))
    # an id column with a value that is not id-shaped is filtered in Arrow, never quoted into text
    predicate, rest = split_where(Where.of(run_id="x' OR '1'='1"))
    assert predicate is None and rest.terms == (("run_id", "=", "x' OR '1'='1"),)
    for bad in ("a'b", "a b", "", "a;b", 1.5, True, None):
        with pytest.raises(StorageError):
            _literal(bad)


def test_arrow_mask_applies_every_term():
    table = pa.table({"key": ["a", "b", "a", None], "step": [1, 2, 3, 4]})
    mask = arrow_mask(table, Where.of(key="a").and_("step", ">=", 2))
    assert table.filter(mask).to_pylist() == [{"key": "a", "step": 3}]
    mask = arrow_mask(table, Where.of(key=["a", "b"]).and_("step", "<", 3))
    assert [r["step"] for r in table.filter(mask).to_pylist()] == [1, 2]
