"""Artifact storage behind one small interface.

:class:`LocalArtifactRepository` does plain file I/O for local paths, ``file:`` URIs and the
Databricks FUSE mounts (``/Volumes/...``, ``/dbfs/...``). :class:`HadoopArtifactRepository` serves
every other URI (``dbfs:/``, ``s3a://``, ``abfss://``, ``gs://``, ``hdfs://``...) through the Spark
driver's JVM Hadoop FileSystem, so the cluster's own credentials and connectors apply and no Python
cloud SDK is needed. Artifact names come from user code, so every one is validated before anything
is written. pyspark is imported late: ``import deltaflow.artifacts`` stays cheap and works without it.
"""

from __future__ import annotations

import abc
import contextlib
import importlib.util
import os
import re
import shutil
import tempfile
from typing import Any
from urllib.parse import unquote, urlparse

from deltaflow.entities import FileInfo
from deltaflow.errors import InvalidArgument, MissingDependency, NotFound, StorageError

__all__ = ["ArtifactRepository", "LocalArtifactRepository", "HadoopArtifactRepository",
           "get_artifact_repository", "validate_artifact_path", "join_uri"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_DRIVE = re.compile(r"^[A-Za-z]:")
# In-progress local writes use this prefix; listings hide them so readers never see torn files.
_TMP_PREFIX = ".deltaflow-tmp-"
# URIs that name something other than storage; they must be resolved before reaching here.
_NOT_STORAGE = {"runs", "models", "mlflow-artifacts", "http", "https"}


def validate_artifact_path(path: str | None) -> str | None:
    """Normalise a relative artifact path, or raise InvalidArgument saying which rule it broke.

    ``None``, ``""`` and ``"."`` mean the artifact root and come back as ``None``.
    """
    if path is None:
        return None
    if not isinstance(path, str):
        raise InvalidArgument(f"artifact path {path!r} must be a string, not {type(path).__name__}")

    def bad(rule: str) -> InvalidArgument:
        return InvalidArgument(f"invalid artifact path {path!r}: {rule}")

    if "\x00" in path:
        raise bad("NUL characters are not allowed")
    if "\\" in path:  # Windows separators would let 'a\\..\\..\\x' slip past the '..' check.
        raise bad("backslashes are not allowed; use '/' as the separator")
    if _DRIVE.match(path):
        raise bad("drive letters are not allowed; the path must be relative to the artifact root")
    if path.startswith("/") or path.startswith("~"):
        raise bad("it must be relative to the artifact root, not absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    # Also catch '%2e%2e': some stores (HTTP-backed, Databricks proxies) decode percent escapes.
    if any(p == ".." or unquote(p) == ".." for p in parts):
        raise bad("'..' segments are not allowed")
    return "/".join(parts) or None


def join_uri(root: str, *parts: str) -> str:
    """Join a root URI or path with relative parts using '/', keeping 'scheme:/' roots intact."""
    out = root
    for part in parts:
        part = (part or "").strip("/")
        if not part:
            continue
        out = out if out.endswith("/") else out + "/"
        out += part
    # Trim trailing slashes but never the ones that make up 'dbfs:/' or 's3://' or '/'.
    while out.endswith("/") and not re.search(r"(^|:)/+$", out):
        out = out[:-1]
    return out


def _join(*parts: str | None) -> str:
    return "/".join(p for p in parts if p)


def _local_source(path: str, *, want_dir: bool) -> str:
    if not (os.path.isdir(path) if want_dir else os.path.isfile(path)):
        kind = "directory" if want_dir else "file"
        raise InvalidArgument(f"local {kind} {path!r} does not exist or is not a {kind}")
    return os.path.abspath(path)


class ArtifactRepository(abc.ABC):
    """Where one run's (or model's) artifacts live; every path is relative to ``root_uri``.

    The public methods live here so that validation happens in exactly one place, before any
    backend primitive runs; backends only implement the small ``_`` primitives below, which get
    already-validated relative paths ('' or None meaning the root).
    """

    root_uri: str

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        """Copy one local file into the directory ``artifact_path``, keeping its file name."""
        rel = validate_artifact_path(artifact_path)
        src = _local_source(local_file, want_dir=False)
        self._put_file(src, _join(rel, os.path.basename(src)))

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Copy the *contents* of a local directory into ``artifact_path``, file by file.

        File by file (not one directory copy) because copying a directory onto an existing one
        nests it as dst/srcname on Hadoop, and because each local file is then written atomically.
        """
        rel = validate_artifact_path(artifact_path)
        src_root = _local_source(local_dir, want_dir=True)
        for dirpath, dirnames, filenames in os.walk(src_root):
            sub = os.path.relpath(dirpath, src_root).replace(os.sep, "/")
            prefix = _join(rel, None if sub == "." else sub)
            if not dirnames and not filenames:
                self._make_dirs(prefix)  # keep empty directories, as MLflow's copytree does
            for name in filenames:
                self._put_file(os.path.join(dirpath, name), _join(prefix, name))

    def write_bytes(self, artifact_file: str, data: bytes) -> None:
        """Write ``data`` as the artifact file (used by log_text/log_dict/log_figure)."""
        rel = validate_artifact_path(artifact_file)
        if rel is None:
            raise InvalidArgument(f"artifact file {artifact_file!r} must name a file below the root")
        if artifact_file.split("/")[-1] in ("", "."):
            raise InvalidArgument(f"artifact file {artifact_file!r} ends in '/' (or '/.'), so it names a folder; "
                                  "give a file name such as 'dir/file.txt'")
        self._write(rel, bytes(data))

    def publish_dir(self, local_dir: str, artifact_path: str) -> None:
        """Publish a local directory (a model) as ``artifact_path``, whole or not at all.

        The base version, for stores without an atomic directory rename: any existing folder is
        removed, every file is uploaded, and ``MLmodel`` (the completeness marker) goes last, so an
        interrupted publish leaves a folder without ``MLmodel``, which loaders and the registry refuse.
        """
        rel = validate_artifact_path(artifact_path)
        if rel is None:
            raise InvalidArgument("a model must be published below the artifact root, not as the root itself")
        src_root = _local_source(local_dir, want_dir=True)
        self._delete(rel)
        for src, sub in _marker_last(src_root):
            self._put_file(src, _join(rel, sub))

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """Direct children of ``path``, sorted; dirs have file_size None; [] for a file or missing."""
        rel = validate_artifact_path(path)
        infos = [FileInfo(_join(rel, name), is_dir, None if is_dir else size)
                 for name, is_dir, size in self._children(rel)]
        return sorted(infos, key=lambda f: f.path)

    def download_artifacts(self, artifact_path: str = "", dst_path: str | None = None) -> str:
        """Copy a file or directory below ``dst_path`` (a new temp dir when None), keeping its
        relative path, and return the local path. As in MLflow, ``dst_path`` must exist."""
        rel = validate_artifact_path(artifact_path)
        present = self._exists(rel)
        if rel is not None and not present:
            raise NotFound(f"artifact {rel!r} does not exist under {self.root_uri}")
        if dst_path is None:
            dst_root = tempfile.mkdtemp(prefix="deltaflow-artifacts-")
        else:
            dst_root = os.path.abspath(dst_path)
            if not os.path.isdir(dst_root):
                raise NotFound(f"the destination directory for downloaded artifacts does not exist: "
                               f"{dst_root}")
        dst = os.path.join(dst_root, *rel.split("/")) if rel else dst_root
        if present:  # an empty run (no root yet) downloads as an empty directory
            self._fetch(rel, dst)
        return dst

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        """Delete a file or directory, the whole root when None; a missing path is not an error."""
        self._delete(validate_artifact_path(artifact_path))

    # Backend primitives; ``rel`` is validated, '' or None means the root.
    @abc.abstractmethod
    def _put_file(self, src: str, rel: str) -> None: ...
    @abc.abstractmethod
    def _make_dirs(self, rel: str | None) -> None: ...
    @abc.abstractmethod
    def _write(self, rel: str, data: bytes) -> None: ...
    @abc.abstractmethod
    def _children(self, rel: str | None) -> list[tuple[str, bool, int]]: ...
    @abc.abstractmethod
    def _exists(self, rel: str | None) -> bool: ...
    @abc.abstractmethod
    def _fetch(self, rel: str | None, dst: str) -> None: ...
    @abc.abstractmethod
    def _delete(self, rel: str | None) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root_uri!r})"


_MARKER = "MLmodel"  # a model folder's completeness marker: always written last


def _marker_last(src_root: str) -> list[tuple[str, str]]:
    """``(local file, relative path)`` of every file below ``src_root``, the top-level MLmodel last."""
    files = []
    for dirpath, _dirs, filenames in os.walk(src_root):
        sub = os.path.relpath(dirpath, src_root).replace(os.sep, "/")
        files += [(os.path.join(dirpath, n), n if sub == "." else f"{sub}/{n}") for n in sorted(filenames)]
    return sorted(files, key=lambda f: f[1] == _MARKER)


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):  # not every file system (or FUSE mount) can fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish_local(src_root: str, target: str) -> None:
    """Copy ``src_root`` into a hidden staging folder beside ``target`` (MLmodel last, every file
    fsynced), then publish it with one rename. A crash leaves either the old state or the whole new
    folder, plus at most a hidden staging folder that listings skip and gc removes. An existing
    ``target`` is first renamed aside (hidden) and removed after the new one is in place."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f"{_TMP_PREFIX}{os.urandom(8).hex()}")
    os.mkdir(staging)
    try:
        for src, sub in _marker_last(src_root):
            dest = os.path.join(staging, *sub.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(src, "rb") as inp, open(dest, "xb") as out:
                shutil.copyfileobj(inp, out, 1 << 20)
                out.flush()
                with contextlib.suppress(OSError):
                    os.fsync(out.fileno())
        for dirpath, dirnames, filenames in os.walk(src_root):  # empty folders too, as copytree keeps them
            if not dirnames and not filenames:
                rel = os.path.relpath(dirpath, src_root)
                os.makedirs(os.path.join(staging, rel), exist_ok=True)
        _fsync_dir(staging)
        try:
            os.rename(staging, target)  # replaces nothing, or an empty folder
        except OSError:
            if not os.path.lexists(target):
                raise
            aside = os.path.join(parent, f"{_TMP_PREFIX}{os.urandom(8).hex()}")
            os.rename(target, aside)
            os.rename(staging, target)
            shutil.rmtree(aside, ignore_errors=True) if os.path.isdir(aside) else os.remove(aside)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _atomic_write(dest: str, fill: Any) -> None:
    """Write a temp file in dest's directory, then rename it over dest: readers, and a crash
    mid-write, only ever see the old file or the whole new one. Mode 0o666 lets the umask apply as
    usual (mkstemp's 0600 would hide artifacts from other users of a shared /Volumes path)."""
    directory = os.path.dirname(dest)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f"{_TMP_PREFIX}{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            # Durable before the rename publishes it; some FUSE mounts lack fsync (rename still atomic).
            with contextlib.suppress(OSError):
                os.fsync(fh.fileno())
        try:
            os.replace(tmp, dest)
        except FileExistsError:
            # Some FUSE mounts refuse to rename over an existing file (EEXIST): remove, rename.
            # Only for that error: after any other failure the old file must stay intact.
            os.remove(dest)
            os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class LocalArtifactRepository(ArtifactRepository):
    """Artifacts on a local (or FUSE-mounted: /Volumes, /dbfs) file system."""

    def __init__(self, root_uri: str) -> None:
        self.root_uri = root_uri
        self.root_path = os.path.abspath(_local_path(root_uri))

    def _abs(self, rel: str | None) -> str:
        """The path of ``rel``, which must not lead out of the root through a symbolic link."""
        if not rel:
            return self.root_path
        path = os.path.join(self.root_path, *rel.split("/"))
        self._confine(rel, path)
        return path

    def _confine(self, rel: str, path: str) -> None:
        root = os.path.realpath(self.root_path)
        real = os.path.realpath(path)
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            raise InvalidArgument(f"artifact path {rel!r} leads outside the artifact root {self.root_uri} through "
                                  f"a symbolic link (to {real!r}); artifacts are read and written only inside it")

    def _confine_tree(self, rel: str | None, directory: str) -> None:
        """Refuse a download whose tree holds a symbolic link leading out of the root."""
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames[:] = [d for d in dirnames if not d.startswith(_TMP_PREFIX)]
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    sub = os.path.relpath(path, self.root_path).replace(os.sep, "/")
                    self._confine(sub, path)

    def publish_dir(self, local_dir: str, artifact_path: str) -> None:
        """Publish a local directory (a model) as ``artifact_path`` with one atomic rename."""
        rel = validate_artifact_path(artifact_path)
        if rel is None:
            raise InvalidArgument("a model must be published below the artifact root, not as the root itself")
        src_root = _local_source(local_dir, want_dir=True)
        target = self._abs(rel)
        self._io(f"publish {src_root!r} as {rel!r}", lambda: _publish_local(src_root, target))

    def _io(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except OSError as exc:
            raise StorageError(f"could not {what} under {self.root_uri}: {exc}") from exc

    def _put_file(self, src: str, rel: str) -> None:
        def fill(fh: Any) -> None:
            with open(src, "rb") as inp:
                shutil.copyfileobj(inp, fh, 1 << 20)

        self._io(f"copy {src!r} to {rel!r}", lambda: _atomic_write(self._abs(rel), fill))

    def _make_dirs(self, rel: str | None) -> None:
        self._io(f"create {rel!r}", lambda: os.makedirs(self._abs(rel), exist_ok=True))

    def _write(self, rel: str, data: bytes) -> None:
        self._io(f"write {rel!r}", lambda: _atomic_write(self._abs(rel), lambda fh: fh.write(data)))

    def _children(self, rel: str | None) -> list[tuple[str, bool, int]]:
        directory = self._abs(rel)
        if not os.path.isdir(directory):
            return []
        with os.scandir(directory) as entries:
            return [(e.name, e.is_dir(), 0 if e.is_dir() else e.stat().st_size)
                    for e in entries if not e.name.startswith(_TMP_PREFIX)]  # hide torn writes

    def _exists(self, rel: str | None) -> bool:
        return os.path.exists(self._abs(rel))

    def _fetch(self, rel: str | None, dst: str) -> None:
        src = self._abs(rel)
        if os.path.isdir(src):
            self._confine_tree(rel, src)

        def copy() -> None:
            if os.path.isdir(src):
                shutil.copytree(src, dst, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(_TMP_PREFIX + "*"))
            else:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)

        self._io(f"download {rel or '/'!r} to {dst!r}", copy)

    def _delete(self, rel: str | None) -> None:
        # The parent must be inside the root; the last part may itself be a link (it is removed, not followed).
        if rel and "/" in rel:
            self._abs(rel.rsplit("/", 1)[0])
        target = os.path.join(self.root_path, *rel.split("/")) if rel else self.root_path

        def delete() -> None:
            with contextlib.suppress(FileNotFoundError):  # gone concurrently: as asked
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                elif os.path.lexists(target):
                    os.remove(target)

        self._io(f"delete {rel or '/'!r}", delete)


class HadoopArtifactRepository(ArtifactRepository):
    """Artifacts on any Hadoop-compatible store, through the Spark driver's JVM FileSystem.

    The session is looked up (or built, via ``get_spark``) at the first operation, so making a
    repository object is free and needs no JVM. As with ``spark.read`` paths, the root URI is
    taken unescaped: 's3a://b/my dir' names a directory with a space.
    """

    def __init__(self, root_uri: str, spark: Any = None) -> None:
        self.root_uri = root_uri
        self._spark = spark
        self._jvm_root: Any = None
        self._fs: Any = None

    def _session(self) -> Any:
        if self._spark is None:
            if importlib.util.find_spec("pyspark") is None:
                raise MissingDependency.for_extra(f"Artifacts at {self.root_uri}", "pyspark", "spark")
            from deltaflow._spark import get_spark

            self._spark = get_spark()
        if getattr(self._spark, "_jvm", None) is None or getattr(self._spark, "_jsc", None) is None:
            raise StorageError(
                f"artifacts at {self.root_uri} need a classic SparkSession with JVM access; a Spark "
                "Connect session has none. Use a /Volumes/... path (FUSE) as the artifact location."
            )
        return self._spark

    def _bind(self) -> Any:
        """The JVM FileSystem of the root, bound on first use (FileSystem.get caches it too)."""
        if self._fs is None:
            spark = self._session()
            self._jvm_root = spark._jvm.org.apache.hadoop.fs.Path(self.root_uri)
            self._fs = self._jvm_root.getFileSystem(spark._jsc.hadoopConfiguration())
        return self._fs

    def _path(self, rel: str | None) -> Any:
        self._bind()
        if not rel:
            return self._jvm_root
        # Path(parent, child) quotes the child, so names with spaces or '%' stay literal.
        return self._spark._jvm.org.apache.hadoop.fs.Path(self._jvm_root, rel)

    def _local(self, path: str) -> Any:
        # The (scheme, authority, path) constructor avoids URI-escaping surprises with spaces.
        return self._spark._jvm.org.apache.hadoop.fs.Path("file", None, os.path.abspath(path))

    def _call(self, what: str, fn: Any) -> Any:
        """Run JVM calls, turning py4j/Java failures into StorageError naming what failed."""
        try:
            return fn()
        except (MissingDependency, StorageError):
            raise
        except Exception as exc:  # Py4JJavaError and friends; pyspark may not be importable here
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StorageError(f"could not {what} at {self.root_uri}: {first}") from exc

    def _put_file(self, src: str, rel: str) -> None:
        self._call(f"upload {src!r} to {rel!r}", lambda: self._bind().copyFromLocalFile(
            False, True, self._local(src), self._path(rel)))

    def _make_dirs(self, rel: str | None) -> None:
        self._call(f"create {rel!r}", lambda: self._bind().mkdirs(self._path(rel)))

    def _write(self, rel: str, data: bytes) -> None:
        def write() -> None:
            out = self._bind().create(self._path(rel), True)  # object stores publish on close
            try:
                out.write(bytearray(data))
            finally:
                out.close()

        self._call(f"write {rel!r}", write)

    def _children(self, rel: str | None) -> list[tuple[str, bool, int]]:
        def listing() -> list[tuple[str, bool, int]]:
            fs, target = self._bind(), self._path(rel)
            if not fs.exists(target) or not fs.getFileStatus(target).isDirectory():
                return []
            # LocalFileSystem's listStatus already hides its .crc checksum files.
            return [(st.getPath().getName(), bool(st.isDirectory()), int(st.getLen()))
                    for st in fs.listStatus(target)]

        return self._call(f"list {rel or '/'!r}", listing)

    def _exists(self, rel: str | None) -> bool:
        return self._call(f"stat {rel or '/'!r}", lambda: bool(self._bind().exists(self._path(rel))))

    def _fetch(self, rel: str | None, dst: str) -> None:
        def fetch(src: Any, local: str) -> None:
            fs = self._bind()
            if not fs.getFileStatus(src).isDirectory():
                os.makedirs(os.path.dirname(local), exist_ok=True)
                # useRawLocalFileSystem=True: no .crc side files next to the user's download.
                fs.copyToLocalFile(False, src, self._local(local), True)
                return
            os.makedirs(local, exist_ok=True)
            for child in fs.listStatus(src):  # per child: a dir copy would nest on existing dst
                fetch(child.getPath(), os.path.join(local, child.getPath().getName()))

        self._call(f"download {rel or '/'!r}", lambda: fetch(self._path(rel), dst))

    def _delete(self, rel: str | None) -> None:
        # delete() returns False for a missing path, which is fine.
        self._call(f"delete {rel or '/'!r}", lambda: self._bind().delete(self._path(rel), True))


def _local_path(uri: str) -> str:
    """The file-system path a local URI names ('file:///x', 'file:/x', '/x', 'C:\\x', 'rel/x')."""
    if uri.lower().startswith("file:"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidArgument(f"file URI {uri!r} names a remote host; only local file URIs work")
        if os.name == "nt":  # file:///C:/x -> C:\\x; nturl2path avoids urllib.request's 40 ms import
            from nturl2path import url2pathname

            return url2pathname(parsed.path)
        return unquote(parsed.path)
    return uri


def get_artifact_repository(uri: str) -> ArtifactRepository:
    """The repository for an artifact root: local/FUSE paths and file: locally, the rest via Hadoop."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgument(f"artifact location {uri!r} must be a non-empty path or URI")
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ""
    # No scheme (incl. /Volumes/..., /dbfs/... FUSE), a Windows drive letter, or file:.
    if not scheme or len(scheme) == 1 or scheme == "file":
        return LocalArtifactRepository(uri)
    if scheme in _NOT_STORAGE:
        raise InvalidArgument(f"artifact location {uri!r}: {scheme}: is not a storage scheme; use a "
                              "local path, /Volumes/..., dbfs:/, s3a://, abfss://, gs:// or hdfs:// URI")
    if importlib.util.find_spec("pyspark") is None:
        raise MissingDependency.for_extra(f"Artifacts at {scheme}: URIs", "pyspark", "spark")
    return HadoopArtifactRepository(uri)

