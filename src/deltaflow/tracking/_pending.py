"""Logging work that finishes after the call that started it (autolog's model saving, for one).

Work is keyed by run: ending that run (``end_run`` / ``set_terminated`` through the fluent API),
``deltaflow.flush()`` and interpreter exit wait for it, so whatever was started is complete and
durable by the time the run ends. Reads wait for it too (:func:`settle_for_read`), so a process
reads everything it logged, its background work included. One worker thread runs the work in order: it is Spark jobs and
file I/O, and running several at once on a small driver would only slow the user's own work.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any, Callable, Optional

__all__ = ["submit", "wait", "wait_all", "settle_for_read", "pending_runs"]

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
_futures: dict[str, list[concurrent.futures.Future]] = {}
_hook_installed = False
_WORKER_PREFIX = "deltaflow-pending"


def _exit_wait() -> None:
    wait_all(raise_errors=False)


def submit(run_id: str, fn: Callable[[], Any]) -> concurrent.futures.Future:
    """Run ``fn`` in the background as part of ``run_id``'s logging."""
    global _executor, _hook_installed
    with _lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=_WORKER_PREFIX)
        if not _hook_installed:
            from deltaflow.store.factory import register_exit_hook

            register_exit_hook(_exit_wait)
            _hook_installed = True
        future = _executor.submit(fn)
        _futures.setdefault(run_id, []).append(future)
    return future


def _drain(futures: list[concurrent.futures.Future], timeout: Optional[float], raise_errors: bool) -> None:
    done, not_done = concurrent.futures.wait(futures, timeout=timeout)
    if not_done:
        _log.warning("deltaflow: %d background logging task(s) still running after %s s", len(not_done), timeout)
    with _lock:  # forget what finished; several waiters may wait for the same work, so nothing is
        for run_id in list(_futures):  # removed before it is done
            _futures[run_id] = [f for f in _futures[run_id] if f not in done]
            if not _futures[run_id]:
                del _futures[run_id]
    for future in done:
        error = future.exception()
        if error is not None and raise_errors:
            raise error


def wait(run_id: str, timeout: Optional[float] = None, raise_errors: bool = True) -> None:
    """Wait for ``run_id``'s background work. A task's exception is re-raised here when
    ``raise_errors`` (tasks that follow the autolog safety contract never raise outside test mode)."""
    with _lock:
        futures = list(_futures.get(run_id, ()))
    _drain(futures, timeout, raise_errors)


def wait_all(timeout: Optional[float] = None, raise_errors: bool = True) -> None:
    with _lock:
        futures = [f for fs in _futures.values() for f in fs]
    _drain(futures, timeout, raise_errors)


def settle_for_read() -> None:
    """Before a read through the client: wait for unfinished background work, so the read sees it.
    The worker thread itself never waits (it would wait for itself)."""
    if threading.current_thread().name.startswith(_WORKER_PREFIX):
        return
    with _lock:
        futures = [f for fs in _futures.values() for f in fs if not f.done()]
    if futures:
        # Wait only: the work stays registered, so flush()/end_run still report its errors.
        concurrent.futures.wait(futures)


def pending_runs() -> list[str]:
    with _lock:
        return [run_id for run_id, fs in _futures.items() if any(not f.done() for f in fs)]
