"""The storage side of :class:`~deltaflow.testing.LocalDatabricks`: the workspace tree (notebooks, files,
folders), DBFS and Unity Catalog Volumes, kept as real files under one local folder.

Each API family keeps Databricks' documented request and response shapes and error codes: the Workspace
API answers ``RESOURCE_DOES_NOT_EXIST`` / ``RESOURCE_ALREADY_EXISTS``, DBFS streams through
``create`` / ``add-block`` / ``close`` handles with 1 MB blocks, and the Files API (``/api/2.0/fs/…``)
serves raw bytes with ranges, single-shot and multipart uploads and presigned URLs. Only the standard
library is used, so the emulator runs wherever deltaflow's tests run.
"""

from __future__ import annotations

import base64
import os
import posixpath
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, Optional

__all__ = ["ApiError", "RawResponse", "WorkspaceStore", "DbfsStore", "VolumeStore", "WorkspaceObject"]

# DBFS refuses blocks and single puts above 1 MB (MAX_BLOCK_SIZE_EXCEEDED) and reads above 1 MB.
DBFS_MAX_BLOCK = 1024 * 1024
NOTEBOOK_HEADERS = {"PYTHON": "# Databricks notebook source", "SQL": "-- Databricks notebook source",
                    "SCALA": "// Databricks notebook source", "R": "# Databricks notebook source"}
_EXTENSIONS = {".py": "PYTHON", ".sql": "SQL", ".scala": "SCALA", ".r": "R"}


class ApiError(Exception):
    """An error answer of the REST API: HTTP status, Databricks ``error_code`` and message."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


class RawResponse:
    """A non-JSON answer: raw bytes with a status and headers."""

    def __init__(self, data: bytes, status: int = 200, headers: Optional[dict[str, str]] = None) -> None:
        self.data, self.status, self.headers = data, status, dict(headers or {})


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _clean_abs(path: Any, what: str = "path") -> str:
    """A normalised absolute POSIX path; anything that climbs out of the root is refused."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise invalid(f"Path ({path!r}) must be absolute: {what} starts with '/'.")
    if any(part == ".." for part in path.split("/")):
        raise invalid(f"Path ({path}) may not contain '..' segments.")
    normal = posixpath.normpath(path)
    return "/" if normal == "/" else normal.rstrip("/")


@dataclass
class WorkspaceObject:
    path: str
    object_type: str  # DIRECTORY | NOTEBOOK | FILE
    object_id: int
    language: Optional[str] = None
    created_at: int = field(default_factory=_now_ms)
    modified_at: int = field(default_factory=_now_ms)

    def status(self, size: Optional[int]) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path, "object_type": self.object_type, "object_id": self.object_id,
                                "created_at": self.created_at, "modified_at": self.modified_at,
                                "resource_id": str(self.object_id)}
        if self.language:
            body["language"] = self.language
        if self.object_type == "FILE" and size is not None:
            body["size"] = size
        return body


