"""The one error hierarchy of deltaflow.

Every error deltaflow raises on purpose derives from :class:`DeltaflowError`. Subclasses mirror the
HTTP-status-like classes that MLflow and databricks-sdk users already know, and each carries an
``error_code`` string with MLflow's name for it, so code that branched on
``MlflowException.error_code`` ports unchanged.

Messages name the bad value and say what is allowed; raise them, do not ``assert``.
"""

from __future__ import annotations

__all__ = [
    "DeltaflowError",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "InvalidState",
    "ConcurrentModification",
    "StorageError",
    "MissingDependency",
    "SearchTimeout",
]


class DeltaflowError(Exception):
    """Base class of every deltaflow error."""

    error_code: str = "INTERNAL_ERROR"
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DeltaflowError, ValueError):
    """A caller passed a value deltaflow does not accept; nothing was written."""

    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 400


class NotFound(DeltaflowError, LookupError):
    """The experiment, run, artifact or model asked for does not exist."""

    error_code = "RESOURCE_DOES_NOT_EXIST"
    http_status = 404


class AlreadyExists(DeltaflowError):
    error_code = "RESOURCE_ALREADY_EXISTS"
    http_status = 409


class PermissionDenied(DeltaflowError, PermissionError):
    error_code = "PERMISSION_DENIED"
    http_status = 403


class InvalidState(DeltaflowError):
    """The operation is not allowed in the object's current state (e.g. logging to a deleted run)."""

    error_code = "INVALID_STATE"
    http_status = 400


class ConcurrentModification(DeltaflowError):
    """A conflict-checked commit kept losing to concurrent writers after every retry."""

    error_code = "ABORTED"
    http_status = 409


class StorageError(DeltaflowError, OSError):
    """The Delta tables or artifact store could not be read or written."""

    error_code = "STORAGE_ERROR"
    http_status = 503


class MissingDependency(DeltaflowError, ImportError):
    """An optional dependency is needed; the message says which extra installs it."""

    error_code = "MISSING_DEPENDENCY"
    http_status = 501

    @classmethod
    def for_extra(cls, feature: str, module: str, extra: str) -> "MissingDependency":
        return cls(
            f"{feature} needs the Python module {module!r}, which is not installed. "
            f"Install it with: pip install 'deltaflow[{extra}]'"
        )


class SearchTimeout(DeltaflowError, TimeoutError):
    """A search ran past its time limit (``DELTAFLOW_SEARCH_TIMEOUT_S``) and was stopped."""

    error_code = "DEADLINE_EXCEEDED"
    http_status = 504
