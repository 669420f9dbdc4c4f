"""Autologging switched on without code: the startup hook's deltaflow side.

Installing deltaflow puts ``deltaflow-autolog.pth`` in site-packages; Python runs it at every
interpreter start. It imports the tiny top-level module ``_deltaflow_autolog_hook``, which only
watches for ``pyspark.ml`` being imported (deltaflow itself is not imported at startup, so
processes that never touch Spark ML pay nothing). When pyspark.ml loads, :func:`on_pyspark_ml` runs:

* ``DELTAFLOW_AUTOLOG=true`` — autologging is enabled with default arguments right away;
* ``DELTAFLOW_AUTOLOG`` unset — a one-shot probe wraps ``Estimator.fit``; the first fit reads the
  Spark conf ``spark.deltaflow.autolog.enabled`` of its DataFrame's session (set on a Databricks
  cluster or in spark-defaults.conf), enables autologging if it is ``true``, and otherwise removes
  itself, leaving pyspark exactly as it was;
* ``DELTAFLOW_AUTOLOG=false`` — nothing at all (the hook does not even watch imports).

An explicit ``deltaflow.autolog(...)`` call always wins over the switch.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Optional

__all__ = ["ENV", "CONF", "env_setting", "on_pyspark_ml", "remove_probe"]

ENV = "DELTAFLOW_AUTOLOG"
CONF = "spark.deltaflow.autolog.enabled"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
_log = logging.getLogger("deltaflow.autolog")
_lock = threading.Lock()
_probe_original: Optional[Any] = None  # Estimator.fit as it was before the probe


def env_setting() -> Optional[bool]:
    raw = os.environ.get(ENV, "").strip().lower()
    return True if raw in _TRUE else False if raw in _FALSE else None


def on_pyspark_ml() -> None:
    """Called by the startup hook once the pyspark.ml package has been imported."""
    setting = env_setting()
    if setting is False:
        return
    if setting is True:
        import deltaflow

        deltaflow.autolog()
        return
    _install_probe()


def _install_probe() -> None:
    global _probe_original
    from pyspark.ml.base import Estimator

    with _lock:
        if _probe_original is not None or getattr(Estimator.fit, "__deltaflow_patch__", False):
            return  # already probing, or autolog was enabled explicitly
        original = Estimator.__dict__["fit"]

        def fit(self: Any, dataset: Any, params: Any = None) -> Any:
            enabled = False
            try:
                value = dataset.sparkSession.conf.get(CONF, "false")
                enabled = str(value).strip().lower() in _TRUE
            except Exception:  # noqa: BLE001 - a probe failure must never break fit
                _log.debug("could not read %s", CONF, exc_info=True)
            remove_probe()
            if enabled:
                import deltaflow

                try:
                    deltaflow.autolog()
                except Exception:  # noqa: BLE001 - e.g. a bad environment: fit must still work
                    _log.warning("deltaflow: %s is true but autologging could not start", CONF, exc_info=True)
            return Estimator.fit(self, dataset, params)  # the real fit, autologged or not

        fit.__deltaflow_probe__ = True  # type: ignore[attr-defined]
        fit.__wrapped__ = original  # type: ignore[attr-defined]
        _probe_original = original
        Estimator.fit = fit  # type: ignore[method-assign]


def remove_probe() -> None:
    """Put back the Estimator.fit the probe replaced (when the probe is still in place)."""
    global _probe_original
    with _lock:
        if _probe_original is None:
            return
        from pyspark.ml.base import Estimator

        if getattr(Estimator.__dict__.get("fit"), "__deltaflow_probe__", False):
            Estimator.fit = _probe_original  # type: ignore[method-assign]
        _probe_original = None