class WorkspaceStore:
    """The workspace tree (``/Users/...``, ``/Shared/...``); ``/Workspace/...`` names the same objects."""

    def __init__(self, root: Path, home: str) -> None:
        self.root = root
        self._lock = threading.RLock()
        self._objects: dict[str, WorkspaceObject] = {}
        self._ids = iter(range(1_000_000_000_001, 10**15))
        for folder in ("/", "/Users", "/Shared", home):
            self._put(folder, "DIRECTORY")

    @staticmethod
    def normalise(path: Any) -> str:
        clean = _clean_abs(path)
        if clean == "/Workspace" or clean.startswith("/Workspace/"):
            clean = clean[len("/Workspace"):] or "/"
        return clean

    def local_path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _put(self, path: str, object_type: str, language: Optional[str] = None) -> WorkspaceObject:
        old = self._objects.get(path)
        obj = WorkspaceObject(path, object_type, old.object_id if old else next(self._ids), language,
                              created_at=old.created_at if old else _now_ms())
        self._objects[path] = obj
        if object_type == "DIRECTORY":
            self.local_path(path).mkdir(parents=True, exist_ok=True)
        return obj

    def get(self, path: Any) -> WorkspaceObject:
        clean = self.normalise(path)
        with self._lock:
            obj = self._objects.get(clean)
        if obj is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
        return obj

    def get_status(self, path: Any) -> dict[str, Any]:
        obj = self.get(path)
        size = self.local_path(obj.path).stat().st_size if obj.object_type == "FILE" else None
        return obj.status(size)

    def mkdirs(self, path: Any) -> None:
        clean = self.normalise(path)
        with self._lock:
            parts = [p for p in clean.split("/") if p]
            current = ""
            for part in parts:
                current = f"{current}/{part}"
                existing = self._objects.get(current)
                if existing is not None and existing.object_type != "DIRECTORY":
                    raise ApiError(400, "RESOURCE_ALREADY_EXISTS",
                                   f"Cannot create directory {clean}: {current} exists and is a "
                                   f"{existing.object_type.lower()}.")
                if existing is None:
                    self._put(current, "DIRECTORY")

    def import_(self, path: Any, content: bytes, fmt: Optional[str], language: Optional[str],
                overwrite: bool) -> None:
        """Stores a notebook or file as the Workspace API's ``import`` does (default format ``SOURCE``)."""
        clean = self.normalise(path)
        fmt = (fmt or "SOURCE").upper()
        language = language.upper() if isinstance(language, str) else None
        if fmt not in ("SOURCE", "AUTO", "RAW", "JUPYTER", "DBC", "HTML", "R_MARKDOWN"):
            raise invalid(f"Invalid format {fmt!r}: one of SOURCE, AUTO, RAW, JUPYTER, DBC, HTML, R_MARKDOWN.")
        if fmt in ("JUPYTER", "DBC", "HTML", "R_MARKDOWN"):
            raise ApiError(501, "NOT_IMPLEMENTED", f"LocalDatabricks imports SOURCE, AUTO and RAW, not {fmt}.")
        object_type, target = "FILE", clean
        if fmt == "SOURCE":
            if language not in NOTEBOOK_HEADERS:
                raise invalid("The language field is required and must be one of PYTHON, SQL, SCALA, R "
                              f"when format is SOURCE (got {language!r}).")
            object_type = "NOTEBOOK"
        elif fmt == "AUTO":
            stem, ext = posixpath.splitext(clean)
            detected = _EXTENSIONS.get(ext.lower())
            header = NOTEBOOK_HEADERS.get(detected or "", "\0")
            if detected and content.lstrip().startswith(header.encode()):
                object_type, language, target = "NOTEBOOK", detected, stem
            else:
                language = None
        else:
            language = None
        if object_type == "NOTEBOOK":
            header = NOTEBOOK_HEADERS[language or "PYTHON"]
            if not content.lstrip().startswith(header.encode()):
                content = header.encode() + b"\n" + content
        with self._lock:
            parent = posixpath.dirname(target)
            parent_obj = self._objects.get(parent)
            if parent_obj is None or parent_obj.object_type != "DIRECTORY":
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"The parent folder ({parent}) does not exist.")
            existing = self._objects.get(target)
            if existing is not None and (not overwrite or existing.object_type == "DIRECTORY"):
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"Path ({target}) already exists.")
            local = self.local_path(target)
            tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}")
            tmp.write_bytes(content)
            os.replace(tmp, local)
            self._put(target, object_type, language)

    def export(self, path: Any) -> tuple[WorkspaceObject, bytes]:
        obj = self.get(path)
        if obj.object_type == "DIRECTORY":
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Path ({obj.path}) is a directory; export a file "
                                                         "or notebook.")
        return obj, self.local_path(obj.path).read_bytes()

    def list(self, path: Any) -> list[dict[str, Any]]:
        obj = self.get(path)
        if obj.object_type != "DIRECTORY":
            return [self.get_status(obj.path)]
        prefix = obj.path.rstrip("/") + "/"
        with self._lock:
            children = [p for p in self._objects if p.startswith(prefix) and "/" not in p[len(prefix):] and p != "/"]
        return [self.get_status(child) for child in sorted(children)]

    def delete(self, path: Any, recursive: bool) -> None:
        obj = self.get(path)
        prefix = obj.path.rstrip("/") + "/"
        with self._lock:
            inside = [p for p in self._objects if p.startswith(prefix)]
            if inside and not recursive:
                raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"Folder ({obj.path}) is not empty.")
            for victim in inside + [obj.path]:
                self._objects.pop(victim, None)
        local = self.local_path(obj.path)
        if local.is_dir():
            shutil.rmtree(local, ignore_errors=True)
        else:
            local.unlink(missing_ok=True)


