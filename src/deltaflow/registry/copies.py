"""The registry's model copies: checking a source model, publishing its copy, and collecting what
crashes leave behind.

Registering copies the model to ``<artifact root>/_registry/<name>/<uuid>`` before the version's event
is committed. The copy is published whole (``ArtifactRepository.publish_dir``), so a registration
killed mid-copy leaves at most a hidden staging folder, and one killed between the copy and the
commit leaves a whole copy that no registry event references. :func:`gc_model_files` removes both
once they are older than a grace period (a registration still committing is never that old), and
also the hidden staging folders interrupted ``log_model`` calls left in runs' artifact folders.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from deltaflow.errors import InvalidArgument, NotFound

__all__ = ["ModelFilesReport", "DEFAULT_GRACE_S", "checked_source", "publish_copy", "gc_model_files"]

_log = logging.getLogger(__name__)
DEFAULT_GRACE_S = 24 * 3600.0  # far longer than any copy or registration commit takes
_REGISTRY_DIR = "_registry"


@contextlib.contextmanager
def checked_source(source: str, tracking_uri: Optional[str]) -> Iterator[tuple[str, Optional[str]]]:
    """``(local model folder, run id)`` for a model URI, after checking the model is whole.

    InvalidArgument when there is no MLmodel, InvalidState naming the missing files when the model
    is incomplete; either way nothing has been written."""
    from deltaflow.models._trust import open_model
    from deltaflow.models.uri import download_model, parse_model_uri

    parsed = parse_model_uri(source)
    with tempfile.TemporaryDirectory(prefix="deltaflow-register-") as tmp:
        local = download_model(source, tmp if parsed.kind != "local" else None, tracking_uri=tracking_uri)
        try:
            open_model(local)
        except NotFound:
            raise InvalidArgument(f"no model at {source!r}: the directory has no MLmodel file; register a "
                                  "directory written by log_model/save_model") from None
        yield local, parsed.run_id


def publish_copy(artifact_root: str, name: str, local: str) -> str:
    """Publish the registry's copy of the model folder ``local``; returns its storage location."""
    from deltaflow.artifacts import get_artifact_repository, join_uri

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    parent = join_uri(artifact_root, _REGISTRY_DIR, safe)
    copy_id = uuid.uuid4().hex
    get_artifact_repository(parent).publish_dir(local, copy_id)
    return join_uri(parent, copy_id)


@dataclass
class ModelFilesReport:
    registry_copies: list[str] = field(default_factory=list)  # whole copies no registry event references
    staging_paths: list[str] = field(default_factory=list)  # abandoned hidden staging folders and temp files


def _is_local(uri: str) -> bool:
    return not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", uri) or uri.lower().startswith("file:") \
        or bool(re.match(r"^[A-Za-z]:[\\/]", uri))


def _local(uri: str) -> str:
    from deltaflow.artifacts import _local_path

    return os.path.abspath(_local_path(uri))


def _age_s(path: str, now: float) -> float:
    try:
        return now - os.lstat(path).st_mtime
    except FileNotFoundError:
        return -1.0


