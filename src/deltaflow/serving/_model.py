"""The driver's half of model shipping: resolve a model URI once, through the store's own engine, into
a local copy, its MLmodel, its lineage (which registered model, version, alias or stage, run) and a
content-addressed payload (a tar of the folder) for the executors.

The payload's key is a SHA-256 of the folder's files, so every Python worker that has already
loaded a model with that key reuses it, and every executor extracts it once.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from deltaflow.errors import InvalidArgument

__all__ = ["Lineage", "ResolvedModel", "resolve", "folder_digest"]


@dataclass(frozen=True)
class Lineage:
    """Which model scored: the URI as given and what it resolved to."""

    model_uri: str
    model_name: Optional[str] = None
    model_version: Optional[int] = None
    model_alias: Optional[str] = None
    model_stage: Optional[str] = None
    model_run_id: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ResolvedModel:
    """A model resolved on the driver: its local folder (owned by this object when ``owned``)."""

    uri: str
    local_dir: str
    meta: Any  # deltaflow.models.model.Model
    lineage: Lineage
    owned: bool = False
    _payload: Optional[tuple[str, bytes]] = field(default=None, repr=False)

    @property
    def flavors(self) -> dict[str, Any]:
        return self.meta.flavors

    @property
    def is_spark_model(self) -> bool:
        return "spark" in self.meta.flavors

    def payload(self) -> tuple[str, bytes]:
        """(key, bytes): the folder as a tar and its content digest, made once."""
        if self._payload is None:
            key = folder_digest(self.local_dir)
            buffer = io.BytesIO()
            # Level 1: pickled models shrink well already; a higher level costs seconds on big models.
            with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
                tar.add(self.local_dir, arcname="model")
            self._payload = (key, buffer.getvalue())
        return self._payload

    def cleanup(self) -> None:
        if self.owned:
            shutil.rmtree(self.local_dir, ignore_errors=True)


def folder_digest(path: str) -> str:
    """SHA-256 over every file's relative path and bytes, in a fixed order."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0")
    return digest.hexdigest()[:32]


def resolve(model_uri: str, tracking_uri: Optional[str] = None) -> ResolvedModel:
    """Resolve ``model_uri`` (``runs:/``, ``models:/name/1``, ``/Production``, ``/latest``, ``@alias``,
    a path or a storage URI) once, and fetch the model into a new temporary folder."""
    from deltaflow.models._trust import open_model
    from deltaflow.models.uri import download_model, parse_model_uri, resolve_model_version

    parsed = parse_model_uri(model_uri)
    target = tempfile.mkdtemp(prefix="deltaflow-scoring-")
    try:
        if parsed.kind == "models":
            version = resolve_model_version(parsed, tracking_uri)
            if not version.storage_location:
                raise InvalidArgument(f"{model_uri!r} resolved to version {version.version} of {version.name!r}, "
                                      "which has no stored copy")
            local = download_model(version.storage_location, target, tracking_uri=tracking_uri)
            lineage = Lineage(model_uri, version.name, int(version.version), parsed.alias, parsed.stage,
                              version.run_id)
        else:
            local = download_model(model_uri, target, tracking_uri=tracking_uri)
            lineage = None
        meta = open_model(local)  # MLmodel read and every file it names checked
        if lineage is None:
            lineage = Lineage(model_uri, model_run_id=parsed.run_id or meta.run_id)
        if "python_function" not in meta.flavors and "spark" not in meta.flavors:
            raise InvalidArgument(f"the model at {model_uri!r} has no python_function flavor (it has "
                                  f"{sorted(meta.flavors)}), so it cannot score a DataFrame")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return ResolvedModel(model_uri, local, meta, lineage, owned=True)
