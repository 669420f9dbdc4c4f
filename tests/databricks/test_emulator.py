"""LocalDatabricks through the real databricks-sdk: the API shapes and typed errors, storage round trips,
and job tasks really running as local subprocesses (no Spark: the tasks are plain Python)."""

from __future__ import annotations

import io
import json
import os
import time

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (InvalidParameterValue, NotFound, NotImplemented, PermissionDenied,
                                   ResourceAlreadyExists, ResourceDoesNotExist)
from databricks.sdk.service import compute, jobs, workspace
from dbx_helpers import make_wheel, wait_run

pytestmark = pytest.mark.e2e

VOLUME = "/Volumes/main/default/files"


@pytest.fixture(scope="module")
def w(local_databricks):
    return local_databricks.workspace_client()


@pytest.fixture(scope="module")
def home(w):
    return f"/Users/{w.current_user.me().user_name}"


def _upload(w, path: str, code: str) -> str:
    w.workspace.upload(path, code.encode(), format=workspace.ImportFormat.AUTO, overwrite=True)
    return path


def test_emulator_errors_come_out_as_the_sdks_typed_errors(w, local_databricks, home):
    with pytest.raises(ResourceDoesNotExist, match="Job 987654 does not exist"):
        w.jobs.get(987654)  # 400 INVALID_PARAMETER_VALUE, which the SDK maps for jobs/get
    with pytest.raises(InvalidParameterValue, match="Job 987654 does not exist"):
        w.jobs.delete(987654)
    with pytest.raises(ResourceDoesNotExist, match="Run 424242 does not exist"):
        w.jobs.get_run(424242)
    with pytest.raises(ResourceDoesNotExist, match=r"Path \(/Users/nobody/x\) doesn't exist"):
        w.workspace.get_status("/Users/nobody/x")
    with pytest.raises(ResourceDoesNotExist, match="No file or directory exists"):
        w.dbfs.get_status("dbfs:/no/such/file")
    with pytest.raises(NotFound):
        w.files.get_metadata(f"{VOLUME}/missing.bin")
    with pytest.raises(InvalidParameterValue, match="One of job_cluster_key, new_cluster, or existing_cluster_id"):
        w.jobs.submit(tasks=[jobs.SubmitTask(task_key="t", spark_python_task=jobs.SparkPythonTask(python_file="/x.py"))])
    with pytest.raises(InvalidParameterValue, match="Cluster 1111-nope does not exist"):
        w.jobs.submit(tasks=[jobs.SubmitTask(task_key="t", existing_cluster_id="1111-nope",
                                             spark_python_task=jobs.SparkPythonTask(python_file="/x.py"))])
    with pytest.raises(ResourceDoesNotExist, match="Cluster 1111-nope does not exist"):
        w.clusters.get("1111-nope")
    with pytest.raises(NotImplemented, match="spark_jar_task is not emulated"):
        w.jobs.submit(tasks=[jobs.SubmitTask(task_key="t", existing_cluster_id=local_databricks.cluster_id,
                                             spark_jar_task=jobs.SparkJarTask(main_class_name="a.B"))])
    with pytest.raises(InvalidParameterValue, match="quartz_cron_expression '0 0 25 \\* \\* \\?'.*hours value 25"):
        w.jobs.create(name="bad-cron", schedule=jobs.CronSchedule(quartz_cron_expression="0 0 25 * * ?",
                                                                   timezone_id="UTC"),
                      tasks=[jobs.Task(task_key="t", notebook_task=jobs.NotebookTask(notebook_path=f"{home}/nb"))])
    _upload(w, f"{home}/exists.txt", "x")
    with pytest.raises(ResourceAlreadyExists):
        w.workspace.upload(f"{home}/exists.txt", b"y", format=workspace.ImportFormat.AUTO)
    with pytest.raises(NotFound, match="No API found"):
        w.api_client.do("GET", "/api/2.0/no/such/endpoint")
    stranger = WorkspaceClient(host=local_databricks.host, token="wrong-token", auth_type="pat")
    with pytest.raises(PermissionDenied, match="Invalid access token"):
        stranger.jobs.get(1)
    assert w.clusters.get(local_databricks.cluster_id).state == compute.State.RUNNING


