"""Reads never write: reading an existing store changes none of its files, and a store the reader
cannot write (a read-only mount, a reader without write rights) is searched and listed.

The stores are written by a separate process and read on either engine; the "cannot write" case
runs the reader as the unprivileged ``nobody`` user (permission bits do not stop root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

# A store with one named experiment and no Default (as earlier versions of deltaflow left a store a
# script wrote to), a finished run with a metric, a tag and an artifact; no params and no inputs, so
# those tables do not exist yet.
SEED = """
import sys
import deltaflow
from deltaflow.store.factory import get_store
deltaflow.set_tracking_uri(sys.argv[1])
get_store().create_experiment("readers", experiment_id="123456789012345678")
deltaflow.set_experiment("readers")
with deltaflow.start_run(run_name="r1") as run:
    deltaflow.log_metric("loss", 0.5, step=0)
    deltaflow.log_metric("loss", 0.25, step=1)
    deltaflow.set_tag("team", "a")
    deltaflow.log_text("hello", "docs/hello.txt")
deltaflow.flush()
print(run.info.run_id)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK"))}
    env.update({"DELTAFLOW_ENGINE": "rust", "PYTHONPATH": SRC, **extra})
    return env


def _seed(root: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", SEED, str(root)], env=_env(), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def _files(root: Path) -> dict[str, int]:
    """Every file under the store with its size: any commit, new table or checkpoint changes it."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _read_everything(uri: str, run_id: str) -> dict[str, object]:
    import deltaflow
    from deltaflow import DeltaflowClient

    deltaflow.set_tracking_uri(uri)
    try:
        runs = deltaflow.search_runs(search_all_experiments=True)
        listed = deltaflow.search_runs(experiment_names=["readers"], output_format="list")
        experiments = deltaflow.search_experiments()
        client = DeltaflowClient(uri)
        run = client.get_run(run_id)
        return {
            "runs": len(runs), "listed": [r.info.run_id for r in listed],
            "experiments": sorted(e.name for e in experiments),
            "default": client.get_experiment_by_name("Default"),
            "metrics": run.data.metrics, "tags": run.data.tags.get("team"),
            "history": [m.value for m in client.get_metric_history(run_id, "loss")],
            "artifacts": [f.path for f in client.list_artifacts(run_id, "docs")],
        }
    finally:
        deltaflow.set_tracking_uri(None)


@pytest.mark.parametrize("reader_engine", ["rust", "spark"])
def test_reading_an_existing_store_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  request: pytest.FixtureRequest, reader_engine: str) -> None:
    if reader_engine == "spark":
        request.getfixturevalue("spark")
    monkeypatch.setenv("DELTAFLOW_ENGINE", reader_engine)
    root = tmp_path / "store"
    run_id = _seed(root)
    before = _files(root)
    tables_before = sorted(os.listdir(root / "tables"))
    assert "params" not in tables_before and "inputs" not in tables_before

    seen = _read_everything(str(root), run_id)

    assert seen["runs"] == 1 and seen["listed"] == [run_id]
    assert seen["experiments"] == ["readers"]  # no Default: nobody created one, and a read does not
    assert seen["default"] is None
    assert seen["metrics"] == {"loss": 0.25} and seen["tags"] == "a"
    assert seen["history"] == [0.5, 0.25] and seen["artifacts"] == ["docs/hello.txt"]
    assert sorted(os.listdir(root / "tables")) == tables_before  # no table created by a read
    assert _files(root) == before  # no commit, no new file anywhere


def test_searching_where_there_is_no_store_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELTAFLOW_ENGINE", "rust")
    import deltaflow
    from deltaflow import DeltaflowClient

    uri = tmp_path / "no-store-here"
    deltaflow.set_tracking_uri(str(uri))
    try:
        assert deltaflow.search_experiments() == []
        assert len(deltaflow.search_runs(search_all_experiments=True)) == 0
        assert DeltaflowClient(str(uri)).get_experiment_by_name("Default") is None
    finally:
        deltaflow.set_tracking_uri(None)
    assert not uri.exists()


READER = """
import json, os, sys
uri, warm, run_id = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[4])))
from test_read_only import _read_everything
import deltaflow
from click.testing import CliRunner
from deltaflow.cli import cli
# Same calls on a store this process may write first, so every module is imported while the
# interpreter's own files are still readable; then drop to the unprivileged user.
deltaflow.set_tracking_uri(warm)
deltaflow.set_experiment("readers")
with deltaflow.start_run() as run:
    deltaflow.log_metric("loss", 1.0)
    deltaflow.log_text("x", "docs/x.txt")
