"""Both engines on the same tables: either one creates, both write at once, the other reads; search
compiles to identical results (rows, order, columns, types, nulls) on Spark Columns and on Arrow."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading

import pytest

from deltaflow import DeltaflowClient, Metric, Param, RunTag
from deltaflow.entities import Dataset, DatasetInput, InputTag, ViewType
from deltaflow.store.schema import AUTO_COMPACT_PROPERTY, DEAD_LETTER_TABLE, LEASE_TABLE, TABLE_PROPERTIES, TABLES

pytestmark = pytest.mark.spark

ENGINES = ("spark", "rust")


def _other(engine: str) -> str:
    return "rust" if engine == "spark" else "spark"


@pytest.mark.parametrize("creator", ENGINES)
def test_tables_created_by_either_engine_serve_the_other(tmp_path, spark, creator):
    from deltalake import DeltaTable

    uri = str(tmp_path / "store")
    first = DeltaflowClient(uri, engine=creator)
    first._store.engine.ensure_tables(list(TABLES.values()))
    exp = first.create_experiment("cross", tags={"team": "ml"})
    run_a = first.create_run(exp, run_name="by-creator").info.run_id
    first.log_batch(run_a, metrics=[Metric("m", 1.5, 10, 0), Metric("m", 2.5, 11, 1)],
                    params=[Param("p", "1")], tags=[RunTag("t", "x")])
    first.set_terminated(run_a, "FINISHED")
    first.flush()

    # Same protocol and properties whichever engine made the table: no feature the other lacks.
    for name in (t for t in TABLES if t not in (LEASE_TABLE, DEAD_LETTER_TABLE)):  # both made when needed
        table = DeltaTable(f"{uri}/tables/{name}")
        protocol = table.protocol()
        assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2), name
        assert not protocol.reader_features and not protocol.writer_features, name
        assert TABLE_PROPERTIES.items() <= table.metadata().configuration.items(), name
        # delta-rs reaches this store: compaction is lease-guarded, Spark must not compact on its own.
        assert table.metadata().configuration[AUTO_COMPACT_PROPERTY] == "false", name

    second = DeltaflowClient(uri, engine=_other(creator))
    assert second.get_run(run_a) == first.get_run(run_a)
    assert second.get_experiment(exp) == first.get_experiment(exp)
    run_b = second.create_run(exp, run_name="by-other").info.run_id
    second.log_batch(run_b, metrics=[Metric("m", 9.0, 12, 0)], params=[Param("p", "2")])
    second.set_terminated(run_b, "FAILED")
    second.flush()
    for run_id in (run_a, run_b):
        assert first.get_run(run_id) == second.get_run(run_id)
        assert first.get_metric_history(run_id, "m") == second.get_metric_history(run_id, "m")
    assert [r.info.run_id for r in first.search_runs([exp], order_by=["metrics.m DESC"])] == [run_b, run_a]
    assert [r.info.run_id for r in second.search_runs([exp], order_by=["metrics.m DESC"])] == [run_b, run_a]
    # Maintenance by one engine leaves tables the other still reads.
    second._store.engine.optimize("metrics", ("run_id", "key"))
    assert len(first.get_metric_history(run_a, "m")) == 2


def test_both_engines_append_at_once_in_one_process(tmp_path, spark):
    uri = str(tmp_path / "store")
    clients = {e: DeltaflowClient(uri, engine=e) for e in ENGINES}
    exp = clients["rust"].create_experiment("race")
    runs = {e: c.create_run(exp).info.run_id for e, c in clients.items()}
    errors: list[BaseException] = []

    def write(engine: str) -> None:
        try:
            client = clients[engine]
            for start in range(0, 2000, 250):
                client.log_batch(runs[engine], metrics=[Metric("m", float(i), 0, i) for i in range(start, start + 250)])
                client.flush()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(e,)) for e in ENGINES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    for reader in ENGINES:
        rows = clients[reader]._store.engine.read("metrics", columns=["run_id", "step"]).to_pylist()
        assert len(rows) == 4000, reader
        for engine in ENGINES:
            assert sorted(r["step"] for r in rows if r["run_id"] == runs[engine]) == list(range(2000))


@pytest.fixture(scope="module")
def tricky(tmp_path_factory, spark):
    """Runs built to trip up one compilation but not the other: NaN and infinities, ties in every
    sort key, missing keys, deleted tags, NULL end times, unicode, a deleted run, a second experiment."""
    uri = str(tmp_path_factory.mktemp("tricky") / "store")
    client = DeltaflowClient(uri, engine="rust")
    exp = client.create_experiment("tricky")
    other = client.create_experiment("other")
    accs = [0.5, float("nan"), float("inf"), -float("inf"), 0.5, 0.25, None, 0.75, float("nan"), 0.0, -0.0, 1e300]
    models = ["Tree", "tree", "Ünïcode", None, "forest", "Tree", "b%c", "b_c", "", "forest", "Tree", "zeta"]
    for i, (acc, model) in enumerate(zip(accs, models)):
        start = 1_000 + (i // 3)  # three runs share each start_time: ties break on run_id
        run_id = client.create_run(exp, start_time=start, run_name=f"r{i:02d}",
                                   tags={"grp": ["a", "b", "c"][i % 3]}).info.run_id
        metrics = [Metric("loss", float(10 - s), 100 + s, s) for s in range(3)]  # latest = step 2
        metrics.append(Metric("loss", 99.0, 50, 1))  # an older step logged late: not the latest
        if acc is not None:
            metrics.append(Metric("acc", acc, 1, 0))
        params = [Param("lr", str(i % 4))] + ([Param("model", model)] if model is not None else [])
        tags = [RunTag("gone", "soon")] if i % 4 == 0 else []
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        if i % 4 == 0 and i:
            client.delete_tag(run_id, "gone")
        if i in (2, 5):
            ds = Dataset(name=f"tbl{i}", digest=f"d{i}", source_type="delta_table", source="cat.sch.tbl")
            client.log_inputs(run_id, [DatasetInput(ds, [InputTag("mlflow.data.context", "eval" if i == 5 else "train")])])
        if i % 5 != 4:  # some runs stay RUNNING with a NULL end_time
            client.set_terminated(run_id, "FAILED" if i % 3 == 0 else "FINISHED", end_time=5_000 + (i % 2))
        if i == 11:
            client.delete_run(run_id)
    client.create_run(other, run_name="elsewhere")
    client.flush()
    return uri, exp, other


FILTERS = [
    "", "metrics.acc > 0.4", "metrics.acc >= 0.5", "metrics.acc < 0.5", "metrics.acc <= 0", "metrics.acc = 0",
    "metrics.acc != 0.5", "metrics.loss = 8", "metrics.acc > -1e308", "params.model = 'Tree'",
    "params.model != 'Tree'", "params.model LIKE 'b\\_c'", "params.model LIKE 'b%'", "params.model ILIKE 'T%'",
    "params.model ILIKE 'ü%'", "params.model = ''", "params.model IS NULL", "params.model IS NOT NULL",
    "tags.gone IS NULL", "tags.gone = 'soon'", "tags.grp != 'a'", "attributes.status = 'RUNNING'",
    "attributes.end_time > 5000", "attributes.end_time <= 5001", "attributes.run_name LIKE 'r0%'",
    "attributes.run_id IN ('nope')", "attributes.run_id NOT IN ('nope')", "datasets.context = 'eval'",
    "datasets.name LIKE 'tbl%'", "metrics.acc > 0 AND params.lr = '1'", "params.lr != '2'",
    "tags.grp ILIKE 'A' AND metrics.loss < 100", "attributes.start_time > 1002", "attributes.user_id != 'nobody'",
    "datasets.digest IN ('d2', 'nope')", "datasets.name NOT IN ('tbl2')", "tags.`grp` = 'c'",
]
ORDERS = [
    None, ["metrics.acc DESC"], ["metrics.acc ASC"], ["params.model"], ["params.model DESC"], ["tags.gone"],
    ["attributes.end_time"], ["attributes.end_time DESC"], ["attributes.run_name DESC"],
    ["tags.grp", "metrics.acc DESC"], ["params.lr DESC", "attributes.start_time ASC"], ["metrics.missing"],
]


def _ids(uri: str, engine: str, exp: str, flt: str, order, view=ViewType.ACTIVE_ONLY) -> list[str]:
    store = DeltaflowClient(uri, engine=engine)._store
    query = store.run_query([exp], flt, view, order)
    return store.engine.search_runs(query)


@pytest.mark.parametrize("flt", FILTERS)
def test_every_filter_gives_identical_runs_on_both_engines(tricky, flt):
    uri, exp, _ = tricky
    for order in (None, ["metrics.acc DESC"]):
        assert _ids(uri, "spark", exp, flt, order) == _ids(uri, "rust", exp, flt, order), (flt, order)


@pytest.mark.parametrize("order", ORDERS)
def test_every_order_by_gives_identical_order_on_both_engines(tricky, order):
    uri, exp, _ = tricky
    rust = _ids(uri, "rust", exp, "", order, ViewType.ALL)
    assert rust == _ids(uri, "spark", exp, "", order, ViewType.ALL), order
    assert len(rust) == 12


def test_nan_and_null_semantics_are_mlflow_s_on_both(tricky):
    """MLflow 3.17 (sqlalchemy and file stores alike): a NaN metric matches only `!=`; ORDER BY puts
    numbers first, then NaN, then runs without the metric, ascending and descending."""
    uri, exp, _ = tricky
    for engine in ENGINES:
        client = DeltaflowClient(uri, engine=engine)
        names = lambda flt: {r.info.run_name for r in client.search_runs([exp], flt)}  # noqa: E731
        for flt in ("metrics.acc > 0", "metrics.acc >= -1e308", "metrics.acc < 1e308", "metrics.acc <= 1",
                    "metrics.acc = 0.5", "metrics.acc > 0.9"):
            assert not {"r01", "r08"} & names(flt), (engine, flt)
        assert {"r01", "r08"} <= names("metrics.acc != 0.5"), engine
        assert "r06" not in names("metrics.acc != 0.5")
        for direction in ("DESC", "ASC"):
            order = [r.info.run_name for r in client.search_runs([exp], order_by=[f"metrics.acc {direction}"])]
            # NaNs after every number in both directions (tie: later start first), missing last.
            assert order[-3:] == ["r08", "r01", "r06"], (engine, direction, order)
    import deltaflow

    deltaflow.set_tracking_uri(uri)
    try:  # output_format="spark" re-sorts the wide frame: the same order
        frame = deltaflow.search_runs([exp], order_by=["metrics.acc DESC"], output_format="spark")
        assert [r["tags.mlflow.runName"] for r in frame.collect()][-3:] == ["r08", "r01", "r06"]
    finally:
        deltaflow.set_tracking_uri(None)


def test_pandas_results_are_identical(tricky):
    import pandas as pd

    import deltaflow
    from deltaflow.tracking._search_output import runs_to_pandas

    uri, exp, other = tricky
    frames = {}
    for engine in ENGINES:
        deltaflow.set_tracking_uri(uri)
        try:
            client = DeltaflowClient(uri, engine=engine)
            runs = client.search_runs([exp, other], "metrics.loss < 100", order_by=["params.model DESC"],
                                      max_results=5)
            token_pages = [[r.info.run_id for r in runs], runs.token]
            frames[engine] = (runs_to_pandas(
                client.search_runs([exp, other], order_by=["metrics.acc"], max_results=100)), token_pages)
        finally:
            deltaflow.set_tracking_uri(None)
    pd.testing.assert_frame_equal(frames["spark"][0], frames["rust"][0])
    assert frames["spark"][1] == frames["rust"][1]
    frame = frames["rust"][0]
    assert math.isnan(frame.loc[frame["tags.mlflow.runName"] == "r01", "metrics.acc"].iloc[0])


def test_forked_child_gets_a_clear_error_not_a_deadlock(tmp_path):
    script = textwrap.dedent("""
        import os, sys
        from deltaflow import DeltaflowClient
        client = DeltaflowClient(sys.argv[1], engine="rust")
        run_id = client.create_run("0").info.run_id
        client.log_metric(run_id, "before", 1.0, synchronous=True)
        pid = os.fork()
        if pid == 0:
            try:
                DeltaflowClient(sys.argv[1], engine="rust").get_run(run_id)
            except Exception as exc:
                print("CHILD", type(exc).__name__, exc, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        client.log_metric(run_id, "after", 2.0, synchronous=True)
        print("PARENT", sorted(client.get_run(run_id).data.metrics), flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "store")], capture_output=True,
                         text=True, timeout=120, env={**__import__("os").environ, "DELTAFLOW_ENGINE": "rust"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CHILD InvalidState" in out.stdout and "spawn" in out.stdout, out.stdout
    assert "PARENT ['after', 'before']" in out.stdout


def test_auto_keeps_local_stores_on_delta_rs_beside_a_running_session_and_sticks(tmp_path, spark, monkeypatch):
    from deltaflow.store.factory import get_store

    monkeypatch.setenv("DELTAFLOW_ENGINE", "auto")
    store = get_store(str(tmp_path / "store"))
    assert store.engine.name == "rust"  # a SparkSession with Delta runs here; a local folder stays on delta-rs
    assert get_store(str(tmp_path / "store")) is store
    assert get_store(str(tmp_path / "store"), engine="spark") is not store  # explicit choice: its own store


def test_like_backslashes_match_the_documented_rule_on_both_engines(tmp_path, spark):
    """A backslash escapes only %, _ and itself; any other one (and a trailing one) is literal.
    Spark would raise on those and Arrow would drop them, so both get a normalised pattern."""
    import re

    from deltaflow.tracking._search import like_to_regex, parse_run_filter

    uri = str(tmp_path / "store")
    writer = DeltaflowClient(uri, engine="rust")
    exp = writer.create_experiment("like")
    values = ["a\\b", "ab", "x\\", "x", "100%", "1000", "a_b", "axb", "back\\\\slash", "C:\\dir"]
    for value in values:
        run_id = writer.create_run(exp).info.run_id
        writer.log_param(run_id, "v", value)
    writer.flush()
    # As written inside the quotes: "\\\\" is one backslash after parsing (so "x\\\\" ends in one).
    patterns = ["a\\b", "x\\\\", "100\\%", "a\\_b", "%\\\\\\\\%", "C:\\d%", "%\\\\", "a_b", "%\\x%"]
    for op in ("LIKE", "ILIKE"):
        for pattern in patterns:
            literal = pattern.replace("'", "''")
            flt = f"params.v {op} '{literal}'"
            parsed = parse_run_filter(flt)[0].value  # the quoted-string escapes decoded
            expected = sorted(v for v in values if re.match(like_to_regex(parsed, op == "ILIKE"), v))
            for engine in ENGINES:
                client = DeltaflowClient(uri, engine=engine)
                got = sorted(r.data.params["v"] for r in client.search_runs([exp], flt))
                assert got == expected, (engine, flt)