def test_workspace_dbfs_and_volume_files_round_trip(w, home, local_databricks):
    w.workspace.mkdirs(f"{home}/proj/sub")
    nb = "# Databricks notebook source\nprint(1)\n"
    w.workspace.upload(f"{home}/proj/nb.py", nb.encode(), format=workspace.ImportFormat.AUTO)
    status = w.workspace.get_status(f"{home}/proj/nb")  # AUTO drops the extension of a notebook
    assert status.object_type == workspace.ObjectType.NOTEBOOK and status.language == workspace.Language.PYTHON
    assert w.workspace.download(f"{home}/proj/nb").read().decode().startswith("# Databricks notebook source")
    assert w.workspace.get_status(f"/Workspace{home}/proj/sub").object_type == workspace.ObjectType.DIRECTORY
    assert sorted(o.path for o in w.workspace.list(f"{home}/proj")) == [f"{home}/proj/nb", f"{home}/proj/sub"]
    with pytest.raises(ResourceDoesNotExist, match="parent folder"):
        w.workspace.upload(f"{home}/nowhere/x.py", b"x", format=workspace.ImportFormat.RAW)

    payload = os.urandom(2_500_000)  # three DBFS blocks of at most 1 MB
    w.dbfs.upload("dbfs:/deltaflow/blob.bin", io.BytesIO(payload), overwrite=True)
    assert w.dbfs.get_status("dbfs:/deltaflow/blob.bin").file_size == len(payload)
    assert w.dbfs.download("dbfs:/deltaflow/blob.bin").read() == payload

    w.files.upload(f"{VOLUME}/dir/small.txt", io.BytesIO(b"small"), overwrite=True)
    big = os.urandom(300_000)
    w.files._config.files_ext_multipart_upload_min_stream_size = 100_000  # force the presigned multipart path
    w.files.upload(f"{VOLUME}/dir/big.bin", io.BytesIO(big), overwrite=True, part_size=128 * 1024)
    assert w.files.download(f"{VOLUME}/dir/big.bin").contents.read() == big
    calls = [(method, path) for method, path, _ in local_databricks.requests]
    assert sum(m == "PUT" and p.startswith("/_presigned/") for m, p in calls) == 3  # 300 kB in 128 kB parts
    assert ("POST", "/api/2.0/fs/create-download-url") in calls
    assert w.files.get_metadata(f"{VOLUME}/dir/small.txt").content_length == 5
    names = sorted(e.name for e in w.files.list_directory_contents(f"{VOLUME}/dir"))
    assert names == ["big.bin", "small.txt"]
    with pytest.raises(Exception, match="already exists"):
        w.files.upload(f"{VOLUME}/dir/small.txt", io.BytesIO(b"again"), overwrite=False)


