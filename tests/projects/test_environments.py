"""Virtualenvs built from python_env.yaml, cached by content hash, built once and reused; the pure parts
of conda and docker environments."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

import deltaflow
import deltaflow.projects as projects
from deltaflow.errors import InvalidArgument, MissingDependency
from deltaflow.projects import environments
from deltaflow.projects.environments import EnvBuildFailed, PythonEnv
from deltaflow.projects.spec import DockerEnv

pytestmark = pytest.mark.e2e

CHECK = """
import importlib.util, json, sys
import tinydep
out = sys.argv[sys.argv.index("--out") + 1]
json.dump({"prefix": sys.prefix, "base_prefix": sys.base_prefix, "value": tinydep.VALUE,
           "deltaflow_importable": importlib.util.find_spec("deltaflow") is not None}, open(out, "w"))
"""


def _wheel(folder: Path) -> Path:
    """A one-module pure-Python wheel, written by hand (no build tools, no index)."""
    files = {
        "tinydep/__init__.py": "VALUE = 42\n",
        "tinydep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
        "tinydep-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append("tinydep-1.0.dist-info/RECORD,,")
    path = folder / "tinydep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in {**files, "tinydep-1.0.dist-info/RECORD": "\n".join(record) + "\n"}.items():
            zf.writestr(name, text)
    return path


@pytest.fixture()
def env_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "envs"
    monkeypatch.setenv("DELTAFLOW_ENV_CACHE", str(cache))
    return cache


def test_virtualenv_is_built_once_and_reused(rust_store: str, tmp_path: Path, env_cache: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    wheel = _wheel(tmp_path)
    (project / "python_env.yaml").write_text(f"python: '{sys.version_info[0]}.{sys.version_info[1]}'\n"
                                             f"build_dependencies: []\ndependencies:\n  - {wheel}\n")
    (project / "check.py").write_text(CHECK)
    seen = []
    for attempt in range(2):
        out = tmp_path / f"out{attempt}.json"
        submitted = projects.run(str(project), entry_point="check.py", parameters={"out": str(out)})
        seen.append(json.loads(out.read_text()))
        assert deltaflow.get_run(submitted.run_id).data.tags["mlflow.project.env"] == "virtualenv"
        if attempt == 0:
            prefix = Path(seen[0]["prefix"])
            marker = prefix / ".deltaflow-env.json"
            built = marker.stat().st_mtime_ns
            (prefix / "sentinel").write_text("a rebuild would remove this")
    first, second = seen
    assert prefix.parent == env_cache and first["prefix"] == second["prefix"]
    assert first["prefix"] != first["base_prefix"] and first["prefix"] != sys.prefix  # a virtualenv of its own
    assert first["value"] == 42 and first["deltaflow_importable"] is False  # isolated: only its dependency
    assert (prefix / "sentinel").exists() and marker.stat().st_mtime_ns == built  # the second run reused it
    assert json.loads(marker.read_text())["dependencies"] == [str(wheel)]
    assert sorted(p.name for p in env_cache.iterdir() if not p.name.endswith(".lock")) == [prefix.name]


def test_a_failed_build_fails_the_run_and_leaves_no_environment(rust_store: str, tmp_path: Path,
                                                                 env_cache: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "python_env.yaml").write_text(f"dependencies:\n  - {tmp_path / 'missing-1.0-py3-none-any.whl'}\n")
    (project / "a.py").write_text("")
    with pytest.raises(EnvBuildFailed, match=r"installing dependencies failed") as info:
        projects.run(str(project), entry_point="a.py", experiment_name="env")
    assert "missing-1.0-py3-none-any.whl" in str(info.value)
    runs = deltaflow.search_runs(experiment_names=["env"], output_format="list")
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "installing dependencies failed" in runs[0].data.tags["deltaflow.project.error"]
    assert [p.name for p in env_cache.iterdir() if not p.name.endswith(".lock")] == []


def test_cache_key_follows_the_content(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("tinydep==1.0\n")
    spec = lambda env: {"deps": list(env.dependencies), "files": environments._referenced_files(env.dependencies, str(tmp_path))}  # noqa: E731
    base = PythonEnv("3.11", (), ("-r requirements.txt",))
    key = environments._cache_key("venv", spec(base))
    assert environments._cache_key("venv", spec(PythonEnv("3.11", (), ("-r requirements.txt",)))) == key
    (tmp_path / "requirements.txt").write_text("tinydep==2.0\n")  # the referenced file changed
    assert environments._cache_key("venv", spec(base)) != key
    assert environments._cache_key("venv", spec(PythonEnv("3.11", (), ("other",)))) != key


@pytest.mark.parametrize(("text", "error", "message"), [
    ("python: 3.10\n", InvalidArgument, r"python: 3.1 is a number; quote the version"),
    ("python: 'three'\n", InvalidArgument, r"python 'three' must be a version like"),
    ("python: '3.2'\n", MissingDependency, r"asks for Python 3.2.*install Python 3.2"),
    ("dependencies: numpy\n", InvalidArgument, r"dependencies must be a list of pip requirement lines"),
    ("deps: []\n", InvalidArgument, r"unknown field\(s\) 'deps'; allowed: python, build_dependencies, dependencies"),
])
def test_bad_python_env_is_refused_before_the_run(rust_store: str, tmp_path: Path, text: str, error: type,
                                                   message: str) -> None:
    (tmp_path / "python_env.yaml").write_text(text)
    (tmp_path / "a.py").write_text("")
    with pytest.raises(error, match=message):
        projects.run(str(tmp_path), entry_point="a.py")
    assert not os.path.exists(rust_store)


def test_conda_file_gives_a_virtualenv_its_pip_dependencies(tmp_path: Path) -> None:
    path = tmp_path / "conda.yaml"
    path.write_text("dependencies:\n  - python=3.11.4\n  - pip\n  - pip: [requests==2.0, '-r req.txt']\n")
    assert PythonEnv.from_conda_yaml(str(path)) == PythonEnv("3.11.4", (), ("requests==2.0", "-r req.txt"))
    path.write_text("dependencies:\n  - python=3.11\n  - numpy=1.26\n")
    with pytest.raises(InvalidArgument, match=r"conda packages 'numpy=1.26', which a virtualenv cannot install"):
        PythonEnv.from_conda_yaml(str(path))


def test_docker_command_line() -> None:
    docker = DockerEnv("python:3.11", ("/data:/data",), ("HOME", ("K", "V")))
    argv = environments.docker_argv(docker, "/p", "python train.py --a 1", {"DELTAFLOW_RUN_ID": "r"}, ("/store",))
    assert argv == ["docker", "run", "--rm", "--init", "-v", "/p:/deltaflow/project", "-w", "/deltaflow/project",
                    "-v", "/store:/store", "-v", "/data:/data", "-e", "DELTAFLOW_RUN_ID=r", "-e", "HOME", "-e", "K=V",
                    "python:3.11", "sh", "-c", "python train.py --a 1"]


def test_local_environment_activates_only_an_unactivated_launcher_venv(monkeypatch) -> None:
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    plan = environments.EnvironmentPlan("local")
    in_venv = sys.prefix != sys.base_prefix
    variables = environments.prepare_environment(plan, ".").variables
    assert (variables.get("PATH", "").split(os.pathsep)[0] == os.path.join(sys.prefix, "bin")) is in_venv
    monkeypatch.setenv("VIRTUAL_ENV", "/somewhere/else")  # the user activated another environment: it stays first
    assert environments.prepare_environment(plan, ".").variables == {}


def test_conda_environment_is_cached_and_put_first_on_path(rust_store: str, tmp_path: Path, env_cache: Path,
                                                           monkeypatch) -> None:
    """conda is not installed here: a stand-in command (CONDA_EXE) makes the prefix the way
    ``conda env create --prefix P --file F`` does, so what deltaflow does around it runs for real."""
    builds = tmp_path / "builds.log"
    fake = tmp_path / "conda"
    fake.write_text(f"""#!/bin/bash
