"""The local backend end to end: real entry point processes logging into the run the launcher made,
on a store served by delta-rs (no JVM anywhere)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import deltaflow
import deltaflow.projects as projects
from deltaflow.errors import InvalidArgument, InvalidState, MissingDependency, NotFound
from deltaflow.projects import LocalSubmittedRun, RunFailed

pytestmark = pytest.mark.e2e

TRAIN = """
import os, sys
import deltaflow
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
handed_over = ",".join(os.environ.get(k, "-") for k in (
    "MLFLOW_RUN_ID", "DELTAFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI"))
with deltaflow.start_run() as run:
    deltaflow.log_metric("twice_alpha", 2 * float(args["--alpha"]))
    deltaflow.set_tag("child.argv", repr(sys.argv[1:]))
    deltaflow.set_tag("child.env", handed_over)
    deltaflow.set_tag("child.cwd", os.getcwd())
"""

MLPROJECT = """
name: demo
entry_points:
  main:
    parameters:
      alpha: float
      epochs: {type: int, default: 2}
      data: path
    command: "python train.py --alpha {alpha} --epochs {epochs} --data {data}"
"""


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def _status_events(store: str, run_id: str) -> list[str]:
    """The run's status changes in commit-log order, read from the raw event rows with delta-rs."""
    from deltalake import DeltaTable

    rows = DeltaTable(os.path.join(store, "tables", "runs")).to_pyarrow_table().to_pylist()
    events = sorted((r["event_time"], r["seq"], r["status"]) for r in rows if r["run_id"] == run_id and r["status"])
    out: list[str] = []
    for _t, _s, status in events:
        if not out or out[-1] != status:
            out.append(status)
    return out


def test_folder_run_params_reach_the_child_and_its_metrics_land_in_the_run(rust_store: str, tmp_path: Path,
                                                                           monkeypatch) -> None:
    project = _write(tmp_path / "proj", {"MLproject": MLPROJECT, "train.py": TRAIN, "data/x.csv": "1\n"})
    monkeypatch.chdir(tmp_path / "proj")  # a relative path parameter is made absolute from the launcher's folder
    submitted = projects.run(str(project), parameters={"alpha": "0.25", "data": "data", "note": "two words"},
                             experiment_name="projects", run_name="first")
    assert isinstance(submitted, LocalSubmittedRun) and submitted.get_status() == "FINISHED"
    run = deltaflow.DeltaflowClient(rust_store).get_run(submitted.run_id)
    experiment = deltaflow.get_experiment_by_name("projects")
    assert run.info.experiment_id == experiment.experiment_id and run.info.run_name == "first"
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"twice_alpha": 0.5}  # logged by the child, into the launcher's run
    assert run.data.params == {"alpha": "0.25", "epochs": "2", "data": str(project / "data"), "note": "two words"}
    tags = run.data.tags
    assert eval(tags["child.argv"]) == ["--alpha", "0.25", "--epochs", "2", "--data", str(project / "data"),
                                        "--note", "two words"]
    assert tags["child.env"] == f"{run.info.run_id},{experiment.experiment_id},{experiment.experiment_id},{rust_store}"
    assert tags["child.cwd"] == str(project)
    assert {k: tags[k] for k in ("mlflow.source.name", "mlflow.source.type", "mlflow.project.entryPoint",
                                 "mlflow.project.backend", "mlflow.project.env", "deltaflow.project.exitCode")} == {
        "mlflow.source.name": str(project), "mlflow.source.type": "PROJECT", "mlflow.project.entryPoint": "main",
        "mlflow.project.backend": "local", "mlflow.project.env": "local", "deltaflow.project.exitCode": "0"}
    assert tags["mlflow.user"]
    assert "mlflow.source.git.commit" not in tags  # not a repository
    # SCHEDULED from the first commit; then RUNNING (launcher and child), FINISHED
    assert _status_events(rust_store, run.info.run_id) == ["SCHEDULED", "RUNNING", "FINISHED"]