def test_a_submitted_python_task_runs_through_the_life_cycle_and_reaches_the_workspace(w, local_databricks, home):
    w.files.upload(f"{VOLUME}/input.txt", io.BytesIO(b"from the volume"), overwrite=True)
    script = _upload(w, f"{home}/task_ok.py", """
import os, sys
from databricks.sdk import WorkspaceClient
data = WorkspaceClient().files.download("/Volumes/main/default/files/input.txt").contents.read().decode()
print("args", sys.argv[1:], "env", os.environ["GREETING"], "read", data)
""")
    submitted = w.jobs.submit(run_name="ok", tasks=[jobs.SubmitTask(
        task_key="main", new_cluster=compute.ClusterSpec(spark_version="15.4.x-scala2.12", num_workers=0,
                                                         spark_env_vars={"GREETING": "hello"}),
        spark_python_task=jobs.SparkPythonTask(python_file=f"/Workspace{script}",
                                               parameters=["--run", "{{job.run_id}}", "{{task.name}}"]))])
    run = wait_run(w, submitted.run_id)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    assert run.status.termination_details.code == jobs.TerminationCodeCode.SUCCESS
    assert local_databricks.run_history(run.run_id) == ["PENDING", "RUNNING", "TERMINATING", "TERMINATED"]
    assert run.run_type == jobs.RunType.SUBMIT_RUN and run.run_page_url.endswith(f"#job/{run.job_id}/run/{run.run_id}")
    task = run.tasks[0]
    assert task.run_id != run.run_id and task.cluster_instance.cluster_id
    assert task.start_time <= task.end_time and run.end_time >= task.end_time
    output = w.jobs.get_run_output(task.run_id)
    assert f"args ['--run', '{run.run_id}', 'main'] env hello read from the volume" in output.logs
    assert output.error is None and output.metadata.state.result_state == jobs.RunResultState.SUCCESS
    with pytest.raises(InvalidParameterValue, match="multiple tasks is not supported"):
        w.jobs.get_run_output(run.run_id)


def test_the_same_idempotency_token_never_starts_a_second_run(w, local_databricks, home):
    script = _upload(w, f"{home}/count.py", "import os\nopen(os.environ['MARK'], 'a').write('x')\n")
    marks = local_databricks.root / "marks.txt"
    spec = dict(run_name="once", idempotency_token="deltaflow-token-1", tasks=[jobs.SubmitTask(
        task_key="main", existing_cluster_id=local_databricks.cluster_id,
        new_cluster=None, spark_python_task=jobs.SparkPythonTask(python_file=script))])
    local_databricks.clusters[local_databricks.cluster_id]["spark_env_vars"] = {"MARK": str(marks)}
    first = w.jobs.submit(**spec).run_id
    second = w.jobs.submit(**spec).run_id
    assert first == second
    wait_run(w, first)
    third = w.jobs.submit(**spec).run_id  # still the same after the run ended
    assert third == first
    assert marks.read_text() == "x"
    assert [r.run_id for r in w.jobs.list_runs(run_type=jobs.RunType.SUBMIT_RUN) if r.run_name == "once"] == [first]
    with pytest.raises(InvalidParameterValue, match="at most 64 characters"):
        w.jobs.submit(**{**spec, "idempotency_token": "t" * 65})


def test_a_failing_task_reports_error_trace_and_log_tail(w, home, local_databricks):
    script = _upload(w, f"{home}/task_fail.py", "print('before the failure')\nraise ValueError('boom: bad input')\n")
    run = wait_run(w, w.jobs.submit(run_name="fails", tasks=[jobs.SubmitTask(
        task_key="main", existing_cluster_id=local_databricks.cluster_id,
        spark_python_task=jobs.SparkPythonTask(python_file=script))]).run_id)
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert "boom: bad input" in run.state.state_message
    output = w.jobs.get_run_output(run.tasks[0].run_id)
    assert output.error == "ValueError: boom: bad input"
    assert "Traceback (most recent call last)" in output.error_trace and "task_fail.py" in output.error_trace
    assert "before the failure" in output.logs and output.logs_truncated is False

    missing = wait_run(w, w.jobs.submit(run_name="missing", tasks=[jobs.SubmitTask(
        task_key="main", existing_cluster_id=local_databricks.cluster_id,
        spark_python_task=jobs.SparkPythonTask(python_file="dbfs:/no/such.py"))]).run_id)
    assert missing.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR
    assert "dbfs:/no/such.py does not exist" in missing.state.state_message

    libs = wait_run(w, w.jobs.submit(run_name="libs", tasks=[jobs.SubmitTask(
        task_key="main", existing_cluster_id=local_databricks.cluster_id,
        libraries=[compute.Library(pypi=compute.PythonPyPiLibrary(package="surely-not-installed-pkg==1.0"))],
        spark_python_task=jobs.SparkPythonTask(python_file=script))]).run_id)
    assert libs.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR
    assert libs.status.termination_details.code == jobs.TerminationCodeCode.LIBRARY_INSTALLATION_ERROR


