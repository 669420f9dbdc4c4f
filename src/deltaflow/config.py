"""Where the store lives and who the user is, resolved in one place.

Order of precedence for every setting: an explicit argument, then ``set_tracking_uri()``, then the
environment variable, then the default. The acting user of the model registry (:func:`acting_user`)
is the exception: on Databricks it is the platform's identity and no setting overrides it. Nothing
here touches Spark or the filesystem beyond ``os.path.abspath``, so resolving the configuration is
free.

Tracking URI forms
------------------
* a folder: ``./deltaflow-store``, ``/abs/path``, ``file:///abs/path``, ``dbfs:/ml/store``,
  ``/Volumes/cat/schema/vol/store``, ``s3a://bucket/store``, ``abfss://c@acct.dfs.core.windows.net/x``
  -> path-based Delta tables under ``<root>/tables/<table>`` and artifacts under ``<root>/artifacts``;
* a metastore schema: ``metastore:catalog.schema`` (Unity Catalog) or ``metastore:database`` (Hive)
  -> managed tables ``<schema>.<table>``, artifacts under ``artifact_root`` (argument or
  ``DELTAFLOW_ARTIFACT_ROOT``; on Unity Catalog the default is a Volume beside the schema).

Any other form (``databricks``, ``http://`` tracking servers, ``sqlite:///`` and other database
URIs, unknown schemes) is refused by :func:`resolve_location` with one error listing these forms.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Optional

from deltaflow.errors import InvalidArgument, PermissionDenied

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
    "acting_user",
    "clear_identity_cache",
    "RESERVED_PRINCIPALS",
    "USER_ENV",
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


# Filesystems a folder store may live on: what delta-rs reaches (s3, gs, az, abfss ...) and the
# Hadoop filesystems the spark engine reaches (dbfs, hdfs, wasbs ...). Any other scheme is refused.
FOLDER_SCHEMES = frozenset({
    "file", "dbfs", "s3", "s3a", "s3n", "gs", "gcs", "az", "azure", "abfs", "abfss", "adl", "wasb", "wasbs",
    "hdfs", "viewfs", "webhdfs", "swebhdfs", "oss", "cosn", "memory",
})
SUPPORTED_FORMS = (
    "a folder (./store, /abs/path, file:///abs/path, ~/store), a UC Volume folder "
    "(/Volumes/<catalog>/<schema>/<volume>/store), a folder on DBFS (dbfs:/ml/store), an object store or "
    "Hadoop folder (s3://, s3a://, gs://, az://, abfss://, wasbs://, hdfs:// ...), or a metastore schema "
    "(metastore:<catalog>.<schema> for Unity Catalog, metastore:<database> for Hive)"
)
_DATABRICKS_RE = re.compile(r"^(?:databricks(?:-uc)?|uc)(?::|$)", re.IGNORECASE)
_SERVER_SCHEMES = frozenset({"http", "https"})
_DATABASE_SCHEMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mssql", "oracle"})


def _check_form(raw: str) -> None:
    """Refuse a tracking URI deltaflow cannot store to, before anything touches an engine."""
    if _DATABRICKS_RE.match(raw):
        raise InvalidArgument(
            f"tracking URI {raw!r} names MLflow's Databricks tracking server; deltaflow is not a client of "
            "an MLflow tracking server, it stores runs in Delta tables you choose. On Databricks use a Unity "
            "Catalog schema (metastore:<catalog>.<schema>), a folder on a Volume "
            "(/Volumes/<catalog>/<schema>/<volume>/store) or on DBFS (dbfs:/ml/store); for a local folder "
            f"named {raw!r} write ./{raw}. Supported forms: {SUPPORTED_FORMS}")
    match = _HADOOP_SCHEME_RE.match(raw)
    if match is None or re.match(r"^[A-Za-z]:[\\/]", raw):  # a plain or Windows path
        return
    scheme = match.group(0)[:-1].lower()
    if scheme in FOLDER_SCHEMES:
        return
    base = scheme.split("+", 1)[0]
    if base in _SERVER_SCHEMES:
        what = "an MLflow tracking server address; deltaflow does not talk to a tracking server, it stores runs in Delta tables"
    elif base in _DATABASE_SCHEMES:
        what = "an MLflow database store; deltaflow stores runs in Delta tables, not in a SQL database"
    else:
        what = f"a URI with the scheme {scheme + ':'!r}, which is not a filesystem deltaflow stores to"
    raise InvalidArgument(f"tracking URI {raw!r} is {what}. Supported forms: {SUPPORTED_FORMS}")


def resolve_location(uri: Optional[str] = None, artifact_root: Optional[str] = None) -> StoreLocation:
    """Turn a tracking URI (or the configured one) into a :class:`StoreLocation`.

    Raises :class:`InvalidArgument` for a form deltaflow cannot store to (an MLflow server or
    database URI, ``databricks``), naming the supported forms."""
    raw = uri or get_tracking_uri()
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidArgument(f"tracking URI {raw!r} is empty; use one of the supported forms: {SUPPORTED_FORMS}")
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
    _check_form(raw)
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
        # A store delta-rs reaches is compacted by deltaflow once a table has this many live files
        # (Spark's autoCompact minNumFiles default); metastore stores use Delta's auto-compaction.
        "compact_min_files": ("DELTAFLOW_COMPACT_MIN_FILES", 50, int),
        # The longest a search_runs call may take, in seconds; 0 means no limit.
        "search_timeout_s": ("DELTAFLOW_SEARCH_TIMEOUT_S", 300.0, float),
        # How long a compactor's lease on a table lasts (a killed holder blocks compaction no longer).
        "compact_lease_s": ("DELTAFLOW_COMPACT_LEASE_S", 300.0, float),
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


# -- identity ---------------------------------------------------------------------------------
USER_ENV = "DELTAFLOW_USER"
# Names that stand for groups of users in grants (Databricks' built-in groups): never a user's name.
RESERVED_PRINCIPALS = frozenset({"users", "admins", "account users", "all users"})

_identity_lock = threading.Lock()
_platform_user_cache: dict[str, Optional[str]] = {}
_warned_override: set[str] = set()


def _databricks_sdk_user() -> Optional[str]:
    """The current user from the Databricks SDK (its own auth, e.g. the notebook's token); None
    when the SDK is absent or cannot tell."""
    try:
        from databricks.sdk import WorkspaceClient  # type: ignore[import-not-found]

        return WorkspaceClient().current_user.me().user_name or None
    except Exception:  # noqa: BLE001 - not installed, no auth, no network
        return None


def _platform_user() -> Optional[str]:
    """The Databricks workspace user: the notebook/REPL context first, then the SDK (cached)."""
    with _identity_lock:
        if "user" in _platform_user_cache:
            return _platform_user_cache["user"]
    from deltaflow.tracking._context import databricks_context

    user = databricks_context().get("user") or _databricks_sdk_user()
    with _identity_lock:
        _platform_user_cache["user"] = user
    return user


def clear_identity_cache() -> None:
    """Forget the cached platform user (tests, or a process that changes identity context)."""
    with _identity_lock:
        _platform_user_cache.clear()
        _warned_override.clear()


def acting_user() -> str:
    """The user the model registry acts as and records in its audit trail.

    On Databricks (``DATABRICKS_RUNTIME_VERSION`` or ``/databricks/DBR_VERSION``) it is the workspace
    user from the notebook context or the Databricks SDK; ``DELTAFLOW_USER`` is ignored there, and
    when the platform user cannot be read this raises instead of falling back to anything the caller
    can set. Elsewhere the library cannot authenticate anyone: the user is ``DELTAFLOW_USER``, else
    the OS user, as asserted by the calling process. A reserved principal name (``users``,
    ``admins`` ...) is never accepted as a user.
    """
    import logging

    from deltaflow.tracking._context import is_databricks

    asserted = os.environ.get(USER_ENV, "").strip()
    if is_databricks():
        user = _platform_user()
        if not user:
            raise PermissionDenied(
                "on Databricks the registry user is the workspace user, and it could not be read from the "
                "notebook context or the Databricks SDK (databricks-sdk); deltaflow does not fall back to "
                f"{USER_ENV} or the OS user there. Run in a notebook or job, or install databricks-sdk")
        if asserted and asserted != user and asserted not in _warned_override:
            _warned_override.add(asserted)
            logging.getLogger(__name__).warning(
                "deltaflow: %s=%r is ignored on Databricks; the registry acts as the workspace user %r",
                USER_ENV, asserted, user)
    else:
        user = asserted or _os_user()
    if user.strip().lower() in RESERVED_PRINCIPALS:
        raise PermissionDenied(
            f"user name {user!r} is reserved (it names a group in grants: "
            f"{', '.join(sorted(RESERVED_PRINCIPALS))}); act as a real user: set {USER_ENV} to your user name")
    return user


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - containers without a passwd entry
        return "unknown"
