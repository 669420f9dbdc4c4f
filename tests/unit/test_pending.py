"""Background logging work: every waiter waits for it, whoever waits first."""

from __future__ import annotations

import threading
import time

from deltaflow.tracking import _pending


def test_two_concurrent_waiters_both_wait_for_the_work():
    release = threading.Event()
    _pending.submit("run-a", lambda: release.wait(10))
    results: dict[str, bool] = {}

    def waiter(name: str) -> None:
        _pending.wait_all()
        results[name] = release.is_set()

    threads = [threading.Thread(target=waiter, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    time.sleep(0.2)
    assert results == {}  # neither returned while the work was still running
    release.set()
    for t in threads:
        t.join(10)
    assert results == {"first": True, "second": True}
    assert _pending.pending_runs() == []


def test_wait_for_one_run_leaves_the_others_pending():
    release = threading.Event()
    _pending.submit("run-b", lambda: release.wait(10))
    _pending.submit("run-c", lambda: None)
    _pending.wait("run-c", timeout=0.3)  # run-c queues behind run-b on the single worker: not done yet
    assert "run-b" in _pending.pending_runs()
    release.set()
    _pending.wait("run-b")
    _pending.wait("run-c")
    assert _pending.pending_runs() == []