def test_cancel_kills_the_task_process_and_timeouts_end_as_timedout(w, home, local_databricks, tmp_path):
    pid_file = tmp_path / "pid"
    script = _upload(w, f"{home}/sleeper.py",
                     f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n")
    run_id = w.jobs.submit(run_name="sleeper", tasks=[jobs.SubmitTask(
        task_key="main", existing_cluster_id=local_databricks.cluster_id,
        spark_python_task=jobs.SparkPythonTask(python_file=script))]).run_id
    deadline = time.time() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline
        time.sleep(0.05)
    assert w.jobs.get_run(run_id).state.life_cycle_state == jobs.RunLifeCycleState.RUNNING
    w.jobs.cancel_run(run_id)
    run = wait_run(w, run_id)
    assert run.state.result_state == jobs.RunResultState.CANCELED and run.state.user_cancelled_or_timedout
    assert run.state.state_message == "Run cancelled."
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)

    timed = wait_run(w, w.jobs.submit(run_name="slow", timeout_seconds=1, tasks=[jobs.SubmitTask(
        task_key="main", existing_cluster_id=local_databricks.cluster_id,
        spark_python_task=jobs.SparkPythonTask(python_file=script))]).run_id)
    assert timed.state.result_state == jobs.RunResultState.TIMEDOUT


def test_notebook_and_wheel_tasks_on_serverless_and_job_clusters(w, home, local_databricks):
    notebook = ("# Databricks notebook source\ndbutils.widgets.text('who', 'nobody')\n"
                "# COMMAND ----------\nwho = dbutils.widgets.get('who')\nprint('hi', who)\n"
                "dbutils.notebook.exit(f'greeted {who} in {{job}}'.replace('{job}', dbutils.widgets.get('job')))\n")
    w.workspace.upload(f"{home}/greet.py", notebook.encode(), format=workspace.ImportFormat.AUTO, overwrite=True)
    wheel = make_wheel("hello-wheel", "0.1", {"hello_wheel/__init__.py": (
        "import sys, json\n"
        "def main():\n    print(json.dumps(sys.argv[1:]))\n"
        "def broken():\n    raise RuntimeError('wheel failed')\n")},
        {"hello": "hello_wheel:main", "broken": "hello_wheel:broken"})
    w.files.upload(f"{VOLUME}/wheels/hello_wheel-0.1-py3-none-any.whl", io.BytesIO(wheel), overwrite=True)
    whl = f"{VOLUME}/wheels/hello_wheel-0.1-py3-none-any.whl"
    created = w.jobs.create(
        name="mixed", parameters=[jobs.JobParameterDefinition(name="job", default="default-job")],
        environments=[jobs.JobEnvironment(environment_key="serverless",
                                          spec=compute.Environment(client="1", dependencies=[whl]))],
        job_clusters=[jobs.JobCluster(job_cluster_key="shared", new_cluster=compute.ClusterSpec(
            spark_version="15.4.x-scala2.12", num_workers=1))],
        tasks=[jobs.Task(task_key="greet", notebook_task=jobs.NotebookTask(notebook_path=f"{home}/greet",
                                                                          base_parameters={"who": "ana"})),
               jobs.Task(task_key="wheel", depends_on=[jobs.TaskDependency(task_key="greet")],
                         environment_key="serverless", python_wheel_task=jobs.PythonWheelTask(
                             package_name="hello-wheel", entry_point="hello",
                             named_parameters={"run": "{{job.run_id}}", "p": "{{job.parameters.job}}"})),
               jobs.Task(task_key="broken", depends_on=[jobs.TaskDependency(task_key="wheel")],
                         job_cluster_key="shared", libraries=[compute.Library(whl=whl)],
                         python_wheel_task=jobs.PythonWheelTask(package_name="hello-wheel", entry_point="broken")),
               jobs.Task(task_key="after", depends_on=[jobs.TaskDependency(task_key="broken")],
                         notebook_task=jobs.NotebookTask(notebook_path=f"{home}/greet"))])
    run_id = w.jobs.run_now(created.job_id, job_parameters={"job": "nightly"}).run_id
    run = wait_run(w, run_id)
    states = {t.task_key: t.state.result_state.value for t in run.tasks}
    assert states == {"greet": "SUCCESS", "wheel": "SUCCESS", "broken": "FAILED", "after": "UPSTREAM_FAILED"}
    assert run.state.result_state == jobs.RunResultState.FAILED and run.trigger == jobs.TriggerType.ONE_TIME
    by_key = {t.task_key: t for t in run.tasks}
    assert by_key["greet"].cluster_instance is None and by_key["broken"].cluster_instance.cluster_id
    assert w.jobs.get_run_output(by_key["greet"].run_id).notebook_output.result == "greeted ana in nightly"
    assert json.loads(w.jobs.get_run_output(by_key["wheel"].run_id).logs.strip()) == [f"--run={run_id}", "--p=nightly"]
    assert w.jobs.get_run_output(by_key["broken"].run_id).error == "RuntimeError: wheel failed"
    assert [p.value for p in run.job_parameters] == ["nightly"]


