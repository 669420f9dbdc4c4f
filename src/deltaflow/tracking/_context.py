"""Run context tags recorded automatically when a run starts.

The keys are MLflow's (``mlflow.user``, ``mlflow.source.*``, ``mlflow.databricks.*``) so code and
dashboards that read them port unchanged. Run creation must stay fast (thousands per second), so:

* the static part (user, source name, git) is computed once per process and cached;
* git is read straight from ``.git`` (HEAD, loose refs, packed-refs, worktree ``gitdir:`` files)
  instead of spawning ``git``;
* the Databricks part is only looked at when :func:`is_databricks` says so (an env lookup), and
  only reads from a SparkSession that is *already* running - it never starts one.

Nothing here raises: a failing provider is skipped and logged at debug level.
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import os
import re
import sys
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["resolve_user", "databricks_context", "resolve_context_tags", "is_databricks", "git_info",
           "clear_cache"]

_log = logging.getLogger(__name__)

# MLflow's tag keys (mlflow/utils/mlflow_tags.py).
USER = "mlflow.user"
SOURCE_NAME = "mlflow.source.name"
SOURCE_TYPE = "mlflow.source.type"
GIT_COMMIT = "mlflow.source.git.commit"
GIT_BRANCH = "mlflow.source.git.branch"
GIT_REPO_URL = "mlflow.source.git.repoURL"
DB_NOTEBOOK_ID = "mlflow.databricks.notebookID"
DB_NOTEBOOK_PATH = "mlflow.databricks.notebookPath"
DB_WEBAPP_URL = "mlflow.databricks.webappURL"
DB_JOB_ID = "mlflow.databricks.jobID"
DB_JOB_RUN_ID = "mlflow.databricks.jobRunID"
DB_JOB_TYPE = "mlflow.databricks.jobType"
DB_CLUSTER_ID = "mlflow.databricks.cluster.id"
DB_WORKSPACE_URL = "mlflow.databricks.workspaceURL"
DB_WORKSPACE_ID = "mlflow.databricks.workspaceID"

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1 or SHA-256 object names
_DBR_VERSION_FILE = "/databricks/DBR_VERSION"  # DCS/container clusters lack the env var

# Where Databricks exposes each value. First source to provide a key wins.
_REPL_ATTRS = {  # dbruntime.databricks_repl_context.get_context(): cheap, Python-side
    "notebookId": "notebook_id", "notebookPath": "notebook_path", "jobId": "job_id",
    "idInJob": "job_run_id", "jobTaskType": "job_type", "clusterId": "cluster_id",
    "apiUrl": "webapp_url", "browserHostName": "browser_host_name", "workspaceUrl": "workspace_url",
    "workspaceId": "workspace_id", "user": "user",
}
_NOTEBOOK_TAGS = {  # getContext().toJson()["tags"]
    "notebookId": "notebook_id", "notebookPath": "notebook_path", "jobId": "job_id",
    "idInJob": "job_run_id", "runId": "job_run_id", "multitaskParentRunId": "job_parent_run_id",
    "jobTaskType": "job_type", "clusterId": "cluster_id", "browserHostName": "browser_host_name",
    "orgId": "workspace_id", "user": "user",
}
_NOTEBOOK_EXTRA = {"notebook_path": "notebook_path", "api_url": "webapp_url"}  # never api_token
_LOCAL_PROPS = {  # SparkContext local properties, set per command/thread by the driver
    "spark.databricks.notebook.id": "notebook_id", "spark.databricks.notebook.path": "notebook_path",
    "spark.databricks.job.id": "job_id", "spark.databricks.job.runId": "job_run_id",
    "spark.databricks.job.parentRunId": "job_parent_run_id", "spark.databricks.api.url": "webapp_url",
}
_CONF = {  # Spark conf, fixed for the cluster
    "spark.databricks.clusterUsageTags.clusterId": "cluster_id",
    "spark.databricks.workspaceUrl": "workspace_url",
}
_ENV = {"DB_CLUSTER_ID": "cluster_id", "DATABRICKS_RUNTIME_VERSION": "runtime_version"}


# ---------------------------------------------------------------- git, read from files


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _find_git_dir(start: str) -> tuple[str, str] | None:
    """(git dir, common dir) of the repo containing ``start``, walking up; None outside a repo."""
    current = os.path.abspath(start)
    while True:
        dot_git = os.path.join(current, ".git")
        git_dir = None
        if os.path.isdir(dot_git):
            git_dir = dot_git
        elif os.path.isfile(dot_git):  # worktree or submodule: "gitdir: <path>"
            content = _read(dot_git) or ""
            if content.startswith("gitdir:"):
                git_dir = os.path.normpath(os.path.join(current, content[7:].strip()))
        if git_dir and os.path.isfile(os.path.join(git_dir, "HEAD")):
            # Linked worktrees keep refs, packed-refs and config in the main repo's dir.
            common = _read(os.path.join(git_dir, "commondir"))
            common_dir = os.path.normpath(os.path.join(git_dir, common)) if common else git_dir
            return git_dir, common_dir
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _resolve_ref(ref: str, git_dir: str, common_dir: str) -> str | None:
    for _ in range(10):  # symbolic refs may chain; bound it against loops
        value = None
        for base in (git_dir, common_dir):  # per-worktree refs first, then shared ones
            value = _read(os.path.join(base, *ref.split("/")))
            if value:
                break
        if value and value.startswith("ref:"):
            ref = value[4:].strip()
            continue
        if value and _SHA.match(value):
            return value
        packed = _read(os.path.join(common_dir, "packed-refs")) or ""
        for line in packed.splitlines():
            if line and line[0] not in "#^":
                sha, _, name = line.partition(" ")
                if name.strip() == ref and _SHA.match(sha):
                    return sha
        return None
    return None


def _origin_url(common_dir: str) -> str | None:
    """remote.origin.url from the repo config, with any credentials stripped."""
    section = None
    for raw in (_read(os.path.join(common_dir, "config")) or "").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == '[remote "origin"]' and re.match(r"url\s*=", line):
            url = line.split("=", 1)[1].strip()
            parts = urlsplit(url)
            if parts.scheme and "@" in parts.netloc:  # https://user:token@host/... -> host only
                url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
            return url
    return None


def git_info(path: str) -> dict[str, str]:
    """Git commit (and branch, origin URL when known) for the repo holding ``path``; {} if none."""
    return dict(_git_info(os.path.abspath(path)))  # a copy: callers must not edit the cache


@functools.lru_cache(maxsize=64)
def _git_info(path: str) -> dict[str, str]:
    found = _find_git_dir(path)
    if found is None:
        return {}
    git_dir, common_dir = found
    head = _read(os.path.join(git_dir, "HEAD")) or ""
    info: dict[str, str] = {}
    if head.startswith("ref:"):
        ref = head[4:].strip()
        commit = _resolve_ref(ref, git_dir, common_dir)
        if ref.startswith("refs/heads/"):
            info[GIT_BRANCH] = ref[len("refs/heads/"):]
    else:
        commit = head if _SHA.match(head) else None  # detached HEAD
    if commit is None:  # unborn branch (no commits yet): no commit to record
        return {}
    info[GIT_COMMIT] = commit
    url = _origin_url(common_dir)
    if url:
        info[GIT_REPO_URL] = url
    return info


# ---------------------------------------------------------------- process-static part


def _main_file() -> str | None:
    main = sys.argv[0] if sys.argv else ""
    return os.path.abspath(main) if main and main not in ("-c", "-") and os.path.exists(main) else None


@functools.lru_cache(maxsize=1)
def _static_tags() -> dict[str, str]:
    main = _main_file()
    tags = {SOURCE_NAME: main or "<console>", SOURCE_TYPE: "LOCAL"}
    try:
        tags.update(git_info(os.path.dirname(main) if main else os.getcwd()))
    except Exception:  # noqa: BLE001 - context must never break run creation
        _log.debug("git context unavailable", exc_info=True)
    return tags


@functools.lru_cache(maxsize=1)
def _process_user() -> str:
    if is_databricks():
        try:
            user = databricks_context().get("user")
            if user:
                return user
        except Exception:  # noqa: BLE001
            _log.debug("Databricks user unavailable", exc_info=True)
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - containers without a passwd entry
        return "unknown"


def resolve_user() -> str:
    """The run's ``mlflow.user``: on Databricks the workspace user (an environment variable cannot
    override the platform's identity), else DELTAFLOW_USER, else the OS user (platform and OS user
    cached)."""
    if is_databricks():
        try:
            user = databricks_context().get("user")
        except Exception:  # noqa: BLE001 - the context is best effort; fall back below
            user = None
        if user:
            return user
    return os.environ.get("DELTAFLOW_USER") or _process_user()


@functools.lru_cache(maxsize=1)
def _dbr_version_file() -> bool:
    return os.path.isfile(_DBR_VERSION_FILE)


def is_databricks() -> bool:
    """True on a Databricks cluster (env checked per call so it can be overridden; file cached)."""
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION")) or _dbr_version_file()


def clear_cache() -> None:
    """Forget the per-process cache (tests, or after os.chdir into another repo)."""
    for fn in (_git_info, _static_tags, _process_user, _dbr_version_file):
        fn.cache_clear()


# ---------------------------------------------------------------- Databricks part


def _put(ctx: dict[str, str], key: str, value: Any) -> None:
    if value is not None and str(value).strip() and key not in ctx:
        ctx[key] = str(value).strip()


def _from_repl_context(ctx: dict[str, str]) -> None:
    from dbruntime.databricks_repl_context import get_context  # type: ignore[import-not-found]

    repl = get_context()
    if repl is not None:
        for attr, key in _REPL_ATTRS.items():
            _put(ctx, key, getattr(repl, attr, None))


def _from_notebook_json(ctx: dict[str, str]) -> None:
    import IPython  # type: ignore[import-not-found]  # dbutils lives in the notebook's namespace

    shell = IPython.get_ipython()
    dbutils = shell.user_ns.get("dbutils") if shell is not None else None
    if dbutils is None:
        return
    raw = dbutils.notebook.entry_point.getDbutils().notebook().getContext().toJson()
    data = json.loads(raw)
    for section, mapping in ((data.get("tags") or {}, _NOTEBOOK_TAGS),
                             (data.get("extraContext") or {}, _NOTEBOOK_EXTRA)):
        for name, key in mapping.items():
            _put(ctx, key, section.get(name))


def _from_spark(ctx: dict[str, str], spark: Any) -> None:
    if spark is None:
        return
    # Each read on its own: shared-access clusters block some keys, and Spark Connect sessions
    # have no sparkContext (local properties are JVM-side); one refusal must not hide the rest.
    reads: list[tuple[str, Callable[[], Any]]] = [
        (key, lambda p=prop: spark.sparkContext.getLocalProperty(p)) for prop, key in _LOCAL_PROPS.items()
    ]
    reads += [(key, lambda c=conf: spark.conf.get(c, None)) for conf, key in _CONF.items()]
    for key, read in reads:
        if key in ctx:
            continue
        try:
            _put(ctx, key, read())
        except Exception:  # noqa: BLE001
            _log.debug("Spark value for %s unavailable", key, exc_info=True)


def databricks_context(spark: Any = None) -> dict[str, str]:
    """Raw Databricks values (notebook_id, job_id, cluster_id, ...); {} off Databricks. Never raises."""
    try:
        return _databricks_context(spark) if is_databricks() else {}
    except Exception:  # noqa: BLE001
        _log.debug("Databricks context unavailable", exc_info=True)
        return {}


def _databricks_context(spark: Any) -> dict[str, str]:
    from deltaflow._spark import active_spark

    ctx: dict[str, str] = {}

    steps: list[tuple[str, Callable[[], None]]] = [
        ("repl context", lambda: _from_repl_context(ctx)),
        ("notebook context", lambda: _from_notebook_json(ctx)),
        ("spark", lambda: _from_spark(ctx, spark if spark is not None else active_spark())),
    ]
    for name, step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001 - ImportError off-notebook, py4j errors, odd JSON
            _log.debug("Databricks %s unavailable", name, exc_info=True)
    for env, key in _ENV.items():
        _put(ctx, key, os.environ.get(env))
    return ctx


def _with_https(host: str) -> str:
    return host if "://" in host else "https://" + host


def _databricks_tags(ctx: dict[str, str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    if "notebook_id" in ctx or "notebook_path" in ctx:
        tags[SOURCE_TYPE] = "NOTEBOOK"
        if "notebook_path" in ctx:
            tags[SOURCE_NAME] = tags[DB_NOTEBOOK_PATH] = ctx["notebook_path"]
        if "notebook_id" in ctx:
            tags[DB_NOTEBOOK_ID] = ctx["notebook_id"]
    if "job_id" in ctx:  # a notebook run by a job is a JOB run, as in MLflow
        tags[SOURCE_TYPE] = "JOB"
        tags[DB_JOB_ID] = ctx["job_id"]
        if "job_run_id" in ctx:
            tags[DB_JOB_RUN_ID] = ctx["job_run_id"]
            tags[SOURCE_NAME] = f"jobs/{ctx['job_id']}/run/{ctx['job_run_id']}"
        if "job_type" in ctx:
            tags[DB_JOB_TYPE] = ctx["job_type"]
    if "webapp_url" in ctx:
        tags[DB_WEBAPP_URL] = ctx["webapp_url"]
    workspace = ctx.get("browser_host_name") or ctx.get("workspace_url")
    if workspace:
        tags[DB_WORKSPACE_URL] = _with_https(workspace)
    if "workspace_id" in ctx:
        tags[DB_WORKSPACE_ID] = ctx["workspace_id"]
    if "cluster_id" in ctx:
        tags[DB_CLUSTER_ID] = ctx["cluster_id"]
    return tags


def resolve_context_tags(spark: Any = None) -> dict[str, str]:
    """The mlflow.* tags for a new run. Never raises; a failing provider is skipped."""
    tags: dict[str, str] = {}
    providers: list[tuple[str, Callable[[], dict[str, str]]]] = [
        ("static", _static_tags),
        ("user", lambda: {USER: resolve_user()}),
        ("databricks", lambda: _databricks_tags(databricks_context(spark))),
    ]
    for name, provider in providers:
        try:
            tags.update(provider())
        except Exception:  # noqa: BLE001
            _log.debug("context provider %s failed", name, exc_info=True)
    # Explicit overrides, e.g. a scheduler that knows better than argv[0].
    for env, key in (("DELTAFLOW_SOURCE_NAME", SOURCE_NAME), ("DELTAFLOW_SOURCE_TYPE", SOURCE_TYPE)):
        if os.environ.get(env):
            tags[key] = os.environ[env]
    return tags