def test_failing_entry_point_ends_failed_with_its_exit_code(rust_store: str, tmp_path: Path) -> None:
    project = _write(tmp_path / "proj", {"fail.sh": "echo failing >&2\nexit 3\n"})
    with pytest.raises(RunFailed, match=r"ended FAILED, exit code 3") as info:
        projects.run(str(project), entry_point="fail.sh")
    assert _status_events(rust_store, info.value.run_id)[-1] == "FAILED"  # committed before run() raised
    run = deltaflow.DeltaflowClient(rust_store).get_run(info.value.run_id)
    assert (run.info.status, run.data.tags["deltaflow.project.exitCode"]) == ("FAILED", "3")
    assert info.value.exit_code == 3 and run.info.end_time is not None


def test_an_entry_point_that_ends_its_run_failed_keeps_that_status(rust_store: str, tmp_path: Path) -> None:
    """Exit status 0, but the entry point ended the run FAILED itself: the launcher keeps its word. The
    launcher reads the committed status without committing its own pending RUNNING first, so that
    RUNNING lands in the end's commit and, being the earlier event, does not hide FAILED."""
    project = _write(tmp_path / "proj", {"verdict.py": """
        import deltaflow
        deltaflow.start_run()
        deltaflow.log_metric("loss", 9.5)
        deltaflow.end_run("FAILED")
    """})
    with pytest.raises(RunFailed, match=r"ended FAILED, exit code 0") as info:
        projects.run(str(project), entry_point="verdict.py")
    run = deltaflow.DeltaflowClient(rust_store).get_run(info.value.run_id)
    assert (run.info.status, run.data.tags["deltaflow.project.exitCode"]) == ("FAILED", "0")
    assert run.data.metrics == {"loss": 9.5}
    assert _status_events(rust_store, run.info.run_id) == ["SCHEDULED", "RUNNING", "FAILED"]


def test_committed_run_status_reads_without_committing_pending_writes(rust_store: str) -> None:
    client = deltaflow.DeltaflowClient(rust_store)
    run_id = client.create_run("0", status="SCHEDULED").info.run_id
    client.flush()
    client.update_run(run_id, status="RUNNING")  # buffered, not committed yet
    store = client._store
    assert store.run_status(run_id, committed=True) == "SCHEDULED"
    assert _status_events(rust_store, run_id) == ["SCHEDULED"]  # the committed read wrote nothing
    assert store.run_status(run_id) == "RUNNING"  # the default read sees this process's writes
    assert _status_events(rust_store, run_id) == ["SCHEDULED", "RUNNING"]
    with pytest.raises(NotFound, match="does not exist"):
        store.run_status("0" * 32, committed=True)


