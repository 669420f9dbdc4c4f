"""databricks-sdk plumbing shared by the databricks project backend and ``deltaflow jobs``: the client
(auth resolved by the SDK itself), its errors turned into deltaflow's, and uploads to workspace files,
DBFS or Unity Catalog Volumes.

Every Databricks call goes through ``databricks.sdk.WorkspaceClient``; nothing here speaks REST.
"""

from __future__ import annotations

import io
import posixpath
from typing import Any, Callable, Optional, TypeVar

from deltaflow.errors import (DeltaflowError, InvalidArgument, InvalidState, MissingDependency, NotFound,
                              PermissionDenied)

__all__ = ["workspace_client", "sdk_call", "translate_sdk_error", "upload_file", "path_exists", "home_folder"]

T = TypeVar("T")


def workspace_client(profile: Optional[str] = None, host: Optional[str] = None) -> Any:
    """A ``WorkspaceClient`` from databricks-sdk's usual sources: ``profile`` (``~/.databrickscfg``), else
    ``DATABRICKS_HOST`` / ``DATABRICKS_TOKEN`` (and the SDK's other variables), else the DEFAULT profile."""
    try:
        from databricks.sdk import WorkspaceClient
    except ImportError:  # pragma: no cover - a core dependency
        raise MissingDependency("Databricks support needs databricks-sdk: pip install databricks-sdk") from None
    kwargs = {k: v for k, v in (("profile", profile), ("host", host)) if v}
    try:
        return WorkspaceClient(**kwargs)
    except ValueError as exc:
        where = f"profile {profile!r} of ~/.databrickscfg" if profile else \
            "DATABRICKS_HOST and DATABRICKS_TOKEN, or a DEFAULT profile in ~/.databrickscfg (or choose one with 'profile')"
        raise InvalidState(f"Databricks authentication is not configured: set {where}. databricks-sdk said: {exc}") \
            from None


def translate_sdk_error(exc: BaseException, doing: str) -> DeltaflowError:
    """A databricks-sdk error as the deltaflow error of the same kind, saying what was being done."""
    from databricks.sdk import errors

    message = f"Databricks {doing} failed: {exc}"
    if isinstance(exc, errors.NotFound):
        return NotFound(message)
    if isinstance(exc, (errors.PermissionDenied, errors.Unauthenticated)):
        return PermissionDenied(message)
    if isinstance(exc, errors.BadRequest):
        return InvalidArgument(message)
    return DeltaflowError(message)


def sdk_call(doing: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs one SDK call; its DatabricksError comes out as a deltaflow error naming ``doing``."""
    from databricks.sdk.errors import DatabricksError

    try:
        return call(*args, **kwargs)
    except DatabricksError as exc:
        raise translate_sdk_error(exc, doing) from exc


def _kind(path: str) -> str:
    if path.startswith("dbfs:/"):
        return "dbfs"
    if path.startswith("/Volumes/"):
        return "volume"
    return "workspace"


def _workspace_api_path(path: str) -> str:
    """The Workspace API names ``/Workspace/Users/x`` as ``/Users/x``."""
    return path[len("/Workspace"):] if path.startswith("/Workspace/") else path


def path_exists(w: Any, path: str) -> bool:
    """Whether a file exists at a ``dbfs:/``, ``/Volumes/`` or workspace path."""
    from databricks.sdk.errors import NotFound as SdkNotFound

    try:
        kind = _kind(path)
        if kind == "dbfs":
            w.dbfs.get_status(path)
        elif kind == "volume":
            w.files.get_metadata(path)
        else:
            w.workspace.get_status(_workspace_api_path(path))
        return True
    except SdkNotFound:
        return False


def upload_file(w: Any, path: str, data: bytes, *, overwrite: bool = True) -> None:
    """Writes ``data`` to a ``dbfs:/``, ``/Volumes/`` or workspace file path, creating its folder."""
    from databricks.sdk.service.workspace import ImportFormat

    kind = _kind(path)
    doing = f"upload to {path}"
    if kind == "dbfs":
        sdk_call(doing, w.dbfs.upload, path, io.BytesIO(data), overwrite=overwrite)
    elif kind == "volume":
        sdk_call(doing, w.files.upload, path, io.BytesIO(data), overwrite=overwrite)
    else:
        path = _workspace_api_path(path)
        sdk_call(doing, w.workspace.mkdirs, posixpath.dirname(path))
        # AUTO keeps a .py that is not a notebook as a workspace file (RAW would too, but AUTO also
        # takes a source-format notebook as a notebook, which job specs rely on).
        sdk_call(doing, w.workspace.upload, path, data, format=ImportFormat.AUTO, overwrite=overwrite)


def home_folder(w: Any) -> str:
    """``/Workspace/Users/<current user>``."""
    me = sdk_call("reading the current user", w.current_user.me)
    return f"/Workspace/Users/{me.user_name}"
