"""Fixtures of the projects tests: a fresh store on the rust engine (no JVM anywhere in these tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture()
def rust_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh path store served by delta-rs, set as the tracking URI (here and, through the
    environment, in every process a test starts); open runs are ended afterwards."""
    import deltaflow
    from deltaflow.tracking import fluent

    uri = str(tmp_path / "store")
    monkeypatch.setenv("DELTAFLOW_ENGINE", "rust")
    monkeypatch.setenv("DELTAFLOW_TRACKING_URI", uri)
    for name in ("DELTAFLOW_RUN_ID", "MLFLOW_RUN_ID", "DELTAFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_ID",
                 "DELTAFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    deltaflow.set_tracking_uri(uri)
    fluent._active_experiment.clear()
    yield uri
    while deltaflow.active_run() is not None:
        deltaflow.end_run()
    deltaflow.flush()
    deltaflow.set_tracking_uri(None)
    fluent._active_experiment.clear()
