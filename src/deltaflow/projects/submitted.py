"""Handles on a launched project run: wait for it, read its status, cancel it.

:class:`SubmittedRun` is the interface every backend returns (MLflow's ``SubmittedRun``, with a
``timeout`` on ``wait``); :class:`LocalSubmittedRun` is the local backend's, over the entry point's
process. A backend that runs elsewhere (Databricks) subclasses :class:`SubmittedRun`.

The local handle records the tracking run's terminal status itself, exactly once, through the
``on_exit`` callback it is given: FINISHED for exit status 0, FAILED for any other, KILLED after
:meth:`LocalSubmittedRun.cancel`. ``wait()`` and ``get_status()`` return only after that record is
durable, so a caller that sees a terminal status can read the same status from the store. A watcher
thread records it too when nobody waits (``synchronous=False``), for as long as the launching process
lives.
"""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import threading
from typing import Callable, Optional

from deltaflow.entities import RunStatus
from deltaflow.errors import DeltaflowError

__all__ = ["SubmittedRun", "LocalSubmittedRun", "RunFailed", "status_for_exit"]

# How long a cancelled entry point gets between SIGTERM and SIGKILL to its process group.
DEFAULT_KILL_GRACE_S = 5.0


class RunFailed(DeltaflowError):
    """A project run ended FAILED or KILLED (raised by synchronous ``run()`` and ``deltaflow run``,
    as MLflow raises ``ExecutionException``). ``run_id``, ``status`` and ``exit_code`` tell what
    happened; the tracking run holds the same status."""

    error_code = "RUN_FAILED"
    http_status = 500

    def __init__(self, run_id: str, status: str, exit_code: Optional[int] = None) -> None:
        detail = f", exit code {exit_code}" if exit_code is not None else ""
        super().__init__(f"run {run_id} ended {status}{detail}")
        self.run_id = run_id
        self.status = status
        self.exit_code = exit_code


class SubmittedRun(abc.ABC):
    """A project run that was launched: the backend-neutral handle ``deltaflow.projects.run`` returns.

    Subclasses implement the four members below. ``wait`` returns once the run is over and its
    terminal status (FINISHED, FAILED or KILLED) is recorded in the tracking run; it returns True for
    FINISHED. ``timeout`` (seconds) bounds the wait: when it passes first, :class:`TimeoutError` is
    raised and the run carries on.
    """

    @property
    @abc.abstractmethod
    def run_id(self) -> str:
        """The tracking run this project run logs to."""

    @abc.abstractmethod
    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the run ends; True when it ended FINISHED."""

    @abc.abstractmethod
    def get_status(self) -> str:
        """The run's status now, as a :class:`~deltaflow.entities.RunStatus` name."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the run and record it KILLED; a run already over is left as it ended."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(run_id={self.run_id!r})"


def status_for_exit(exit_code: int, cancelled: bool) -> str:
    """The tracking status of an entry point that exited with ``exit_code``."""
    if cancelled:
        return RunStatus.KILLED
    return RunStatus.FINISHED if exit_code == 0 else RunStatus.FAILED


class LocalSubmittedRun(SubmittedRun):
    """The entry point's process, started as the leader of its own process group.

    ``on_exit(status, exit_code)`` is called once, when the process has ended (whoever notices first:
    :meth:`wait`, :meth:`get_status`, :meth:`cancel` or the watcher thread); it must make the
    terminal status durable, and may return the status it recorded instead (e.g. the one the entry
    point set itself). Its error, if any, is raised by the call that noticed.
    """

    def __init__(self, run_id: str, process: "subprocess.Popen[bytes]",
                 on_exit: Optional[Callable[[str, int], Optional[str]]] = None, *,
                 kill_grace_s: float = DEFAULT_KILL_GRACE_S, watch: bool = True) -> None:
        self._run_id = run_id
        self.command_proc = process  # MLflow's attribute name
        self._on_exit = on_exit
        self._kill_grace_s = kill_grace_s
        self._lock = threading.Lock()
        self._cancelled = False
        self._final: Optional[str] = None
        self._exit_code: Optional[int] = None
        self._record_error: Optional[BaseException] = None
        try:  # known now: once the leader is reaped its id no longer resolves, but its group may live on
            self._group_leader = os.getpgid(process.pid) == process.pid
        except ProcessLookupError:
            self._group_leader = False
        if watch:
            threading.Thread(target=self._watch, name=f"deltaflow-project-{run_id[:8]}", daemon=True).start()

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def exit_code(self) -> Optional[int]:
        """The entry point's exit status (negative: killed by that signal); None while it runs."""
        return self.command_proc.poll()

    def _watch(self) -> None:
        self.command_proc.wait()
        try:
            self._finish()
        except Exception:  # noqa: BLE001 - kept in _record_error and raised to the next caller
            pass

    def _finish(self) -> str:
        """Record the terminal status once; every caller gets it (or the recording's error)."""
        with self._lock:
            if self._final is None and self._record_error is None:
                code = self.command_proc.wait()
                status = status_for_exit(code, self._cancelled)
                try:
                    if self._on_exit is not None:
                        status = self._on_exit(status, code) or status
                except BaseException as exc:  # noqa: BLE001 - re-raised below, to every caller
                    self._record_error = exc
                else:
                    self._final, self._exit_code = status, code
            if self._record_error is not None:
                raise self._record_error
            assert self._final is not None  # noqa: S101 - set just above
            return self._final

    def wait(self, timeout: Optional[float] = None) -> bool:
        try:
            self.command_proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"run {self._run_id} is still running after {timeout} s") from None
        return self._finish() == RunStatus.FINISHED

    def get_status(self) -> str:
        if self.command_proc.poll() is None:
            return RunStatus.RUNNING
        return self._finish()

    def cancel(self) -> None:
        with self._lock:
            if self.command_proc.poll() is not None:
                return  # already over: its own status stands
            self._cancelled = True
            self._signal_group(signal.SIGTERM)
        try:
            self.command_proc.wait(timeout=self._kill_grace_s)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.command_proc.wait()
        # Whatever the entry point started in its group and left behind goes too.
        self._signal_group(signal.SIGKILL)
        self._finish()

    def _signal_group(self, sig: int) -> None:
        pid = self.command_proc.pid
        try:
            if self._group_leader:
                os.killpg(pid, sig)
            else:  # not a group leader (started by other code): signal the process alone
                self.command_proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass  # the process (group) is already gone
