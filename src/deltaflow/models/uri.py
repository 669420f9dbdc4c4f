"""Model URIs: parsing (pure) and resolution to a local model directory.

Forms: ``runs:/<run_id>/<path>``, ``models:/<name>/<version>``, ``models:/<name>/<stage>``,
``models:/<name>/latest``, ``models:/<name>@<alias>``, plain local paths, ``file:`` URIs, ``/Volumes/…``
(FUSE) and storage URIs (``dbfs:/``, ``s3a://``, ``abfss://``, ``gs://``, ``hdfs://``). A malformed URI
gets an InvalidArgument naming the part that is wrong.

``models:/`` URIs resolve through the model registry of the tracking store (``deltaflow.registry``)
to the registry's own copy of that version.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import unquote, urlparse

from deltaflow.errors import InvalidArgument, InvalidState, NotFound

__all__ = ["ModelUri", "parse_model_uri", "download_model", "resolve_model_version", "STAGES"]

STAGES = ("None", "Staging", "Production", "Archived")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
# Registered model names: MLflow allows most characters but '/' (it would split the URI) and '@'
# (the alias separator); Unity Catalog names are three dot-separated parts.
_NAME_FORBIDDEN = re.compile(r"[/@:%\x00]")
_ALIAS = re.compile(r"^[A-Za-z0-9_\-]+$")
_STORAGE_SCHEMES = ("dbfs", "s3", "s3a", "s3n", "abfss", "abfs", "wasbs", "gs", "hdfs")
_FORMS = ("runs:/<run_id>/<path>, models:/<name>/<version|stage|latest>, models:/<name>@<alias>, "
          "a local path, file:///…, /Volumes/…, dbfs:/…")


@dataclass(frozen=True)
class ModelUri:
    """A parsed model URI. ``kind`` is ``runs``, ``models``, ``local`` or ``storage``."""

    uri: str
    kind: str
    run_id: Optional[str] = None
    artifact_path: Optional[str] = None
    name: Optional[str] = None
    version: Optional[int] = None
    stage: Optional[str] = None
    alias: Optional[str] = None
    latest: bool = False
    path: Optional[str] = None  # local path (local) or the storage URI itself (storage)


def _bad(uri: str, part: str) -> InvalidArgument:
    return InvalidArgument(f"malformed model URI {uri!r}: {part}. Accepted forms: {_FORMS}")


def _parse_runs(uri: str) -> ModelUri:
    from deltaflow.artifacts import validate_artifact_path

    if not uri.startswith("runs:/") or uri.startswith("runs://"):
        raise _bad(uri, "a runs URI starts with 'runs:/' followed directly by the run id")
    rest = uri[len("runs:/"):]
    run_id, _, path = rest.partition("/")
    if not run_id:
        raise _bad(uri, "the run id is missing after 'runs:/'")
    if not _RUN_ID.match(run_id):
        raise _bad(uri, f"run id {run_id!r} may contain only letters, digits, '_' and '-'")
    try:
        rel = validate_artifact_path(path)
    except InvalidArgument as exc:
        raise _bad(uri, f"the artifact path {path!r} is invalid ({exc})") from None
    return ModelUri(uri, "runs", run_id=run_id, artifact_path=rel or "")


def _parse_models(uri: str) -> ModelUri:
    if not uri.startswith("models:/") or uri.startswith("models://"):
        raise _bad(uri, "a models URI starts with 'models:/' followed directly by the model name")
    rest = uri[len("models:/"):].rstrip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if not alias:
            raise _bad(uri, "the alias after '@' is empty")
        if not _ALIAS.match(alias):
            raise _bad(uri, f"alias {alias!r} may contain only letters, digits, '_' and '-'")
        _check_name(uri, name)
        return ModelUri(uri, "models", name=name, alias=alias)
    name, sep, selector = rest.partition("/")
    _check_name(uri, name)
    if not sep or not selector:
        raise _bad(uri, f"model name {name!r} must be followed by '/<version>', '/<stage>', '/latest' "
                        "or '@<alias>'")
    if "/" in selector:
        raise _bad(uri, f"{selector!r} has extra path segments; only one of version, stage or 'latest' "
                        "may follow the name")
    if selector.isdigit():
        if int(selector) < 1:
            raise _bad(uri, f"version {selector!r} must be a positive integer")
        return ModelUri(uri, "models", name=name, version=int(selector))
    if selector.lower() == "latest":
        return ModelUri(uri, "models", name=name, latest=True)
    stages = {s.lower(): s for s in STAGES}
    if selector.lower() in stages:
        return ModelUri(uri, "models", name=name, stage=stages[selector.lower()])
    raise _bad(uri, f"{selector!r} is not a version number, 'latest', or a stage "
                    f"({', '.join(STAGES)})")


def _check_name(uri: str, name: str) -> None:
    if not name:
        raise _bad(uri, "the registered model name is empty")
    if _NAME_FORBIDDEN.search(name) or name != name.strip():
        raise _bad(uri, f"registered model name {name!r} contains a character that is not allowed "
                        "('/', '@', ':', '%', NUL or surrounding spaces)")
    if "." in name and any(not part for part in name.split(".")):
        raise _bad(uri, f"registered model name {name!r} has an empty part between dots "
                        "(Unity Catalog names are catalog.schema.model)")


def parse_model_uri(uri: str) -> ModelUri:
    """Parse a model URI or path, raising InvalidArgument naming the malformed part."""
    if not isinstance(uri, str):
        raise InvalidArgument(f"model URI must be a string, got {type(uri).__name__} {uri!r}")
    if not uri.strip():
        raise InvalidArgument(f"model URI is empty; accepted forms: {_FORMS}")
    if "\x00" in uri:
        raise _bad(uri, "NUL characters are not allowed")
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ""
    if not scheme or len(scheme) == 1:  # a path, or a Windows drive letter
        return ModelUri(uri, "local", path=os.path.abspath(os.path.expanduser(uri)))
    if scheme == "runs":
        return _parse_runs(uri)
    if scheme == "models":
        return _parse_models(uri)
    if scheme == "file":
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise _bad(uri, f"file URI host {parsed.netloc!r} is remote; only local file URIs work")
        if not parsed.path:
            raise _bad(uri, "the file URI has no path")
        return ModelUri(uri, "local", path=unquote(parsed.path))
    if scheme in _STORAGE_SCHEMES:
        if scheme == "dbfs" and not uri[len("dbfs:"):].startswith("/"):
            raise _bad(uri, "a DBFS URI is 'dbfs:/<path>'")
        if len(uri.rstrip("/")) <= len(scheme) + 3:
            raise _bad(uri, "the storage URI has no path")
        return ModelUri(uri, "storage", path=uri)
    raise _bad(uri, f"unknown scheme {scheme + ':'!r}")


# -- resolution ----------------------------------------------------------------------------
def resolve_model_version(uri: "str | ModelUri", tracking_uri: Optional[str] = None) -> Any:
    """The registry's ModelVersion a ``models:/`` URI names (NotFound names what is missing)."""
    from deltaflow.tracking.client import DeltaflowClient

    parsed = uri if isinstance(uri, ModelUri) else parse_model_uri(uri)
    if parsed.kind != "models":
        raise InvalidArgument(f"{parsed.uri!r} is not a models:/ URI")
    client = DeltaflowClient(tracking_uri)
    name = parsed.name or ""
    if parsed.version is not None:
        version = client.get_model_version(name, parsed.version)
    elif parsed.alias is not None:
        version = client.get_model_version_by_alias(name, parsed.alias)
    elif parsed.stage is not None:
        found = client.get_latest_versions(name, [parsed.stage])
        if not found:
            raise NotFound(f"cannot load {parsed.uri!r}: registered model {name!r} has no version in stage "
                           f"{parsed.stage}")
        version = found[0]
    else:  # latest: the highest version number, whatever its stage (MLflow's meaning)
        found = client.get_latest_versions(name)  # newest per stage; the newest of those is the newest
        if not found:
            raise NotFound(f"cannot load {parsed.uri!r}: registered model {name!r} has no versions")
        version = max(found, key=lambda v: v.version)
    return version


