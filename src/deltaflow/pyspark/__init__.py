"""``deltaflow.pyspark.ml.autolog`` lives here, mirroring ``mlflow.pyspark.ml``.

``ml`` loads on first attribute access, so ``deltaflow.pyspark.ml.autolog(...)`` works after a plain
``import deltaflow`` and pyspark is imported only then.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "ml":
        import importlib

        return importlib.import_module("deltaflow.pyspark.ml")
    raise AttributeError(f"module 'deltaflow.pyspark' has no attribute {name!r}")
