"""Pure checks, no server and no Spark: Quartz cron, job-spec validation (every spec in jobs/ included),
the databricks backend configuration, the project archive and the state mapping."""

from __future__ import annotations

import dataclasses
import os
import textwrap
from pathlib import Path

import pytest

from deltaflow.entities import RunStatus
from deltaflow.errors import InvalidArgument
from deltaflow.projects.databricks import project_archive, status_for_state
from deltaflow.projects.databricks_config import parse_databricks_config
from deltaflow.projects.jobs_spec import FIELDS, load_job_spec
from deltaflow.projects.jobs_spec_cron import CronError, validate_quartz_cron, validate_timezone

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("expression", ["0 0 3 * * ?", "0 0 3 ? * MON", "0 30 6 ? * MON-FRI", "0 0/15 * * * ?",
                                        "0 0 12 L * ?", "0 0 12 15W * ?", "0 0 9 ? * 6#3", "0 0 9 ? * 6L",
                                        "0 0 0 1 JAN,JUL ? 2030", "15,45 5-10 */2 L-2 * ?"])
def test_quartz_expressions_databricks_takes_are_accepted(expression):
    assert len(validate_quartz_cron(expression)) in (6, 7)


@pytest.mark.parametrize("expression, named", [
    ("0 3 * * *", "has 5 fields"),                       # Unix cron: Quartz has seconds
    ("0 0 3 * * *", "exactly one of day-of-month and day-of-week must be '?'"),
    ("0 0 3 ? * ?", "exactly one of day-of-month and day-of-week"),
    ("0 0 24 * * ?", "hours value 24 is outside 0-23"),
    ("0 61 3 * * ?", "minutes value 61"),
    ("0 0 3 32 * ?", "day-of-month value 32"),
    ("0 0 3 ? * FUNDAY", "day-of-week value 'FUNDAY'"),
    ("0 0 3 ? 13 MON", "month value 13"),
    ("0 0/0 3 * * ?", "increment in '0/0'"),
    ("? 0 3 * * ?", "'?' is allowed only in day-of-month or day-of-week"),
    ("0 0 9 ? * 6#7", "the number after '#' must be 1-5"),
    ("0 0 3 * * ? 1800", "year value 1800"),
])
def test_bad_quartz_expressions_are_refused_with_the_part_named(expression, named):
    with pytest.raises(CronError) as info:
        validate_quartz_cron(expression)
    assert named in str(info.value) and expression in str(info.value)


def test_time_zones_are_iana_ids():
    assert validate_timezone("Europe/Amsterdam") == "Europe/Amsterdam" and validate_timezone("UTC") == "UTC"
    with pytest.raises(CronError, match="'Mars/Olympus' is not a known time zone"):
        validate_timezone("Mars/Olympus")


def test_every_spec_in_jobs_is_valid_and_names_its_local_task_files():
    specs = sorted((REPO / "jobs").glob("*.yml"))
    assert {p.name for p in specs} == {"train.yml", "batch_score.yml", "retrain_and_promote.yml"}
    for path in specs:
        spec = load_job_spec(path)
        assert spec.name.startswith("deltaflow-")
        assert spec.local_files and all(f.parent == REPO / "jobs" / "tasks" for f in spec.local_files)
    schedule = load_job_spec(REPO / "jobs" / "retrain_and_promote.yml").settings["schedule"]
    assert validate_quartz_cron(schedule["quartz_cron_expression"])[5] == "MON"


def test_spec_fields_are_the_jobs_apis_own_names():
    from databricks.sdk.service import compute, jobs

    sdk = {"job": jobs.JobSettings, "task": jobs.Task, "job_cluster": jobs.JobCluster, "cluster": compute.ClusterSpec,
           "environment": jobs.JobEnvironment, "environment_spec": compute.Environment,
           "schedule": jobs.CronSchedule, "parameter": jobs.JobParameterDefinition, "dependency": jobs.TaskDependency,
           "spark_python_task": jobs.SparkPythonTask, "python_wheel_task": jobs.PythonWheelTask,
           "notebook_task": jobs.NotebookTask, "library": compute.Library, "pypi": compute.PythonPyPiLibrary,
           "queue": jobs.QueueSettings, "email_notifications": jobs.JobEmailNotifications}
    assert set(sdk) == set(FIELDS)
    for kind, cls in sdk.items():
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(FIELDS[kind]) <= names, (kind, set(FIELDS[kind]) - names)


def _spec(tmp_path: Path, body: str) -> Path:
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "tasks" / "t.py").write_text("print('t')\n")
    path = tmp_path / "job.yml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """
name: j
environments: [{environment_key: e, spec: {client: "2", dependencies: [deltaflow]}}]
tasks:
  - task_key: a
    environment_key: e
    spark_python_task: {python_file: tasks/t.py}
