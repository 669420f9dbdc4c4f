"""Project URIs: a local folder, or a git repository checked out for the run.

Forms (as in MLflow): ``<folder>`` or ``file:///<folder>`` runs the folder in place; with
``version`` the folder must be a git repository and the version is checked out into a temporary
folder; ``https://…``, ``ssh://…``, ``git://…``, ``git@host:repo`` and ``file://`` URIs of repositories
are cloned. ``#<subdirectory>`` after any of them names the project folder inside the checkout.
``version`` is a commit, branch or tag. What was run is recorded with MLflow's tags: the source name,
the commit, the repository URL and (when ``version`` names a branch) the branch.

Git is driven through the ``git`` command (the client's own credential helpers and SSH config apply);
checkouts are shallow when the server allows it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional

from deltaflow.errors import InvalidArgument, MissingDependency

__all__ = ["FetchedProject", "fetch_project", "split_uri", "git_tags"]

_SCP_LIKE = re.compile(r"^[\w.+-]+@[\w.-]+:(?!//)")  # git@github.com:org/repo.git
_GIT_SCHEMES = ("http", "https", "ssh", "git", "git+ssh", "ssh+git", "file")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_TEMP_PREFIX = "deltaflow-project-"


@dataclass(frozen=True)
class FetchedProject:
    """A project folder ready to run, and what to record about where it came from."""

    directory: str
    source_name: str
    git_commit: Optional[str] = None
    git_repo_url: Optional[str] = None
    git_branch: Optional[str] = None
    # A checkout made for this run alone; the runner removes it when the run is over.
    temporary_root: Optional[str] = field(default=None, compare=False)

    def tags(self) -> dict[str, str]:
        return git_tags(self.git_commit, self.git_repo_url, self.git_branch)

    def cleanup(self) -> None:
        if self.temporary_root is not None:
            shutil.rmtree(self.temporary_root, ignore_errors=True)


def git_tags(commit: Optional[str], repo_url: Optional[str], branch: Optional[str]) -> dict[str, str]:
    """MLflow's git tags for a run (only the ones known)."""
    tags = {"mlflow.source.git.commit": commit, "mlflow.source.git.repoURL": repo_url,
            "mlflow.source.git.branch": branch}
    return {k: v for k, v in tags.items() if v}


def split_uri(uri: str) -> tuple[str, str]:
    """(location, subdirectory) of a project URI ``<location>#<subdirectory>``; the subdirectory must
    stay inside the project (no absolute path, no ``..``)."""
    if not isinstance(uri, str) or not uri.strip().strip("'\""):
        raise InvalidArgument(f"project URI {uri!r} is empty; give a folder or a git repository URL")
    uri = uri.strip().strip("'\"")
    base, _, sub = uri.partition("#")
    sub = sub.strip("/")
    if sub and (os.path.isabs(sub) or ".." in sub.replace("\\", "/").split("/")):
        raise InvalidArgument(f"subdirectory {sub!r} of project URI {uri!r} must be a relative path inside the "
                              "project, without '..'")
    return base, sub


