"""A process started for a run resumes it: start_run() picks up DELTAFLOW_RUN_ID / MLFLOW_RUN_ID."""

from __future__ import annotations

import os

import pytest

import deltaflow
from deltaflow.errors import InvalidArgument


@pytest.mark.parametrize("env_name", ["DELTAFLOW_RUN_ID", "MLFLOW_RUN_ID"])
def test_first_start_run_resumes_the_run_from_the_environment(rust_store: str, monkeypatch, env_name: str) -> None:
    client = deltaflow.DeltaflowClient(rust_store)
    launched = client.create_run("0")
    client.update_run(launched.info.run_id, status="SCHEDULED")
    monkeypatch.setenv(env_name, launched.info.run_id)
    with deltaflow.start_run() as run:
        assert run.info.run_id == launched.info.run_id
        assert run.info.status == "RUNNING"
        deltaflow.log_metric("loss", 0.5)
    assert env_name not in os.environ  # consumed: the next start_run() creates its own run
    with deltaflow.start_run() as second:
        assert second.info.run_id != launched.info.run_id
    resumed = client.get_run(launched.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.metrics == {"loss": 0.5}


def test_run_from_environment_must_match_the_chosen_experiment(rust_store: str, monkeypatch) -> None:
    client = deltaflow.DeltaflowClient(rust_store)
    run_id = client.create_run("0").info.run_id
    deltaflow.set_experiment("elsewhere")
    monkeypatch.setenv("DELTAFLOW_RUN_ID", run_id)
    with pytest.raises(InvalidArgument, match=rf"run '{run_id}' belongs to experiment '0', not"):
        deltaflow.start_run()


def test_a_nested_run_does_not_take_the_environment_run(rust_store: str, monkeypatch) -> None:
    client = deltaflow.DeltaflowClient(rust_store)
    run_id = client.create_run("0").info.run_id
    with deltaflow.start_run() as outer:
        monkeypatch.setenv("DELTAFLOW_RUN_ID", run_id)
        with deltaflow.start_run(nested=True) as inner:
            assert inner.info.run_id not in (run_id, outer.info.run_id)
    assert os.environ.get("DELTAFLOW_RUN_ID") == run_id
