"""Which engine ``auto`` gives a path store while a user's SparkSession runs (no JVM needed here:
the session and its Delta check are stand-ins)."""

from __future__ import annotations

import logging

import pytest

from deltaflow import _spark
from deltaflow.config import resolve_location
from deltaflow.store import factory


@pytest.fixture()
def session(monkeypatch):
    """A running classic session; ``session(delta=...)`` says whether it has Delta."""
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("DELTAFLOW_ENGINE", raising=False)
    monkeypatch.setattr(factory, "spark_session_active", lambda: True)
    monkeypatch.setattr(factory, "running_spark_session", lambda: object())
    monkeypatch.setattr(factory, "_told_rust_serves", set())

    def configure(delta: bool) -> None:
        monkeypatch.setattr(_spark, "delta_configured", lambda s: delta)

    return configure


def test_local_stores_go_to_delta_rs_next_to_a_delta_session(session):
    session(delta=True)
    assert factory.choose_engine(resolve_location("/tmp/store"), "auto") == "rust"
    # an object store keeps the session's Spark: its Hadoop conf holds the credentials
    assert factory.choose_engine(resolve_location("s3://bucket/store"), "auto") == "spark"
    assert factory.choose_engine(resolve_location("dbfs:/ml/store"), "auto") == "spark"
    assert factory.choose_engine(resolve_location("/tmp/store"), "spark") == "spark"


def test_a_session_without_delta_leaves_path_stores_to_delta_rs_and_says_so_once(session, caplog):
    session(delta=False)
    caplog.set_level(logging.INFO, logger="deltaflow")
    for _ in range(3):
        assert factory.choose_engine(resolve_location("/tmp/store"), "auto") == "rust"
        assert factory.choose_engine(resolve_location("s3://bucket/store"), "auto") == "rust"
    told = [r.getMessage() for r in caplog.records if "no Delta Lake configured" in r.getMessage()]
    assert len(told) == 2 and "/tmp/store" in told[0] and "s3://bucket/store" in told[1]


def test_on_databricks_auto_stays_on_spark(session, monkeypatch):
    session(delta=True)
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert factory.choose_engine(resolve_location("/Volumes/main/ml/vol/store"), "auto") == "spark"


def test_the_no_delta_error_names_both_fixes():
    class Plain:  # a classic session whose conf names no Delta
        class conf:  # noqa: N801
            @staticmethod
            def get(key, default=None):
                return default

    with pytest.raises(Exception) as info:
        _spark.require_delta(Plain(), "deltaflow.sql views")
    message = str(info.value)
    assert type(info.value).__name__ == "MissingDependency"
    assert message.startswith("deltaflow.sql views needs a SparkSession with Delta Lake")
    assert "configure_spark_with_delta_pip" in message and "deltaflow.spark_session()" in message
