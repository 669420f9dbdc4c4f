"""The ``deltaflow`` CLI as users run it: real subprocesses, each against its own temporary store.

The store-backed commands are exercised in one ordered scenario, once per engine: on the rust engine
every command is its own process, as users run it; on the spark engine the same commands run through
the same click entry point inside the test process, on the shared SparkSession (a process per
command would start a JVM each, 15-30 s, and the process boundary is already covered by the rust
run). The fast checks (help, usage and argument errors, doctor without Java) never start Spark.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

import deltaflow
from deltaflow.tracking import fluent

pytestmark = pytest.mark.e2e

SPARK_TIMEOUT = 420


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DELTAFLOW_TRACKING_URI": str(tmp_path / "store"),
        "DELTAFLOW_WAREHOUSE_DIR": str(tmp_path / "warehouse"),
        "DELTAFLOW_FLUSH_INTERVAL_S": "1.0",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = SPARK_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deltaflow.cli", *args], cwd=tmp_path,
                          env=env or _env(tmp_path), capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return proc.stdout


def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``cli``'s twin for the spark engine: the real ``deltaflow`` command in this process."""
    from click.testing import CliRunner

    from deltaflow.cli import cli as command

    for key, value in _env(tmp_path).items():
        if key.startswith("DELTAFLOW_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(_tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        result = runner.invoke(command, list(args), prog_name="deltaflow")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return subprocess.CompletedProcess(["deltaflow", *args], result.exit_code, result.stdout, result.stderr)

    return run


SEED = """
import json
import pandas as pd
import deltaflow as mlflow
from deltaflow.tracking.datasets import from_pandas

mlflow.set_experiment("cli-e2e")
ids = {}
for lr, loss in ((0.1, 0.5), (0.2, 0.25), (0.3, 0.125)):
    with mlflow.start_run(run_name=f"lr-{lr}") as run:
        mlflow.log_param("lr", lr)
        mlflow.log_metric("loss", loss * 2, step=0)
        mlflow.log_metric("loss", loss, step=1)
        mlflow.set_tag("suite", "e2e")
        mlflow.log_input(from_pandas(pd.DataFrame({"x": [1, 2]}), name="toy"), context="training")
        mlflow.log_text("hello", "notes/hello.txt")
        ids[str(lr)] = run.info.run_id
mlflow.flush()
print(json.dumps(ids))
"""


@pytest.mark.parametrize("cli_engine", ["rust", "spark"])
def test_store_commands_end_to_end(tmp_path: Path, cli_engine: str, monkeypatch: pytest.MonkeyPatch,
                                   request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("DELTAFLOW_ENGINE", cli_engine)  # every subprocess below inherits it
    cli = globals()["cli"]
    if cli_engine == "spark":
        request.getfixturevalue("spark")
        cli = in_process(tmp_path, monkeypatch)
    # experiments create / list
    out = ok(cli(tmp_path, "experiments", "create", "cli-e2e"))
    match = re.search(r"Created experiment 'cli-e2e' with id (\d+)", out)
    assert match, out
    exp_id = match.group(1)
    listed = json.loads(ok(cli(tmp_path, "experiments", "list", "--output", "json")))
    by_name = {e["name"]: e for e in listed}
    assert by_name["cli-e2e"]["experiment_id"] == exp_id
    assert by_name["cli-e2e"]["lifecycle_stage"] == "active"
    assert by_name["cli-e2e"]["artifact_location"] == str(tmp_path / "store" / "artifacts" / exp_id)
    assert "Default" in by_name

    # runs written by a user's script
    if cli_engine == "spark":
        seed_output = io.StringIO()
        with contextlib.redirect_stdout(seed_output):
            exec(SEED, {})  # noqa: S102 - the user's script, on the shared session
        deltaflow.set_tracking_uri(None)
        fluent._active_experiment.clear()
        ids = json.loads(seed_output.getvalue().strip().splitlines()[-1])
    else:
        seed = subprocess.run([sys.executable, "-c", SEED], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                              text=True, timeout=SPARK_TIMEOUT)
        ids = json.loads(ok(seed).strip().splitlines()[-1])
    assert len(set(ids.values())) == 3

    # runs list: filter, order-by, JSON
    found = json.loads(ok(cli(tmp_path, "runs", "list", "--experiment-name", "cli-e2e", "--filter",
                              "params.lr != '0.3' AND tags.suite = 'e2e'", "--order-by", "metrics.loss DESC",
                              "--output", "json")))
    assert [r["info"]["run_id"] for r in found] == [ids["0.1"], ids["0.2"]]
    assert [r["data"]["metrics"]["loss"] for r in found] == [0.5, 0.25]  # the latest step's value
    assert [r["data"]["params"]["lr"] for r in found] == ["0.1", "0.2"]
    assert all(r["info"]["status"] == "FINISHED" and r["info"]["experiment_id"] == exp_id for r in found)

    # runs describe (YAML): info, params, latest metrics, tags, inputs
    described = yaml.safe_load(ok(cli(tmp_path, "runs", "describe", ids["0.3"], "--output", "yaml")))
    assert described["info"]["run_id"] == ids["0.3"]
    assert described["info"]["run_name"] == "lr-0.3"
    assert described["data"]["params"] == {"lr": "0.3"}
    assert described["data"]["metrics"] == {"loss": 0.125}
    assert described["data"]["tags"]["suite"] == "e2e"
    [dataset_input] = described["inputs"]
    assert dataset_input["dataset"]["name"] == "toy"
    assert {"key": "mlflow.data.context", "value": "training"} in dataset_input["tags"]
    doomed_artifacts = Path(described["info"]["artifact_uri"].replace(ids["0.3"], ids["0.1"]))
    assert (doomed_artifacts / "notes" / "hello.txt").read_text() == "hello"

    # runs delete, then gc --dry-run (nothing removed) and gc
    assert f"Deleted run {ids['0.1']}" in ok(cli(tmp_path, "runs", "delete", ids["0.1"]))
    dry = ok(cli(tmp_path, "gc", "--dry-run"))
    assert f"would remove run {ids['0.1']}" in dry
    assert "would remove 1 run(s) and 0 experiment(s)" in dry
    assert doomed_artifacts.exists()
    purged = ok(cli(tmp_path, "gc"))
    assert f"remove run {ids['0.1']}" in purged and "removed 1 run(s)" in purged
    assert not doomed_artifacts.exists()

    # what is left, as a text table, deleted runs included
    table = ok(cli(tmp_path, "runs", "list", "--experiment-id", exp_id, "--view", "all"))
    lines = table.splitlines()
    assert lines[0].split() == ["run_id", "run_name", "experiment_id", "status", "start_time", "metrics"]
    assert set(lines[1]) <= {"-", " "}
    assert ids["0.1"] not in table and ids["0.2"] in table and ids["0.3"] in table
    assert len(lines) == 4

    # optimize: files before/after per table
    optimized = ok(cli(tmp_path, "optimize", "--table", "runs", "--table", "metrics", "--no-vacuum"))
    rows = {line.split()[0]: line.split()[1:] for line in optimized.splitlines()
            if line.split() and line.split()[0] in ("runs", "metrics")}
    assert set(rows) == {"runs", "metrics"}
    assert all(len(v) == 2 and int(v[1]) <= int(v[0]) for v in rows.values()), optimized
    assert int(rows["runs"][1]) == 1  # several commits compacted into one file


def test_doctor_reports_versions_and_working_delta(tmp_path: Path) -> None:
    out = ok(cli(tmp_path, "doctor"))
    assert f"python:        {sys.version.split()[0]}" in out
    assert re.search(r"^java:\s+\S+ \(.*java\)$", out, re.M), out
    assert f"pyspark:       {metadata.version('pyspark')}" in out
    assert f"delta-spark:   {metadata.version('delta-spark')}" in out
    assert "delta jars:    cached" in out
    assert f"tracking uri:  {tmp_path / 'store'}" in out
    assert "store kind:    path" in out
    assert re.search(r"^deltalake:\s+\d", out, re.M), out
    assert re.search(r"^engine:\s+rust \(DELTAFLOW_ENGINE=auto\)$", out, re.M), out  # no SparkSession here
    assert re.search(r"^rust check:\s+ok ", out, re.M), out
    assert re.search(r"^spark check:\s+ok ", out, re.M), out
    assert out.rstrip().endswith("all checks passed")


def test_doctor_without_java_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "nojava" / "bin").mkdir(parents=True)
    env = _env(tmp_path, JAVA_HOME=str(tmp_path / "nojava"), PATH=str(tmp_path / "nojava" / "bin"))
    proc = cli(tmp_path, "doctor", "--no-spark-check", env=env, timeout=60)
    assert proc.returncode == 1, proc
    assert any(line.startswith("error: Java 17 not found: install it or set JAVA_HOME")
               for line in proc.stderr.splitlines()), proc.stderr
    assert "java:          not found" in proc.stdout
    assert "Traceback" not in proc.stderr and "all checks passed" not in proc.stdout


def test_doctor_offline_without_jars_says_how_to_fetch(tmp_path: Path) -> None:
    env = _env(tmp_path, DELTAFLOW_JARS_DIR=str(tmp_path / "jars"), DELTAFLOW_OFFLINE="1")
    proc = cli(tmp_path, "doctor", "--no-spark-check", env=env, timeout=60)
    assert proc.returncode == 1, proc
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "Delta JARs not cached" in line and "deltaflow doctor --fetch-jars" in line


HELP = [
    ([], "Usage: deltaflow [OPTIONS] COMMAND"),
    (["doctor"], "--fetch-jars"),
    (["experiments"], "Usage: deltaflow experiments"),
    (["experiments", "list"], "--max-results"),
    (["experiments", "create"], "--artifact-location"),
    (["experiments", "delete"], "EXPERIMENT_ID"),
    (["experiments", "restore"], "EXPERIMENT_ID"),
    (["runs"], "Usage: deltaflow runs"),
    (["runs", "list"], "--order-by"),
    (["runs", "describe"], "RUN_ID"),
    (["runs", "delete"], "RUN_ID"),
    (["runs", "restore"], "RUN_ID"),
    (["gc"], "--older-than"),
    (["optimize"], "--vacuum-hours"),
]


def test_help_for_every_command(tmp_path: Path) -> None:
    for args, expected in HELP:
        proc = cli(tmp_path, *args, "--help", timeout=60)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Usage: deltaflow" in proc.stdout and expected in proc.stdout, (args, proc.stdout)
    console_script = Path(sys.executable).parent / "deltaflow"
    if console_script.exists():
        proc = subprocess.run([str(console_script), "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "experiments" in proc.stdout


def test_help_does_not_import_spark(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import deltaflow.cli\n"
        "result = CliRunner().invoke(deltaflow.cli.cli, ['runs', 'list', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('pyspark', 'py4j', 'pyarrow', 'pandas') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('LIGHT')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "LIGHT", proc.stderr


def test_formatting_helpers() -> None:
    from deltaflow.cli import format_table, parse_older_than

    now = 1_700_000_000_000
    assert parse_older_than("30d", now) == now - 30 * 86_400_000
    assert parse_older_than("12h", now) == now - 12 * 3_600_000
    assert parse_older_than("2026-01-01", now) == 1_767_225_600_000  # naive dates are UTC
    assert parse_older_than("2026-01-01T01:00:00+01:00", now) == 1_767_225_600_000
    assert format_table([{"a": "x", "bb": None}, {"a": "long value", "bb": 2}], ["a", "bb"]).splitlines() == [
        "a           bb", "----------  --", "x", "long value  2"]


@pytest.mark.parametrize(("args", "message"), [
    (["runs", "list", "--experiment-id", "0", "--filter", "metrics.loss >> 1"], "error: Invalid run search filter"),
    (["experiments", "list", "--filter", "nme = 'x'"], "error: Invalid"),
    (["gc", "--older-than", "last tuesday"], "error: --older-than 'last tuesday' is not valid"),
    (["optimize", "--vacuum-hours", "1"], "error: vacuum retention 1h is below the safe 168h"),
])
def test_bad_arguments_exit_2_with_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    proc = cli(tmp_path, *args, timeout=60)
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "store").exists()  # rejected before any store was touched


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = cli(tmp_path, "runs", "list", timeout=60)
    assert proc.returncode == 2 and "give --experiment-id or --experiment-name" in proc.stderr
    proc = cli(tmp_path, "runs", "list", "--experiment-id", "1", "--output", "xml", timeout=60)
    assert proc.returncode == 2 and "Invalid value for '--output'" in proc.stderr
