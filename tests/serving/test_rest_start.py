"""``deltaflow models serve`` refuses what it cannot serve before it opens a port, and ``deltaflow models
export`` what it cannot export before it writes anything: one ``error:`` line naming the problem, exit
status 2. The commands run at the same time (each is a separate process)."""

from __future__ import annotations

import subprocess

import pytest

from serving_support import deltaflow_command, free_port

pytestmark = pytest.mark.e2e


def test_start_errors(registry):
    spark_model = registry.save(spark=True)
    cases = {
        "spark model": (["-m", spark_model], ["Spark ML model", "'mlflow.spark'", "deltaflow models score"]),
        "unknown model": (["-m", "models:/nope@champion"], ["registered model 'nope' does not exist"]),
        "malformed uri": (["-m", "models:/"], ["malformed model URI 'models:/'", "name is empty"]),
        "missing folder": (["-m", str(registry.root / "absent")], ["does not exist", "absent"]),
        "bad body size": (["-m", spark_model, "--max-body-size", "12Q"], ["body size '12Q'", "64M"]),
        "metastore store": (["-m", "models:/m@a"], ["delta-rs cannot read store 'metastore:default'"]),
        "export spark model": (["-m", spark_model, "-o", str(registry.root / "never")],
                               ["Spark ML model", "cannot be exported"]),
    }
    port = str(free_port())
    running = {}
    for case, (args, _) in cases.items():
        root = ["--tracking-uri", "metastore:default"] if case == "metastore store" else []
        verb = ["export"] if case.startswith("export") else ["serve", "--port", port]
        command = [*deltaflow_command(), *root, "models", *verb, *args]
        running[case] = subprocess.Popen(command, env=registry.env(), cwd=registry.root, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
    for case, proc in running.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (case, out, err)
        assert err.startswith("error: ") and "Traceback" not in err, (case, err)
        for words in cases[case][1]:
            assert words in err, (case, err)
        assert "Uvicorn running" not in out + err, case
    assert not (registry.root / "never").exists()
