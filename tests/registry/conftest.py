"""Registry test helpers: tiny saved models, and a way to count what the registry log holds."""

from __future__ import annotations

import http.server
import threading

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


class Receiver:
    """A real HTTP server on 127.0.0.1 answering with scripted statuses and recording requests."""

    def __init__(self, statuses=(), hold: threading.Event | None = None, guard=None, secret: str = "") -> None:
        self.statuses = list(statuses)
        self.guard, self.secret = guard, secret
        self.verdicts: list[bool] = []
        self.requests: list[tuple[dict, bytes]] = []
        self.hold = hold
        self.arrived = threading.Event()
        self.released = None
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.released = receiver.hold.wait(20)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.guard is not None:  # a receiver that de-duplicates by delivery id
                    accepted = receiver.guard.accept(receiver.secret, body, dict(self.headers))
                    receiver.verdicts.append(accepted)
                    if not accepted:
                        status = 409
                    elif status >= 300:  # not processed: let the retry in
                        receiver.guard.forget(self.headers["X-Deltaflow-Delivery"])
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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


@pytest.fixture(autouse=True)
def registry_key(tmp_path, monkeypatch):
    """Every registry test runs with its own registry key (so rows are signed and webhook secrets
    encrypted), an empty config folder, and loopback webhook targets allowed (the test receivers
    listen on 127.0.0.1)."""
    import secrets

    key = secrets.token_hex(32)
    monkeypatch.setenv("DELTAFLOW_REGISTRY_KEY", key)
    monkeypatch.setenv("DELTAFLOW_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DELTAFLOW_WEBHOOK_ALLOW", "loopback")
    monkeypatch.delenv("DELTAFLOW_REGISTRY_ADMINS", raising=False)
    return key
