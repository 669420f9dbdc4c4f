"""The autolog safety contract, as one small class.

* The user's own code runs exactly once and its result or exception passes through untouched.
* An exception in deltaflow's logging code is a warning (silenced by ``silent=True``) — except in
  test mode (``DELTAFLOW_AUTOLOG_TESTING=true``), where it is raised so tests catch our bugs.
* Patches are reversible: :class:`Patches` remembers every original and ``revert()`` restores them.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import warnings
from typing import Any, Callable, Optional

__all__ = ["testing", "Safety", "Patches", "AutologWarning"]

_log = logging.getLogger("deltaflow.autolog")


class AutologWarning(UserWarning):
    """Autologging could not record something; the user's call itself was not affected."""


def testing() -> bool:
    return os.environ.get("DELTAFLOW_AUTOLOG_TESTING", "").strip().lower() in ("1", "true", "yes")


class Safety:
    """Runs deltaflow's logging steps so that they can never break the user's call."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent

    def report(self, what: str, error: BaseException) -> None:
        if testing():
            raise error
        if not self.silent:
            warnings.warn(f"deltaflow autologging failed to {what}: {type(error).__name__}: {error}",
                          AutologWarning, stacklevel=3)
        _log.debug("autolog failure while trying to %s", what, exc_info=error)

    def run(self, what: str, fn: Callable[..., Any], *args: Any, default: Any = None, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, or ``default`` after reporting a failure."""
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - the contract: our failure never reaches the user
            self.report(what, error)
            return default


class Patches:
    """Methods replaced on classes, restorable. Thread-safe; patching twice is a no-op."""

    def __init__(self) -> None:
        self._originals: dict[tuple[type, str], Any] = {}
        self._lock = threading.Lock()

    def patch(self, cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        """Replace ``cls.name`` by ``make(original)``; ``original`` is the function as ``cls`` sees it."""
        with self._lock:
            if (cls, name) in self._originals:
                return
            raw = cls.__dict__.get(name, _MISSING)
            original = getattr(cls, name)
            wrapper = make(original)
            functools.update_wrapper(wrapper, original)
            wrapper.__deltaflow_patch__ = True  # type: ignore[attr-defined]
            self._originals[(cls, name)] = raw
            setattr(cls, name, wrapper)

    def revert(self) -> None:
        with self._lock:
            for (cls, name), raw in self._originals.items():
                if raw is _MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, raw)
            self._originals.clear()

    def active(self) -> bool:
        return bool(self._originals)


_MISSING = object()


def original_of(fn: Optional[Callable[..., Any]]) -> Optional[Callable[..., Any]]:
    return getattr(fn, "__wrapped__", fn)