def test_cancel_kills_the_process_group_and_records_killed(rust_store: str, tmp_path: Path) -> None:
    project = _write(tmp_path / "proj", {"wait.sh": """
        sleep 300 &
        echo $! > grandchild.pid
        touch started
        wait
    """})
    submitted = projects.run(str(project), entry_point="wait.sh", synchronous=False)
    deadline = time.monotonic() + 30
    while not (project / "started").exists():
        assert time.monotonic() < deadline, "the entry point did not start"
        time.sleep(0.05)
    assert submitted.get_status() == "RUNNING"
    with pytest.raises(TimeoutError, match="still running"):
        submitted.wait(timeout=0.1)
    grandchild = int((project / "grandchild.pid").read_text())
    submitted.cancel()
    assert submitted.get_status() == "KILLED" and submitted.wait() is False
    # the status was durable when cancel() returned: the Delta table itself, read with delta-rs, holds it
    assert _status_events(rust_store, submitted.run_id)[-1] == "KILLED"
    deadline = time.monotonic() + 10
    while _alive(grandchild):  # the whole group went, not only the shell
        assert time.monotonic() < deadline, f"process {grandchild} started by the entry point survived cancel()"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed process nobody has reaped yet (a container's init may not) is dead too
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_an_unwatched_run_records_its_own_end(rust_store: str, tmp_path: Path) -> None:
    project = _write(tmp_path / "proj", {"quick.py": "print('done')\n"})
    submitted = projects.run(str(project), entry_point="quick.py", synchronous=False)
    client = deltaflow.DeltaflowClient(rust_store)
    deadline = time.monotonic() + 30
    while client.get_run(submitted.run_id).info.status != "FINISHED":  # nobody calls wait(): the watcher does
        assert time.monotonic() < deadline, client.get_run(submitted.run_id).info.status
        time.sleep(0.05)
    assert submitted.wait() is True


def test_run_id_attaches_to_an_existing_run(rust_store: str, tmp_path: Path) -> None:
    project = _write(tmp_path / "proj", {"MLproject": MLPROJECT, "train.py": TRAIN, "d.txt": ""})
    client = deltaflow.DeltaflowClient(rust_store)
    existing = client.create_run("0", tags={"mlflow.project.backend": "databricks"})
    client.log_param(existing.info.run_id, "alpha", "1.5")
    submitted = projects.run(str(project), parameters={"alpha": "1.5", "data": str(project / "d.txt")},
                             run_id=existing.info.run_id)
    assert submitted.run_id == existing.info.run_id
    runs = client.search_runs(["0"])
    assert [r.info.run_id for r in runs] == [existing.info.run_id]  # no second run
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.metrics == {"twice_alpha": 3.0}
    assert run.data.params["epochs"] == "2" and run.data.tags["mlflow.project.backend"] == "databricks"
    with pytest.raises(InvalidArgument, match=r"already has param 'alpha'='1.5'; this launch gives '2'"):
        projects.run(str(project), parameters={"alpha": "2", "data": str(project / "d.txt")}, run_id=existing.info.run_id)
    with pytest.raises(NotFound):
        projects.run(str(project), parameters={"alpha": "2", "data": str(project)}, run_id="0" * 32)


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_git_repository_runs_record_the_commit(rust_store: str, tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    show = "import os\nopen(%r, 'a').write('{} ' + os.getcwd() + '\\n')\n"
    repo = tmp_path / "repo"
    _write(repo / "sub", {"MLproject": "entry_points:\n  main:\n    command: 'python show.py'\n",
                          "show.py": show.format("v1") % str(seen)})
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    first = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "-b", "feature")
    (repo / "sub" / "show.py").write_text(show.format("v2") % str(seen))
    _git(repo, "commit", "-q", "-am", "two")
    second = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "main")
    client = deltaflow.DeltaflowClient(rust_store)

    at_commit = projects.run(f"file://{repo}#sub", version=first)
    on_branch = projects.run(f"{repo}#sub", version="feature")
    in_place = projects.run(str(repo / "sub"))  # a folder inside a work tree runs where it is
    lines = [line.split(" ", 1) for line in seen.read_text().splitlines()]
    assert [v for v, _cwd in lines] == ["v1", "v2", "v1"]
    checkouts = [cwd for _v, cwd in lines[:2]]
    assert all(cwd.endswith("/sub") and not cwd.startswith(str(repo)) for cwd in checkouts)
    assert not any(os.path.exists(cwd) for cwd in checkouts)  # removed once the run was over
    assert lines[2][1] == str(repo / "sub")
    tags = [client.get_run(s.run_id).data.tags for s in (at_commit, on_branch, in_place)]
    assert [t["mlflow.source.git.commit"] for t in tags] == [first, second, first]
    assert [t.get("mlflow.source.git.branch") for t in tags] == [None, "feature", None]
    assert tags[0]["mlflow.source.git.repoURL"] == str(repo)
    assert [t["mlflow.source.name"] for t in tags] == [f"file://{repo}#sub"] * 3
    with pytest.raises(InvalidArgument, match=r"version 'nope' is not a commit, branch or tag"):
        projects.run(str(repo), version="nope")
    with pytest.raises(InvalidArgument, match=r"subdirectory 'missing' does not exist"):
        projects.run(f"file://{repo}#missing", version="main")


