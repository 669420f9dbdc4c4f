"""Pure argument validation (no storage): MLflow's rules for keys, values, timestamps, statuses, run
names, artifact locations, datasets and log_batch, each refusal an InvalidArgument naming the value."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from deltaflow.errors import InvalidArgument
from deltaflow.tracking import _validation as V


@pytest.mark.parametrize("key", [["a"], {"a": 1}, {"a"}, bytearray(b"a")])
def test_unhashable_or_non_str_keys_are_invalid_arguments(key):
    for validate in (lambda: V.validate_key(key, "metric"), lambda: V.validate_metric(key, 1.0, 0, 0),
                     lambda: V.validate_param(key, "v"), lambda: V.validate_tag(key, "v")):
        with pytest.raises(InvalidArgument, match="must be a string"):
            validate()


@pytest.mark.parametrize("key", [".", "..", "..x", "a/..", "x/.", "a\n", "a\r\n", "a/", "//"])
def test_keys_that_are_not_unique_paths_or_end_in_a_newline(key):
    with pytest.raises(InvalidArgument, match="invalid metric key"):
        V.validate_key(key, "metric")


def test_str_subclass_keys_come_back_as_plain_str():
    class Key(str):
        pass

    out = V.validate_key(Key("sub_key"), "metric")
    assert type(out) is str and out == "sub_key"


def test_metric_values_outside_float_range_are_refused_but_nan_and_inf_pass():
    for bad in [Decimal("1e999"), Decimal("-1e400"), 10**400, Fraction(10**400, 3)]:
        with pytest.raises(InvalidArgument, match="64-bit float"):
            V.validate_metric("m", bad, 0, 0)
    assert V.validate_metric("m", Decimal("Infinity"), 0, 0)[1] == math.inf
    assert math.isnan(V.validate_metric("m", Decimal("NaN"), 0, 0)[1])
    assert V.validate_metric("m", Decimal("1.5"), 0, 0)[1] == 1.5
    assert V.validate_metric("m", np.float16(np.inf), 0, 0)[1] == math.inf


@pytest.mark.parametrize("bad", ["x", "yesterday", 1.5, 1e12, True, -1, 2**63, 2**70, None, Decimal(5), [1]])
def test_timestamps_are_epoch_millis_integers(bad):
    with pytest.raises(InvalidArgument, match="end_time"):
        V.validate_timestamp(bad, "end_time")


def test_good_timestamps():
    assert V.validate_timestamp(0, "t") == 0
    assert V.validate_timestamp(2**63 - 1, "t") == 2**63 - 1
    out = V.validate_timestamp(np.int64(1_700_000_000_000), "t")
    assert out == 1_700_000_000_000 and type(out) is int
    assert V.validate_metric("m", 1.0, np.int64(5), np.int32(-3)) == ("m", 1.0, 5, -3)


def test_metric_timestamp_is_non_negative_as_in_mlflow():
    with pytest.raises(InvalidArgument, match="timestamp -1"):
        V.validate_metric("m", 1.0, -1, 0)


def test_run_name_tag_has_the_run_name_limit():
    V.validate_tag("mlflow.runName", "n" * 250)
    with pytest.raises(InvalidArgument, match="300 characters long; the limit is 250"):
        V.validate_tag("mlflow.runName", "n" * 300)
    V.validate_tag("other", "n" * 300)


def test_statuses_and_run_names():
    for good in ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"):
        assert V.validate_status(good) == good
    for bad in ("finished", "DONE", "", None, 3, ["FINISHED"]):
        with pytest.raises(InvalidArgument, match="run status"):
            V.validate_status(bad)
    with pytest.raises(InvalidArgument, match="must be a string"):
        V.validate_run_name(5)


def test_unprintable_values_are_invalid_arguments():
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    with pytest.raises(InvalidArgument, match="cannot be turned into a string"):
        V.validate_param("p", Broken())


@pytest.mark.parametrize("location, fragment", [
    (123, "123"), (["a"], "['a']"), ("   ", "non-empty"), ("runs:/x", "runs:/x"), ("RUNS:/abc/artifacts", "runs:/"),
    ("models:/m/1", "models:/m/1"), ("a\x00b", "NUL"), ("/a" * 1500, "limit is 2048"),
])
def test_bad_artifact_locations(location, fragment):
    with pytest.raises(InvalidArgument, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        V.validate_artifact_location(location)


def test_good_artifact_locations():
    for good in ("/tmp/a", "s3://bucket/x", "dbfs:/ml/a", "/Volumes/c/s/v/a", "file:///tmp/a"):
        assert V.validate_artifact_location(good) == good
    assert V.validate_artifact_location(None) is None and V.validate_artifact_location("") is None


def _ds(**overrides) -> DatasetInput:
    fields = dict(name="d", digest="abc", source_type="code", source="{}", schema=None, profile=None)
    fields.update(overrides)
    return DatasetInput(dataset=Dataset(**fields), tags=[])


@pytest.mark.parametrize("datasets, fragment", [
    ([_ds(schema=123)], "schema 123"), ([_ds(profile=[1])], "profile"), ([_ds(name="")], "name ''"),
    ([_ds(digest="x" * 37)], "limit is 36"), ([_ds(source=5)], "source 5"), ([_ds(name="n" * 501)], "limit is 500"),
    (Dataset("d", "abc", "code", "{}"), "list of DatasetInput"), ("abc", "list of DatasetInput"),
    ([Dataset("d", "abc", "code", "{}")], "datasets\\[0\\]"), ([None], "datasets\\[0\\] None"),
    ([DatasetInput(_ds().dataset, [InputTag("k", 5)])], "input tag"),
    ([DatasetInput(_ds().dataset, [InputTag("k", "v" * 501)])], "too long"),
    ([DatasetInput(_ds().dataset, "tags")], "tags must be a list"),
    ([_ds()] * 1001, "limit is 1000"),
])
def test_bad_dataset_inputs(datasets, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        V.validate_dataset_inputs(datasets)


def test_good_dataset_inputs():
    good = [_ds(schema='{"a": 1}'), DatasetInput(_ds().dataset, [InputTag("mlflow.data.context", "train")])]
    assert V.validate_dataset_inputs(good) == good
    assert V.validate_dataset_inputs(None) == []


@pytest.mark.parametrize("metrics, params, tags, fragment", [
    (None, [], [], "metrics must be a list of Metric objects, got NoneType"),
    ([], None, [], "params must be a list"),
    ([], [], {"a": "b"}, "for a dict use log_tags"),
    ("abc", [], [], "metrics must be a list"),
    (5, [], [], "got int 5"),
    ([1], [], [], r"metrics\[0\] 1 \(int\) must be a Metric"),
    ([], [("k", "v")], [], r"params\[0\]"),
    ([], [], [Param("k", "v")], r"tags\[0\].*must be a RunTag"),
    ([Param("k", "v")], [], [], "must be a Metric"),
    ([], [Param("d", "1"), Param("d", "1")], [], "'d' appears twice"),
])
def test_bad_batches(metrics, params, tags, fragment):
    with pytest.raises(InvalidArgument, match=fragment):
        V.validate_batch(metrics, params, tags)


def test_batch_limits_are_mlflows_per_request_limits():
    ms = [Metric("m", 1.0, 0, i) for i in range(1000)]
    ps = [Param(f"p{i}", "v") for i in range(100)]
    ts = [RunTag(f"t{i}", "v") for i in range(100)]
    V.validate_batch(ms, [], [])
    V.validate_batch(ms[:800], ps, ts)
    for args, what in [((ms + ms[:1], [], []), "1000 metrics"), (([], ps + [Param("x", "v")], []), "100 params"),
                       (([], [], ts + [RunTag("x", "v")]), "100 tags"), ((ms[:801], ps, ts), "1000 metrics, params and tags")]:
        with pytest.raises(InvalidArgument, match=f"at most {what}"):
            V.validate_batch(*args)
        V.validate_batch(*args, limits=False)


def test_mlflow_entities_are_accepted_in_a_batch():
    from mlflow.entities import Metric as MlflowMetric, Param as MlflowParam, RunTag as MlflowRunTag

    out = V.validate_batch([MlflowMetric("m", 2.0, 5, 1)], [MlflowParam("p", "1")], [MlflowRunTag("t", "v")])
    assert out == ([("m", 2.0, 5, 1)], [("p", "1")], [("t", "v")])


def test_generators_are_accepted_as_batch_containers():
    out = V.validate_batch((Metric("m", float(i), 0, i) for i in range(3)), iter([]), ())
    assert [m[3] for m in out[0]] == [0, 1, 2]


@settings(max_examples=200, deadline=None)
@given(n_metrics=st.integers(0, 4000), n_params=st.integers(0, 450), n_tags=st.integers(0, 450))
def test_split_batch_keeps_every_item_once_in_order_within_limits(n_metrics, n_params, n_tags):
    metrics, params, tags = list(range(n_metrics)), list(range(n_params)), list(range(n_tags))
    chunks = V.split_batch(metrics, params, tags)
    assert [m for c in chunks for m in c[0]] == metrics
    assert [p for c in chunks for p in c[1]] == params
    assert [t for c in chunks for t in c[2]] == tags
    for m, p, t in chunks:
        assert len(m) <= 1000 and len(p) <= 100 and len(t) <= 100 and len(m) + len(p) + len(t) <= 1000


def test_log_dict_serialisation_errors_are_invalid_arguments():
    from deltaflow.tracking.client import serialize_dict

    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(InvalidArgument, match="Circular"):
        serialize_dict(circular, "d.json")
    with pytest.raises(InvalidArgument, match="JSON"):
        serialize_dict({(1, 2): "tuple key"}, "d.json")
    assert serialize_dict({"a": 1}, "d.json") == b'{\n  "a": 1\n}'


@pytest.mark.parametrize("value, fragment", [
    ("not a dataset", "not a Delta table name"), ("", "not a Delta table name"), ("a.b.c.d", "not a Delta table name"),
    ("t; DROP TABLE x", "not a Delta table name"), ("/nonexistent/table", "no _delta_log"),
    ("file:/nonexistent/table", "no _delta_log"), (42, "got int"), (None, "got NoneType"),
])
def test_log_input_strings_are_checked_before_spark(value, fragment):
    import sys

    from deltaflow.tracking.datasets import to_dataset

    had_spark = "pyspark" in sys.modules
    with pytest.raises(InvalidArgument, match=fragment):
        to_dataset(value)
    if not had_spark:
        assert "pyspark" not in sys.modules


@pytest.mark.parametrize("validate", [
    lambda v: V.validate_param("p", v), lambda v: V.validate_tag("t", v), lambda v: V.validate_run_name(v),
    lambda v: V.validate_experiment_name(v), lambda v: V.validate_artifact_location("/a/" + v),
    lambda v: V.validate_dataset_inputs([_ds(source=v)]),
])
def test_text_that_cannot_be_stored_as_utf8_is_refused(validate):
    with pytest.raises(InvalidArgument, match="lone surrogate"):
        validate("ok\ud800")
    validate("ünïcode 😀")
