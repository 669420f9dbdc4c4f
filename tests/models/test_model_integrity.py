"""Model integrity on a real store: incomplete models are refused with a clear error, the pickle switch
(MLFLOW_ALLOW_PICKLE_DESERIALIZATION / DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION) is honoured, every file an
MLmodel names stays inside the model folder, and artifact writes and reads stay inside the artifact root."""

from __future__ import annotations

import os
import pickle

import pytest

import deltaflow
import deltaflow.pyfunc
import deltaflow.sklearn
from deltaflow import DeltaflowClient
from deltaflow.errors import InvalidArgument, InvalidState, NotFound, PermissionDenied
from deltaflow.models import Model

rust_only = pytest.mark.parametrize("engine", ["rust"], indirect=True)
SWITCHES = ("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION")


@pytest.fixture(autouse=True)
def _no_switch(monkeypatch):
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)


class _Payload:
    """Unpickling it creates ``marker``: proof that a pickle ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _payload_model(folder, marker: str, flavor: str = "pyfunc", file: str = "python_model.pkl") -> str:
    """A model folder whose pickle runs ``os.mkdir(marker)`` when loaded."""
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, os.path.basename(file)), "wb") as fh:
        pickle.dump(_Payload(marker), fh)
    model = Model()
    if flavor == "pyfunc":
        model.add_flavor("python_function", loader_module="mlflow.pyfunc.model", python_model=file)
    else:
        model.add_flavor("python_function", loader_module="mlflow.sklearn", model_path=file)
        model.add_flavor("sklearn", pickled_model=file, serialization_format="pickle")
    model.save(os.path.join(folder, "MLmodel"))
    return folder


def _saved(tmp_path, name: str = "model") -> str:
    path = str(tmp_path / name)
    deltaflow.pyfunc.save_model(path, python_model=lambda df: df)
    return path


# -- incomplete models ------------------------------------------------------------------------
def test_loading_a_model_missing_its_pickle_is_a_clear_error(tmp_path):
    path = _saved(tmp_path)
    os.remove(os.path.join(path, "python_model.pkl"))
    with pytest.raises(InvalidState, match=r"incomplete.*python_model\.pkl"):
        deltaflow.pyfunc.load_model(path)
    sk = _payload_model(tmp_path / "sk", str(tmp_path / "never"), flavor="sklearn", file="model.pkl")
    os.remove(os.path.join(sk, "model.pkl"))
    for load in (deltaflow.sklearn.load_model, deltaflow.pyfunc.load_model):
        with pytest.raises(InvalidState, match=r"incomplete.*model\.pkl"):
            load(sk)


def test_a_folder_without_mlmodel_is_not_a_model(tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "python_model.pkl").write_bytes(b"x")
    with pytest.raises(NotFound, match="MLmodel"):
        deltaflow.pyfunc.load_model(str(folder))


@rust_only
def test_registering_an_incomplete_model_is_refused_with_nothing_written(store_uri, tmp_path):
    client = DeltaflowClient(store_uri)
    path = _saved(tmp_path)
    os.remove(os.path.join(path, "python_model.pkl"))
    with pytest.raises(InvalidState, match=r"incomplete.*python_model\.pkl"):
        client.register_model(path, "torn")
    with pytest.raises(NotFound):
        client.get_registered_model("torn")
    assert not os.path.exists(os.path.join(client._store.location.artifact_root, "_registry"))
    # The same through a run: log, tear, register by runs:/ URI.
    with deltaflow.start_run() as run:
        deltaflow.pyfunc.log_model(name="m", python_model=lambda df: df)
    os.remove(os.path.join(run.info.artifact_uri, "m", "python_model.pkl"))
    with pytest.raises(InvalidState, match="incomplete"):
        deltaflow.register_model(f"runs:/{run.info.run_id}/m", "torn")
    assert not os.path.exists(os.path.join(client._store.location.artifact_root, "_registry"))


@rust_only
def test_logging_a_model_again_under_the_same_name_replaces_it_whole(store_uri):
    with deltaflow.start_run() as run:
        deltaflow.pyfunc.log_model(name="m", python_model=lambda df: [1] * len(df), artifacts=None)
        deltaflow.pyfunc.log_model(name="m", python_model=lambda df: [2] * len(df))
    assert list(deltaflow.pyfunc.load_model(f"runs:/{run.info.run_id}/m").predict([0])) == [2]
    assert not [n for n in os.listdir(run.info.artifact_uri) if n.startswith(".")]


@rust_only
def test_staging_folders_are_neither_listed_nor_downloaded(store_uri, tmp_path):
    with deltaflow.start_run() as run:
        deltaflow.pyfunc.log_model(name="m", python_model=lambda df: df)
    staging = os.path.join(run.info.artifact_uri, ".deltaflow-tmp-abc")
    os.makedirs(staging)
    (tmp_path / "x").write_text("x")
    os.rename(str(tmp_path / "x"), os.path.join(staging, "MLmodel"))
    client = DeltaflowClient(store_uri)
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["m"]
    local = client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl"))
    assert os.listdir(local) == ["m"]


# -- the pickle switch ---------------------------------------------------------------------------
@pytest.mark.parametrize("switch", SWITCHES)
def test_pickle_switch_false_refuses_every_loader_before_unpickling(tmp_path, monkeypatch, switch):
    marker = str(tmp_path / "ran")
    pyf = _payload_model(tmp_path / "pyf", marker)
    skl = _payload_model(tmp_path / "skl", marker, flavor="sklearn", file="model.pkl")
    monkeypatch.setenv(switch, "false")
    for load, path in ((deltaflow.pyfunc.load_model, pyf), (deltaflow.sklearn.load_model, skl),
                       (deltaflow.pyfunc.load_model, skl)):
        with pytest.raises(PermissionDenied, match=switch):
            load(path)
    assert not os.path.exists(marker)


@rust_only
def test_pickle_switch_false_refuses_models_uris(store_uri, tmp_path, monkeypatch):
    marker = str(tmp_path / "ran")
    client = DeltaflowClient(store_uri)
    client.register_model(_payload_model(tmp_path / "pyf", marker), "evil")  # registering unpickles nothing
    assert not os.path.exists(marker)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "0")
    with pytest.raises(PermissionDenied, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        deltaflow.pyfunc.load_model("models:/evil/1")
    assert not os.path.exists(marker)


def test_pickle_switch_default_is_mlflows_true_and_false_wins(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    assert deltaflow.pyfunc.load_model(path).predict([3]) == [3]  # unset: allowed, as in MLflow
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "TRUE")
    monkeypatch.setenv("DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(PermissionDenied, match="DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        deltaflow.pyfunc.load_model(path)
    monkeypatch.setenv("DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION", "1")
    assert deltaflow.pyfunc.load_model(path).predict([3]) == [3]


def test_pickle_switch_with_a_bad_value_is_an_invalid_argument(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    monkeypatch.setenv("DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION", "no")
    with pytest.raises(InvalidArgument, match=r"DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION.*'no'.*true.*false"):
        deltaflow.pyfunc.load_model(path)


def test_saving_with_the_switch_false_still_infers_the_signature(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setenv("DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = deltaflow.pyfunc.save_model(str(tmp_path / "m"), python_model=lambda df: df["a"] * 2,
                                        input_example=pd.DataFrame({"a": [1.0]}))
    assert model.signature is not None and model.signature.outputs is not None


# -- paths named by an MLmodel ------------------------------------------------------------------
@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_pickle_paths_outside_the_model_folder_are_refused(tmp_path, where):
    marker = str(tmp_path / "ran")
    outside = _payload_model(tmp_path / "elsewhere", marker)
    pkl = os.path.join(outside, "python_model.pkl")
    ref = pkl if where == "absolute" else "../elsewhere/python_model.pkl"
    cases = [
        ("pyfunc", "python_model", deltaflow.pyfunc.load_model),
        ("sklearn", "pickled_model", deltaflow.sklearn.load_model),
        ("sklearn", "model_path", deltaflow.pyfunc.load_model),
    ]
    for flavor, key, load in cases:
        folder = _payload_model(tmp_path / f"{flavor}-{key}", marker, flavor=flavor,
                                file="python_model.pkl" if flavor == "pyfunc" else "model.pkl")
        meta = Model.load(folder)
        conf = meta.flavors["python_function" if key in ("python_model", "model_path") else "sklearn"]
        conf[key] = ref
        meta.save(os.path.join(folder, "MLmodel"))
        with pytest.raises(InvalidArgument, match=rf"{key}.*{ref}.*inside the model folder"):
            load(folder)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("key,value", [("code", "../code"), ("code", "/tmp"), ("artifacts", "../../x"),
                                       ("data", "../data")])
def test_other_file_references_outside_the_model_folder_are_refused(tmp_path, key, value):
    folder = _saved(tmp_path)
    meta = Model.load(folder)
    conf = meta.flavors["python_function"]
    if key == "artifacts":
        conf["artifacts"] = {"vocab": {"path": value, "uri": "vocab.txt"}}
    elif key == "data":
        conf["loader_module"], conf["data"] = "json", value  # a foreign loader reading data/
    else:
        conf[key] = value
    meta.save(os.path.join(folder, "MLmodel"))
    with pytest.raises(InvalidArgument, match=rf"{key}.*{value}.*inside the model folder"):
        deltaflow.pyfunc.load_model(folder)


def test_a_symlink_in_the_model_folder_pointing_out_is_refused(tmp_path):
    marker = str(tmp_path / "ran")
    outside = _payload_model(tmp_path / "elsewhere", marker)
    folder = _saved(tmp_path, "m")
    os.remove(os.path.join(folder, "python_model.pkl"))
    os.symlink(os.path.join(outside, "python_model.pkl"), os.path.join(folder, "python_model.pkl"))
    with pytest.raises(InvalidArgument, match="inside the model folder"):
        deltaflow.pyfunc.load_model(folder)
    assert not os.path.exists(marker)


# -- artifact paths -----------------------------------------------------------------------------
@rust_only
def test_symlinks_in_a_run_folder_are_not_followed_out_of_the_root(store_uri, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    src = tmp_path / "f.txt"
    src.write_text("data")
    client = DeltaflowClient(store_uri)
    with deltaflow.start_run() as run:
        deltaflow.log_text("x", "keep.txt")
    root = run.info.artifact_uri
    os.symlink(str(outside), os.path.join(root, "link"))
    run_id = run.info.run_id
    with pytest.raises(InvalidArgument, match="link.*outside the artifact root"):
        client.log_text(run_id, "pwned", "link/pwned.txt")
    with pytest.raises(InvalidArgument, match="link.*outside the artifact root"):
        client.log_artifact(run_id, str(src), "link")
    with pytest.raises(InvalidArgument, match="link.*outside the artifact root"):
        client.download_artifacts(run_id, "link/secret.txt", str(tmp_path / "dl1"))
    with pytest.raises(InvalidArgument, match="link.*outside the artifact root"):
        client.download_artifacts(run_id, "", str(tmp_path / "dl2"))
    assert sorted(os.listdir(outside)) == ["secret.txt"]


@rust_only
def test_an_artifact_file_ending_in_a_slash_is_refused(store_uri):
    client = DeltaflowClient(store_uri)
    with deltaflow.start_run() as run:
        pass
    for bad in ("a/", "dir/a/", "a/."):
        with pytest.raises(InvalidArgument, match=r"ends in '/'|names a folder"):
            client.log_text(run.info.run_id, "x", bad)
    assert client.list_artifacts(run.info.run_id) == []


def test_a_link_out_of_the_model_folder_is_refused_after_a_download_too(tmp_path):
    marker = str(tmp_path / "ran")
    outside = _payload_model(tmp_path / "elsewhere", marker)
    folder = _saved(tmp_path, "m")
    os.remove(os.path.join(folder, "python_model.pkl"))
    os.symlink(os.path.join(outside, "python_model.pkl"), os.path.join(folder, "python_model.pkl"))
    (tmp_path / "dst").mkdir()
    with pytest.raises(InvalidArgument, match="inside the model folder"):
        deltaflow.pyfunc.load_model(folder, dst_path=str(tmp_path / "dst"))
    assert not os.path.exists(marker)


def test_a_refused_model_adds_nothing_to_sys_path(tmp_path, monkeypatch):
    import sys

    folder = _saved(tmp_path)
    os.makedirs(os.path.join(folder, "code"))
    meta = Model.load(folder)
    meta.flavors["python_function"]["code"] = "code"
    meta.save(os.path.join(folder, "MLmodel"))
    monkeypatch.setenv("DELTAFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    before = list(sys.path)
    with pytest.raises(PermissionDenied):
        deltaflow.pyfunc.load_model(folder)
    assert sys.path == before
