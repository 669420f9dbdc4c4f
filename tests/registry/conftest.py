"""Registry test helpers: tiny saved models, and a way to count what the registry log holds."""

from __future__ import annotations

import pandas as pd
import pytest

import deltaflow.pyfunc


class Scaled(deltaflow.pyfunc.PythonModel):
    """Predicts x * factor: a different factor per version makes "which version loaded" checkable."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, context, model_input, params=None):
        return list(model_input["x"] * self.factor)


INPUT = pd.DataFrame({"x": [1.0, 2.0, 3.0]})


@pytest.fixture()
def model_dir(tmp_path):
    """``model_dir(factor)``: a saved custom pyfunc model directory predicting x * factor."""
    counter = iter(range(1000))

    def make(factor: float = 1.0) -> str:
        path = tmp_path / f"model-{next(counter)}"
        deltaflow.pyfunc.save_model(str(path), python_model=Scaled(factor))
        return str(path)

    return make


def log_size(client) -> int:
    """Rows in the registry's event log (the audit table) — to prove a refused change wrote nothing."""
    return client._registry.engine.read("registry_events").num_rows


@pytest.fixture()
def user(monkeypatch):
    """``user(name)`` switches the acting user (DELTAFLOW_USER) for the rest of the test."""

    def switch(name: str) -> None:
        monkeypatch.setenv("DELTAFLOW_USER", name)

    switch("owner")
    return switch