while [ $# -gt 0 ]; do case "$1" in --prefix) P="$2"; shift;; --file) F="$2"; shift;; esac; shift; done
mkdir -p "$P/bin" && ln -s {sys.executable} "$P/bin/python" && echo "$F" >> {builds}
""")
    fake.chmod(0o755)
    monkeypatch.setenv("CONDA_EXE", str(fake))
    project = tmp_path / "proj"
    project.mkdir()
    (project / "conda.yaml").write_text("name: c\ndependencies: [python=3.11]\n")
    (project / "where.py").write_text("import os, shutil, sys\nopen(sys.argv[2], 'w').write("
                                      "os.environ['CONDA_PREFIX'] + ' ' + shutil.which('python'))\n")
    seen = []
    for attempt in range(2):
        out = tmp_path / f"where{attempt}"
        submitted = projects.run(str(project), entry_point="where.py", parameters={"out": str(out)})
        assert deltaflow.get_run(submitted.run_id).data.tags["mlflow.project.env"] == "conda"
        seen.append(out.read_text().split())
    prefix = seen[0][0]
    assert seen[0] == seen[1] == [prefix, os.path.join(prefix, "bin", "python")]
    assert os.path.dirname(prefix) == str(env_cache)
    assert builds.read_text().splitlines() == [str(project / "conda.yaml")]  # built once
