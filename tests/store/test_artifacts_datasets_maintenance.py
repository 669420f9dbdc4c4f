"""Run artifacts through the API, dataset inputs with Delta versions, gc/optimize, metastore stores,
and the bounded write buffer."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import yaml

import deltaflow as mlflow
from deltaflow import DeltaflowClient
from deltaflow.errors import InvalidArgument, NotFound
from deltaflow.store.engine import Where

pytestmark = pytest.mark.spark


def test_artifacts_round_trip_through_the_api(store_uri, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.txt").write_text("beta")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src / "a.txt"))
        mlflow.log_artifact(str(src / "a.txt"), artifact_path="copies")
        mlflow.log_artifacts(str(src), artifact_path="tree")
        mlflow.log_text("hello", "notes/hello.txt")
        mlflow.log_dict({"a": 1, "b": [1, 2]}, "config.json")
        mlflow.log_dict({"a": 1}, "config.yaml")
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3])
        mlflow.log_figure(fig, "plots/line.png")
        with pytest.raises(InvalidArgument, match=r"\.\."):
            mlflow.log_text("x", "../escape.txt")
        with pytest.raises(InvalidArgument):
            mlflow.log_text("x", "/abs.txt")
        rid = run.info.run_id
    top = {f.path: f.is_dir for f in mlflow.list_artifacts(run_id=rid)}
    assert top == {"a.txt": False, "copies": True, "tree": True, "notes": True, "config.json": False,
                   "config.yaml": False, "plots": True}
    assert [f.path for f in mlflow.list_artifacts("tree", run_id=rid)] == ["tree/a.txt", "tree/sub"]
    dst = tmp_path / "dl"
    local = mlflow.download_artifacts(run_id=rid, artifact_path="tree", dst_path=str(dst))
    assert open(os.path.join(local, "sub", "b.txt")).read() == "beta"
    whole = mlflow.download_artifacts(run_id=rid, dst_path=str(tmp_path / "all"))
    assert open(os.path.join(whole, "notes", "hello.txt")).read() == "hello"
    assert json.load(open(os.path.join(whole, "config.json"))) == {"a": 1, "b": [1, 2]}
    assert yaml.safe_load(open(os.path.join(whole, "config.yaml"))) == {"a": 1}
    assert open(os.path.join(whole, "plots", "line.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "escape.txt").exists()
    assert mlflow.get_artifact_uri("x/y", run_id=rid).endswith(f"{rid}/artifacts/x/y")


@pytest.mark.engines("spark", "rust")
def test_log_input_records_delta_table_version(store_uri, spark, tmp_path):
    from deltaflow.tracking.datasets import from_delta

    path = str(tmp_path / "train")
    spark.range(10).write.format("delta").save(path)
    spark.range(5).write.format("delta").mode("append").save(path)  # version 1
    with mlflow.start_run() as run:
        mlflow.log_input(path, context="training")
        mlflow.log_input(from_delta(path=path, version=0, name="train_v0"), context="eval")
    got = mlflow.get_run(run.info.run_id)
    inputs = {(i.dataset.name, [t.value for t in i.tags if t.key == "mlflow.data.context"][0])
              for i in got.inputs.dataset_inputs}
    assert inputs == {("train", "training"), ("train_v0", "eval")}
    store = DeltaflowClient(store_uri)._store
    versions = {r["name"]: r["dataset_version"] for r in store.engine.read("inputs").to_pylist()}
    assert versions == {"train": 1, "train_v0": 0}
    found = mlflow.search_runs(filter_string="datasets.context = 'eval'")
    assert list(found["run_id"]) == [run.info.run_id]


@pytest.mark.engines("spark", "rust")
def test_gc_purges_deleted_runs_and_artifacts(client):
    from deltaflow.store import maintenance

    keep = client.create_run("0").info.run_id
    drop = client.create_run("0").info.run_id
    for rid in (keep, drop):
        client.log_metric(rid, "m", 1.0)
        client.log_text(rid, "x", "f.txt")
    drop_dir = client.get_run(drop).info.artifact_uri
    client.delete_run(drop)
    with pytest.raises(InvalidArgument, match="not deleted"):
        maintenance.gc(client._store, run_ids=[keep])
    report = maintenance.gc(client._store, dry_run=True)
    assert report.run_ids == [drop] and os.path.exists(drop_dir)
    report = maintenance.gc(client._store, older_than_ms=0)  # nothing deleted before 1970
    assert report.run_ids == []
    report = maintenance.gc(client._store)
    assert report.run_ids == [drop]
    assert not os.path.exists(drop_dir)
    with pytest.raises(NotFound):
        client.get_run(drop)
    engine = client._store.engine
    for table in ("runs", "metrics", "latest_metrics", "tags"):
        assert engine.read(table, Where.of(run_id=drop)).num_rows == 0
    assert client.get_run(keep).data.metrics == {"m": 1.0}
    # deleted experiments are purged with their runs
    exp = client.create_experiment("doomed")
    doomed_run = client.create_run(exp).info.run_id
    client.delete_experiment(exp)
    report = maintenance.gc(client._store)
    assert report.experiment_ids == [exp] and report.run_ids == [doomed_run]
    assert client.get_experiment_by_name("doomed") is None


@pytest.mark.engines("spark", "rust")
def test_optimize_compacts_and_refuses_unsafe_vacuum(client):
    from deltaflow.store import maintenance

    rid = client.create_run("0").info.run_id
    for i in range(6):
        client.log_metric(rid, "m", float(i), step=i, synchronous=True)  # six small commits
    engine = client._store.engine
    before = engine.file_count("metrics")
    assert before >= 2
    with pytest.raises(InvalidArgument, match="below the safe"):
        maintenance.optimize(client._store, tables=["metrics"], vacuum_hours=0)
    with pytest.raises(InvalidArgument, match="unknown tables"):
        maintenance.optimize(client._store, tables=["nope"])
    results = maintenance.optimize(client._store, tables=["metrics", "latest_metrics"], vacuum_hours=0, force=True)
    assert results[0]["files_after"] == 1 and results[0]["files_before"] == before
    assert [m.value for m in client.get_metric_history(rid, "m")] == [float(i) for i in range(6)]


def test_metastore_store(spark, tmp_path):
    import uuid

    db = f"deltaflow_test_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE DATABASE {db}")  # a constant-shaped identifier we generated, not user text
    uri = f"metastore:{db}"
    client = DeltaflowClient(uri)
    os.environ["DELTAFLOW_ARTIFACT_ROOT"] = str(tmp_path / "art")
    try:
        from deltaflow.store.factory import get_store

        store = get_store(uri, artifact_root=str(tmp_path / "art"))
        client._store_obj = store
        exp = client.create_experiment("meta")
        rid = client.create_run(exp).info.run_id
        client.log_param(rid, "p", "v")
        client.log_metric(rid, "m", 2.0)
        client.log_text(rid, "hi", "a.txt")
        client.set_terminated(rid)
        assert spark.catalog.tableExists(f"{db}.runs")
        found = client.search_runs([exp], "params.p = 'v' AND metrics.m > 1")
        assert [r.info.run_id for r in found] == [rid]
        assert found[0].info.artifact_uri.startswith(str(tmp_path / "art"))
        assert spark.table(f"{db}.metrics").where("key = 'm'").count() == 1
        from deltaflow.sql import register_views

        register_views(uri, prefix="meta", persistent=True)
        row = spark.sql(f"SELECT status, params['p'] AS p FROM {db}.runs_latest").collect()
        assert [(r.status, r.p) for r in row] == [("FINISHED", "v")]
    finally:
        os.environ.pop("DELTAFLOW_ARTIFACT_ROOT", None)
    with pytest.raises(NotFound, match="CREATE SCHEMA"):
        DeltaflowClient("metastore:no_such_db").create_experiment("x")


def test_bounded_buffer_slows_a_fast_producer(spark, tmp_path, monkeypatch):
    """With room for 2,000 rows, 6,000 metrics still all land, and the producer had to wait.

    Heartbeats fall due constantly (the flusher adds rows while the buffer is full), which once
    deadlocked the flusher against its own back-pressure."""
    monkeypatch.setenv("DELTAFLOW_MAX_BUFFERED_ROWS", "2000")
    monkeypatch.setenv("DELTAFLOW_HEARTBEAT_INTERVAL_S", "0.001")
    monkeypatch.setenv("DELTAFLOW_FLUSH_ROWS", "1000")
    from deltaflow.config import resolve_location
    from deltaflow.store.factory import make_engine
    from deltaflow.store.tracking_store import TrackingStore

    location = resolve_location(str(tmp_path / "store"))
    # The spark engine: its commits (~0.5 s) are far slower than producing 6,000 points (~15 ms).
    store = TrackingStore(location, make_engine(location, "spark"))
    rid = store.create_run("0", "me", None, [], "bp").info.run_id
    peak = {"rows": 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak["rows"] = max(peak["rows"], store.buffer._batch.rows)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for i in range(6_000):
        store.log_metric_fast(rid, "m", float(i), 0, i)
    stop.set()
    watcher.join()
    store.flush()
    # Unbounded, all 6,000 would sit in the buffer before the first commit ends: the producer was
    # held back at the cap.
    assert peak["rows"] <= 2000 + 1
    assert store.engine.read("metrics", Where.of(run_id=rid), ["step"]).num_rows == 6_000


def test_unwritable_store_raises_instead_of_hanging(spark, tmp_path):
    """A store that cannot be committed to fails flush() with StorageError; the data stays buffered."""
    from deltaflow.config import resolve_location
    from deltaflow.errors import StorageError
    from deltaflow.store.factory import make_engine
    from deltaflow.store.tracking_store import TrackingStore

    root = tmp_path / "store"
    root.mkdir()
    (root / "tables").write_text("not a directory")  # every table path is now unusable
    location = resolve_location(str(root))
    store = TrackingStore(location, make_engine(location))
    store.buffer.add_rows("params", [{"run_id": "a" * 32, "experiment_id": "0", "key": "k", "value": "v",
                                      "event_time": 1, "seq": 1}])
    started = time.monotonic()
    with pytest.raises(StorageError, match="records kept in memory"):
        store.flush(timeout=300)
    assert time.monotonic() - started < 120
    assert store.buffer._added == 1 and store.buffer._committed == 0


@pytest.mark.engines("spark", "rust")
def test_auto_compaction_bounds_small_files(client, spark, engine, monkeypatch):
    """Without anyone running optimize, many small commits do not pile up as many small files."""
    spark.conf.set("spark.databricks.delta.autoCompact.minNumFiles", "4")
    monkeypatch.setenv("DELTAFLOW_COMPACT_MIN_FILES", "4")
    try:
        rid = client.create_run("0").info.run_id
        for i in range(10):
            client.log_metric(rid, "m", float(i), step=i, synchronous=True)
        files = client._store.engine.file_count("metrics")
    finally:
        spark.conf.unset("spark.databricks.delta.autoCompact.minNumFiles")
    assert files < 6, f"{files} files after 10 commits: auto-compaction did not run"
    assert [m.step for m in client.get_metric_history(rid, "m")] == list(range(10))
