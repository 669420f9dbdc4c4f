"""What a user who mistypes something sees from the ``deltaflow`` CLI: one plain ``error:`` line, a
non-zero exit status, no traceback, and no store created by a command that only reads.

Real subprocesses on the rust engine; none of these starts a JVM.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SRC = str(Path(__file__).resolve().parents[2] / "src")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYSPARK", "SPARK", "AWS_", "DELTAFLOW_TRACKING_URI"))}
    env.update({"DELTAFLOW_ENGINE": "rust", "PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1",
                "DELTAFLOW_TRACKING_URI": str(tmp_path / "store")})
    env.update(extra)
    return env


def cli(tmp_path: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deltaflow.cli", *args], cwd=tmp_path, env=_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=timeout)


def failed(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one error line of a failed command, checked for the given fragments."""
    assert proc.returncode != 0, f"exit 0\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert not ANSI.search(proc.stderr), proc.stderr
    assert "panicked" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def seed(tmp_path: Path) -> str:
    script = ("import deltaflow\n"
              "deltaflow.set_experiment('cli-errors')\n"
              "with deltaflow.start_run() as run:\n"
              "    deltaflow.log_metric('m', 1.0)\n"
              "deltaflow.flush()\n"
              "print(run.info.run_id)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [
    ["experiments", "list"],
    ["runs", "list", "--experiment-id", "0"],
    ["runs", "list", "--experiment-name", "Default"],
    ["runs", "describe", "0123456789abcdef0123456789abcdef"],
    ["gc", "--dry-run"],
])
def test_read_commands_on_a_folder_without_a_store_say_so(tmp_path: Path, args: list[str]) -> None:
    mistyped = tmp_path / "my-sotre"
    line = failed(cli(tmp_path, "--tracking-uri", str(mistyped), *args), str(mistyped), "no deltaflow store")
    assert "deltaflow experiments create" in line or "log" in line  # says how a store comes to be
    assert not mistyped.exists()  # nothing created


def test_only_writes_create_a_store(tmp_path: Path) -> None:
    created = cli(tmp_path, "experiments", "create", "first")
    assert created.returncode == 0, created.stderr
    listed = cli(tmp_path, "experiments", "list")
    assert listed.returncode == 0, listed.stderr
    assert "first" in listed.stdout and "Default" in listed.stdout


def test_unknown_experiment_id_is_an_error_like_an_unknown_name(tmp_path: Path) -> None:
    seed(tmp_path)
    failed(cli(tmp_path, "runs", "list", "--experiment-name", "nope"), "'nope'")
    failed(cli(tmp_path, "runs", "list", "--experiment-id", "424242"), "'424242'", "does not exist")


def test_gc_of_an_unknown_run_id_says_it_is_unknown(tmp_path: Path) -> None:
    run_id = seed(tmp_path)
    line = failed(cli(tmp_path, "gc", "--run-ids", "nope"), "'nope'", "does not exist")
    assert "not deleted" not in line
    unknown = "0123456789abcdef0123456789abcdef"
    failed(cli(tmp_path, "gc", "--run-ids", f"{run_id},{unknown}"), unknown, "does not exist")
    # a run that exists but is not deleted keeps its own message
    failed(cli(tmp_path, "gc", "--run-ids", run_id), "not deleted")


def test_store_path_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "readme.txt"
    afile.write_text("not a store")
    for args in (["experiments", "list"], ["experiments", "create", "x"]):
        failed(cli(tmp_path, "--tracking-uri", str(afile), *args), str(afile), "is a file")
    assert afile.read_text() == "not a store"


@pytest.mark.parametrize(("uri", "fragments"), [
    ("databricks", ["'databricks'", "metastore:<catalog>.<schema>", "/Volumes/"]),
    ("databricks-uc", ["'databricks-uc'", "metastore:<catalog>.<schema>"]),
    ("http://localhost:5000", ["'http://localhost:5000'", "tracking server"]),
    ("sqlite:///mlflow.db", ["'sqlite:///mlflow.db'", "Supported forms"]),
    ("postgresql://u@h/db", ["'postgresql://u@h/db'", "Supported forms"]),
])
def test_unsupported_tracking_uris_fail_before_any_engine(tmp_path: Path, uri: str, fragments: list[str]) -> None:
    for args in (["experiments", "list"], ["experiments", "create", "x"]):
        proc = cli(tmp_path, "--tracking-uri", uri, *args, timeout=60)
        line = failed(proc, *fragments)
        assert "only Spark reaches" not in line and "Exception" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == []  # no ./databricks folder, no store


def test_s3_without_credentials_is_one_plain_error(tmp_path: Path) -> None:
    # No credentials anywhere and the instance metadata service switched off: delta-rs cannot sign.
    proc = cli(tmp_path, "--tracking-uri", "s3://deltaflow-no-such-bucket/store", "experiments", "list",
               AWS_EC2_METADATA_DISABLED="true", AWS_REGION="us-east-1",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               timeout=180)
    failed(proc, "s3://deltaflow-no-such-bucket/store")
    assert "WARN" not in proc.stderr, proc.stderr


def test_log_input_of_a_path_without_a_delta_table_needs_no_jvm(tmp_path: Path) -> None:
    script = ("import sys\n"
              "import deltaflow\n"
              "from deltaflow.errors import InvalidArgument\n"
              "with deltaflow.start_run():\n"
              "    try:\n"
              "        deltaflow.log_input('/not/a/delta/path')\n"
              "    except InvalidArgument as exc:\n"
              "        print('ERROR', exc)\n"
              "print('SPARK' if 'pyspark' in sys.modules else 'NO-SPARK')\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ERROR '/not/a/delta/path' is not a Delta table" in proc.stdout, proc.stdout
    assert proc.stdout.strip().endswith("NO-SPARK"), proc.stdout


def test_a_damaged_table_is_one_plain_error(tmp_path: Path) -> None:
    log = tmp_path / "store" / "tables" / "experiments" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("not json\n")
    line = failed(cli(tmp_path, "experiments", "list", RUST_BACKTRACE="1"), "DeltaError", "Json error")
    assert "<unknown>" not in line and "pthread" not in line  # delta-rs's backtrace is not part of the message
