"""The Files API (``/api/2.0/fs/files…``, ``/api/2.0/fs/directories…``) and presigned URLs of
:class:`~deltaflow.testing.LocalDatabricks`, as databricks-sdk's ``w.files`` uses them.

Files: ``PUT`` (single shot; ``overwrite`` defaults to true), ``GET`` with byte ranges, ``HEAD``,
``DELETE``, and the multipart actions ``initiate-upload`` / ``complete-upload`` / ``abort-upload``
whose parts go to presigned URLs (served here under ``/_presigned/``, without credentials, as cloud
storage would). Directories: ``PUT`` creates with parents, ``GET`` lists a page, ``HEAD``, ``DELETE``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Union

from deltaflow.testing._dbx_storage import ApiError, RawResponse, invalid

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from deltaflow.testing.local_databricks import LocalDatabricks

__all__ = ["files_api", "presigned"]

_NO_CONTENT = RawResponse(b"", 204)


def _flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None or value == "":
        return default
    if value.lower() not in ("true", "false"):
        raise invalid(f"{name} must be true or false, got {value!r}.")
    return value.lower() == "true"


def _ranged(local: "Path", range_header: str | None, headers: dict[str, str]) -> RawResponse:
    data = local.read_bytes()
    if not range_header:
        return RawResponse(data, 200, headers)
    size = len(data)
    unit, _, spec = range_header.partition("=")
    first, _, last = spec.partition("-")
    try:
        if unit.strip() != "bytes" or "," in spec:
            raise ValueError(range_header)
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        raise ApiError(416, "INVALID_PARAMETER_VALUE", f"Unsupported Range header {range_header!r}.") from None
    if start >= size or start > end:
        raise ApiError(416, "INVALID_PARAMETER_VALUE", f"Range {range_header!r} is outside the file of {size} bytes.")
    part = data[start:end + 1]
    headers = {**headers, "Content-Length": str(len(part)), "Content-Range": f"bytes {start}-{end}/{size}"}
    return RawResponse(part, 206, headers)


def files_api(db: "LocalDatabricks", method: str, path: str, query: Mapping[str, str], raw: bytes,
              request_headers: Mapping[str, str]) -> Union[RawResponse, dict[str, Any]]:
    volumes = db.volumes
    if path.startswith("/api/2.0/fs/directories/"):
        target = path[len("/api/2.0/fs/directories"):]
        if method == "PUT":
            volumes.make_directory(target)
            return _NO_CONTENT
        if method == "GET":
            size = int(query.get("page_size") or 1000)
            return volumes.list_directory(target, max(1, min(size, 1000)), query.get("page_token"))
        if method == "HEAD":
            volumes.directory(target)
            return RawResponse(b"", 200)
        if method == "DELETE":
            volumes.delete_directory(target)
            return _NO_CONTENT
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
    target = path[len("/api/2.0/fs/files"):]
    action = query.get("action")
    if method == "PUT" and not action:
        volumes.write(target, raw, _flag(query, "overwrite", True))
        return _NO_CONTENT
    if method == "POST" and action == "initiate-upload":
        return {"multipart_upload": {"session_token": volumes.initiate_upload(target, _flag(query, "overwrite",
                                                                                              True))}}
    if method == "POST" and action == "complete-upload":
        body = json.loads(raw or b"{}")
        volumes.complete_upload(target, query.get("session_token", ""), body.get("parts"))
        return {}
    if method == "POST" and action == "abort-upload":
        volumes.abort_upload(target, query.get("session_token", ""))
        return {}
    if method in ("GET", "HEAD"):
        local = volumes.file(target)
        headers = volumes.headers_for(local)
        if method == "HEAD":
            return RawResponse(b"", 200, headers)
        return _ranged(local, request_headers.get("Range"), headers)
    if method == "DELETE":
        volumes.delete_file(target)
        return _NO_CONTENT
    raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'"
                                              + (f" with action={action}" if action else ""))


def presigned(db: "LocalDatabricks", method: str, secret: str, raw: bytes,
              request_headers: Mapping[str, str]) -> RawResponse:
    purpose, path = db.volumes.presigned(secret)
    if purpose == "download" and method == "GET":
        local = db.volumes.file(path)
        return _ranged(local, request_headers.get("Range"), db.volumes.headers_for(local))
    if purpose.startswith("upload:") and method == "PUT":
        return RawResponse(b"", 200, {"ETag": db.volumes.put_part(purpose, raw)})
    raise ApiError(403, "PERMISSION_DENIED", "The presigned URL does not allow this request.")
