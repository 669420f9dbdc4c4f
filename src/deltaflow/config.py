"""Where the store lives and who the user is, resolved in one place.

Order of precedence for every setting: an explicit argument, then ``set_tracking_uri()``, then the
environment variable, then the default. Nothing here touches Spark or the filesystem beyond
``os.path.abspath``, so resolving the configuration is free.

Tracking URI forms
------------------
* a folder: ``./deltaflow-store``, ``/abs/path``, ``file:///abs/path``, ``dbfs:/ml/store``,
  ``/Volumes/cat/schema/vol/store``, ``s3a://bucket/store``, ``abfss://c@acct.dfs.core.windows.net/x``
  -> path-based Delta tables under ``<root>/tables/<table>`` and artifacts under ``<root>/artifacts``;
* a metastore schema: ``metastore:catalog.schema`` (Unity Catalog) or ``metastore:database`` (Hive)
  -> managed tables ``<schema>.<table>``, artifacts under ``artifact_root`` (argument or
  ``DELTAFLOW_ARTIFACT_ROOT``; on Unity Catalog the default is a Volume beside the schema).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Optional

from deltaflow.errors import InvalidArgument

__all__ = [
    "StoreLocation",
    "DEFAULT_TRACKING_URI",
    "TRACKING_URI_ENV",
    "ARTIFACT_ROOT_ENV",
    "set_tracking_uri",
    "get_tracking_uri",
    "resolve_location",
    "Settings",
    "settings",
]

DEFAULT_TRACKING_URI = "./deltaflow-store"
TRACKING_URI_ENV = "DELTAFLOW_TRACKING_URI"
ARTIFACT_ROOT_ENV = "DELTAFLOW_ARTIFACT_ROOT"
METASTORE_SCHEME = "metastore:"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# Backticked identifiers may hold anything but a backtick; we never splice user text into SQL
# anyway, but the schema name does become a table identifier, so it is validated strictly.
_SCHEMA_RE = re.compile(rf"^(?:{_IDENT}|`[^`]+`)(?:\.(?:{_IDENT}|`[^`]+`))?$")
_HADOOP_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

_lock = threading.Lock()
_explicit_uri: Optional[str] = None
_explicit_artifact_root: Optional[str] = None


@dataclass(frozen=True)
class StoreLocation:
    """A resolved tracking URI."""

    uri: str
    kind: str  # "path" or "metastore"
    root: Optional[str]  # folder root (kind == "path")
    schema: Optional[str]  # metastore schema (kind == "metastore")
    artifact_root: str

    def table_path(self, table: str) -> str:
        if self.root is None:
            raise InvalidArgument(f"store {self.uri!r} holds metastore tables, not paths")
        return _join(self.root, "tables", table)

    def table_name(self, table: str) -> str:
        if self.schema is None:
            raise InvalidArgument(f"store {self.uri!r} holds path-based tables, not metastore tables")
        return f"{self.schema}.{table}"

    @property
    def is_local(self) -> bool:
        return self.kind == "path" and self.root is not None and _is_local_path(self.root)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _is_local_path(uri: str) -> bool:
    return uri.startswith("/") or uri.startswith("file:") or not _HADOOP_SCHEME_RE.match(uri)


def _normalise_folder(uri: str) -> str:
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif uri.startswith("file:"):
        uri = uri[len("file:"):]
    if _HADOOP_SCHEME_RE.match(uri) and not re.match(r"^[A-Za-z]:[\\/]", uri):
        return uri.rstrip("/")  # dbfs:/, s3a://, abfss://... kept as Hadoop URIs
    return os.path.abspath(os.path.expanduser(uri))


def resolve_location(uri: Optional[str] = None, artifact_root: Optional[str] = None) -> StoreLocation:
    """Turn a tracking URI (or the configured one) into a :class:`StoreLocation`."""
    raw = uri or get_tracking_uri()
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidArgument(f"tracking URI {raw!r} is empty; give a folder or metastore:<schema>")
    raw = raw.strip()
    art = artifact_root or _explicit_artifact_root or os.environ.get(ARTIFACT_ROOT_ENV)
    if raw.startswith(METASTORE_SCHEME):
        schema = raw[len(METASTORE_SCHEME):].strip()
        if not _SCHEMA_RE.match(schema):
            raise InvalidArgument(
                f"metastore schema {schema!r} in tracking URI {raw!r} is not valid; use "
                "metastore:<catalog>.<schema> (Unity Catalog) or metastore:<database> (Hive), "
                "each part letters, digits and underscores"
            )
        if art is None:
            parts = schema.replace("`", "").split(".")
            if len(parts) == 2:
                art = f"/Volumes/{parts[0]}/{parts[1]}/deltaflow_artifacts"
            else:
                warehouse = os.environ.get("DELTAFLOW_WAREHOUSE_DIR", "spark-warehouse")
                art = os.path.join(os.path.abspath(warehouse), f"{parts[0]}.db", "_deltaflow_artifacts")
        return StoreLocation(uri=raw, kind="metastore", root=None, schema=schema,
                             artifact_root=_normalise_folder(art))
    root = _normalise_folder(raw)
    return StoreLocation(uri=root, kind="path", root=root, schema=None,
                         artifact_root=_normalise_folder(art) if art else _join(root, "artifacts"))


def set_tracking_uri(uri: "str | os.PathLike[str] | None", artifact_root: Optional[str] = None) -> None:
    """Set the store for this process (MLflow's ``set_tracking_uri``); ``None`` restores the default."""
    global _explicit_uri, _explicit_artifact_root
    if uri is not None:
        uri = os.fspath(uri)
        resolve_location(uri, artifact_root)  # validate before remembering anything
    with _lock:
        _explicit_uri = uri
        _explicit_artifact_root = artifact_root


def get_tracking_uri() -> str:
    if _explicit_uri is not None:
        return _explicit_uri
    return os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


class Settings:
    """Tunables of the write path, each with its environment variable (read on every access)."""

    _SPEC = {
        # name: (env var, default, type)
        "flush_interval_s": ("DELTAFLOW_FLUSH_INTERVAL_S", 5.0, float),
        "flush_rows": ("DELTAFLOW_FLUSH_ROWS", 200_000, int),
        "max_buffered_rows": ("DELTAFLOW_MAX_BUFFERED_ROWS", 2_000_000, int),
        "commit_retries": ("DELTAFLOW_COMMIT_RETRIES", 20, int),
        "exit_flush_timeout_s": ("DELTAFLOW_EXIT_FLUSH_TIMEOUT_S", 120.0, float),
        "engine": ("DELTAFLOW_ENGINE", "auto", str),
        # The rust engine compacts a table once this many files are live (Spark's autoCompact
        # minNumFiles default); Spark stores use Delta's own auto-compaction.
        "compact_min_files": ("DELTAFLOW_COMPACT_MIN_FILES", 50, int),
        # The longest a search_runs call may take, in seconds; 0 means no limit.
        "search_timeout_s": ("DELTAFLOW_SEARCH_TIMEOUT_S", 300.0, float),
    }

    def __getattr__(self, name: str):  # noqa: ANN204 - typed by _SPEC
        try:
            env, default, typ = self._SPEC[name]
        except KeyError:
            raise AttributeError(name) from None
        raw = os.environ.get(env)
        if raw is None or raw == "":
            return default
        try:
            return typ(raw)
        except ValueError:
            raise InvalidArgument(f"environment variable {env}={raw!r} is not a valid {typ.__name__}") from None


settings = Settings()
