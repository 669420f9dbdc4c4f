"""Artifact repositories (local and Hadoop-through-the-JVM) and Databricks context read from Spark."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deltaflow import artifacts as art
from deltaflow.entities import FileInfo
from deltaflow.errors import InvalidArgument, NotFound
from deltaflow.tracking import _context as ctx

pytestmark = pytest.mark.spark

@pytest.fixture
def src_tree(tmp_path: Path) -> Path:
    """a.txt, sub/b.bin, sub/deep/c.json and an empty dir."""
    root = tmp_path / "src"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.bin").write_bytes(b"\x00\x01\x02")
    (root / "sub" / "deep" / "c.json").write_text('{"c": 1}')
    return root


@pytest.fixture(params=["local", "hadoop"])
def repo(request, tmp_path: Path) -> art.ArtifactRepository:
    root = tmp_path / "artifacts root"  # a space: URI escaping must not mangle names
    if request.param == "local":
        return art.LocalArtifactRepository(str(root))
    spark = request.getfixturevalue("spark")
    # file:///... through the JVM. Hadoop takes URIs unescaped, like spark.read paths do.
    return art.HadoopArtifactRepository(f"file://{root}", spark=spark)


def _files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes, ignoring Hadoop checksum side files."""
    return {str(p.relative_to(root)).replace(os.sep, "/"): p.read_bytes()
            for p in root.rglob("*") if p.is_file() and not p.name.endswith(".crc")}


def test_round_trip(repo: art.ArtifactRepository, src_tree: Path, tmp_path: Path):
    repo.log_artifact(str(src_tree / "a.txt"))
    repo.log_artifact(str(src_tree / "a.txt"), "copies//x/")  # normalised to copies/x
    repo.log_artifacts(str(src_tree), "tree")
    repo.write_bytes("notes/readme.md", b"# hello")
    repo.write_bytes("notes/readme.md", b"# hello again")  # overwrite

    assert repo.list_artifacts() == [
        FileInfo("a.txt", False, 5), FileInfo("copies", True, None),
        FileInfo("notes", True, None), FileInfo("tree", True, None),
    ]
    assert repo.list_artifacts("tree") == [
        FileInfo("tree/a.txt", False, 5), FileInfo("tree/empty", True, None),
        FileInfo("tree/sub", True, None),
    ]
    assert repo.list_artifacts("tree/sub/") == [
        FileInfo("tree/sub/b.bin", False, 3), FileInfo("tree/sub/deep", True, None)]
    assert repo.list_artifacts("copies/x") == [FileInfo("copies/x/a.txt", False, 5)]
    assert repo.list_artifacts("a.txt") == []  # MLflow: listing a file gives nothing
    assert repo.list_artifacts("missing") == []

    # Download a single file: keeps its relative path under dst.
    dst = tmp_path / "dl1"
    dst.mkdir()
    got = repo.download_artifacts("notes/readme.md", str(dst))
    assert got == str(dst / "notes" / "readme.md") and Path(got).read_bytes() == b"# hello again"

    # Download a directory into a fresh temp dir.
    got_dir = Path(repo.download_artifacts("tree"))
    assert got_dir.name == "tree"
    assert _files(got_dir) == _files(src_tree)
    assert (got_dir / "sub" / "deep").is_dir()

    # Download everything.
    everything = Path(repo.download_artifacts())
    assert set(_files(everything)) == {"a.txt", "copies/x/a.txt", "notes/readme.md", "tree/a.txt",
                                       "tree/sub/b.bin", "tree/sub/deep/c.json"}

    with pytest.raises(NotFound):
        repo.download_artifacts("nope.txt")
    with pytest.raises(NotFound):
        repo.download_artifacts("a.txt", str(tmp_path / "no-such-dir"))

    repo.delete_artifacts("tree/sub")
    assert [f.path for f in repo.list_artifacts("tree")] == ["tree/a.txt", "tree/empty"]
    repo.delete_artifacts("tree/sub")  # missing is fine
    repo.delete_artifacts()
    assert repo.list_artifacts() == []
    repo.delete_artifacts()  # root already gone: still fine


