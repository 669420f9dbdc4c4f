"""Startup hook (run from deltaflow-autolog.pth at every interpreter start): wait for pyspark.ml.

Kept tiny and free of deltaflow imports: it only adds an import watcher, and only calls into
deltaflow (``deltaflow.autologging._startup``) once the ``pyspark.ml`` package has been imported. Any
failure here is swallowed: a broken hook must never stop Python from starting.
"""

import os
import sys

_TARGET = "pyspark.ml"  # the package: hooking a submodule would run mid-way through its __init__


class _Watcher:
    """A meta-path finder that never finds anything itself; it wraps the loader of one module so
    the hook runs right after that module executes."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201 - importlib protocol
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)  # one shot, and lets the real finders resolve the module
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):  # noqa: ANN001, ANN202
            run(module)
            _fire()

        loader.exec_module = exec_module
        return spec


def _fire():  # noqa: ANN202
    try:
        from deltaflow.autologging._startup import on_pyspark_ml

        on_pyspark_ml()
    except Exception:  # noqa: BLE001
        import logging

        logging.getLogger("deltaflow.autolog").warning("deltaflow autolog startup hook failed", exc_info=True)


def _install():  # noqa: ANN202
    if os.environ.get("DELTAFLOW_AUTOLOG", "").strip().lower() in ("0", "false", "no", "off"):
        return
    if _TARGET in sys.modules:
        _fire()
    else:
        sys.meta_path.insert(0, _Watcher())


try:
    _install()
except Exception:  # noqa: BLE001 - never break interpreter start-up
    pass
