"""Benchmark probe, loaded by every child process the benchmark times (``PYTHONPATH=benchmarks/_probe``).

Does nothing unless ``BENCH_PROBE_OUT`` is set. Then, at interpreter exit, it writes to that file which
heavy modules the process imported (``pyspark``, ``delta``, ``deltalake``, ``mlflow``) and which engine
each deltaflow store of the process used. Its ``atexit`` handler is registered first, so it runs last:
after deltaflow's exit flush (which runs before every ``atexit`` handler) and after pyspark's.
A ``sitecustomize`` it shadows is still run.
"""

import atexit
import os
import sys
import time

_OUT = os.environ.get("BENCH_PROBE_OUT")
_HERE = os.path.dirname(os.path.abspath(__file__))


def _report() -> None:
    engines = []
    factory = sys.modules.get("deltaflow.store.factory")
    for store in list(getattr(factory, "_stores", {}).values()):
        engine = getattr(store, "engine", None)
        engines.append(getattr(engine, "name", type(engine).__name__))
    import json

    with open(_OUT, "w") as fh:
        json.dump({"pyspark": "pyspark" in sys.modules, "delta": "delta" in sys.modules,
                   "deltalake": "deltalake" in sys.modules, "mlflow": "mlflow" in sys.modules,
                   "engines": engines, "t_exit": time.monotonic()}, fh)


def _chain() -> None:
    import importlib.machinery
    import importlib.util

    path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if _OUT:
    atexit.register(_report)
    try:
        _chain()
    except Exception:  # noqa: BLE001 - a broken site hook must not change what is measured
        pass