BAD_PATHS = ["../x", "/abs", "a/../../b", "C:\\x", "C:x", "a\x00b", "a\\..\\..\\b", "%2e%2e/x", "~/x"]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_bad_paths_rejected_before_writing(repo: art.ArtifactRepository, src_tree: Path,
                                           tmp_path: Path, bad: str):
    root = tmp_path / "artifacts root"
    calls = [
        lambda: repo.log_artifact(str(src_tree / "a.txt"), bad),
        lambda: repo.log_artifacts(str(src_tree), bad),
        lambda: repo.write_bytes(bad, b"x"),
        lambda: repo.write_bytes(f"{bad}/f.txt", b"x"),
        lambda: repo.list_artifacts(bad),
        lambda: repo.download_artifacts(bad, str(tmp_path)),
        lambda: repo.delete_artifacts(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument) as info:
            call()
        assert repr(bad)[1:-1] in str(info.value) or bad in str(info.value)
    assert not root.exists()  # nothing written anywhere
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_validate_artifact_path_rules():
    assert art.validate_artifact_path("a//b/") == "a/b"
    assert art.validate_artifact_path("./a/./b") == "a/b"
    assert art.validate_artifact_path("") is None and art.validate_artifact_path(None) is None
    assert art.validate_artifact_path("a..b/..c") == "a..b/..c"  # only whole '..' segments
    with pytest.raises(InvalidArgument, match=r"'\.\.' segments"):
        art.validate_artifact_path("a/../../b")
    with pytest.raises(InvalidArgument, match="absolute"):
        art.validate_artifact_path("/etc/passwd")
    with pytest.raises(InvalidArgument, match="backslash"):
        art.validate_artifact_path("a\\b")
    with pytest.raises(InvalidArgument, match="NUL"):
        art.validate_artifact_path("a\x00")
    with pytest.raises(InvalidArgument, match="drive"):
        art.validate_artifact_path("D:/data")
    with pytest.raises(InvalidArgument, match="must name a file"):
        art.LocalArtifactRepository("/tmp/x").write_bytes("", b"")


def test_join_uri():
    assert art.join_uri("dbfs:/", "a", "b/") == "dbfs:/a/b"
    assert art.join_uri("s3://bucket/", "/x") == "s3://bucket/x"
    assert art.join_uri("file:///tmp/r/", "") == "file:///tmp/r"
    assert art.join_uri("/Volumes/c/s/v", "run", "artifacts") == "/Volumes/c/s/v/run/artifacts"


def test_local_write_is_atomic_and_leaves_no_temp(tmp_path: Path, monkeypatch):
    repo = art.LocalArtifactRepository(tmp_path.as_uri())  # file: URI maps to the local path
    assert repo.root_path == str(tmp_path)
    repo.write_bytes("m.txt", b"old")

    def crash(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(art.os, "replace", crash)
    with pytest.raises(art.StorageError, match="disk full"):
        repo.write_bytes("m.txt", b"new-but-torn")
    monkeypatch.undo()
    assert (tmp_path / "m.txt").read_bytes() == b"old"  # the old file survived intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.txt"]  # temp file cleaned up


def test_local_log_artifact_missing_source(tmp_path: Path):
    repo = art.LocalArtifactRepository(str(tmp_path / "r"))
    with pytest.raises(InvalidArgument, match="does not exist"):
        repo.log_artifact(str(tmp_path / "nope.txt"))
    with pytest.raises(InvalidArgument, match="directory"):
        repo.log_artifacts(str(tmp_path / "nope"))


@pytest.mark.parametrize("uri,kind", [
    ("dbfs:/databricks/mlflow/1/run", art.HadoopArtifactRepository),
    ("s3a://bucket/p", art.HadoopArtifactRepository),
    ("s3://bucket/p", art.HadoopArtifactRepository),
    ("abfss://c@acct.dfs.core.windows.net/p", art.HadoopArtifactRepository),
    ("wasbs://c@acct.blob.core.windows.net/p", art.HadoopArtifactRepository),
    ("gs://bucket/p", art.HadoopArtifactRepository),
    ("hdfs://nn:8020/p", art.HadoopArtifactRepository),
    ("/Volumes/main/ml/artifacts/run", art.LocalArtifactRepository),
    ("/dbfs/mlflow/run", art.LocalArtifactRepository),
    ("file:///tmp/run", art.LocalArtifactRepository),
    ("file:/tmp/run", art.LocalArtifactRepository),
    ("relative/dir", art.LocalArtifactRepository),
    ("C:\\mlruns\\1", art.LocalArtifactRepository),
])
def test_get_artifact_repository_dispatch(uri: str, kind: type):
    repo = art.get_artifact_repository(uri)
    assert type(repo) is kind and repo.root_uri == uri


def test_get_artifact_repository_rejects_non_storage():
    for uri in ("runs:/abc/model", "https://example.com/x", "", "file://otherhost/x"):
        with pytest.raises(InvalidArgument):
            art.get_artifact_repository(uri)


def test_hadoop_construction_without_pyspark(monkeypatch):
    monkeypatch.setattr(art.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(art.MissingDependency, match=r"deltaflow\[spark\]"):
        art.get_artifact_repository("s3a://bucket/p")
    assert isinstance(art.get_artifact_repository("/tmp/p"), art.LocalArtifactRepository)


_PROPS = {
    "spark.databricks.notebook.id": "1234",
    "spark.databricks.notebook.path": "/Users/alice@example.com/train",
    "spark.databricks.job.id": "55",
    "spark.databricks.job.runId": "777",
    "spark.databricks.api.url": "https://westeurope.azuredatabricks.net",
}
_CONF = {
    "spark.databricks.clusterUsageTags.clusterId": "0101-123456-abcd",
    "spark.databricks.workspaceUrl": "adb-42.azuredatabricks.net",
}


@pytest.fixture
def databricks_spark(spark, monkeypatch):
    ctx.clear_cache()
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.delenv("DB_CLUSTER_ID", raising=False)
    sc = spark.sparkContext
    for key, value in _PROPS.items():
        sc.setLocalProperty(key, value)
    for key, value in _CONF.items():
        spark.conf.set(key, value)
    yield spark
    for key in _PROPS:
        sc.setLocalProperty(key, None)  # None removes a local property
    for key in _CONF:
        spark.conf.unset(key)
    ctx.clear_cache()


def test_databricks_context_from_spark(databricks_spark):
    raw = ctx.databricks_context(databricks_spark)
    assert raw["notebook_id"] == "1234" and raw["job_run_id"] == "777"
    assert raw["cluster_id"] == "0101-123456-abcd"
    tags = ctx.resolve_context_tags()  # no explicit session: reads the already active one
    assert tags[ctx.SOURCE_TYPE] == "JOB"
    assert tags[ctx.SOURCE_NAME] == "jobs/55/run/777"
    assert tags[ctx.DB_JOB_ID] == "55" and tags[ctx.DB_JOB_RUN_ID] == "777"
    assert tags[ctx.DB_NOTEBOOK_ID] == "1234"
    assert tags[ctx.DB_NOTEBOOK_PATH] == "/Users/alice@example.com/train"
    assert tags[ctx.DB_WEBAPP_URL] == "https://westeurope.azuredatabricks.net"
    assert tags[ctx.DB_WORKSPACE_URL] == "https://adb-42.azuredatabricks.net"
    assert tags[ctx.DB_CLUSTER_ID] == "0101-123456-abcd"


def test_databricks_notebook_without_job(databricks_spark):
    databricks_spark.sparkContext.setLocalProperty("spark.databricks.job.id", None)
    tags = ctx.resolve_context_tags(databricks_spark)
    assert tags[ctx.SOURCE_TYPE] == "NOTEBOOK"
    assert tags[ctx.SOURCE_NAME] == "/Users/alice@example.com/train"
    assert ctx.DB_JOB_ID not in tags


def test_databricks_context_cleared_and_off_databricks(spark, monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert "notebook_id" not in ctx.databricks_context(spark)  # fixture cleaned up after itself
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION")
    spark.sparkContext.setLocalProperty("spark.databricks.job.id", "9")
    try:
        if not ctx.is_databricks():  # a real Databricks host would legitimately see it
            assert ctx.databricks_context(spark) == {}  # off Databricks: no JVM calls at all
    finally:
        spark.sparkContext.setLocalProperty("spark.databricks.job.id", None)
