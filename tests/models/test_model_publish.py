"""Publishing a model folder into artifact storage: whole or not at all on local/FUSE paths (one rename),
MLmodel last on Hadoop URIs (through the JVM's FileSystem, here on file:///)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deltaflow import artifacts as art
from deltaflow.errors import StorageError


def _model_dir(root: Path, tag: str) -> str:
    (root / "sub").mkdir(parents=True)
    (root / "model.pkl").write_text(f"pickle {tag}")
    (root / "sub" / "extra.txt").write_text(tag)
    (root / "MLmodel").write_text(f"flavors: {{}}  # {tag}\n")
    return str(root)


class _Recording(art.HadoopArtifactRepository):
    """The Hadoop repository, recording the order its files are uploaded in."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.uploaded: list[str] = []

    def _put_file(self, src: str, rel: str) -> None:
        self.uploaded.append(rel)
        super()._put_file(src, rel)


@pytest.fixture(params=["local", pytest.param("hadoop", marks=pytest.mark.spark)])
def repo(request, tmp_path: Path) -> art.ArtifactRepository:
    root = tmp_path / "artifacts root"
    if request.param == "local":
        return art.LocalArtifactRepository(str(root))
    return _Recording(f"file://{root}", spark=request.getfixturevalue("spark"))


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".crc")}


def test_publish_then_replace_leaves_exactly_the_new_model(repo, tmp_path: Path):
    root = tmp_path / "artifacts root"
    repo.publish_dir(_model_dir(tmp_path / "v1", "v1"), "runs/m")
    assert _tree(root / "runs" / "m") == {"MLmodel": "flavors: {}  # v1\n", "model.pkl": "pickle v1",
                                          "sub/extra.txt": "v1"}
    second = _model_dir(tmp_path / "v2", "v2")
    os.remove(os.path.join(second, "sub", "extra.txt"))
    repo.publish_dir(second, "runs/m")
    assert _tree(root / "runs" / "m") == {"MLmodel": "flavors: {}  # v2\n", "model.pkl": "pickle v2"}
    assert [f.path for f in repo.list_artifacts("runs")] == ["runs/m"]  # no staging folder left, none listed
    assert not [p for p in os.listdir(root / "runs") if p.startswith(".")]
    if isinstance(repo, _Recording):
        assert repo.uploaded[-1] == "runs/m/MLmodel" and repo.uploaded[2] == "runs/m/MLmodel"


def test_publish_refuses_the_root_and_a_missing_source(repo, tmp_path: Path):
    from deltaflow.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="below the artifact root"):
        repo.publish_dir(_model_dir(tmp_path / "v1", "v1"), "")
    with pytest.raises(InvalidArgument, match="does not exist"):
        repo.publish_dir(str(tmp_path / "missing"), "m")


def test_a_failed_local_publish_leaves_the_old_model_and_no_staging(tmp_path: Path):
    repo = art.LocalArtifactRepository(str(tmp_path / "root"))
    repo.publish_dir(_model_dir(tmp_path / "v1", "v1"), "m")
    bad = _model_dir(tmp_path / "v2", "v2")
    os.symlink(str(tmp_path / "nowhere"), os.path.join(bad, "sub", "broken"))  # the copy into staging fails
    with pytest.raises(StorageError, match="publish"):
        repo.publish_dir(bad, "m")
    assert _tree(tmp_path / "root" / "m")["model.pkl"] == "pickle v1"
    assert os.listdir(tmp_path / "root") == ["m"]


@pytest.mark.spark
def test_unreferenced_registry_copies_are_found_on_hadoop_uris(tmp_path: Path, spark):
    """The Hadoop half of gc_model_files: a copy's age is its newest file's, referenced copies and
    hidden staging folders are left alone."""
    import time

    from deltaflow.registry.copies import _hadoop_orphan_copies

    root = tmp_path / "root"
    for copy in ("kept", "orphan", ".deltaflow-tmp-x"):
        _model_dir(root / "_registry" / "m" / copy, copy)
    repo = art.HadoopArtifactRepository(f"file://{root}", spark=spark)
    now = time.time()
    assert _hadoop_orphan_copies(repo, {"kept"}, now, 3600) == []  # young
    assert _hadoop_orphan_copies(repo, {"kept"}, now + 7200, 3600) == ["_registry/m/orphan"]
    assert _hadoop_orphan_copies(art.HadoopArtifactRepository(f"file://{tmp_path}/none", spark=spark),
                                 set(), now, 0) == []
