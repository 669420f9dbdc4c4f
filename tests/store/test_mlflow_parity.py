"""Calls where deltaflow answers as MLflow 3.17 does (checked against MLflow itself on a sqlite store).

The differences kept on purpose are listed, with their reasons, in the README's "Deliberate
differences from MLflow"; these tests pin the ones that match. Rust engine: nothing here is about
the Spark compilation.
"""

from __future__ import annotations

import pytest

import deltaflow
from deltaflow import DeltaflowClient


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("DELTAFLOW_ENGINE", "rust")
    uri = str(tmp_path / "store")
    deltaflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        deltaflow.set_tracking_uri(None)


def test_metric_history_of_an_unknown_run_is_empty(store):
    client = DeltaflowClient(store, engine="rust")
    assert client.get_metric_history("0123456789abcdef0123456789abcdef", "loss") == []  # MLflow: []


def test_search_runs_with_no_experiments_is_empty(store):
    assert list(DeltaflowClient(store, engine="rust").search_runs([])) == []  # MLflow: []


def test_unknown_experiment_names_give_an_empty_frame(store):
    deltaflow.set_experiment("known")
    with deltaflow.start_run(run_name="kept"):
        pass
    frame = deltaflow.search_runs(experiment_names=["nope"])  # MLflow: an empty frame, no error
    assert len(frame) == 0
    # Unknown names are skipped beside known ones, as MLflow skips them.
    names = deltaflow.search_runs(experiment_names=["nope", "known"])["tags.mlflow.runName"].tolist()
    assert names == ["kept"]


def test_search_experiments_lists_newest_first(store):
    for name in ("a", "b", "c"):
        deltaflow.create_experiment(name)
    assert [e.name for e in deltaflow.search_experiments()][:3] == ["c", "b", "a"]


def test_model_load_reads_a_runs_uri(store):
    from deltaflow.models import Model

    with deltaflow.start_run() as run:
        deltaflow.log_dict({"artifact_path": "m", "flavors": {"python_function": {"loader_module": "x"}}},
                           "m/MLmodel")
    model = Model.load(f"runs:/{run.info.run_id}/m")  # MLflow downloads the MLmodel and loads it
    assert "python_function" in model.flavors
