"""Run context tags: git read from .git files, user/source overrides, Databricks detection."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deltaflow.tracking import _context as ctx

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

_DB_ENV = ("DATABRICKS_RUNTIME_VERSION", "DB_CLUSTER_ID", "DELTAFLOW_USER", "DELTAFLOW_SOURCE_NAME",
           "DELTAFLOW_SOURCE_TYPE")


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for name in _DB_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ctx, "_DBR_VERSION_FILE", "/nonexistent/DBR_VERSION")
    ctx.clear_cache()
    yield
    ctx.clear_cache()


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "pkg").mkdir()
    (root / "pkg" / "train.py").write_text("print('hi')\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    git(root, "remote", "add", "origin", "https://alice:s3cret@github.com/acme/models.git")
    return root


@needs_git
def test_git_commit_branch_and_url_from_subdirectory(repo: Path):
    info = ctx.git_info(str(repo / "pkg"))
    assert info[ctx.GIT_COMMIT] == git(repo, "rev-parse", "HEAD")
    assert info[ctx.GIT_BRANCH] == "main"
    # Credentials embedded in the remote URL must never end up in a tag.
    assert info[ctx.GIT_REPO_URL] == "https://github.com/acme/models.git"


@needs_git
def test_git_detached_head(repo: Path):
    first = git(repo, "rev-parse", "HEAD")
    (repo / "b.txt").write_text("b")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "second")
    git(repo, "checkout", "-q", "--detach", first)
    info = ctx.git_info(str(repo))
    assert info[ctx.GIT_COMMIT] == first
    assert ctx.GIT_BRANCH not in info


@needs_git
def test_git_packed_refs(repo: Path):
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "pack-refs", "--all", "--prune")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()  # really packed
    assert ctx.git_info(str(repo))[ctx.GIT_COMMIT] == head


@needs_git
def test_git_worktree_gitdir_file(repo: Path, tmp_path: Path):
    git(repo, "branch", "feature")
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(wt), "feature")
    assert (wt / ".git").is_file()  # a 'gitdir:' pointer, not a directory
    info = ctx.git_info(str(wt))
    assert info[ctx.GIT_COMMIT] == git(wt, "rev-parse", "HEAD")
    assert info[ctx.GIT_BRANCH] == "feature"
    assert info[ctx.GIT_REPO_URL] == "https://github.com/acme/models.git"  # from the common config


@needs_git
def test_not_a_repo_and_unborn_branch(tmp_path: Path):
    plain = tmp_path / "plain"
    plain.mkdir()
    if ctx._find_git_dir(str(plain)) is None:  # tmp may itself sit inside a repo on some hosts
        assert ctx.git_info(str(plain)) == {}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q")
    assert ctx.git_info(str(fresh)) == {}  # no commit yet: nothing to record


@needs_git
def test_static_tags_use_main_file_repo_and_are_cached(repo: Path, monkeypatch):
    main = repo / "pkg" / "train.py"
    monkeypatch.setattr(sys, "argv", [str(main)])
    tags = ctx.resolve_context_tags()
    assert tags[ctx.SOURCE_NAME] == str(main)
    assert tags[ctx.SOURCE_TYPE] == "LOCAL"
    assert tags[ctx.GIT_COMMIT] == git(repo, "rev-parse", "HEAD")
    # A new commit is not seen until the cache is cleared: git is read once per process.
    (repo / "c.txt").write_text("c")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "third")
    assert ctx.resolve_context_tags()[ctx.GIT_COMMIT] == tags[ctx.GIT_COMMIT]
    ctx.clear_cache()
    assert ctx.resolve_context_tags()[ctx.GIT_COMMIT] == git(repo, "rev-parse", "HEAD")


def test_resolve_context_tags_is_fast_when_cached(monkeypatch):
    ctx.resolve_context_tags()
    start = time.perf_counter()
    for _ in range(2000):
        ctx.resolve_context_tags()
    assert time.perf_counter() - start < 1.0  # thousands of runs per second stay possible


@needs_git
def test_git_info_returns_a_copy(repo: Path):
    ctx.git_info(str(repo))[ctx.GIT_COMMIT] = "tampered"
    assert ctx.git_info(str(repo))[ctx.GIT_COMMIT] != "tampered"


def test_user_and_source_env_overrides(monkeypatch):
    default_user = ctx.resolve_user()
    assert default_user and ctx.resolve_context_tags()[ctx.USER] == default_user
    monkeypatch.setenv("DELTAFLOW_USER", "ci-bot")
    monkeypatch.setenv("DELTAFLOW_SOURCE_NAME", "pipelines/nightly")
    monkeypatch.setenv("DELTAFLOW_SOURCE_TYPE", "JOB")
    assert ctx.resolve_user() == "ci-bot"  # env is read per call, not cached
    tags = ctx.resolve_context_tags()
    assert (tags[ctx.USER], tags[ctx.SOURCE_NAME], tags[ctx.SOURCE_TYPE]) == (
        "ci-bot", "pipelines/nightly", "JOB")


def test_user_falls_back_when_getpass_fails(monkeypatch):
    def boom() -> str:
        raise KeyError("no passwd entry")

    monkeypatch.setattr(ctx.getpass, "getuser", boom)
    assert ctx.resolve_user() == "unknown"


def test_databricks_detection_from_env(monkeypatch):
    assert not ctx.is_databricks()
    assert ctx.databricks_context() == {}
    assert not any(k.startswith("mlflow.databricks.") for k in ctx.resolve_context_tags())
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setenv("DB_CLUSTER_ID", "0101-abc")
    assert ctx.is_databricks()
    raw = ctx.databricks_context()
    assert raw["cluster_id"] == "0101-abc" and raw["runtime_version"] == "15.4"
    assert ctx.resolve_context_tags()[ctx.DB_CLUSTER_ID] == "0101-abc"


def test_databricks_detection_from_version_file(tmp_path: Path, monkeypatch):
    version = tmp_path / "DBR_VERSION"
    version.write_text("client.1.0")
    monkeypatch.setattr(ctx, "_DBR_VERSION_FILE", str(version))
    ctx.clear_cache()
    assert ctx.is_databricks()


def _fake_databricks(monkeypatch, values: dict[str, str]) -> None:
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setattr(ctx, "_from_repl_context", lambda c: [ctx._put(c, k, v) for k, v in values.items()])


def test_source_type_notebook(monkeypatch):
    _fake_databricks(monkeypatch, {"notebook_id": "42", "notebook_path": "/Users/a@x.com/train",
                                   "browser_host_name": "adb-1.azuredatabricks.net",
                                   "webapp_url": "https://westeurope.azuredatabricks.net"})
    tags = ctx.resolve_context_tags()
    assert tags[ctx.SOURCE_TYPE] == "NOTEBOOK"
    assert tags[ctx.SOURCE_NAME] == tags[ctx.DB_NOTEBOOK_PATH] == "/Users/a@x.com/train"
    assert tags[ctx.DB_NOTEBOOK_ID] == "42"
    assert tags[ctx.DB_WORKSPACE_URL] == "https://adb-1.azuredatabricks.net"
    assert tags[ctx.DB_WEBAPP_URL] == "https://westeurope.azuredatabricks.net"
    assert ctx.DB_JOB_ID not in tags


def test_source_type_job_wins_over_notebook(monkeypatch):
    _fake_databricks(monkeypatch, {"notebook_id": "42", "notebook_path": "/Repos/x/nb", "job_id": "7",
                                   "job_run_id": "99", "job_type": "NOTEBOOK"})
    tags = ctx.resolve_context_tags()
    assert tags[ctx.SOURCE_TYPE] == "JOB"
    assert tags[ctx.SOURCE_NAME] == "jobs/7/run/99"
    assert (tags[ctx.DB_JOB_ID], tags[ctx.DB_JOB_RUN_ID], tags[ctx.DB_JOB_TYPE]) == ("7", "99", "NOTEBOOK")
    assert tags[ctx.DB_NOTEBOOK_PATH] == "/Repos/x/nb"


def test_databricks_user_from_context_is_used(monkeypatch):
    _fake_databricks(monkeypatch, {"user": "alice@example.com"})
    assert ctx.resolve_user() == "alice@example.com"
    # The platform's identity wins over an environment variable the caller can set.
    monkeypatch.setenv("DELTAFLOW_USER", "override")
    assert ctx.resolve_user() == "alice@example.com"


def test_failing_provider_is_skipped(monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")

    def broken(_c):
        raise RuntimeError("py4j gone")

    monkeypatch.setattr(ctx, "_from_repl_context", broken)
    monkeypatch.setattr(ctx, "_databricks_tags", lambda c: 1 / 0)
    tags = ctx.resolve_context_tags()  # must not raise
    assert tags[ctx.SOURCE_TYPE] == "LOCAL" and tags[ctx.USER]