def test_jobs_crud_list_queueing_and_schedules(w, home, local_databricks):
    script = _upload(w, f"{home}/short.py", "import time\ntime.sleep(0.3)\n")
    task = jobs.Task(task_key="main", existing_cluster_id=local_databricks.cluster_id,
                     spark_python_task=jobs.SparkPythonTask(python_file=script))
    job_id = w.jobs.create(name="Nightly Retrain", tasks=[task], max_concurrent_runs=1,
                           schedule=jobs.CronSchedule(quartz_cron_expression="0 0 3 ? * MON-FRI",
                                                      timezone_id="Europe/Amsterdam")).job_id
    assert [j.job_id for j in w.jobs.list(name="nightly retrain")] == [job_id]  # exact, case-insensitive
    assert w.jobs.get(job_id).settings.schedule.quartz_cron_expression == "0 0 3 ? * MON-FRI"
    w.jobs.reset(job_id, new_settings=jobs.JobSettings(name="Nightly Retrain", tasks=[task], max_concurrent_runs=1,
                                                       description="reset"))
    job = w.jobs.get(job_id)
    assert job.settings.description == "reset" and job.settings.schedule is None
    w.jobs.update(job_id, new_settings=jobs.JobSettings(tags={"team": "ml"}))
    assert w.jobs.get(job_id).settings.tags == {"team": "ml"} and w.jobs.get(job_id).settings.description == "reset"

    first, second = (w.jobs.run_now(job_id).run_id for _ in range(2))
    time.sleep(0.1)
    assert w.jobs.get_run(second).state.life_cycle_state == jobs.RunLifeCycleState.QUEUED
    done = [wait_run(w, r) for r in (first, second)]
    assert all(r.state.result_state == jobs.RunResultState.SUCCESS for r in done)
    assert "QUEUED" in local_databricks.run_history(second)
    assert done[1].start_time >= done[0].start_time
    runs = list(w.jobs.list_runs(job_id=job_id))
    assert [r.run_id for r in runs] == [second, first] and [r.number_in_job for r in runs] == [2, 1]

    w.jobs.update(job_id, new_settings=jobs.JobSettings(schedule=jobs.CronSchedule(
        quartz_cron_expression="0 30 6 * * ?", timezone_id="UTC")))
    periodic = wait_run(w, local_databricks.fire_schedule(job_id))
    assert periodic.trigger == jobs.TriggerType.PERIODIC
    w.jobs.delete(job_id)
    with pytest.raises(ResourceDoesNotExist):
        w.jobs.get(job_id)