deltaflow.flush()
_read_everything(warm, run.info.run_id)
CliRunner().invoke(cli, ["--tracking-uri", warm, "runs", "list", "--experiment-name", "readers"])
os.setgid(65534)
os.setuid(65534)
try:
    open(os.path.join(uri, "probe"), "w")
    print("WRITABLE")
    sys.exit(3)
except PermissionError:
    pass
seen = _read_everything(uri, run_id)
seen["default"] = repr(seen["default"])
cli_runs = CliRunner().invoke(cli, ["--tracking-uri", uri, "runs", "list", "--experiment-name", "readers",
                                    "--output", "json"])
cli_experiments = CliRunner().invoke(cli, ["--tracking-uri", uri, "experiments", "list", "--output", "json"])
seen["cli_runs"] = [cli_runs.exit_code, cli_runs.output]
seen["cli_experiments"] = [cli_experiments.exit_code, cli_experiments.output]
from deltaflow.errors import StorageError
try:
    deltaflow.set_tracking_uri(uri)
    deltaflow.create_experiment("not-allowed")
    seen["write"] = "written"
except StorageError as exc:
    seen["write"] = str(exc)
finally:
    deltaflow.set_tracking_uri(None)
cli_create = CliRunner().invoke(cli, ["--tracking-uri", uri, "experiments", "create", "not-allowed"])
seen["cli_create"] = [cli_create.exit_code, cli_create.output]
print("RESULT " + json.dumps(seen))
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to switch to nobody")
def test_a_store_the_reader_cannot_write_is_searched_and_listed(tmp_path: Path) -> None:
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    assert nobody.pw_uid == 65534
    # tmp_path is private to root; the store lives in a folder everyone may read but only root writes.
    shared = Path(tempfile.mkdtemp(prefix="deltaflow-readonly-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        root = shared / "store"
        run_id = _seed(root)
        before = _files(root)
        proc = subprocess.run([sys.executable, "-c", READER, str(root), str(tmp_path / "warm"), run_id, __file__],
                              env=_env(HOME=str(shared)), cwd=shared, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        seen = json.loads(line[len("RESULT "):])
        assert seen["runs"] == 1 and seen["listed"] == [run_id]
        assert seen["experiments"] == ["readers"] and seen["default"] == "None"
        assert seen["metrics"] == {"loss": 0.25} and seen["history"] == [0.5, 0.25]
        assert seen["artifacts"] == ["docs/hello.txt"]
        code, output = seen["cli_runs"]
        assert code == 0, output
        assert [r["info"]["run_id"] for r in json.loads(output)] == [run_id]
        code, output = seen["cli_experiments"]
        assert code == 0, output
        assert [e["name"] for e in json.loads(output)] == ["readers"]
        # A write is refused in plain words, before delta-rs's I/O runtime panics on it.
        assert seen["write"].startswith(f"cannot write to table '{root}/tables/experiments'"), seen["write"]
        code, output = seen["cli_create"]
        assert code == 2 and output.startswith("error: cannot write to table"), output
        assert "panicked" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert _files(root) == before
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_writes_still_create_the_default_experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store is created by a write, and with it MLflow's Default experiment (id 0), as before."""
    monkeypatch.setenv("DELTAFLOW_ENGINE", "rust")
    from deltaflow import DeltaflowClient

    uri = str(tmp_path / "store")
    client = DeltaflowClient(uri)
    client.create_experiment("first")
    names = {e.name: e.experiment_id for e in client.search_experiments()}
    assert names == {"first": names["first"], "Default": "0"}

    other = DeltaflowClient(str(tmp_path / "other"))
    run = other.create_run("0")  # a run in the Default experiment of a store that does not exist yet
    assert run.info.experiment_id == "0"
    assert other.get_experiment("0").name == "Default"
    other.set_terminated(run.info.run_id)
    other.flush()