BAD_RUNS = [
    (dict(entry_point="trian"), InvalidArgument, r"entry point 'trian' is not in project .*'main'"),
    (dict(parameters={"alpha": "fast", "data": "."}), InvalidArgument, r"'alpha' \(float\).*'fast'.*not a number"),
    (dict(parameters={"data": "."}), InvalidArgument, r"needs a value for 'alpha'"),
    (dict(parameters={"alpha": 1, "data": ".", "epochs": "2.5"}), InvalidArgument, r"'epochs' \(int\).*'2.5'"),
    (dict(parameters={"alpha": 1, "data": "no/such"}), InvalidArgument, r"'data' \(path\).*no file or folder"),
    (dict(parameters={"alpha": 1, "data": ".", "bad/../key": "x"}), InvalidArgument, r"bad/../key"),
    (dict(backend="kubernetes"), InvalidArgument, r"backend 'kubernetes' is not known; use one of local, databricks"),
    (dict(env_manager="uv"), InvalidArgument, r"env_manager 'uv' is not known; use one of local, virtualenv, conda"),
    (dict(env_manager="conda"), InvalidArgument, r"env_manager 'conda' needs a conda_env"),
    (dict(experiment_name="a", experiment_id="1"), InvalidArgument, r"experiment_name or experiment_id, not both"),
    (dict(backend_config={"cluster": 1}), InvalidArgument, r"local backend takes no backend_config"),
    (dict(backend_config="{not json"), InvalidArgument, r"backend_config is not valid JSON"),
    (dict(run_id="xyz"), InvalidArgument, r"run_id 'xyz' is not valid"),
    (dict(version="main"), InvalidArgument, r"is not a git repository; a version can only be given"),
    (dict(synchronous="yes"), InvalidArgument, r"synchronous 'yes' must be True or False"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_RUNS, ids=[m[:30] for _k, _e, m in BAD_RUNS])
def test_bad_input_is_refused_before_anything_is_written(rust_store: str, tmp_path: Path, kwargs: dict,
                                                         error: type, message: str) -> None:
    project = _write(tmp_path / "proj", {"MLproject": MLPROJECT, "train.py": TRAIN})
    kwargs = {"parameters": {"alpha": "1", "data": "."}, **kwargs}
    with pytest.raises(error, match=message):
        projects.run(str(project), **kwargs)
    assert not os.path.exists(rust_store)  # no run, no experiment, not even the store's tables


def test_environment_tools_missing_are_clear_errors(rust_store: str, tmp_path: Path, monkeypatch) -> None:
    conda = _write(tmp_path / "conda", {"conda.yaml": "name: x\ndependencies: [python=3.11]\n", "a.py": ""})
    monkeypatch.delenv("CONDA_EXE", raising=False)
    with pytest.raises(MissingDependency, match=r"conda is not installed.*install Miniforge or Miniconda"):
        projects.run(str(conda), entry_point="a.py")
    docker = _write(tmp_path / "docker", {"MLproject": "docker_env: {image: python:3.11}\nentry_points: {main: {command: 'true'}}\n"})
    with pytest.raises(MissingDependency, match=r"docker_env, and (no Docker engine answers|the docker command is not on PATH)"):
        projects.run(str(docker))
    assert not os.path.exists(rust_store)
    # the same projects run here when asked to (env_manager local)
    assert projects.run(str(conda), entry_point="a.py", env_manager="local").get_status() == "FINISHED"
    assert projects.run(str(docker), env_manager="local").get_status() == "FINISHED"


def test_deleted_experiment_is_refused(rust_store: str, tmp_path: Path) -> None:
    project = _write(tmp_path / "proj", {"a.py": ""})
    experiment_id = deltaflow.create_experiment("gone")
    deltaflow.delete_experiment(experiment_id)
    with pytest.raises(InvalidState, match=r"experiment 'gone' .* is deleted"):
        projects.run(str(project), entry_point="a.py", experiment_id=experiment_id)
    with pytest.raises(NotFound):
        projects.run(str(project), entry_point="a.py", experiment_id="424242")


def test_databricks_backend_config_is_checked_before_a_run_exists(rust_store: str, tmp_path: Path) -> None:
    project = _write(tmp_path / "proj", {"a.py": ""})
    with pytest.raises(InvalidArgument, match=r"backend_config must choose exactly one compute"):
        projects.run(str(project), entry_point="a.py", backend="databricks", backend_config={})
    with pytest.raises(InvalidArgument, match=r"backend_config has unknown key\(s\) 'clutser'"):
        projects.run(str(project), entry_point="a.py", backend="databricks", backend_config='{"clutser": 1}')
    assert not os.path.exists(rust_store)
