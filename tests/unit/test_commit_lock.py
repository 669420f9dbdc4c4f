"""The store-wide commit lock: exclusive across processes and threads, re-entrant within a thread,
absent for stores that are not local folders."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import nullcontext

import pytest

from deltaflow.config import resolve_location
from deltaflow.errors import StorageError
from deltaflow.store._commit_lock import LOCK_FILE, commit_lock

HOLDER = """
import sys, time
from deltaflow.config import resolve_location
from deltaflow.store._commit_lock import commit_lock
with commit_lock(resolve_location(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", time.time(), flush=True)
"""


def test_another_process_holding_the_lock_makes_a_commit_wait(tmp_path):
    store = str(tmp_path / "store")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, store, "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with commit_lock(resolve_location(store)):
            acquired = time.time()
        released = float(holder.stdout.readline().split()[1])
        assert acquired >= released  # we got it only once the other process let go
        assert holder.wait(timeout=60) == 0
    finally:
        holder.kill()
    assert os.path.isfile(os.path.join(store, LOCK_FILE))


def test_reentrant_in_a_thread_and_exclusive_between_threads(tmp_path):
    lock = commit_lock(resolve_location(str(tmp_path / "store")))
    order: list[str] = []

    def other() -> None:
        with commit_lock(resolve_location(str(tmp_path / "store"))):
            order.append("other")

    with lock:
        with lock:  # a commit that creates its table first takes it twice
            thread = threading.Thread(target=other)
            thread.start()
            time.sleep(0.3)
            order.append("first")
        time.sleep(0.2)
        order.append("still first")  # the outer hold keeps it
    thread.join(timeout=10)
    assert order == ["first", "still first", "other"]


def test_only_local_stores_have_one(tmp_path):
    assert isinstance(commit_lock(resolve_location("s3://bucket/store")), nullcontext)
    assert isinstance(commit_lock(resolve_location("metastore:ml")), nullcontext)
    assert isinstance(commit_lock(resolve_location("/Volumes/main/ml/vol/store")), nullcontext)
    assert not isinstance(commit_lock(resolve_location(str(tmp_path))), nullcontext)


def test_a_lock_file_that_cannot_be_opened_is_a_storage_error(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    # A link into a folder that does not exist: the file cannot be created, even by root.
    os.symlink(tmp_path / "missing" / "lock", root / LOCK_FILE)
    with pytest.raises(StorageError, match="cannot write to the store .*commit lock"):
        with commit_lock(resolve_location(str(root))):
            pass
