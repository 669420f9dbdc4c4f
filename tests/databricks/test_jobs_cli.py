"""``deltaflow jobs`` against LocalDatabricks: deploy is idempotent (by name), a bad spec is refused before
any call, and the train and retrain-and-promote specs of jobs/ really run (their tasks track through
delta-rs, so no Spark starts here; the batch-score spec runs in the end-to-end notebook's test)."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import deltaflow.cli
from deltaflow import DeltaflowClient
from dbx_helpers import wait_run

pytestmark = pytest.mark.e2e

JOBS = Path(__file__).resolve().parents[2] / "jobs"
SPECS = [str(JOBS / name) for name in ("train.yml", "batch_score.yml", "retrain_and_promote.yml")]
NAMES = ["deltaflow-train", "deltaflow-batch-score", "deltaflow-retrain-and-promote"]


def jobs_cli(*args: str):
    return CliRunner().invoke(deltaflow.cli.cli, ["jobs", *args], catch_exceptions=False)


def test_deploying_twice_gives_one_job_per_spec_updated_in_place(local_databricks_env):
    dbx = local_databricks_env
    first = jobs_cli("deploy", *SPECS)
    assert first.exit_code == 0, first.output
    assert [line.split()[0] for line in first.output.splitlines()] == ["created"] * 3
    ids = {name: int(re.search(rf"'{name}' \(job_id (\d+)\)", first.output).group(1)) for name in NAMES}
    second = jobs_cli("deploy", *SPECS)
    assert second.exit_code == 0 and [line.split()[0] for line in second.output.splitlines()] == ["updated"] * 3
    assert {n: int(re.search(rf"'{n}' \(job_id (\d+)\)", second.output).group(1)) for n in NAMES} == ids
    w = dbx.workspace_client()
    listed = [j.settings.name for j in w.jobs.list()]
    assert sorted(listed) == sorted(NAMES)
    job = w.jobs.get(ids["deltaflow-retrain-and-promote"]).settings
    assert job.schedule.quartz_cron_expression == "0 0 3 ? * MON" and [t.task_key for t in job.tasks] == \
        ["retrain", "promote"]
    remote = job.tasks[1].spark_python_task.python_file
    assert remote == f"/Workspace/Users/{dbx.user_name}/.deltaflow/jobs/deltaflow-retrain-and-promote/tasks/promote.py"
    assert w.workspace.download(remote).read() == (JOBS / "tasks" / "promote.py").read_bytes()
    table = jobs_cli("list")
    assert table.exit_code == 0 and "0 0 3 ? * MON UTC" in table.output and "deltaflow-batch-score" in table.output


def test_an_edited_spec_updates_its_job_and_a_bad_one_is_refused_before_any_call(local_databricks_env, tmp_path):
    dbx = local_databricks_env
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "fail.py").write_text("print('reading input')\nprint(1 / 0)\n")
    spec = tmp_path / "failing.yml"
    body = textwrap.dedent("""
        name: failing-job
        description: first
        environments: [{environment_key: e, spec: {client: "2", dependencies: [deltaflow]}}]
        tasks:
          - task_key: fail
            environment_key: e
            spark_python_task: {python_file: tasks/fail.py}
        """)
    spec.write_text(body)
    assert jobs_cli("deploy", str(spec)).exit_code == 0
    spec.write_text(body.replace("description: first", "description: second"))
    assert jobs_cli("deploy", str(spec)).output.startswith("updated job 'failing-job'")
    w = dbx.workspace_client()
    assert [j.settings.description for j in w.jobs.list(name="failing-job", expand_tasks=True)] == ["second"]

    bad = tmp_path / "bad.yml"
    bad.write_text(body.replace("description: first",
                                "schedule: {quartz_cron_expression: '0 0 3 * * *', timezone_id: UTC}"))
    calls = len(dbx.requests)
    refused = jobs_cli("deploy", str(spec), str(bad))
    assert refused.exit_code == 2
    assert f"{bad}: schedule: quartz_cron_expression '0 0 3 * * *'" in refused.output
    assert "exactly one of day-of-month and day-of-week must be '?'" in refused.output
    assert len(dbx.requests) == calls  # nothing was deployed, not even the good spec

    failed = jobs_cli("run-now", "failing-job")
    assert failed.exit_code == 1
    assert "TERMINATED FAILED" in failed.output and "task fail (FAILED)" in failed.output
    assert "error: ZeroDivisionError: division by zero" in failed.output
    assert "trace:" in failed.output and "log tail:" in failed.output and "reading input" in failed.output
    runs = jobs_cli("runs", "failing-job")
    assert runs.exit_code == 0 and "TERMINATED FAILED" in runs.output
    assert jobs_cli("delete", "failing-job").exit_code == 0
    gone = jobs_cli("run-now", "failing-job")
    assert gone.exit_code == 2 and "no Databricks job is named 'failing-job'" in gone.output


def test_the_train_and_retrain_and_promote_specs_really_run(local_databricks_env, tmp_path):
    dbx = local_databricks_env
    assert jobs_cli("deploy", SPECS[0], SPECS[2]).exit_code == 0
    store = str(tmp_path / "store")
    params = ["-P", f"tracking_uri={store}", "-P", "model_name=churn", "-P", "experiment=jobs"]
    started = time.time()
    run_ids = []
    for name in ("deltaflow-train", "deltaflow-retrain-and-promote"):
        result = jobs_cli("run-now", name, *params, "--no-wait")
        assert result.exit_code == 0, result.output
        run_ids.append(int(result.output.strip().splitlines()[-1]))
    w = dbx.workspace_client()
    train, retrain = (wait_run(w, run_id, timeout=120) for run_id in run_ids)
    assert train.state.result_state.value == "SUCCESS", w.jobs.get_run_output(train.tasks[0].run_id).error
    assert retrain.state.result_state.value == "SUCCESS"
    assert [t.task_key for t in retrain.tasks] == ["retrain", "promote"] and retrain.tasks[1].start_time >= \
        retrain.tasks[0].end_time
    promote_log = w.jobs.get_run_output(retrain.tasks[1].run_id).logs
    promoted = re.search(r"promoted churn version (\d+) to @champion", promote_log)
    assert promoted, promote_log
    client = DeltaflowClient(store)
    versions = client.search_model_versions("name = 'churn'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    champion = client.get_model_version_by_alias("churn", "champion")
    assert champion.version == promoted.group(1) or int(champion.version) == int(promoted.group(1))
    assert client.get_run(champion.run_id).data.metrics["auc"] > 0.8
    assert time.time() - started < 120
