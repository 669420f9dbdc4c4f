"""Data and process helpers shared by the scoring tests (a plain module: test files import it by name,
which is reliable, whereas several test folders each have a module called ``conftest``)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

FEATURES = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "b": [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]})
COEFS = {1: (2.0, 1.0), 2: (10.0, -1.0)}  # version -> (coef of a, coef of b): y = ca*a + cb*b
SPARK_ROWS = [(1.0, 2.0, "a", 0.0), (2.0, 1.0, "b", 1.0), (3.0, 0.5, "a", 1.0), (0.1, 3.0, "b", 0.0),
              (2.5, 0.7, "a", 1.0), (0.4, 2.2, "b", 0.0), (1.7, 1.1, "a", 1.0), (0.9, 2.6, "b", 0.0)]


def expected(version: int, frame: pd.DataFrame) -> np.ndarray:
    ca, cb = COEFS[version]
    return ca * frame["a"].to_numpy() + cb * frame["b"].to_numpy()


def run_script(script: str, args: list[str], env: dict, cwd: str, timeout: int = 600) -> dict:
    """Run ``script`` in a new Python process; the JSON after its ``RESULT `` line."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(lines[-1][len("RESULT "):])


def child_env(**extra: str) -> dict:
    """The environment of a child Spark process: this interpreter for its Python workers, no store
    or engine choice inherited from the test process."""
    import sys

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "DELTAFLOW_DRIVER_MEMORY": "1g"}
    for name in ("DELTAFLOW_ENGINE", "DELTAFLOW_TRACKING_URI", "SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE"):
        env.pop(name, None)
    env.update(extra)
    return env
