"""Serving test helpers: a registry on the rust engine holding small custom models, and
``deltaflow models serve`` run as users run it (a subprocess listening on 127.0.0.1).

The model classes are defined by executing ``MODEL_CODE`` into a module that is not importable, so
cloudpickle stores them by value: the server process, and an exported bundle in a virtualenv without
deltaflow, load them without this test package on their path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Optional

MODEL_CODE = '''
import time

import deltaflow.pyfunc


class Scaled(deltaflow.pyfunc.PythonModel):
    """x * factor + n + offset. Params: delay (sleep first, to hold a request in flight), fail."""

    def __init__(self, factor):
        self.factor = factor

    def predict(self, context, model_input, params=None):
        params = params or {}
        if params.get("delay"):
            time.sleep(params["delay"])
        if params.get("fail"):
            raise RuntimeError("the model failed on purpose")
        return (model_input["x"] * self.factor + model_input["n"] + params.get("offset", 0.0)).to_numpy()


class RowSums(deltaflow.pyfunc.PythonModel):
    """Row sums of a 2-D float tensor."""

    def predict(self, context, model_input, params=None):
        return model_input.sum(axis=1)
'''

SERVER_START_TIMEOUT = 90.0


def model_classes() -> types.ModuleType:
    module = types.ModuleType("serving_test_models")  # never put in sys.modules: pickled by value
    exec(compile(MODEL_CODE, "serving_test_models", "exec"), module.__dict__)
    return module


def scaled_signature() -> Any:
    import numpy as np
    import pandas as pd

    from deltaflow.models.infer import infer_signature

    return infer_signature(pd.DataFrame({"x": [1.0], "n": [1]}), np.array([1.0]),
                           params={"offset": 0.0, "delay": 0.0, "fail": False})


def expected(factor: float, x: list, n: list, offset: float = 0.0) -> list:
    return [xi * factor + ni + offset for xi, ni in zip(x, n)]


class Registry:
    """A store folder with registered models, written through the rust engine."""

    def __init__(self, root: Path) -> None:
        from deltaflow import DeltaflowClient

        self.root = root
        self.uri = str(root / "store")
        self.client = DeltaflowClient(self.uri, engine="rust")
        self._models = model_classes()
        self._count = 0

    def save(self, factor: Optional[float] = None, *, spark: bool = False) -> str:
        """A saved model folder: Scaled(factor), RowSums (factor None) or a Spark-flavored MLmodel."""
        import deltaflow.pyfunc
        from deltaflow.models.schema import ModelSignature, Schema, TensorSpec

        self._count += 1
        path = self.root / f"model-{self._count}"
        if spark:  # only the MLmodel and its data folder: the server must refuse it before loading
            (path / "sparkml").mkdir(parents=True)
            (path / "sparkml" / "metadata").write_text("{}")
            (path / "MLmodel").write_text(
                "flavors:\n  python_function:\n    loader_module: mlflow.spark\n    data: sparkml\n"
                "  spark:\n    model_data: sparkml\n    pyspark_version: 3.5.7\n")
        elif factor is None:
            signature = ModelSignature(Schema([TensorSpec("float64", (-1, 3))]))
            deltaflow.pyfunc.save_model(str(path), python_model=self._models.RowSums(), signature=signature)
        else:
            deltaflow.pyfunc.save_model(str(path), python_model=self._models.Scaled(factor),
                                        signature=scaled_signature())
        return str(path)

    def register(self, name: str, path: str) -> int:
        try:
            self.client.get_registered_model(name)
        except Exception:  # noqa: BLE001 - NotFound: first version
            self.client.create_registered_model(name)
        return self.client.create_model_version(name, path).version

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DELTAFLOW_REGISTRY_ADMINS", "DELTAFLOW_REGISTRY_DEFAULT_PERMISSION")}
        env.update({"DELTAFLOW_TRACKING_URI": self.uri, "DELTAFLOW_ENGINE": "rust", "PYTHONUNBUFFERED": "1"})
        return env


def deltaflow_command() -> list[str]:
    script = Path(sys.executable).with_name("deltaflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "deltaflow.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``deltaflow models serve`` in a subprocess; ``url`` once it answers /ping."""

    def __init__(self, registry: Registry, model_uri: str, *args: str) -> None:
        import requests

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = registry.root / f"server-{self.port}.log"
        command = [*deltaflow_command(), "models", "serve", "-m", model_uri, "--port", str(self.port), *args]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=registry.env(),
                                         cwd=registry.root)
        self.http = requests.Session()
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if self.http.get(self.url + "/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the server did not answer /ping in {SERVER_START_TIMEOUT} s:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def invoke(self, body: Any, content_type: str = "application/json", session: Any = None) -> Any:
        import json

        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers = {"Content-Type": content_type} if content_type else {}
        return (session or self.http).post(self.url + "/invocations", data=data, headers=headers, timeout=60)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.http.close()


class ThreadServer:
    """The same app in a uvicorn server on a thread of the test process (for the extra models whose
    payload handling is checked; the protocol itself is tested against the subprocess server)."""

    def __init__(self, model_uri: str, tracking_uri: str, **settings: Any) -> None:
        import threading

        import requests
        import uvicorn

        from deltaflow.serving.rest_app import ServeSettings, app_for

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app_for(ServeSettings(model_uri, tracking_uri, **settings)), host="127.0.0.1", port=self.port,
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the in-process server did not start")
            time.sleep(0.02)
        self.http = requests.Session()

    def invoke(self, body: Any) -> Any:
        return self.http.post(self.url + "/invocations", json=body, timeout=60)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.http.close()