class DbfsStore:
    """DBFS: ``dbfs:/x`` and ``/x`` name the same file; writes stream through handles."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._handles: dict[int, tuple[Path, Path]] = {}
        self._next_handle = iter(range(1, 10**12))

    @staticmethod
    def normalise(path: Any) -> str:
        if isinstance(path, str) and path.startswith("dbfs:"):
            path = path[len("dbfs:"):]
        return _clean_abs(path)

    def local_path(self, path: Any) -> Path:
        return self.root / self.normalise(path).lstrip("/")

    def _missing(self, path: Any) -> ApiError:
        return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {path}.")

    def info(self, path: Any) -> dict[str, Any]:
        local = self.local_path(path)
        if not local.exists():
            raise self._missing(path)
        stat = local.stat()
        return {"path": self.normalise(path), "is_dir": local.is_dir(),
                "file_size": 0 if local.is_dir() else stat.st_size, "modification_time": int(stat.st_mtime * 1000)}

    def list(self, path: Any) -> list[dict[str, Any]]:
        local = self.local_path(path)
        if not local.exists():
            raise self._missing(path)
        if local.is_file():
            return [self.info(path)]
        base = self.normalise(path).rstrip("/")
        return [self.info(f"{base}/{child.name}") for child in sorted(local.iterdir())
                if not child.name.startswith(".dbfs-upload-")]

    def mkdirs(self, path: Any) -> None:
        local = self.local_path(path)
        if local.is_file():
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at the input path "
                                                        f"{path}.")
        local.mkdir(parents=True, exist_ok=True)

    def _check_target(self, path: Any, overwrite: bool) -> Path:
        local = self.local_path(path)
        if local.is_dir():
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A directory already exists at the input path {path}.")
        if local.exists() and not overwrite:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at the input path "
                                                        f"{path}.")
        return local

    def create(self, path: Any, overwrite: bool) -> int:
        target = self._check_target(path, overwrite)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            handle = next(self._next_handle)
            staging = target.parent / f".dbfs-upload-{handle}-{target.name}"
            staging.write_bytes(b"")
            self._handles[handle] = (staging, target)
        return handle

    def add_block(self, handle: Any, data_b64: Any) -> None:
        staging, _ = self._handle(handle)
        data = _b64(data_b64, "data")
        if len(data) > DBFS_MAX_BLOCK:
            raise ApiError(400, "MAX_BLOCK_SIZE_EXCEEDED",
                           f"The block of {len(data)} bytes exceeds the maximum of {DBFS_MAX_BLOCK} bytes.")
        with staging.open("ab") as out:
            out.write(data)

    def close(self, handle: Any) -> None:
        staging, target = self._handle(handle)
        with self._lock:
            self._handles.pop(int(handle), None)
        os.replace(staging, target)

    def _handle(self, handle: Any) -> tuple[Path, Path]:
        with self._lock:
            found = self._handles.get(int(handle)) if isinstance(handle, int) or str(handle).isdigit() else None
        if found is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"The handle {handle} does not exist.")
        return found

    def put(self, path: Any, contents_b64: Any, overwrite: bool) -> None:
        data = _b64(contents_b64 or "", "contents")
        if len(data) > DBFS_MAX_BLOCK:
            raise ApiError(400, "MAX_BLOCK_SIZE_EXCEEDED", "The contents of a put are limited to 1 MB; stream "
                                                          "larger files with create, add-block and close.")
        target = self._check_target(path, overwrite)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def read(self, path: Any, offset: int, length: int) -> dict[str, Any]:
        local = self.local_path(path)
        if not local.is_file():
            raise self._missing(path) if not local.exists() else invalid(f"{path} is a directory.")
        if length > DBFS_MAX_BLOCK:
            raise ApiError(400, "MAX_READ_SIZE_EXCEEDED", f"Cannot read more than {DBFS_MAX_BLOCK} bytes at once.")
        with local.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read(length)
        return {"bytes_read": len(chunk), "data": base64.b64encode(chunk).decode()}

    def delete(self, path: Any, recursive: bool) -> None:
        local = self.local_path(path)
        if not local.exists():
            return  # DBFS delete of a missing path succeeds
        if local.is_dir():
            if any(local.iterdir()) and not recursive:
                raise ApiError(400, "IO_ERROR", f"Directory {path} is not empty; pass recursive=true.")
            shutil.rmtree(local)
        else:
            local.unlink()

    def move(self, source: Any, destination: Any) -> None:
        src, dst = self.local_path(source), self.local_path(destination)
        if not src.exists():
            raise self._missing(source)
        if dst.exists():
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at {destination}.")
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def _b64(value: Any, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as exc:
        raise invalid(f"{name} must be base64-encoded: {exc}") from exc


class VolumeStore:
    """Unity Catalog Volumes under ``/Volumes/<catalog>/<schema>/<volume>/``, as the Files API sees them."""

    def __init__(self, root: Path, volumes: tuple[str, ...]) -> None:
        self.root = root
        self.volumes = {tuple(v.split(".")) for v in volumes}
        for catalog, schema, volume in self.volumes:
            (root / catalog / schema / volume).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._uploads: dict[str, dict[str, Any]] = {}
        self._presigned: dict[str, tuple[str, str, float]] = {}

    def local_path(self, path: Any) -> Path:
        clean = _clean_abs(path)
        parts = clean.split("/")[1:]
        if len(parts) < 4 or parts[0] != "Volumes":
            raise invalid(f"Path ({path}) is not a Unity Catalog Volume path: expected "
                          "/Volumes/<catalog>/<schema>/<volume>/<path>.")
        if tuple(parts[1:4]) not in self.volumes:
            raise ApiError(404, "NOT_FOUND", f"Volume '{'.'.join(parts[1:4])}' does not exist.")
        return self.root.joinpath(*parts[1:])

    @staticmethod
    def headers_for(local: Path) -> dict[str, str]:
        stat = local.stat()
        return {"Content-Length": str(stat.st_size), "Content-Type": "application/octet-stream",
                "Last-Modified": formatdate(stat.st_mtime, usegmt=True)}

    def file(self, path: Any) -> Path:
        local = self.local_path(path)
        if not local.is_file():
            raise ApiError(404, "NOT_FOUND", f"The file being accessed is not found: {path}.")
        return local

    def write(self, path: Any, data: bytes, overwrite: bool) -> None:
        local = self.local_path(path)
        if local.is_dir():
            raise ApiError(409, "ALREADY_EXISTS", f"A directory already exists at {path}.")
        if local.exists() and not overwrite:
            raise ApiError(409, "ALREADY_EXISTS", f"The file being created already exists: {path}.")
        local.parent.mkdir(parents=True, exist_ok=True)  # the Files API creates missing parent directories
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}")
        tmp.write_bytes(data)
        os.replace(tmp, local)

    def delete_file(self, path: Any) -> None:
        self.file(path).unlink()

    def directory(self, path: Any) -> Path:
        local = self.local_path(path) if _clean_abs(path).count("/") > 3 else self._volume_root(path)
        if not local.is_dir():
            raise ApiError(404, "NOT_FOUND", f"The directory being accessed is not found: {path}.")
        return local

    def _volume_root(self, path: Any) -> Path:
        parts = _clean_abs(path).split("/")[1:]
        if len(parts) != 4 or tuple(parts[1:4]) not in self.volumes:
            raise ApiError(404, "NOT_FOUND", f"The directory being accessed is not found: {path}.")
        return self.root.joinpath(*parts[1:])

    def make_directory(self, path: Any) -> None:
        local = self.local_path(path)
        if local.is_file():
            raise ApiError(409, "ALREADY_EXISTS", f"A file already exists at {path}.")
        local.mkdir(parents=True, exist_ok=True)

    def list_directory(self, path: Any, page_size: int, page_token: Optional[str]) -> dict[str, Any]:
        local = self.directory(path)
        base = _clean_abs(path).rstrip("/")
        entries = sorted(child for child in local.iterdir() if not child.name.startswith("."))
        start = int(page_token) if page_token and page_token.isdigit() else 0
        page = entries[start:start + page_size]
        contents = []
        for child in page:
            stat = child.stat()
            item: dict[str, Any] = {"path": f"{base}/{child.name}", "name": child.name,
                                    "is_directory": child.is_dir(), "last_modified": int(stat.st_mtime * 1000)}
            if child.is_file():
                item["file_size"] = stat.st_size
            contents.append(item)
        body: dict[str, Any] = {"contents": contents}
        if start + page_size < len(entries):
            body["next_page_token"] = str(start + page_size)
        return body

    def delete_directory(self, path: Any) -> None:
        local = self.directory(path)
        if any(local.iterdir()):
            raise ApiError(409, "DIRECTORY_NOT_EMPTY", f"The directory being deleted is not empty: {path}.")
        local.rmdir()

    # -- multipart uploads and presigned URLs (the SDK's default path for large files) -------------
    def initiate_upload(self, path: Any, overwrite: bool) -> str:
        local = self.local_path(path)
        if local.exists() and not overwrite:
            raise ApiError(409, "ALREADY_EXISTS", f"The file being created already exists: {path}.")
        token = uuid.uuid4().hex
        with self._lock:
            self._uploads[token] = {"path": _clean_abs(path), "parts": {}, "overwrite": overwrite}
        return token

    def part_urls(self, base_url: str, path: Any, token: str, start: int, count: int) -> list[dict[str, Any]]:
        upload = self._upload(token, path)
        urls = []
        for number in range(start, start + count):
            secret = self._presign(f"upload:{token}:{number}", upload["path"])
            urls.append({"part_number": number, "url": f"{base_url}/_presigned/{secret}",
                         "headers": [{"name": "Content-Type", "value": "application/octet-stream"}]})
        return urls

    def download_url(self, base_url: str, path: Any) -> str:
        self.file(path)
        return f"{base_url}/_presigned/{self._presign('download', _clean_abs(path))}"

    def _presign(self, purpose: str, path: str) -> str:
        secret = uuid.uuid4().hex
        with self._lock:
            self._presigned[secret] = (purpose, path, time.time() + 3600)
        return secret

    def presigned(self, secret: str) -> tuple[str, str]:
        with self._lock:
            found = self._presigned.get(secret)
        if found is None or found[2] < time.time():
            raise ApiError(403, "PERMISSION_DENIED", "Request has expired or the signature does not match.")
        return found[0], found[1]

    def put_part(self, purpose: str, data: bytes) -> str:
        _, token, number = purpose.split(":")
        etag = uuid.uuid5(uuid.NAMESPACE_OID, f"{token}:{number}:{len(data)}:{hash(data)}").hex
        with self._lock:
            upload = self._uploads.get(token)
            if upload is None:
                raise ApiError(404, "NOT_FOUND", "The upload session does not exist or was aborted.")
            upload["parts"][int(number)] = (etag, data)
        return etag

    def complete_upload(self, path: Any, token: str, parts: Any) -> None:
        upload = self._upload(token, path)
        if not isinstance(parts, list) or not parts:
            raise invalid("parts must list every uploaded part as {part_number, etag}.")
        chunks = []
        for part in sorted(parts, key=lambda p: int(p.get("part_number", 0))):
            stored = upload["parts"].get(int(part.get("part_number", 0)))
            if stored is None or stored[0] != part.get("etag"):
                raise invalid(f"Part {part.get('part_number')} was not uploaded with etag {part.get('etag')!r}.")
            chunks.append(stored[1])
        self.write(upload["path"], b"".join(chunks), upload["overwrite"])
        with self._lock:
            self._uploads.pop(token, None)

    def abort_upload(self, path: Any, token: str) -> None:
        self._upload(token, path)
        with self._lock:
            self._uploads.pop(token, None)

    def _upload(self, token: str, path: Any) -> dict[str, Any]:
        with self._lock:
            upload = self._uploads.get(token)
        if upload is None or upload["path"] != _clean_abs(path):
            raise ApiError(404, "NOT_FOUND", f"No multipart upload session {token!r} for {path}.")
        return upload