def _staging_below(root: str, now: float, grace_s: float) -> list[str]:
    """Hidden staging folders and temp files below ``root`` older than the grace period (links not followed)."""
    from deltaflow.artifacts import _TMP_PREFIX

    found: list[str] = []
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(_TMP_PREFIX):
                if _age_s(entry.path, now) > grace_s:
                    found.append(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return sorted(found)


def _orphan_copies(registry_root: str, referenced: set[str], now: float, grace_s: float) -> list[str]:
    from deltaflow.artifacts import _TMP_PREFIX

    found = []
    with contextlib.suppress(FileNotFoundError):
        for model in os.scandir(registry_root):
            if not model.is_dir(follow_symlinks=False):
                continue
            for copy in os.scandir(model.path):
                if copy.name.startswith(_TMP_PREFIX) or not copy.is_dir(follow_symlinks=False):
                    continue
                if copy.name not in referenced and _age_s(copy.path, now) > grace_s:
                    found.append(copy.path)
    return sorted(found)


def _hadoop_orphan_copies(repo: Any, referenced: set[str], now: float, grace_s: float) -> list[str]:
    """Relative paths ``_registry/<name>/<copy>`` of unreferenced copies on a Hadoop URI. A copy's age is
    that of its newest file (object stores give folders no reliable time), or of the folder when empty."""
    from deltaflow.artifacts import _TMP_PREFIX

    def listing() -> list[str]:
        fs, root = repo._bind(), repo._path(_REGISTRY_DIR)
        if not fs.exists(root):
            return []
        found = []
        for model in fs.listStatus(root):
            if not model.isDirectory():
                continue
            for copy in fs.listStatus(model.getPath()):
                name = copy.getPath().getName()
                if not copy.isDirectory() or name.startswith(_TMP_PREFIX) or name in referenced:
                    continue
                newest = copy.getModificationTime()
                files = fs.listFiles(copy.getPath(), True)
                while files.hasNext():
                    newest = max(newest, files.next().getModificationTime())
                if now - newest / 1000 > grace_s:
                    found.append(f"{_REGISTRY_DIR}/{model.getPath().getName()}/{name}")
        return sorted(found)

    return repo._call(f"list {_REGISTRY_DIR!r}", listing)


def gc_model_files(store: Any, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False) -> ModelFilesReport:
    """Remove registry copies no registry event references and abandoned staging folders, each only
    when older than ``grace_s`` seconds. Staging folders exist only on local and FUSE (``/Volumes``,
    ``/dbfs``) paths; unreferenced registry copies are found there and on Hadoop URIs.

    The artifact roots searched are the store's and every experiment's artifact location. A copy is
    referenced when any registry event (the version's creation, even of a since-deleted version)
    names it as its storage location.
    """
    from deltaflow.registry.store import registry_store

    if not isinstance(grace_s, (int, float)) or isinstance(grace_s, bool) or grace_s < 0:
        raise InvalidArgument(f"grace_s {grace_s!r} must be a number of seconds >= 0")
    now = time.time()
    report = ModelFilesReport()
    location = store.location
    roots = {location.artifact_root}
    with contextlib.suppress(Exception):  # a store without experiments yet has no locations to add
        roots |= {r["artifact_location"] for r in store.engine.read("experiments").to_pylist()
                  if r.get("artifact_location")}
    searched: list[str] = []
    for root in sorted(roots):
        if not _is_local(root):
            _log.info("deltaflow gc: skipping staging folders under %s (not a local or FUSE path)", root)
            continue
        path = _local(root)
        if any(path == s or path.startswith(s.rstrip(os.sep) + os.sep) for s in searched):
            continue  # an experiment's folder below the store's root: searched already
        searched.append(path)
        report.staging_paths += _staging_below(path, now, grace_s)
    events = registry_store(store).events()
    referenced = {os.path.basename(str(e["details"]["storage_location"]).rstrip("/"))
                  for e in events if isinstance(e.get("details"), dict) and e["details"].get("storage_location")}
    hadoop = None
    if _is_local(location.artifact_root):
        report.registry_copies = _orphan_copies(os.path.join(_local(location.artifact_root), _REGISTRY_DIR),
                                                referenced, now, grace_s)
    else:
        from deltaflow.artifacts import get_artifact_repository, join_uri

        hadoop = get_artifact_repository(location.artifact_root)
        orphans = _hadoop_orphan_copies(hadoop, referenced, now, grace_s)
        report.registry_copies = [join_uri(location.artifact_root, rel) for rel in orphans]
    if not dry_run:
        for path in report.staging_paths:
            _remove_local(path)
        for path in report.registry_copies:
            if hadoop is None:
                _remove_local(path)
            else:
                hadoop.delete_artifacts(path[len(location.artifact_root.rstrip("/")) + 1:])
    return report


def _remove_local(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
