"""One Delta commit at a time per local store, across every deltaflow process that writes it.

A Delta commit must be the only file ever created under its version's name. delta-rs creates it
with an atomic no-replace rename, but delta-spark's log store for local paths (``HDFSLogStore`` over
Hadoop's local filesystem) checks that the name is free and then renames, and that rename replaces
an existing file. Two writers between the check and the rename both "commit" the same version and
one commit is silently lost (seen here as two Spark writers' version 13 of ``metrics``, left with
the other writer's checksum file). Object stores are not affected: their log stores do not rename.

So on a local store every commit of either engine (appends, merges, deletes, compactions, table
creation, vacuum) holds an exclusive ``flock`` on ``<store>/.deltaflow-commit.lock`` for its
duration. The lock is re-entrant within a thread and shared by the threads of a process (a thread
waits for another thread's commit as it would for another process's). Where ``fcntl`` does not exist
(Windows), or the filesystem refuses locks, commits are not serialised across processes; Databricks'
FUSE mounts (``/Volumes``, ``/dbfs``) are not locked.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Optional

from deltaflow.config import StoreLocation
from deltaflow.errors import StorageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "commit_lock"]

_log = logging.getLogger(__name__)

LOCK_FILE = ".deltaflow-commit.lock"


class _StoreLock(AbstractContextManager):
    """The process's handle on one store's lock file: the flock is taken on the way from depth 0 to 1
    and dropped on the way back, while a re-entrant thread lock orders the process's own threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: Optional[int] = None
        self._unsupported = False  # the filesystem refused a lock once: it will not take one later

    def __enter__(self) -> "_StoreLock":
        self._threads.acquire()
        try:
            if self._depth == 0 and not self._unsupported:
                self._fd = self._lock_file()
            self._depth += 1
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
        finally:
            self._threads.release()

    def _lock_file(self) -> Optional[int]:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            # Read-only is enough for flock, so a writer of a shared store opens a lock file another
            # user created (and that the umask left unwritable to the group).
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o666)
        except OSError as exc:
            raise StorageError(f"cannot write to the store at {os.path.dirname(self.path)!r}: its commit lock "
                               f"{self.path!r} cannot be opened ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_LOCKS:
                self._unsupported = True
                # A filesystem without locks (some network and FUSE mounts): commit unlocked, as
                # before the lock existed, rather than refuse every write.
                _log.warning("deltaflow: %s does not support file locks (%s); commits to this store are "
                             "not serialised across processes", self.path, exc.strerror or exc)
                return None
            raise
        except BaseException:
            os.close(fd)
            raise
        return fd


_NO_LOCKS = {errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}
# Databricks' FUSE mounts: Spark reaches these through the workspace's own cloud log stores, which do
# not rename, and the mounts do not promise working locks across nodes.
_DATABRICKS_MOUNTS = ("/Volumes/", "/dbfs/", "/Workspace/")
_LOCKS: dict[str, _StoreLock] = {}
_GUARD = threading.Lock()


def _forget_after_fork() -> None:
    # A forked child holds none of its parent's locks (nor its threads): start afresh.
    _LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def commit_lock(location: StoreLocation) -> AbstractContextManager:
    """The lock every commit to ``location``'s tables holds: the store's lock file for a local store,
    nothing elsewhere (object stores, metastore tables, platforms without ``fcntl``)."""
    if fcntl is None or not location.is_local or location.root is None:
        return nullcontext()
    if (location.root.rstrip("/") + "/").startswith(_DATABRICKS_MOUNTS):
        return nullcontext()
    path = os.path.join(location.root, LOCK_FILE)
    with _GUARD:
        lock = _LOCKS.get(path)
        if lock is None:
            lock = _LOCKS[path] = _StoreLock(path)
    return lock