"""


@pytest.mark.parametrize("change, named", [
    (("spark_python_task: {python_file: tasks/t.py}", "spark_python_task: {pyton_file: tasks/t.py}"),
     "tasks[0].spark_python_task.pyton_file: unknown field (did you mean 'python_file'?)"),
    (("name: j", "name: j\nshedule: {quartz_cron_expression: '0 0 3 * * ?', timezone_id: UTC}"),
     "shedule: unknown field"),
    (("name: j", "name: j\nschedule: {quartz_cron_expression: '0 3 * * *', timezone_id: UTC}"),
     "schedule: quartz_cron_expression '0 3 * * *' has 5 fields"),
    (("name: j", "name: j\nschedule: {quartz_cron_expression: '0 0 3 * * ?', timezone_id: Nowhere/City}"),
     "timezone_id 'Nowhere/City' is not a known time zone"),
    (("    environment_key: e\n", ""), "task 'a' needs a compute"),
    (("environment_key: e\n    spark", "environment_key: other\n    spark"), "'other' is not an environments key"),
    (("tasks/t.py}", "tasks/missing.py}"), "tasks[0].spark_python_task.python_file: 'tasks/missing.py' is relative"),
    (("name: j\n", ""), "name: must be non-empty text"),
    (("    spark_python_task: {python_file: tasks/t.py}",
      "    spark_python_task: {python_file: tasks/t.py}\n    depends_on: [{task_key: ghost}]"),
     "'ghost' is not a task of this job"),
    (("    spark_python_task: {python_file: tasks/t.py}",
      "    spark_python_task: {python_file: tasks/t.py}\n    notebook_task: {notebook_path: /x}"),
     "needs exactly one task type"),
])
def test_a_bad_spec_is_refused_naming_the_field(tmp_path, change, named):
    path = _spec(tmp_path, GOOD.replace(*change))
    with pytest.raises(InvalidArgument) as info:
        load_job_spec(path)
    assert str(path) in str(info.value) and named in str(info.value)


def test_a_cycle_and_a_bundle_file(tmp_path):
    cycle = GOOD + """  - task_key: b
    depends_on: [{task_key: c}]
    environment_key: e
    spark_python_task: {python_file: tasks/t.py}
  - task_key: c
    depends_on: [{task_key: b}]
    environment_key: e
    spark_python_task: {python_file: /Workspace/Shared/c.py}
"""
    with pytest.raises(InvalidArgument, match="cycle among b, c"):
        load_job_spec(_spec(tmp_path, cycle))
    bundle = "resources:\n  jobs:\n    my_job:\n" + textwrap.indent(textwrap.dedent(GOOD), "      ")
    assert load_job_spec(_spec(tmp_path, bundle)).name == "j"


def test_backend_config_is_checked_before_any_call():
    mlflow_form = parse_databricks_config({"spark_version": "15.4.x-scala2.12", "num_workers": 1,
                                           "node_type_id": "i3.xlarge"})
    assert mlflow_form.compute == "new_cluster" and mlflow_form.new_cluster["node_type_id"] == "i3.xlarge"
    serverless = parse_databricks_config({"serverless": True, "upload_to": "/Volumes/main/default/files/code/"})
    assert serverless.compute == "serverless" and serverless.upload_to == "/Volumes/main/default/files/code"
    assert parse_databricks_config({"existing_cluster_id": "0101-x"}).deltaflow_requirement == "deltaflow"
    for bad, named in [({"existing_cluster_id": "a", "serverless": True}, "exactly one compute"),
                       ({}, "exactly one compute"),
                       ({"existing_cluster_id": "a", "clusterid": 1}, "unknown key(s) 'clusterid'"),
                       ({"new_cluster": {"num_workers": 1}}, "spark_version"),
                       ({"serverless": True, "upload_to": "s3://bucket/x"}, "upload_to 's3://bucket/x'"),
                       ({"serverless": True, "libraries": [{"pypi": {"package": "x"}}]}, "apply to clusters"),
                       ({"existing_cluster_id": "a", "poll_interval_s": 0}, "poll_interval_s 0"),
                       ({"serverless": "yes"}, "serverless 'yes' must be true or false")]:
        with pytest.raises(InvalidArgument) as info:
            parse_databricks_config(bad)
        assert named in str(info.value), (bad, str(info.value))


def test_the_project_archive_is_content_addressed(tmp_path):
    project = tmp_path / "p"
    (project / ".git").mkdir(parents=True)
    (project / "__pycache__").mkdir()
    (project / "MLproject").write_text("name: p\n")
    (project / "train.py").write_text("print(1)\n")
    (project / ".git" / "HEAD").write_text("ref\n")
    (project / "__pycache__" / "x.pyc").write_bytes(b"\0")
    blob, sha = project_archive(str(project))
    os.utime(project / "train.py", (1, 1))  # times are not part of the archive
    assert project_archive(str(project)) == (blob, sha)
    (project / "train.py").write_text("print(2)\n")
    assert project_archive(str(project))[1] != sha
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        assert sorted(tar.getnames()) == ["MLproject", "train.py"]


def test_life_cycle_and_result_states_map_to_run_statuses():
    assert status_for_state("PENDING", None) == RunStatus.SCHEDULED
    assert status_for_state("QUEUED", None) == RunStatus.SCHEDULED
    assert status_for_state("RUNNING", None) == RunStatus.RUNNING
    assert status_for_state("TERMINATED", "SUCCESS") == RunStatus.FINISHED
    assert status_for_state("TERMINATED", "CANCELED") == RunStatus.KILLED
    assert status_for_state("TERMINATED", "FAILED") == RunStatus.FAILED
    assert status_for_state("TERMINATED", "TIMEDOUT") == RunStatus.FAILED
    assert status_for_state("INTERNAL_ERROR", None) == RunStatus.FAILED
    assert status_for_state("SKIPPED", None) == RunStatus.FAILED


def test_a_local_folder_store_is_refused_for_a_real_workspace():
    from deltaflow.projects.databricks import _check_reachable

    _check_reachable("/tmp/store", "http://127.0.0.1:8080")  # a local emulator runs on this machine
    for reachable in ("/Volumes/main/ml/deltaflow/store", "dbfs:/deltaflow", "metastore:main.ml", "s3://b/x"):
        _check_reachable(reachable, "https://adb-1.azuredatabricks.net")
    with pytest.raises(InvalidArgument, match="'./deltaflow-store' is a folder on this machine"):
        _check_reachable("./deltaflow-store", "https://adb-1.azuredatabricks.net")
