"""deltaflow.projects.run(..., backend="databricks") end to end against LocalDatabricks, through databricks-sdk:
new-cluster, existing-cluster and serverless submissions, uploads to workspace files, DBFS and a Volume,
an idempotent retried submit, failure output, cancel, and a databricks_spark_job project. The remote side
logs into the client's tracking run through delta-rs (no Spark anywhere in this module)."""

from __future__ import annotations

import logging
import textwrap
import time
from pathlib import Path

import pytest

from deltaflow import DeltaflowClient
from deltaflow.entities import RunStatus
from deltaflow.errors import InvalidArgument
from deltaflow.projects import RunFailed, run
from deltaflow.projects.databricks import TAGS, project_archive, run_databricks

pytestmark = pytest.mark.e2e

TRAIN = """
import argparse, os, deltaflow
parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float)
args = parser.parse_args()
with deltaflow.start_run():
    deltaflow.log_metric("score", args.alpha * 2)
print("trained with alpha", args.alpha, "cluster env", os.environ.get("FROM_CLUSTER"))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("project")
    (root / "MLproject").write_text(textwrap.dedent("""
        name: tiny
        entry_points:
          main:
            parameters:
              alpha: {type: float, default: 0.5}
            command: "python train.py --alpha {alpha}"
          fail:
            command: "python fail.py"
          sleep:
            parameters:
              pid_file: {type: string}
            command: "python sleep.py {pid_file}"
        """))
    (root / "train.py").write_text(TRAIN)
    (root / "fail.py").write_text("print('loading the data')\nraise ValueError('bad alpha: the model diverged')\n")
    (root / "sleep.py").write_text("import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\n"
                                   "time.sleep(300)\n")
    return str(root)


@pytest.fixture()
def store(tmp_path) -> str:
    return str(tmp_path / "store")


def _emulated_run(dbx, databricks_run_id):
    return dbx.run_record(databricks_run_id)


def _submits(dbx) -> int:
    return sum(path.endswith("/jobs/runs/submit") for _, path, _ in dbx.requests)


def test_a_new_cluster_run_logs_into_the_tracking_run(local_databricks_env, project, store):
    dbx = local_databricks_env
    config = {"new_cluster": {"spark_version": "15.4.x-scala2.12", "num_workers": 0,
                              "spark_env_vars": {"FROM_CLUSTER": "yes"}}, "poll_interval_s": 0.05}
    submitted = run(project, parameters={"alpha": "0.7"}, backend="databricks", backend_config=config,
                    tracking_uri=store)
    assert submitted.get_status() == RunStatus.FINISHED and submitted.wait() is True
    tracked = DeltaflowClient(store).get_run(submitted.run_id)
    assert tracked.info.status == RunStatus.FINISHED and tracked.data.metrics == {"score": 1.4}
    emulated = _emulated_run(dbx, submitted.databricks_run_id)
    assert tracked.data.tags[TAGS["run_id"]] == str(submitted.databricks_run_id)
    assert tracked.data.tags[TAGS["run_url"]] == submitted.run_page_url == \
        dbx.jobs.page_url(emulated.job_id, emulated.run_id)
    assert tracked.data.tags[TAGS["webapp"]] == dbx.host and tracked.data.tags["mlflow.project.backend"] == "databricks"
    task = emulated.tasks[0].settings
    assert task["new_cluster"]["spark_version"] == "15.4.x-scala2.12"
    assert task["libraries"] == [{"pypi": {"package": "deltaflow"}}]
    assert emulated.idempotency_token == f"deltaflow-{submitted.run_id}"
    launcher_args = task["spark_python_task"]["parameters"]
    archive = launcher_args[launcher_args.index("--archive") + 1]
    sha = project_archive(project)[1]
    assert archive == f"/Workspace/Users/{dbx.user_name}/.deltaflow/projects/{sha}.tar.gz"
    w = dbx.workspace_client()
    assert w.workspace.get_status(archive).size == len(project_archive(project)[0])
    logs = w.jobs.get_run_output(emulated.tasks[0].run_id).logs
    assert "trained with alpha 0.7 cluster env yes" in logs


def test_an_existing_cluster_with_dbfs_uploads_once_and_a_retried_submit_is_the_same_run(
        local_databricks_env, project, store):
    dbx = local_databricks_env
    config = {"existing_cluster_id": dbx.cluster_id, "upload_to": "dbfs:/deltaflow/code", "poll_interval_s": 0.05}
    client = DeltaflowClient(store)
    tracking_run = client.create_run(client.create_experiment("retries"))
    client.flush()
    before, creates = _submits(dbx), sum(path == "/api/2.0/dbfs/create" for _, path, _ in dbx.requests)
    kwargs = dict(run_id=tracking_run.info.run_id, experiment_id=tracking_run.info.experiment_id, tracking_uri=store,
                  backend_config=config, synchronous=False)
    a = run_databricks(project, "main", {"alpha": "2.0"}, **kwargs)
    b = run_databricks(project, "main", {"alpha": "2.0"}, **kwargs)  # the retry after a lost answer
    assert a.databricks_run_id == b.databricks_run_id
    assert _submits(dbx) == before + 2 and len([r for r in dbx.jobs.runs.values()
                                               if r.idempotency_token == f"deltaflow-{tracking_run.info.run_id}"]) == 1
    # archive and launcher went up once: the retry found them by their content-hashed names
    assert sum(path == "/api/2.0/dbfs/create" for _, path, _ in dbx.requests) == creates + 2
    assert dbx.workspace_client().dbfs.get_status(f"dbfs:/deltaflow/code/{project_archive(project)[1]}.tar.gz")
    assert a.wait() and b.get_status() == RunStatus.FINISHED
    assert _emulated_run(dbx, a.databricks_run_id).tasks[0].cluster_instance["cluster_id"] == dbx.cluster_id
    tracked = client.get_run(tracking_run.info.run_id)
    assert tracked.info.status == RunStatus.FINISHED and tracked.data.metrics == {"score": 4.0}


def test_serverless_with_a_volume_and_a_config_profile(local_databricks, project, store, tmp_path, monkeypatch):
    cfg = tmp_path / "databrickscfg"
    cfg.write_text(f"[emulator]\nhost = {local_databricks.host}\ntoken = {local_databricks.token}\n")
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(cfg))
    config = {"serverless": True, "profile": "emulator", "upload_to": "/Volumes/main/default/files/deltaflow",
              "environment": {"dependencies": ["scikit-learn"]}, "poll_interval_s": 0.05}
    submitted = run(project, parameters={"alpha": "0.25"}, backend="databricks", backend_config=config,
                    tracking_uri=store)
    assert submitted.get_status() == RunStatus.FINISHED
    emulated = _emulated_run(local_databricks, submitted.databricks_run_id)
    assert emulated.tasks[0].settings["environment_key"] == "deltaflow" and emulated.tasks[0].cluster_instance is None
    assert emulated.environments["deltaflow"]["spec"]["dependencies"] == ["deltaflow", "scikit-learn"]
    sha = project_archive(project)[1]
    assert local_databricks.workspace_client().files.get_metadata(
        f"/Volumes/main/default/files/deltaflow/{sha}.tar.gz").content_length > 0
    assert DeltaflowClient(store).get_run(submitted.run_id).data.metrics == {"score": 0.5}


def test_a_failed_run_shows_the_tasks_error_and_log_tail(local_databricks_env, project, store, caplog):
    config = {"existing_cluster_id": local_databricks_env.cluster_id, "poll_interval_s": 0.05}
    with caplog.at_level(logging.INFO, logger="deltaflow.projects"), pytest.raises(RunFailed) as info:
        run(project, entry_point="fail", backend="databricks", backend_config=config, tracking_uri=store)
    run_id = info.value.run_id
    assert DeltaflowClient(store).get_run(run_id).info.status == RunStatus.FAILED
    assert "ValueError: bad alpha: the model diverged" in caplog.text and "loading the data" in caplog.text
    assert "RunFailed" in caplog.text and "ended FAILED" in caplog.text

    broken = {**config, "deltaflow_requirement": "deltaflow==99.0"}  # the cluster cannot install it
    with pytest.raises(RunFailed):
        run(project, backend="databricks", backend_config=broken, tracking_uri=store)
    failed = [r for r in DeltaflowClient(store).search_runs([DeltaflowClient(store).get_run(run_id).info.experiment_id])
              if r.info.run_id != run_id][0]
    assert failed.info.status == RunStatus.FAILED
    assert "Library installation failed: deltaflow==99.0" in failed.data.tags["deltaflow.project.error"]


def test_cancel_kills_the_remote_entry_point_and_records_killed(local_databricks_env, project, store, tmp_path):
    pid_file = tmp_path / "entry.pid"
    config = {"existing_cluster_id": local_databricks_env.cluster_id, "poll_interval_s": 0.05}
    submitted = run(project, entry_point="sleep", parameters={"pid_file": str(pid_file)}, backend="databricks",
                    backend_config=config, tracking_uri=store, synchronous=False)
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.time() < deadline, "the entry point never started"
        time.sleep(0.05)
    assert submitted.get_status() == RunStatus.RUNNING
    submitted.cancel()
    assert submitted.get_status() == RunStatus.KILLED and submitted.wait() is False
    assert DeltaflowClient(store).get_run(submitted.run_id).info.status == RunStatus.KILLED
    pid = int(pid_file.read_text())
    deadline = time.time() + 10
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
        assert time.time() < deadline, "the entry point outlived the cancel"
        time.sleep(0.05)


def test_a_databricks_spark_job_project_runs_its_python_file(local_databricks_env, tmp_path, store):
    project = tmp_path / "sparkjob"
    project.mkdir()
    (project / "MLproject").write_text("name: sj\ndatabricks_spark_job:\n  python_file: job.py\n"
                                       "  parameters: ['--n', '3']\n  python_libraries: ['scikit-learn']\n")
    (project / "job.py").write_text("import sys, deltaflow\nn = int(sys.argv[sys.argv.index('--n') + 1])\n"
                                    "with deltaflow.start_run():\n    deltaflow.log_metric('n', n)\n")
    config = {"existing_cluster_id": local_databricks_env.cluster_id, "poll_interval_s": 0.05}
    submitted = run(str(project), backend="databricks", backend_config=config, tracking_uri=store)
    tracked = DeltaflowClient(store).get_run(submitted.run_id)
    assert tracked.info.status == RunStatus.FINISHED and tracked.data.metrics == {"n": 3.0}
    libraries = _emulated_run(local_databricks_env, submitted.databricks_run_id).tasks[0].settings["libraries"]
    assert {"pypi": {"package": "scikit-learn"}} in libraries


def test_a_bad_backend_config_is_refused_before_any_submit(local_databricks_env, project, store):
    before = _submits(local_databricks_env)
    with pytest.raises(InvalidArgument, match="unknown key\\(s\\) 'clusterid'"):
        run(project, backend="databricks", backend_config={"clusterid": "x"}, tracking_uri=store)
    assert _submits(local_databricks_env) == before
