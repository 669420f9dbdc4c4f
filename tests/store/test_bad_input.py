"""Malformed calls to the public tracking API, fluent and client: each raises InvalidArgument naming
the bad value, and nothing is written (the store's files are byte-for-byte the same after a flush).

Rust engine only, on real Delta tables in a temporary folder: no JVM is needed.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deltaflow
from deltaflow import DeltaflowClient
from deltaflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from deltaflow.errors import InvalidArgument
from deltaflow.tracking import fluent


@dataclass
class World:
    uri: str
    client: DeltaflowClient
    experiment_id: str
    run_id: str
    local_file: str


@pytest.fixture()
def world(tmp_path, monkeypatch) -> World:
    """A rust-engine store with one experiment (the active one) and one run, no fluent run active."""
    monkeypatch.setenv("DELTAFLOW_ENGINE", "rust")
    monkeypatch.setenv("DELTAFLOW_HEARTBEAT_INTERVAL_S", "3600")  # no heartbeat rows mid-test
    uri = str(tmp_path / "store")
    deltaflow.set_tracking_uri(uri)
    fluent._active_experiment.clear()
    client = DeltaflowClient(uri)
    experiment_id = deltaflow.set_experiment("bad-input").experiment_id
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "m", 1.0)
    client.log_param(run_id, "p", "1")
    client.log_text(run_id, "x", "t.txt")
    local_file = tmp_path / "local.txt"
    local_file.write_text("x")
    deltaflow.flush()
    yield World(uri, client, experiment_id, run_id, str(local_file))
    while deltaflow.active_run() is not None:
        deltaflow.end_run()
    deltaflow.flush()
    deltaflow.set_tracking_uri(None)
    fluent._active_experiment.clear()


def snapshot(uri: str) -> dict[str, tuple[int, int]]:
    """Every file of the store (tables and artifacts) with its size and mtime, after a flush."""
    deltaflow.flush()
    files = {}
    for root, _dirs, names in os.walk(uri):
        for name in names:
            path = os.path.join(root, name)
            st_ = os.stat(path)
            files[os.path.relpath(path, uri)] = (st_.st_size, st_.st_mtime_ns)
    return files


def assert_refused(w: World, call: Callable[[], Any], fragment: str = "") -> InvalidArgument:
    before = snapshot(w.uri)
    active_before = deltaflow.active_run()
    with pytest.raises(InvalidArgument) as info:
        call()
    assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    assert deltaflow.active_run() is active_before, "a malformed call started a run"
    after = snapshot(w.uri)
    assert after == before, f"a malformed call wrote {sorted(set(after.items()) ^ set(before.items()))[:5]}"
    return info.value


def _ds(**overrides: Any) -> DatasetInput:
    fields = dict(name="d", digest="abc", source_type="code", source="{}", schema=None, profile=None)
    fields.update(overrides)
    return DatasetInput(dataset=Dataset(**fields), tags=[])


def _circular() -> dict:
    d: dict = {}
    d["self"] = d
    return d


C = lambda w: w.client  # noqa: E731
R = lambda w: w.run_id  # noqa: E731

# (case id, call, a fragment the message must contain: the bad value or the rule it broke)
CASES: list[tuple[str, Callable[[World], Any], str]] = [
    # issue 10 §2: accepted today, then every later flush failed
    ("set_terminated end_time str", lambda w: C(w).set_terminated(R(w), "FINISHED", end_time="x"), "'x'"),
    ("set_terminated end_time float", lambda w: C(w).set_terminated(R(w), "FINISHED", end_time=1.5), "1.5"),
    ("set_terminated end_time 2**70", lambda w: C(w).set_terminated(R(w), "FINISHED", end_time=2**70), "out of range"),
    ("create_run start_time 2**70", lambda w: C(w).create_run(w.experiment_id, start_time=2**70), "out of range"),
    ("log_inputs schema=123", lambda w: C(w).log_inputs(R(w), [_ds(schema=123)]), "schema 123"),
    # issue 10 §10: TypeError / AttributeError / ValueError instead of InvalidArgument
    ("log_metric list key", lambda w: C(w).log_metric(R(w), ["a"], 1.0), "['a']"),
    ("log_metric dict key", lambda w: C(w).log_metric(R(w), {"a": 1}, 1.0), "{'a': 1}"),
    ("fluent log_metric list key", lambda w: deltaflow.log_metric(["a"], 1.0, run_id=w.run_id), "['a']"),
    ("log_param list key", lambda w: C(w).log_param(R(w), ["a"], 1), "['a']"),
    ("set_tag dict key", lambda w: C(w).set_tag(R(w), {"a": 1}, "v"), "{'a': 1}"),
    ("log_batch metrics=None", lambda w: C(w).log_batch(R(w), metrics=None), "metrics must be a list"),
    ("log_batch int metric", lambda w: C(w).log_batch(R(w), metrics=[1]), "metrics[0] 1"),
    ("log_batch str param", lambda w: C(w).log_batch(R(w), params=["p"]), "params[0] 'p'"),
    ("log_batch tuple tag", lambda w: C(w).log_batch(R(w), tags=[("k", "v")]), "tags[0] ('k', 'v')"),
    ("log_batch Param as metric", lambda w: C(w).log_batch(R(w), metrics=[Param("a", "1")]), "must be a Metric"),
    ("create_run start_time str", lambda w: C(w).create_run(w.experiment_id, start_time="yesterday"), "'yesterday'"),
    ("create_experiment artifact_location=123", lambda w: C(w).create_experiment("e2", artifact_location=123), "123"),
    ("fluent create_experiment artifact_location=123",
     lambda w: deltaflow.create_experiment("e2", artifact_location=123), "123"),
    ("log_dict circular", lambda w: C(w).log_dict(R(w), _circular(), "d.json"), "Circular"),
    ("fluent log_dict circular", lambda w: deltaflow.log_dict(_circular(), "d.json", run_id=w.run_id), "Circular"),
    ("fluent log_input str", lambda w: deltaflow.log_input("not a dataset", run_id=w.run_id), "'not a dataset'"),
    # accepted today but wrong
    ("duplicate param keys, same value",
     lambda w: C(w).log_batch(R(w), params=[Param("q", "1"), Param("q", "1")]), "'q'"),
    ("duplicate param keys, different values",
     lambda w: C(w).log_batch(R(w), params=[Param("q", "1"), Param("q", "2")]), "'q'"),
    ("set_tag runName 300", lambda w: C(w).set_tag(R(w), "mlflow.runName", "n" * 300), "limit is 250"),
    ("log_batch runName tag 300",
     lambda w: C(w).log_batch(R(w), tags=[RunTag("mlflow.runName", "n" * 300)]), "limit is 250"),
    ("create_run runName tag 300",
     lambda w: C(w).create_run(w.experiment_id, tags={"mlflow.runName": "n" * 300}), "limit is 250"),
    ("log_metric key '.'", lambda w: C(w).log_metric(R(w), ".", 1.0), "'.'"),
    ("log_param key '..x'", lambda w: C(w).log_param(R(w), "..x", 1), "'..x'"),
    ("log_metric key trailing newline", lambda w: C(w).log_metric(R(w), "a\n", 1.0), "'a\\n'"),
    ("log_metric Decimal 1e999", lambda w: C(w).log_metric(R(w), "m", Decimal("1e999")), "1E+999"),
    ("log_batch Decimal 1e999",
     lambda w: C(w).log_batch(R(w), metrics=[Metric("m", Decimal("1e999"), 0, 0)]), "1E+999"),
    ("create_experiment runs:/", lambda w: C(w).create_experiment("e3", artifact_location="runs:/x"), "runs:/x"),
    # the rest of the public surface
    ("log_metric negative timestamp", lambda w: C(w).log_metric(R(w), "m", 1.0, timestamp=-1), "-1"),
    ("log_metric float step", lambda w: C(w).log_metric(R(w), "m", 1.0, step=1.5), "1.5"),
    ("log_metric str value", lambda w: C(w).log_metric(R(w), "m", "1"), "'1'"),
    ("create_run run_name vs tag",
     lambda w: C(w).create_run(w.experiment_id, run_name="a", tags={"mlflow.runName": "b"}), "disagree"),
    ("create_run tags list", lambda w: C(w).create_run(w.experiment_id, tags=["a"]), "['a']"),
    ("create_run bad experiment id", lambda w: C(w).create_run("1 OR 1=1"), "1 OR 1=1"),
    ("update_run status", lambda w: C(w).update_run(R(w), status="DONE"), "'DONE'"),
    ("set_terminated status", lambda w: C(w).set_terminated(R(w), "DONE"), "'DONE'"),
    ("create_experiment tags list", lambda w: C(w).create_experiment("e4", tags=[("a", "b")]), "dict"),
    ("log_inputs a bare Dataset", lambda w: C(w).log_inputs(R(w), Dataset("d", "abc", "code", "{}")), "DatasetInput"),
    ("log_inputs digest too long", lambda w: C(w).log_inputs(R(w), [_ds(digest="x" * 37)]), "limit is 36"),
    ("log_inputs input tag not str",
     lambda w: C(w).log_inputs(R(w), [DatasetInput(_ds().dataset, [InputTag("k", 5)])]), "InputTag"),
    ("log_text artifact_file=123", lambda w: C(w).log_text(R(w), "x", 123), "123"),
    ("log_text lone surrogate", lambda w: C(w).log_text(R(w), "\ud800", "s.txt"), "UTF-8"),
    ("set_tag lone surrogate", lambda w: C(w).set_tag(R(w), "t", "a\ud800"), "surrogate"),
    ("log_param lone surrogate", lambda w: C(w).log_param(R(w), "fresh", "\udfff"), "surrogate"),
    ("update_run name lone surrogate", lambda w: C(w).update_run(R(w), name="\udfff"), "surrogate"),
    ("log_metric unhashable run_id", lambda w: C(w).log_metric(["r"], "m", 1.0), "['r']"),
    ("fluent log_metric unhashable run_id", lambda w: deltaflow.log_metric("m", 1.0, run_id=["r"]), "['r']"),
    ("store log_batch 101 params",
     lambda w: C(w)._store.log_batch(R(w), params=[Param(f"k{i}", "v") for i in range(101)]), "at most 100 params"),
    ("store log_batch 101 tags",
     lambda w: C(w)._store.log_batch(R(w), tags=[RunTag(f"k{i}", "v") for i in range(101)]), "at most 100 tags"),
    ("store log_batch 1001 metrics",
     lambda w: C(w)._store.log_batch(R(w), metrics=[Metric("m", 1.0, 0, i) for i in range(1001)]),
     "at most 1000 metrics"),
    ("store log_batch 1001 entities",
     lambda w: C(w)._store.log_batch(R(w), metrics=[Metric("m", 1.0, 0, i) for i in range(801)],
                                     params=[Param(f"k{i}", "v") for i in range(100)],
                                     tags=[RunTag(f"t{i}", "v") for i in range(100)]), "at most 1000"),
    ("log_batch 10k params, the last one bad",
     lambda w: C(w).log_batch(R(w), params=[Param(f"k{i}", "v") for i in range(9999)] + [Param("$", "v")]), "'$'"),
]

# Fluent calls with no active run: the argument is refused before a run is started for it.
FLUENT_CASES: list[tuple[str, Callable[[World], Any], str]] = [
    ("log_param list key", lambda w: deltaflow.log_param(["a"], 1), "['a']"),
    ("log_params not a dict", lambda w: deltaflow.log_params("p"), "dict"),
    ("log_params duplicate-free but bad key", lambda w: deltaflow.log_params({"a$": 1}), "'a$'"),
    ("log_metric Decimal 1e999", lambda w: deltaflow.log_metric("m", Decimal("1e999")), "1E+999"),
    ("log_metric key '.'", lambda w: deltaflow.log_metric(".", 1.0), "'.'"),
    ("log_metrics float timestamp", lambda w: deltaflow.log_metrics({"m": 1.0}, timestamp=1.5), "1.5"),
    ("log_metrics list", lambda w: deltaflow.log_metrics(["m"]), "dict"),
    ("set_tag runName 300", lambda w: deltaflow.set_tag("mlflow.runName", "n" * 300), "limit is 250"),
    ("set_tags None", lambda w: deltaflow.set_tags(None), "dict"),
    ("delete_tag list key", lambda w: deltaflow.delete_tag(["a"]), "['a']"),
    ("log_text not str", lambda w: deltaflow.log_text(5, "a.txt"), "str"),
    ("log_dict circular", lambda w: deltaflow.log_dict(_circular(), "d.json"), "Circular"),
    ("log_artifact missing file", lambda w: deltaflow.log_artifact("/nonexistent/file"), "/nonexistent/file"),
    ("log_artifact bad artifact_path", lambda w: deltaflow.log_artifact(w.local_file, "../up"), "'..'"),
    ("log_input str", lambda w: deltaflow.log_input("not a dataset"), "'not a dataset'"),
    ("log_input tags list", lambda w: deltaflow.log_input(_ds().dataset, tags=["a"]), "dict"),
    ("start_run run_name int", lambda w: deltaflow.start_run(run_name=5), "5"),
    ("start_run tags list", lambda w: deltaflow.start_run(tags=["a"]), "['a']"),
    ("start_run runName tag 300", lambda w: deltaflow.start_run(tags={"mlflow.runName": "n" * 300}), "limit is 250"),
    ("start_run description int", lambda w: deltaflow.start_run(description=5), "5"),
    ("start_run bad run_id", lambda w: deltaflow.start_run(run_id="nope"), "'nope'"),
    ("start_run bad experiment_id", lambda w: deltaflow.start_run(experiment_id="a b"), "'a b'"),
    ("set_experiment int name", lambda w: deltaflow.set_experiment(5), "5"),
    ("list_artifacts bad path", lambda w: deltaflow.list_artifacts("/abs"), "'/abs'"),
    ("log_figure not a figure", lambda w: deltaflow.log_figure(object(), "f.png"), "matplotlib"),
    ("log_params empty run_id", lambda w: deltaflow.log_params({"a": 1}, run_id=""), "run_id ''"),
    ("search_runs experiment_ids float", lambda w: deltaflow.search_runs(1.5), "1.5"),
    ("search_experiments max_results str", lambda w: deltaflow.search_experiments(max_results="10"), "'10'"),
    ("client.search_runs experiment_ids None", lambda w: w.client.search_runs(None), "None"),
]


@pytest.mark.parametrize("case, call, fragment", CASES, ids=[c[0] for c in CASES])
def test_malformed_call_is_refused_and_writes_nothing(world, case, call, fragment):
    assert_refused(world, lambda: call(world), fragment)


@pytest.mark.parametrize("case, call, fragment", FLUENT_CASES, ids=[c[0] for c in FLUENT_CASES])
def test_malformed_fluent_call_starts_no_run(world, case, call, fragment):
    assert_refused(world, lambda: call(world), fragment)


def test_malformed_call_on_an_active_fluent_run(world):
    with deltaflow.start_run(run_id=world.run_id):
        for call, fragment in [
            (lambda: deltaflow.log_metric(["a"], 1.0), "['a']"),
            (lambda: deltaflow.log_metric("m", Decimal("-1e999")), "1E+999"),
            (lambda: deltaflow.log_metric("m", 1.0, step=2**63), "64-bit"),
            (lambda: deltaflow.log_params({"q": 1, "r": "x" * 6001}), "limit is 6000"),
            (lambda: deltaflow.set_tags({"mlflow.runName": "n" * 251}), "limit is 250"),
            (lambda: deltaflow.end_run("BOGUS"), "'BOGUS'"),
        ]:
            assert_refused(world, call, fragment)
    assert world.client.get_run(world.run_id).info.status == "FINISHED"


def test_log_input_str_starts_no_jvm(world):
    """A string that cannot be a table name or a local Delta path is refused before Spark starts."""
    pyspark = sys.modules.get("pyspark")
    running = pyspark is not None and pyspark.SparkContext._active_spark_context is not None
    assert_refused(world, lambda: deltaflow.log_input("not a dataset", run_id=world.run_id), "not a Delta table")
    assert_refused(world, lambda: deltaflow.log_input(str(world.local_file), run_id=world.run_id), "_delta_log")
    if not running:
        pyspark = sys.modules.get("pyspark")
        assert pyspark is None or pyspark.SparkContext._active_spark_context is None


def test_large_batches_are_split_into_requests_within_mlflow_limits(world):
    """As MlflowClient.log_batch does, the client sends a large batch as several requests of at
    most 1,000 metrics, 100 params, 100 tags: every item is written exactly once."""
    c, r = world.client, world.run_id
    c.log_batch(r, metrics=[Metric("big", float(i), 1, i) for i in range(2500)],
                params=[Param(f"k{i}", str(i)) for i in range(250)],
                tags=[RunTag(f"t{i}", "v") for i in range(120)])
    deltaflow.flush()
    run = c.get_run(r)
    assert sum(k.startswith("k") for k in run.data.params) == 250
    assert sum(k.startswith("t") for k in run.data.tags) == 120
    history = c.get_metric_history(r, "big")
    assert sorted(m.step for m in history) == list(range(2500))


# -- generated malformed calls ------------------------------------------------------------------
_valid_key = st.text(alphabet="abcxyz019_", min_size=1, max_size=8)
_bad_key = st.one_of(
    st.none(), st.integers(), st.floats(), st.binary(max_size=4), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.tuples(st.text(max_size=2)),
    st.just(""),
    st.tuples(_valid_key, st.sampled_from("$!@#%^&*()[]{}<>?\\|\"'`~,;=+\n\t\r\x00\u00a0\u2028"), _valid_key)
    .map("".join),
    st.sampled_from([".", "..", "./a", "a/.", "a/..", "/a", "a//b", "a/", "..a", "a/../b", "a/./b", "x/.", "x//",
                     "x/../a", "//"]),
    st.text(alphabet="abc", min_size=251, max_size=300),
)
_bad_number = st.one_of(
    st.none(), st.text(max_size=4), st.complex_numbers(allow_nan=False), st.lists(st.floats(), max_size=2),
    st.integers(309, 5000).map(lambda n: Decimal(f"1e{n}")), st.integers(309, 5000).map(lambda n: Decimal(f"-1e{n}")),
    st.integers(309, 2000).map(lambda n: 10**n),
)
_bad_timestamp = st.one_of(
    st.floats(), st.text(max_size=6), st.booleans(), st.integers(max_value=-1), st.integers(min_value=2**63),
    st.lists(st.integers(), max_size=1), st.decimals(allow_nan=False),
)
_bad_step = st.one_of(
    st.floats(), st.text(max_size=6), st.booleans(), st.integers(max_value=-(2**63) - 1),
    st.integers(min_value=2**63),
)
_bad_status = st.one_of(st.text(max_size=10).filter(lambda s: s not in ("RUNNING", "SCHEDULED", "FINISHED",
                                                                        "FAILED", "KILLED")),
                        st.integers(), st.lists(st.text(max_size=2), max_size=1))
_bad_run_name = st.one_of(st.integers(), st.floats(), st.lists(st.text(max_size=2), max_size=1),
                          st.text(alphabet="ab", min_size=251, max_size=300))
_bad_container = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.dictionaries(st.text(max_size=2),
                                                                                         st.integers(), max_size=2),
                           st.lists(st.one_of(st.integers(), st.text(max_size=2), st.none()), min_size=1, max_size=3))
_bad_location = st.one_of(st.integers(), st.lists(st.text(max_size=2), max_size=1), st.just("   "),
                          st.text(alphabet="abc/", max_size=8).map(lambda s: "runs:/" + s),
                          st.text(alphabet="abc/", max_size=8).map(lambda s: "models:/" + s))
_surrogate_text = st.tuples(st.text(max_size=3), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                            st.text(max_size=3)).map("".join)
_bad_run_id = st.one_of(st.integers(), st.none().map(lambda _: ""), st.lists(st.text(max_size=2), max_size=2),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1), st.just("A" * 32),
                        st.text(max_size=40).filter(lambda v: not re.fullmatch("[0-9a-f]{32}", v)))
_bad_dataset_field = st.one_of(st.integers(), st.lists(st.integers(), max_size=1), st.just(""))

# (name, strategy of the bad value, the call with the bad value in place)
_GENERATED: list[tuple[str, Any, Callable[[World, Any], Any]]] = [
    ("client.log_metric key", _bad_key, lambda w, v: w.client.log_metric(w.run_id, v, 1.0)),
    ("client.log_metric value", _bad_number, lambda w, v: w.client.log_metric(w.run_id, "m", v)),
    ("client.log_metric timestamp", _bad_timestamp, lambda w, v: w.client.log_metric(w.run_id, "m", 1.0, timestamp=v)),
    ("client.log_metric step", _bad_step, lambda w, v: w.client.log_metric(w.run_id, "m", 1.0, step=v)),
    ("client.log_param key", _bad_key, lambda w, v: w.client.log_param(w.run_id, v, "1")),
    ("client.set_tag key", _bad_key, lambda w, v: w.client.set_tag(w.run_id, v, "1")),
    ("client.set_tag runName", _bad_run_name.filter(lambda v: isinstance(v, str)),
     lambda w, v: w.client.set_tag(w.run_id, "mlflow.runName", v)),
    ("client.log_batch metric key", _bad_key,
     lambda w, v: w.client.log_batch(w.run_id, metrics=[Metric("ok", 1.0, 0, 0), Metric(v, 1.0, 0, 0)])),
    ("client.log_batch metric value", _bad_number,
     lambda w, v: w.client.log_batch(w.run_id, metrics=[Metric("m", v, 0, 0)], params=[Param("fresh", "1")])),
    ("client.log_batch metric timestamp", _bad_timestamp,
     lambda w, v: w.client.log_batch(w.run_id, metrics=[Metric("m", 1.0, v, 0)])),
    ("client.log_batch param key", _bad_key,
     lambda w, v: w.client.log_batch(w.run_id, params=[Param("fresh", "1"), Param(v, "1")])),
    ("client.log_batch tag key", _bad_key, lambda w, v: w.client.log_batch(w.run_id, tags=[RunTag(v, "1")])),
    ("client.log_batch metrics container", _bad_container, lambda w, v: w.client.log_batch(w.run_id, metrics=v)),
    ("client.log_batch params container", _bad_container, lambda w, v: w.client.log_batch(w.run_id, params=v)),
    ("client.log_batch tags container", _bad_container, lambda w, v: w.client.log_batch(w.run_id, tags=v)),
    ("client.log_batch duplicate params", st.tuples(st.text(max_size=3), st.text(max_size=3)),
     lambda w, v: w.client.log_batch(w.run_id, params=[Param("dup", v[0]), Param("dup", v[1])])),
    ("client.create_run start_time", _bad_timestamp,
     lambda w, v: w.client.create_run(w.experiment_id, start_time=v)),
    ("client.create_run run_name", _bad_run_name, lambda w, v: w.client.create_run(w.experiment_id, run_name=v)),
    ("client.create_run tag key", _bad_key,
     lambda w, v: w.client.create_run(w.experiment_id, tags={v: "1"}) if _hashable(v) else
     w.client.create_run(w.experiment_id, tags=[v])),
    ("client.set_terminated end_time", _bad_timestamp,
     lambda w, v: w.client.set_terminated(w.run_id, "FINISHED", end_time=v)),
    ("client.set_terminated status", _bad_status, lambda w, v: w.client.set_terminated(w.run_id, v)),
    ("client.update_run status", _bad_status, lambda w, v: w.client.update_run(w.run_id, status=v)),
    ("client.update_run name", _bad_run_name, lambda w, v: w.client.update_run(w.run_id, name=v)),
    ("client.create_experiment artifact_location", _bad_location,
     lambda w, v: w.client.create_experiment("generated", artifact_location=v)),
    ("client.log_inputs schema", _bad_dataset_field.filter(lambda v: v != ""),
     lambda w, v: w.client.log_inputs(w.run_id, [_ds(schema=v)])),
    ("client.log_inputs name", _bad_dataset_field, lambda w, v: w.client.log_inputs(w.run_id, [_ds(name=v)])),
    ("client.log_inputs container", _bad_container, lambda w, v: w.client.log_inputs(w.run_id, v)
     if v is not None else w.client.log_inputs(w.run_id, [None])),
    ("fluent.log_metric key", _bad_key, lambda w, v: deltaflow.log_metric(v, 1.0)),
    ("fluent.log_metric value", _bad_number, lambda w, v: deltaflow.log_metric("m", v)),
    ("fluent.log_metric step", _bad_step, lambda w, v: deltaflow.log_metric("m", 1.0, step=v)),
    ("fluent.log_metrics timestamp", _bad_timestamp, lambda w, v: deltaflow.log_metrics({"m": 1.0}, timestamp=v)),
    ("fluent.log_param key", _bad_key, lambda w, v: deltaflow.log_param(v, 1)),
    ("fluent.log_params key", _bad_key.filter(lambda v: _hashable(v)), lambda w, v: deltaflow.log_params({v: 1})),
    ("fluent.set_tag key", _bad_key, lambda w, v: deltaflow.set_tag(v, "1")),
    ("fluent.set_tags key", _bad_key.filter(lambda v: _hashable(v)), lambda w, v: deltaflow.set_tags({v: 1})),
    ("fluent.start_run run_name", _bad_run_name, lambda w, v: deltaflow.start_run(run_name=v)),
    ("fluent.start_run tag key", _bad_key.filter(lambda v: _hashable(v)),
     lambda w, v: deltaflow.start_run(tags={v: "1"})),
    ("fluent.log_input", st.one_of(st.integers(), st.none(), st.text(alphabet="ab $;", min_size=1, max_size=6)
                                   .filter(lambda s: not s.replace("a", "").replace("b", "") == "")),
     lambda w, v: deltaflow.log_input(v)),
    ("client.log_param value", _surrogate_text, lambda w, v: w.client.log_param(w.run_id, "fresh", v)),
    ("client.set_tag value", _surrogate_text, lambda w, v: w.client.set_tag(w.run_id, "t", v)),
    ("client.create_run run_name text", _surrogate_text, lambda w, v: w.client.create_run(w.experiment_id, run_name=v)),
    ("client.create_experiment name", _surrogate_text, lambda w, v: w.client.create_experiment(v)),
    ("client.log_inputs source", _surrogate_text, lambda w, v: w.client.log_inputs(w.run_id, [_ds(source=v)])),
    ("client.log_metric run_id", _bad_run_id, lambda w, v: w.client.log_metric(v, "m", 1.0)),
    ("client.log_batch run_id", _bad_run_id, lambda w, v: w.client.log_batch(v, params=[Param("fresh", "1")])),
    ("client.set_terminated run_id", _bad_run_id, lambda w, v: w.client.set_terminated(v)),
    ("fluent.log_metric run_id", _bad_run_id, lambda w, v: deltaflow.log_metric("m", 1.0, run_id=v)),
    ("fluent.log_params run_id", _bad_run_id, lambda w, v: deltaflow.log_params({"fresh": 1}, run_id=v)),
    ("fluent.set_tag value", _surrogate_text, lambda w, v: deltaflow.set_tag("t", v)),
    ("fluent.create_experiment artifact_location", _bad_location,
     lambda w, v: deltaflow.create_experiment("generated", artifact_location=v)),
]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


_generated_call = st.one_of(*[st.tuples(st.just(i), strategy) for i, (_n, strategy, _c) in enumerate(_GENERATED)])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(call=_generated_call)
def test_generated_malformed_calls_are_refused_and_write_nothing(world, call):
    index, bad = call
    _name, _strategy, make = _GENERATED[index]
    assert_refused(world, lambda: make(world, bad))
