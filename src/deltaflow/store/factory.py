"""One store per tracking location per process, and the exit hook that flushes them all."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Optional

from deltaflow.config import StoreLocation, resolve_location, settings
from deltaflow.errors import InvalidArgument
from deltaflow.store.engine import Engine
from deltaflow.store.tracking_store import TrackingStore

__all__ = ["get_store", "make_engine", "close_all_stores", "register_exit_hook"]

_log = logging.getLogger(__name__)
_stores: dict[tuple[str, str], TrackingStore] = {}
# Fluent calls resolve the store on every call; remember the raw (uri, artifact_root) too so the
# hot path skips path normalisation.
_by_raw: dict[tuple, TrackingStore] = {}
_lock = threading.Lock()
_exit_hooks: list = []
_hook_installed = False

ENGINES = ("auto", "spark")


def make_engine(location: StoreLocation, engine: Optional[str] = None) -> Engine:
    choice = (engine or settings.engine or "auto").lower()
    if choice not in ENGINES:
        raise InvalidArgument(f"engine {choice!r} is not known; use one of {', '.join(ENGINES)}")
    from deltaflow.store.spark_engine import SparkEngine

    return SparkEngine(location)


def get_store(uri: Optional[str] = None, artifact_root: Optional[str] = None) -> TrackingStore:
    raw_key = (uri, artifact_root, os.getcwd() if uri is None or not os.path.isabs(uri) else "")
    if uri is not None:
        store = _by_raw.get(raw_key)
        if store is not None:
            return store
    location = resolve_location(uri, artifact_root)
    key = (location.uri, location.artifact_root)
    store = _stores.get(key)
    if store is None:
        with _lock:
            store = _stores.get(key)
            if store is None:
                store = TrackingStore(location, make_engine(location))
                _stores[key] = store
                _install_hook()
    if uri is not None:
        _by_raw[raw_key] = store
    return store


def register_exit_hook(fn) -> None:  # noqa: ANN001
    """Run ``fn`` at exit before stores are flushed (the fluent API ends active runs here)."""
    _exit_hooks.append(fn)
    _install_hook()


def close_all_stores(timeout: Optional[float] = None) -> None:
    for fn in list(_exit_hooks):
        try:
            fn()
        except Exception:  # noqa: BLE001 - exit must go on
            _log.warning("deltaflow exit hook failed", exc_info=True)
    for store in list(_stores.values()):
        try:
            store.close(timeout)
        except Exception as exc:  # noqa: BLE001
            _log.error("deltaflow could not flush %s at exit: %s", store.location.uri, exc)


def _install_hook() -> None:
    """Flush at interpreter exit, *before* pyspark's own atexit handlers stop the JVM.

    ``threading._register_atexit`` callbacks run when the main thread finishes, ahead of ``atexit``
    handlers (concurrent.futures uses it for the same reason); fall back to atexit elsewhere.
    """
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(close_all_stores)
            return
        except RuntimeError:  # interpreter already shutting down
            pass
    atexit.register(close_all_stores)
