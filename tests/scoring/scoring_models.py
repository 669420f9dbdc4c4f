"""Custom models the scoring tests score with. This module is pickled by value into each model, so
Spark's Python workers (which cannot import the tests) load them."""

from __future__ import annotations

import os
import sys

import cloudpickle
import numpy as np
import pandas as pd

import deltaflow.pyfunc

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class MultiOutput(deltaflow.pyfunc.PythonModel):
    """One input ``x``; seven outputs of seven types, so every result type has something to pick."""

    def predict(self, context, model_input, params=None):
        x = model_input["x"].to_numpy()
        scale = (params or {}).get("scale", 1.0)
        return pd.DataFrame({
            "score": x * 2.0 * scale,
            "label": ["p" + str(int(v)) for v in x],
            "flag": x > 1,
            "count": (x * 10).astype("int64"),
            "small": (x + 1).astype("int32"),
            "ratio": (x / 2).astype("float32"),
            "items": [[float(v), float(v) + 1] for v in x],
        })


class Recorder(deltaflow.pyfunc.PythonModel):
    """Records every load (the loading process's id) in ``model_config['log_dir']``; predicts the
    scoring process's id, its ``sys.prefix``, where its artifact file was read from, and whether the
    site-packages of the interpreter that saved it (``model_config['outside']``) is on its path."""

    def load_context(self, context):
        log_dir = context.model_config["log_dir"]
        with open(os.path.join(log_dir, f"load-{os.getpid()}-{os.urandom(4).hex()}"), "w") as fh:
            fh.write(f"{os.getppid()}\n{sys.prefix}\n{context.artifacts['marker']}")
        self.marker = context.artifacts["marker"]

    def predict(self, context, model_input, params=None):
        rows = len(model_input)
        outside = context.model_config["outside"] in sys.path  # the saving interpreter's site-packages
        return pd.DataFrame({"pid": np.full(rows, os.getpid(), dtype="int64"), "prefix": [sys.prefix] * rows,
                             "marker": [self.marker] * rows, "x2": model_input["x"].to_numpy() * 2.0,
                             "outside": [outside] * rows})


class Poisoned(deltaflow.pyfunc.PythonModel):
    """Doubles ``id``; raises on the row ``poison_id`` while the file ``poison_file`` exists (a crash in
    the middle of a stream)."""

    def load_context(self, context):
        self.poison_file = context.model_config["poison_file"]
        self.poison_id = int(context.model_config["poison_id"])

    def predict(self, context, model_input, params=None):
        ids = model_input["id"].to_numpy()
        if os.path.exists(self.poison_file) and (ids == self.poison_id).any():
            raise RuntimeError(f"poisoned row {self.poison_id}")
        return ids * 2.0


def loads(log_dir: str) -> list[int]:
    """The process ids that loaded a Recorder model logging to ``log_dir``, one entry per load."""
    return sorted(int(name.split("-")[1]) for name in os.listdir(log_dir) if name.startswith("load-"))


def load_records(log_dir: str) -> list[dict]:
    """Each load: the loading process, its parent, its ``sys.prefix`` and the artifact path it read."""
    out = []
    for name in sorted(os.listdir(log_dir)):
        if name.startswith("load-"):
            with open(os.path.join(log_dir, name)) as fh:
                parent, prefix, marker = fh.read().split("\n")
            out.append({"pid": int(name.split("-")[1]), "parent": int(parent), "prefix": prefix, "marker": marker})
    return out
