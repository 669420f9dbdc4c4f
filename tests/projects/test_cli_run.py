"""``deltaflow run`` as users run it: a real CLI process launching a real entry point process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deltaflow

pytestmark = pytest.mark.e2e

TRAIN = """
import sys
import deltaflow
alpha = float(sys.argv[sys.argv.index("--alpha") + 1])
deltaflow.log_metric("alpha_seen", alpha)  # no start_run(): the first log call resumes the handed-over run
print("trained with", alpha)
"""


def _cli(store: str, *args: str, **popen: object) -> "subprocess.Popen[str]":
    env = {**os.environ, "DELTAFLOW_ENGINE": "rust", "PYTHONUNBUFFERED": "1"}
    env.pop("DELTAFLOW_TRACKING_URI", None)  # the store comes from --tracking-uri
    return subprocess.Popen([sys.executable, "-m", "deltaflow.cli", "--tracking-uri", store, "run", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _done(proc: "subprocess.Popen[str]") -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "MLproject").write_text("name: cli\nentry_points:\n  main:\n    parameters: {alpha: float}\n"
                                      "    command: 'python train.py --alpha {alpha}'\n")
    (folder / "train.py").write_text(TRAIN)
    (folder / "fail.sh").write_text("exit 3\n")
    (folder / "wait.sh").write_text("sleep 300 &\necho $! > grandchild.pid\ntouch started\nwait\n")
    return folder


def test_deltaflow_run_end_to_end(rust_store: str, project: Path, tmp_path: Path) -> None:
    code, out, err = _done(_cli(rust_store, str(project), "-P", "alpha=0.5", "-P", "extra=1",
                                "--experiment-name", "cli", "--run-name", "r1"))
    assert code == 0, err
    assert "trained with 0.5" in out and "Traceback" not in err
    runs = deltaflow.search_runs(experiment_names=["cli"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert (run.info.run_name, run.info.status, run.data.metrics) == ("r1", "FINISHED", {"alpha_seen": 0.5})
    assert run.data.params == {"alpha": "0.5", "extra": "1"}
    assert f"run {run.info.run_id}: python train.py --alpha 0.5 --extra 1" in err
    assert f"run {run.info.run_id} FINISHED (exit status 0)" in err

    code, _out, err = _done(_cli(rust_store, str(project), "-e", "fail.sh", "--experiment-name", "cli"))
    assert code == 1 and "error: run " in err and "ended FAILED, exit code 3" in err and "Traceback" not in err

    for args, message in ((["-P", "alpha=abc"], "error: parameter 'alpha' (float) of entry point 'main' got 'abc'"),
                          (["-P", "alpha"], "'alpha' is not NAME=VALUE"),
                          (["-P", "alpha=1", "-P", "alpha=2"], "parameter 'alpha' is given twice"),
                          (["-P", "alpha=1", "--backend-config", "{\"x\": 1}"], "local backend takes no backend_config"),
                          (["-P", "alpha=1", "--env-manager", "pip"], "'pip' is not one of 'local', 'virtualenv', 'conda'")):
        code, _out, err = _done(_cli(rust_store, str(project), "--experiment-name", "cli", *args))
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    statuses = sorted(r.info.status for r in deltaflow.search_runs(experiment_names=["cli"], output_format="list"))
    assert statuses == ["FAILED", "FINISHED"]  # the refused launches wrote nothing


def test_sigterm_stops_the_entry_point_and_records_killed(rust_store: str, project: Path) -> None:
    proc = _cli(rust_store, str(project), "-e", "wait.sh", "--experiment-name", "term")
    deadline = time.monotonic() + 60
    while not (project / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code, _out, err = _done(proc)
    assert code == 130 and "interrupted" in err, err
    run = deltaflow.search_runs(experiment_names=["term"], output_format="list")[0]
    assert run.info.status == "KILLED" and run.data.tags["deltaflow.project.exitCode"] == "-15"
    pid = int((project / "grandchild.pid").read_text())
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1][:3]:
        assert time.monotonic() < deadline, f"process {pid} of the entry point survived"
        time.sleep(0.05)