def _resolve_models(parsed: ModelUri, tracking_uri: Optional[str]) -> str:
    """The registry's copy of the model a ``models:/`` URI names (NotFound names what is missing)."""
    version = resolve_model_version(parsed, tracking_uri)
    if not version.storage_location:
        raise InvalidState(f"{parsed.uri!r} resolved to version {version.version} of {parsed.name!r}, which has "
                           "no stored copy")
    return version.storage_location


def download_model(uri: str, dst_path: Optional[str] = None, *, tracking_uri: Optional[str] = None) -> str:
    """A local directory holding the model named by ``uri``.

    Local paths are used in place unless ``dst_path`` is given; everything else is downloaded to
    ``dst_path`` (a new temporary directory when None).
    """
    parsed = parse_model_uri(uri)
    if parsed.kind == "models":
        return download_model(_resolve_models(parsed, tracking_uri), dst_path, tracking_uri=tracking_uri)
    if parsed.kind == "runs":
        from deltaflow.tracking.client import DeltaflowClient

        client = DeltaflowClient(tracking_uri)
        try:
            return client.download_artifacts(parsed.run_id, parsed.artifact_path or "", dst_path)
        except NotFound as exc:
            raise NotFound(f"no model at {uri!r}: {exc}") from exc
    if parsed.kind == "local":
        path = parsed.path
        if not os.path.exists(path):
            raise NotFound(f"model path {path!r} (from {uri!r}) does not exist")
        if dst_path is None:
            return path
        import shutil

        dst = os.path.join(os.path.abspath(dst_path), os.path.basename(path.rstrip(os.sep)) or "model")
        # Links are copied as links, so a link leading out of the model folder is still refused when loading.
        shutil.copytree(path, dst, dirs_exist_ok=True, symlinks=True)
        return dst
    import tempfile

    from deltaflow.artifacts import get_artifact_repository

    target = dst_path or tempfile.mkdtemp(prefix="deltaflow-model-")
    os.makedirs(target, exist_ok=True)
    return get_artifact_repository(parsed.path).download_artifacts("", target)
