"""The tracking API end to end on a real local Spark + Delta store."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

import deltaflow as mlflow
from deltaflow import Metric, Param
from deltaflow.entities import RunStatus, ViewType
from deltaflow.errors import AlreadyExists, InvalidArgument, InvalidState, NotFound

pytestmark = pytest.mark.spark


@pytest.mark.engines("spark", "rust")
def test_run_round_trip_params_metrics_tags(store_uri):
    mlflow.set_experiment("roundtrip")
    with mlflow.start_run(run_name="first", description="a note", tags={"team": "ml"}) as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"depth": 3, "opt": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=4)
        mlflow.set_tag("stage", "dev")
        mlflow.set_tags({"a": 1, "b": "two"})
        run_id = run.info.run_id
    got = mlflow.get_run(run_id)
    assert got.info.status == RunStatus.FINISHED
    assert got.info.end_time is not None and got.info.end_time >= got.info.start_time
    assert got.info.run_name == "first"
    assert got.data.params == {"lr": "0.01", "depth": "3", "opt": "adam"}
    assert got.data.metrics == {"loss": pytest.approx(0.2), "acc": 0.9, "f1": 0.8}
    tags = got.data.tags
    assert tags["team"] == "ml" and tags["stage"] == "dev" and tags["a"] == "1" and tags["b"] == "two"
    assert tags["mlflow.runName"] == "first"
    assert tags["mlflow.note.content"] == "a note"
    assert tags["mlflow.user"]
    assert tags["mlflow.source.type"] == "LOCAL"
    assert got.info.artifact_uri.endswith(f"/{run_id}/artifacts")
    history = mlflow.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert [m.value for m in history] == [pytest.approx(1.0 / (s + 1)) for s in range(5)]
    assert mlflow.last_active_run().info.run_id == run_id
    assert not got.info.is_alive  # finished runs are not alive


def test_nested_runs_and_active_run_stack(store_uri):
    with mlflow.start_run() as parent:
        with pytest.raises(InvalidState, match="already active"):
            mlflow.start_run()
        with mlflow.start_run(nested=True) as child:
            assert mlflow.active_run().info.run_id == child.info.run_id
            mlflow.log_metric("child_metric", 1.0)
        assert mlflow.active_run().info.run_id == parent.info.run_id
    assert mlflow.active_run() is None
    child_run = mlflow.get_run(child.info.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child_run.info.status == RunStatus.FINISHED
    found = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert list(found["run_id"]) == [child.info.run_id]


def test_resume_run_by_id(store_uri):
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0, step=0)
    with mlflow.start_run(run_id=run.info.run_id) as resumed:
        assert resumed.info.run_id == run.info.run_id
        assert mlflow.get_run(run.info.run_id).info.status == RunStatus.RUNNING
        mlflow.log_metric("m", 2.0, step=1)
    got = mlflow.get_run(run.info.run_id)
    assert got.info.status == RunStatus.FINISHED
    assert [m.value for m in mlflow.get_metric_history(run.info.run_id, "m")] == [1.0, 2.0]
    with pytest.raises(NotFound):
        mlflow.start_run(run_id="0" * 32)


def test_exception_inside_with_ends_failed(store_uri):
    with pytest.raises(ZeroDivisionError):
        with mlflow.start_run() as run:
            1 / 0  # noqa: B018
    assert mlflow.get_run(run.info.run_id).info.status == RunStatus.FAILED
    assert mlflow.active_run() is None


def test_logging_without_active_run_starts_one(store_uri):
    assert mlflow.active_run() is None
    mlflow.log_metric("auto", 3.0)
    run = mlflow.active_run()
    assert run is not None
    mlflow.end_run()
    assert mlflow.get_run(run.info.run_id).data.metrics == {"auto": 3.0}


def test_param_immutability(client):
    run = client.create_run("0")
    rid = run.info.run_id
    client.log_param(rid, "p", "1")
    client.log_param(rid, "p", "1")  # same value: allowed, not duplicated
    with pytest.raises(InvalidArgument, match="'p'.*already logged.*'1'.*'2'"):
        client.log_param(rid, "p", "2")
    # a batch with a conflicting param writes nothing of the batch
    with pytest.raises(InvalidArgument):
        client.log_batch(rid, metrics=[Metric("m", 1.0, 0, 0)], params=[Param("p", "3")])
    client.set_terminated(rid)
    got = client.get_run(rid)
    assert got.data.params == {"p": "1"}
    assert got.data.metrics == {}
    from deltaflow.store.factory import get_store
    from deltaflow.store.engine import Where

    rows = get_store(client.tracking_uri).engine.read("params", Where.of(run_id=rid)).to_pylist()
    assert len(rows) == 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c, r: c.log_param(r, "k" * 251, "v"), "251 characters long; the limit is 250"),
        (lambda c, r: c.log_param(r, "k", "v" * 6001), "6001 characters long; the limit is 6000"),
        (lambda c, r: c.set_tag(r, "k", "v" * 8001), "8001 characters long; the limit is 8000"),
        (lambda c, r: c.log_metric(r, "bad$key", 1.0), "invalid metric key 'bad\\$key'"),
        (lambda c, r: c.log_metric(r, "../escape", 1.0), "invalid metric key"),
        (lambda c, r: c.log_metric(r, "m", "abc"), "must be a number"),
        (lambda c, r: c.log_metric(r, "m", 1.0, step=1.5), "step 1.5 must be an integer"),
        (lambda c, r: c.log_batch(r, metrics=[Metric("ok", 1.0, 0, 0), Metric("", 1.0, 0, 0)]), "must not be empty"),
        (lambda c, r: c.log_batch(r, params=[Param("d", "1"), Param("d", "2")]), "appears twice"),
    ],
)
def test_validation_limits_write_nothing(client, call, message):
    rid = client.create_run("0").info.run_id
    with pytest.raises(InvalidArgument, match=message):
        call(client, rid)
    client.set_terminated(rid)
    got = client.get_run(rid)
    assert got.data.metrics == {} and got.data.params == {}
    assert set(got.data.tags) <= {"mlflow.runName", "mlflow.user"}


def test_limits_at_the_boundary_are_accepted_and_nan_inf_allowed(client):
    rid = client.create_run("0").info.run_id
    client.log_param(rid, "k" * 250, "v" * 6000)
    client.set_tag(rid, "t", "x" * 8000)
    client.log_metric(rid, "nan", float("nan"))
    client.log_metric(rid, "inf", float("inf"))
    client.log_metric(rid, "ninf", float("-inf"))
    client.log_metric(rid, "a/b c:d-e.f", 1.0)
    got = client.get_run(rid)
    assert got.data.params["k" * 250] == "v" * 6000
    assert got.data.tags["t"] == "x" * 8000
    assert math.isnan(got.data.metrics["nan"])
    assert got.data.metrics["inf"] == math.inf and got.data.metrics["ninf"] == -math.inf
    assert got.data.metrics["a/b c:d-e.f"] == 1.0


def test_delete_tag_and_update_run_name(client):
    rid = client.create_run("0", run_name="before").info.run_id
    client.set_tag(rid, "gone", "x")
    client.delete_tag(rid, "gone")
    with pytest.raises(NotFound):
        client.delete_tag(rid, "never")
    client.update_run(rid, name="after")
    got = client.get_run(rid)
    assert "gone" not in got.data.tags
    assert got.info.run_name == "after" and got.data.tags["mlflow.runName"] == "after"


@pytest.mark.engines("spark", "rust")
def test_experiments_lifecycle(client):
    exp_id = client.create_experiment("exp-a", tags={"owner": "me"})
    with pytest.raises(AlreadyExists, match="exp-a"):
        client.create_experiment("exp-a")
    with pytest.raises(InvalidArgument):
        client.create_experiment("")
    exp = client.get_experiment(exp_id)
    assert exp.name == "exp-a" and exp.tags == {"owner": "me"} and exp.lifecycle_stage == "active"
    assert client.get_experiment_by_name("exp-a").experiment_id == exp_id
    assert client.get_experiment_by_name("nope") is None
    with pytest.raises(NotFound):
        client.get_experiment("424242")
    client.set_experiment_tag(exp_id, "k", "v")
    client.rename_experiment(exp_id, "exp-b")
    assert client.get_experiment(exp_id).name == "exp-b"
    other = client.create_experiment("exp-c")
    run = client.create_run(exp_id)
    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(InvalidState):
        client.create_run(exp_id)
    names = {e.name for e in client.search_experiments()}
    assert "exp-c" in names and "exp-b" not in names
    assert {e.name for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)} == {"exp-b"}
    client.restore_experiment(exp_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "active"
    found = client.search_experiments(filter_string="name LIKE 'exp-%' AND tags.k = 'v'")
    assert [e.experiment_id for e in found] == [exp_id]
    ordered = client.search_experiments(order_by=["name DESC"], filter_string="name LIKE 'exp-%'")
    assert [e.name for e in ordered] == ["exp-c", "exp-b"]
    page = client.search_experiments(max_results=1, filter_string="name LIKE 'exp-%'", order_by=["name"])
    assert len(page) == 1 and page.token
    rest = client.search_experiments(max_results=5, filter_string="name LIKE 'exp-%'", order_by=["name"],
                                     page_token=page.token)
    assert [e.name for e in page + rest] == ["exp-b", "exp-c"]
    assert other


def test_set_experiment_creates_and_rejects_deleted(store_uri):
    exp = mlflow.set_experiment("fresh")
    assert mlflow.get_experiment_by_name("fresh").experiment_id == exp.experiment_id
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == exp.experiment_id
    mlflow.delete_experiment(exp.experiment_id)
    with pytest.raises(InvalidState, match="deleted"):
        mlflow.set_experiment("fresh")
    with pytest.raises(InvalidArgument):
        mlflow.set_experiment()


@pytest.mark.engines("spark", "rust")
def test_delete_and_restore_run(client):
    rid = client.create_run("0").info.run_id
    client.set_terminated(rid)
    client.delete_run(rid)
    assert client.get_run(rid).info.lifecycle_stage == "deleted"
    with pytest.raises(InvalidState):
        client.log_metric(rid, "m", 1.0)
    assert rid not in [r.info.run_id for r in client.search_runs(["0"])]
    assert rid in [r.info.run_id for r in client.search_runs(["0"], run_view_type=ViewType.DELETED_ONLY)]
    client.restore_run(rid)
    assert rid in [r.info.run_id for r in client.search_runs(["0"])]


def test_a_run_created_scheduled_is_scheduled_from_its_first_commit(client, store_uri):
    """A launcher creates its run SCHEDULED (a deltaflow extension of create_run): no reader ever sees
    it RUNNING before the work starts."""
    from deltaflow.config import resolve_location
    from deltaflow.store.factory import make_engine

    rid = client.create_run("0", status=RunStatus.SCHEDULED).info.run_id
    assert client.get_run(rid).info.status == RunStatus.SCHEDULED
    client.flush()
    rows = make_engine(resolve_location(store_uri)).read("runs", columns=["run_id", "status"]).to_pylist()
    assert [r["status"] for r in rows if r["run_id"] == rid] == [RunStatus.SCHEDULED]
    before = sorted(r["run_id"] for r in rows)
    with pytest.raises(InvalidArgument, match="run status 'QUEUED' is not valid; use one of"):
        client.create_run("0", status="QUEUED")
    client.flush()
    after = make_engine(resolve_location(store_uri)).read("runs", columns=["run_id"]).to_pylist()
    assert sorted(r["run_id"] for r in after) == before


def test_synchronous_makes_data_visible_to_another_store(client, store_uri):
    from deltaflow.config import resolve_location
    from deltaflow.store.factory import make_engine
    from deltaflow.store.tracking_store import TrackingStore

    rid = client.create_run("0").info.run_id
    client.log_metric(rid, "m", 7.0, synchronous=True)
    location = resolve_location(store_uri)
    other = TrackingStore(location, make_engine(location))  # a second writer/reader, no shared buffer
    assert other.get_run(rid).data.metrics == {"m": 7.0}


def test_contextvars_isolate_threads_and_tasks(store_uri):
    seen = {}

    def worker(name):
        assert mlflow.active_run() is None  # a new thread starts with no active run
        with mlflow.start_run() as run:
            seen[name] = run.info.run_id
            mlflow.log_metric("thread", 1.0)

    with mlflow.start_run() as main_run:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert mlflow.active_run().info.run_id == main_run.info.run_id
    assert len(set(seen.values())) == 3 and main_run.info.run_id not in seen.values()

    async def task(i):
        with mlflow.start_run(nested=False) as run:
            await asyncio.sleep(0.01)
            assert mlflow.active_run().info.run_id == run.info.run_id
            return run.info.run_id

    async def main():
        return await asyncio.gather(*(task(i) for i in range(3)))

    ids = asyncio.run(main())
    assert len(set(ids)) == 3
    assert mlflow.active_run() is None


def test_databricks_context_tags_from_spark_and_env(store_uri, spark, monkeypatch):
    from deltaflow.tracking import _context

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    sc = spark.sparkContext
    props = {"spark.databricks.job.id": "777", "spark.databricks.job.runId": "888",
             "spark.databricks.notebook.path": "/Repos/me/train", "spark.databricks.notebook.id": "4242"}
    for k, v in props.items():
        sc.setLocalProperty(k, v)
    spark.conf.set("spark.databricks.clusterUsageTags.clusterId", "0101-abc")
    _context.clear_cache()
    try:
        with mlflow.start_run() as run:
            pass
        tags = mlflow.get_run(run.info.run_id).data.tags
    finally:
        for k in props:
            sc.setLocalProperty(k, None)
        spark.conf.unset("spark.databricks.clusterUsageTags.clusterId")
        _context.clear_cache()
    assert tags["mlflow.databricks.jobID"] == "777"
    assert tags["mlflow.databricks.jobRunID"] == "888"
    assert tags["mlflow.databricks.notebookPath"] == "/Repos/me/train"
    assert tags["mlflow.databricks.notebookID"] == "4242"
    assert tags["mlflow.databricks.cluster.id"] == "0101-abc"
    assert tags["mlflow.source.type"] == "JOB"