def _local_path(base: str) -> Optional[str]:
    """The local folder ``base`` names, if it is a plain path or a ``file:`` URI (existing or not)."""
    parsed = urllib.parse.urlparse(base)
    if parsed.scheme == "file":
        return urllib.parse.unquote(os.path.join(parsed.netloc, parsed.path) if parsed.netloc else parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1 or _SCP_LIKE.match(base):
        return None
    return os.path.expanduser(base)


def _is_git_remote(base: str) -> bool:
    return bool(_SCP_LIKE.match(base)) or urllib.parse.urlparse(base).scheme in _GIT_SCHEMES


def _strip_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


def fetch_project(uri: str, version: Optional[str] = None) -> FetchedProject:
    """The project folder for ``uri`` at ``version`` (a checkout is made when one is needed)."""
    base, sub = split_uri(uri)
    if version is not None and (not isinstance(version, str) or not version.strip() or version.startswith("-")):
        raise InvalidArgument(f"version {version!r} must name a commit, branch or tag")
    local = _local_path(base)
    if local is not None and os.path.isdir(local) and version is None:
        return _in_place(os.path.abspath(local), sub, uri)
    if local is not None and not os.path.isdir(local):
        if urllib.parse.urlparse(base).scheme != "file":
            raise InvalidArgument(
                f"project URI {uri!r}: there is no folder {os.path.abspath(local)!r}; give a project folder, or a git "
                "repository URL (https://…, ssh://…, git@host:repo.git, file:///path/to/repo)")
        raise InvalidArgument(f"project URI {uri!r}: there is no repository or folder at {local!r}")
    if local is not None and not _is_git_repository(local):
        raise InvalidArgument(f"project URI {uri!r} with version {version!r}: {os.path.abspath(local)!r} is not a git "
                              "repository; a version can only be given for a git project")
    if local is None and not _is_git_remote(base):
        raise InvalidArgument(f"project URI {uri!r} is neither a local folder nor a git repository URL (https://…, "
                              "ssh://…, git://…, git@host:repo.git, file:///path/to/repo)")
    url = os.path.abspath(local) if local is not None else base
    source = f"file://{url}" + (f"#{sub}" if sub else "") if local is not None else base + (f"#{sub}" if sub else "")
    return _checkout(url, version, sub, uri, source)


def _project_dir(root: str, sub: str, uri: str) -> str:
    path = os.path.normpath(os.path.join(root, sub)) if sub else root
    if not os.path.isdir(path):
        raise InvalidArgument(f"project URI {uri!r}: subdirectory {sub!r} does not exist in the project")
    return path


def _in_place(folder: str, sub: str, uri: str) -> FetchedProject:
    directory = _project_dir(folder, sub, uri)
    info = _work_tree_git(directory)
    root = info.pop("root", None)
    if root is not None:  # MLflow's source name for a folder inside a repository: file://<root>#<subdir>
        rel = os.path.relpath(directory, root)
        source = f"file://{root}" + ("" if rel == "." else f"#{rel}")
    else:
        source = directory
    return FetchedProject(directory, source, info.get("commit"), info.get("url"))


def _work_tree_git(path: str) -> dict[str, str]:
    """Commit, origin URL and work-tree root of the repository holding ``path`` (read from its files,
    no git process; {} outside a repository or before its first commit)."""
    from deltaflow.tracking import _context

    current = path
    while not os.path.exists(os.path.join(current, ".git")):
        parent = os.path.dirname(current)
        if parent == current:
            return {}
        current = parent
    # uncached: a long-lived process may run the same folder again after new commits
    info = _context._git_info.__wrapped__(path)  # type: ignore[attr-defined]
    out = {"root": current}
    if info.get(_context.GIT_COMMIT):
        out["commit"] = info[_context.GIT_COMMIT]
    if info.get(_context.GIT_REPO_URL):
        out["url"] = info[_context.GIT_REPO_URL]
    return out


def _is_git_repository(path: str) -> bool:
    """A repository's work-tree root or a bare repository (a folder inside a repository is not one:
    it cannot be cloned)."""
    if os.path.exists(os.path.join(path, ".git")):
        return True
    proc = _git(["rev-parse", "--is-bare-repository"], cwd=path, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def _git(args: list[str], cwd: Optional[str] = None, check: bool = True) -> "subprocess.CompletedProcess[str]":
    if shutil.which("git") is None:
        raise MissingDependency("running a project from a git repository needs the git command, which is not on "
                                "PATH; install git (e.g. apt-get install git) or give a local project folder")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # fail instead of waiting for a password
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, ["git", *args], proc.stdout, proc.stderr)
    return proc


def _last_line(exc: subprocess.CalledProcessError) -> str:
    lines = [line for line in (exc.stderr or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"git exited {exc.returncode}"


def _checkout(url: str, version: Optional[str], sub: str, uri: str, source: str) -> FetchedProject:
    import tempfile

    root = tempfile.mkdtemp(prefix=_TEMP_PREFIX)
    shown = _strip_credentials(url)
    try:
        _git(["init", "-q", root])
        _git(["remote", "add", "origin", url], cwd=root)
        ref = version if version is not None else "HEAD"
        try:
            _git(["fetch", "-q", "--depth", "1", "origin", ref], cwd=root)
            _git(["checkout", "-q", "FETCH_HEAD"], cwd=root)
            branch = _fetched_branch(root) if version is not None else None
        except subprocess.CalledProcessError as shallow_error:
            if version is None:
                raise InvalidArgument(
                    f"could not fetch git repository {shown!r}: {_last_line(shallow_error)}") from None
            # A server that refuses to send one commit by its id: fetch everything, then check out.
            try:
                _git(["fetch", "-q", "--tags", "origin"], cwd=root)
                _git(["checkout", "-q", version], cwd=root)
            except subprocess.CalledProcessError as exc:
                raise InvalidArgument(f"version {version!r} is not a commit, branch or tag of git repository "
                                      f"{shown!r} ({_last_line(exc)})") from None
            is_branch = _git(["rev-parse", "--verify", "-q", f"refs/remotes/origin/{version}"], cwd=root, check=False)
            branch = version if is_branch.returncode == 0 else None
        if os.path.exists(os.path.join(root, ".gitmodules")):
            _git(["submodule", "update", "-q", "--init", "--recursive", "--depth", "1"], cwd=root)
        commit = _git(["rev-parse", "HEAD"], cwd=root).stdout.strip()
        directory = _project_dir(root, sub, uri)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return FetchedProject(directory, _strip_credentials(source), commit if _SHA.match(commit) else None,
                          shown, branch, temporary_root=root)


def _fetched_branch(root: str) -> Optional[str]:
    """The branch a shallow fetch of one ref resolved, from FETCH_HEAD ("<sha>\\t\\tbranch 'x' of <url>")."""
    try:
        with open(os.path.join(root, ".git", "FETCH_HEAD"), encoding="utf-8") as fh:
            first = fh.readline()
    except OSError:
        return None
    match = re.search(r"\tbranch '([^']+)' of ", first)
    return match.group(1) if match else None
