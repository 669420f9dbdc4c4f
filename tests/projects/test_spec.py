"""MLproject parsing and parameter validation: every field, every bad case (pure, no store, no Spark)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deltaflow.errors import InvalidArgument
from deltaflow.projects.spec import DockerEnv, EntryPoint, Parameter, load_project

FULL = """
name: demo
python_env: env/python_env.yaml
entry_points:
  main:
    parameters:
      alpha: float
      n: {type: int, default: 3}
      label: {type: string, default: "a b"}
      data: path
      source: {type: uri, default: "s3://bucket/x"}
      plain: {default: 7}
    command: "python train.py --alpha {alpha} -n {n} --label {label} --data {data} --src {source} {plain}"
  other:
    command: "echo {{literal}}"
"""


def _project(tmp_path: Path, text: str | None, files: dict[str, str] | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if text is not None:
        (tmp_path / "MLproject").write_text(textwrap.dedent(text))
    for name, content in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    return tmp_path


def test_every_field_is_read(tmp_path: Path) -> None:
    project = load_project(_project(tmp_path, FULL, {"env/python_env.yaml": "python: '3.11'\n"}))
    assert project.name == "demo"
    assert project.env_type == "python_env"
    assert project.env_file == str(tmp_path / "env" / "python_env.yaml")
    assert project.mlproject_path == str(tmp_path / "MLproject")
    main = project.get_entry_point("main")
    assert {n: (p.type, p.default) for n, p in main.parameters.items()} == {
        "alpha": ("float", None), "n": ("int", "3"), "label": ("string", "a b"), "data": ("path", None),
        "source": ("uri", "s3://bucket/x"), "plain": ("string", "7")}
    assert project.get_entry_point("other").command == "echo {{literal}}"


def test_command_substitutes_quotes_and_passes_extras_through(tmp_path: Path, monkeypatch) -> None:
    project = load_project(_project(tmp_path / "p", FULL, {"env/python_env.yaml": "python: '3.11'\n"}))
    (tmp_path / "in put.csv").write_text("x")
    monkeypatch.chdir(tmp_path)  # path values are taken from the launcher's folder, as in MLflow
    command = project.get_entry_point("main").compute_command(
        {"alpha": "1e-3", "data": "in put.csv", "label": "x; rm -rf /", "extra key": "$(id)", "k": 5})
    argv = shlex.split(command)
    assert argv == ["python", "train.py", "--alpha", "1e-3", "-n", "3", "--label", "x; rm -rf /",
                    "--data", str(tmp_path / "in put.csv"), "--src", "s3://bucket/x", "7",
                    "--extra key", "$(id)", "--k", "5"]
    # the shell sees every value as one word: run it through bash and read the words back
    out = subprocess.run(["bash", "-c", command.replace("python train.py", "printf '%s\\n'")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == argv[2:]
    assert project.get_entry_point("other").compute_command({}) == "echo {literal}"


def test_path_values_are_absolute_and_must_exist(tmp_path: Path, monkeypatch) -> None:
    project = load_project(_project(tmp_path, "entry_points:\n  main:\n    parameters: {d: path}\n    command: 'ls {d}'\n"))
    monkeypatch.chdir(tmp_path)
    ep = project.get_entry_point("main")
    assert ep.resolve_parameters({"d": "."})[0] == {"d": str(tmp_path)}
    assert ep.resolve_parameters({"d": f"file://{tmp_path}"})[0] == {"d": str(tmp_path)}
    with pytest.raises(InvalidArgument, match=r"'d' \(path\).*'nope'.*no file or folder exists"):
        ep.resolve_parameters({"d": "nope"})
    with pytest.raises(InvalidArgument, match=r"s3: URI.*type uri"):
        ep.resolve_parameters({"d": "s3://bucket/key"})
    # a remote backend gets the path as given (it names something on the remote side)
    assert ep.resolve_parameters({"d": "dbfs:/x"}, local_paths=False)[0] == {"d": "dbfs:/x"}


@pytest.mark.parametrize(("ptype", "good", "bad"), [
    ("int", ["3", "-2", " 7 ", 4], ["3.5", "abc", "1e3", "", True, 2.0, "1_000"]),
    ("float", ["0.5", "-1", "1e-3", ".5", "nan", "-inf", 2, 2.5], ["abc", "1,5", "", False, "1_0", "0x10"]),
    ("uri", ["s3://b/k", "dbfs:/x", "file:///tmp", "https://h/p"], ["just/a/path", "", "noscheme"]),
    ("string", ["anything", 3, "", 1.5], [None, ["a"], {"a": 1}]),
])
def test_values_are_checked_against_their_type(ptype: str, good: list, bad: list) -> None:
    param = Parameter("p", ptype)
    for value in good:
        assert param.check(value, "entry point 'main'") == (str(value).strip() if ptype in ("int", "float") else str(value))
    for value in bad:
        with pytest.raises(InvalidArgument, match=rf"parameter 'p' \({ptype}\) of entry point 'main'"):
            param.check(value, "entry point 'main'")


def test_missing_required_and_unknown_entry_point(tmp_path: Path) -> None:
    project = load_project(_project(tmp_path, FULL, {"env/python_env.yaml": "python: '3.11'\n"}))
    with pytest.raises(InvalidArgument, match=r"entry point 'main' needs a value for 'alpha', 'data'"):
        project.get_entry_point("main").compute_command({})
    with pytest.raises(InvalidArgument, match=r"entry point 'trian' is not in project .*'main', 'other'"):
        project.get_entry_point("trian")
    with pytest.raises(InvalidArgument, match=r"'alpha' \(float\).*'fast'.*not a number"):
        project.get_entry_point("main").compute_command({"alpha": "fast", "data": "."})
    with pytest.raises(InvalidArgument, match=r"parameter name '' .*non-empty"):
        project.get_entry_point("main").compute_command({"alpha": 1, "data": ".", "": 1})


def test_folder_without_mlproject_runs_its_scripts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SHELL", "/bin/bash")
    project = load_project(_project(tmp_path, None, {"train.py": "", "sub/job.sh": "", "notes.txt": ""}))
    assert project.entry_points == {} and project.env_type is None and project.mlproject_path is None
    assert project.get_entry_point("train.py").compute_command({"lr": 0.1}) == "python train.py --lr 0.1"
    assert project.get_entry_point("sub/job.sh").compute_command({}) == "/bin/bash sub/job.sh"
    for name, why in (("missing.py", "no script 'missing.py'"), ("notes.txt", "not in project"),
                      ("../outside.py", "no script"), ("main", r"entry points: none declared")):
        with pytest.raises(InvalidArgument, match=why):
            project.get_entry_point(name)


def test_default_environment_files_are_found(tmp_path: Path) -> None:
    assert load_project(_project(tmp_path / "a", None, {"python_env.yaml": "python: '3.11'\n"})).env_type == "python_env"
    conda = load_project(_project(tmp_path / "b", "name: x\n", {"conda.yaml": "name: x\n"}))
    assert (conda.env_type, conda.env_file) == ("conda_env", str(tmp_path / "b" / "conda.yaml"))
    docker = load_project(_project(tmp_path / "c", """
        docker_env:
          image: python:3.11
          volumes: ["/a:/b"]
          environment: [HOME, [K, V]]
        entry_points: {main: {command: "true"}}
    """))
    assert docker.docker_env == DockerEnv("python:3.11", ("/a:/b",), ("HOME", ("K", "V")))
    assert load_project(_project(tmp_path / "d", "# only a comment\n")).entry_points == {}
    lower = load_project(_project(tmp_path / "e", None, {"mlproject": "entry_points: {m: {command: 'true'}}\n"}))
    assert set(lower.entry_points) == {"m"}


BAD_FILES = [
    ("- a list\n", r"must be a mapping of fields"),
    ("nmae: typo\n", r"unknown field\(s\) 'nmae'; allowed: name, entry_points"),
    ("name: [1]\n", r"name \[1\] must be text"),
    ("entry_points: [main]\n", r"entry_points must map"),
    ("entry_points: {main: 'python x.py'}\n", r"entry point 'main' .*must be a mapping with 'command'"),
    ("entry_points: {main: {}}\n", r"entry point 'main' .*needs a command"),
    ("entry_points: {main: {command: '  '}}\n", r"needs a command"),
    ("entry_points: {main: {command: x, comand: y}}\n", r"unknown field\(s\) 'comand'"),
    ("entry_points: {1: {command: x}}\n", r"entry point name 1 must be non-empty text"),
    ("entry_points: {main: {command: 'x {a}'}}\n", r"uses \{a\}, which is not a declared parameter \(declared: none\)"),
    ("entry_points: {main: {command: 'x {a!r}', parameters: {a: int}}}\n", r"uses \{a!r\}"),
    ("entry_points: {main: {command: 'x {a:>5}', parameters: {a: int}}}\n", r"uses \{a:>5\}"),
    ("entry_points: {main: {command: 'x {}'}}\n", r"uses \{\}"),
    ("entry_points: {main: {command: 'x {a'}}\n", r"not a valid template"),
    ("entry_points: {main: {command: x, parameters: [a]}}\n", r"parameters of entry point 'main'.*must map"),
    ("entry_points: {main: {command: x, parameters: {a: double}}}\n", r"'a' .*type 'double'; allowed types: string, float, int, path, uri"),
    ("entry_points: {main: {command: x, parameters: {a: {type: int, default: 1.5}}}}\n", r"default of parameter 'a'.*1.5.*not an integer"),
    ("entry_points: {main: {command: x, parameters: {a: {type: float, default: abc}}}}\n", r"default of parameter 'a'.*'abc'.*not a number"),
    ("entry_points: {main: {command: x, parameters: {a: {type: int, default: true}}}}\n", r"default of parameter 'a'.*boolean"),
    ("entry_points: {main: {command: x, parameters: {a: {type: uri, default: rel/path}}}}\n", r"not a URI"),
    ("entry_points: {main: {command: x, parameters: {a: {type: string, default: [1]}}}}\n", r"default of parameter 'a'.*list"),
    ("entry_points: {main: {command: x, parameters: {a: {typ: int}}}}\n", r"unknown field\(s\) 'typ'; allowed: type, default"),
    ("entry_points: {main: {command: x, parameters: {a: 5}}}\n", r"'a' .*must be a type name or a mapping"),
    ("python_env: env.yaml\nconda_env: c.yaml\n", r"declares python_env and conda_env; a project has at most one"),
    ("python_env: missing.yaml\n", r"python_env names 'missing.yaml', but there is no such file"),
    ("conda_env: 3\n", r"conda_env 3 must name a file"),
    ("docker_env: python:3.11\n", r"docker_env must be a mapping with an image"),
    ("docker_env: {volumes: []}\n", r"docker_env needs an image"),
    ("docker_env: {image: x, volumes: /a:/b}\n", r"volumes .*must be a list of text"),
    ("docker_env: {image: x, environment: HOME}\n", r"environment must be a list"),
    ("docker_env: {image: x, environment: [[K]]}\n", r"environment entry \['K'\]"),
    ("docker_env: {image: x, ports: [1]}\n", r"unknown field\(s\) 'ports'"),
    ("databricks_spark_job: {python_file: a.py}\nentry_points: {main: {command: x}}\n", r"exactly one of python_file and entry_points"),
    ("databricks_spark_job: {}\n", r"exactly one of python_file and entry_points"),
    ("databricks_spark_job: {python_file: a.py, libs: []}\n", r"unknown field\(s\) 'libs'"),
    ("databricks_spark_job: {parameters: [a]}\nentry_points: {main: {command: x, parameters: {d: path}}}\n", r"type path"),
    ("name: [unclosed\n", r"is not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[m[:40] for _t, m in BAD_FILES])
def test_bad_mlproject_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "env.yaml").write_text("python: '3.11'\n")
    (tmp_path / "c.yaml").write_text("name: c\n")
    with pytest.raises(InvalidArgument, match=message) as info:
        load_project(_project(tmp_path, text))
    assert str(tmp_path) in str(info.value)  # names the file or folder


def test_databricks_spark_job_is_read(tmp_path: Path) -> None:
    project = load_project(_project(tmp_path, "databricks_spark_job:\n  python_file: job.py\n  parameters: [--x, '1']\n"
                                              "  python_libraries: [requests]\n"))
    job = project.databricks_spark_job
    assert (job.python_file, job.parameters, job.python_libraries) == ("job.py", ("--x", "1"), ("requests",))


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"does not exist or is not a folder"):
        load_project(tmp_path / "nope")
    with pytest.raises(InvalidArgument, match=r"entry point 'main' uses \{y\}, which is not a declared parameter"):
        EntryPoint("main", "x {y}")


def test_importing_projects_loads_no_engine() -> None:
    code = ("import sys, deltaflow.projects, deltaflow.projects.spec, deltaflow.projects.cli; "
            "heavy = [m for m in ('pyspark', 'deltalake', 'pyarrow', 'pandas', 'databricks.sdk') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.strip()
    assert out == "[]"


def test_public_surface() -> None:
    import deltaflow.projects as projects
    from deltaflow.projects import submitted

    assert sorted(projects.__all__) == ["LocalSubmittedRun", "RunFailed", "SubmittedRun", "load_project", "run"]
    assert all(getattr(projects, name) is not None for name in projects.__all__)
    assert issubclass(projects.LocalSubmittedRun, projects.SubmittedRun)
    # the abstract handle cannot be made without its four members
    assert submitted.SubmittedRun.__abstractmethods__ == {"run_id", "wait", "get_status", "cancel"}


def test_backend_config_from_a_file_or_json_text(tmp_path: Path) -> None:
    from deltaflow.projects.runner import parse_backend_config

    path = tmp_path / "cluster.json"
    path.write_text('{"new_cluster": {"num_workers": 1}}')
    assert parse_backend_config(str(path)) == {"new_cluster": {"num_workers": 1}}
    assert parse_backend_config(' {"existing_cluster_id": "c1"}') == {"existing_cluster_id": "c1"}
    assert parse_backend_config(None) == {} and parse_backend_config({"a": 1}) == {"a": 1}
    path.write_text("[1, 2]")
    with pytest.raises(InvalidArgument, match=r"backend_config file .*cluster.json must hold a JSON object, got list"):
        parse_backend_config(str(path))
    path.write_text("{oops")
    with pytest.raises(InvalidArgument, match=r"backend_config file .*cluster.json is not valid JSON"):
        parse_backend_config(str(path))
    with pytest.raises(InvalidArgument, match=r"'missing.json' is neither a JSON object nor an existing JSON file"):
        parse_backend_config("missing.json")
