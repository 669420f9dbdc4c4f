#!/usr/bin/env python
"""Latency of Databricks job runs against ``deltaflow.testing.LocalDatabricks``, through databricks-sdk.

Two measurements, each repeat one after the other so they share the machine's load:

* a one-time run of a trivial ``spark_python_task`` (``print``) on the emulator's existing cluster:
  the ``runs/submit`` call, submit → RUNNING seen and submit → TERMINATED SUCCESS seen, polling
  ``runs/get`` every 10 ms; beside the bare command (``python <file>``) the task runs, which is the
  floor of the task's own time;
* a project run, ``deltaflow.projects.run(..., backend="databricks")`` of a project whose entry point logs
  one metric (archive upload on the first repeat only, submit, the launcher unpacking it and running the
  entry point with the local backend, polling every 50 ms), beside the same project with
  ``backend="local"``. Every run is checked afterwards: FINISHED, with its metric.

MLflow has no column: its databricks backend submits Jobs API 2.0 runs that execute ``mlflow run``
against the ``databricks`` tracking URI, which needs a real workspace.

    python benchmarks/bench_databricks.py                 # 10 task repeats, 3 project repeats
    python benchmarks/bench_databricks.py --repeats 5 --project-repeats 2

Prints one table and writes ``benchmarks/results/databricks-<timestamp>.json`` (every sample).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RESULTS_DIR, environment, fmt_s, log, machine_load, median, percentile  # noqa: E402

TASK = "print('hello from the task')\n"
TRAIN = "import deltaflow\nwith deltaflow.start_run():\n    deltaflow.log_metric('m', 1.0)\n"


def _task_runs(dbx, repeats: int, folder: str) -> dict[str, list[float]]:
    from databricks.sdk.service import jobs, workspace

    w = dbx.workspace_client()
    path = f"/Users/{dbx.user_name}/bench_task.py"
    w.workspace.upload(path, TASK.encode(), format=workspace.ImportFormat.AUTO, overwrite=True)
    local = os.path.join(folder, "bench_task.py")
    with open(local, "w") as fh:
        fh.write(TASK)
    samples: dict[str, list[float]] = {"submit_call": [], "to_running": [], "to_success": [], "bare_command": []}
    for i in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        run_id = w.jobs.submit(run_name="bench", tasks=[jobs.SubmitTask(
            task_key="t", existing_cluster_id=dbx.cluster_id,
            spark_python_task=jobs.SparkPythonTask(python_file=path))]).run_id
        submitted = time.perf_counter() - t0
        running = None
        while True:
            state = w.jobs.get_run(run_id).state
            now = time.perf_counter() - t0
            if running is None and state.life_cycle_state.value in ("RUNNING", "TERMINATING", "TERMINATED"):
                running = now
            if state.life_cycle_state.value in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
                break
            time.sleep(0.01)
        if state.result_state is None or state.result_state.value != "SUCCESS":
            raise RuntimeError(f"benchmark task run {run_id} ended {state}")
        t1 = time.perf_counter()
        subprocess.run([dbx.python, local], check=True, capture_output=True)
        bare = time.perf_counter() - t1
        if i:
            for key, value in zip(samples, (submitted, running, now, bare)):
                samples[key].append(value)
        log(f"task run {i}: submit {submitted * 1000:.0f} ms, RUNNING {running:.2f} s, SUCCESS {now:.2f} s, "
            f"bare command {bare:.2f} s")
    return samples


def _project_runs(dbx, repeats: int, folder: str) -> dict[str, list[float]]:
    from deltaflow import DeltaflowClient
    from deltaflow.projects import run

    project = os.path.join(folder, "project")
    os.makedirs(project)
    with open(os.path.join(project, "MLproject"), "w") as fh:
        fh.write("name: bench\nentry_points:\n  main:\n    command: python train.py\n")
    with open(os.path.join(project, "train.py"), "w") as fh:
        fh.write(TRAIN)
    store = os.path.join(folder, "store")
    os.environ.update(dbx.env())
    config = {"existing_cluster_id": dbx.cluster_id, "poll_interval_s": 0.05}
    samples: dict[str, list[float]] = {"databricks_backend": [], "local_backend": []}
    for i in range(repeats):
        for key, kwargs in (("databricks_backend", {"backend": "databricks", "backend_config": config}),
                            ("local_backend", {})):
            t0 = time.perf_counter()
            submitted = run(project, tracking_uri=store, **kwargs)
            seconds = time.perf_counter() - t0
            tracked = DeltaflowClient(store).get_run(submitted.run_id)
            if tracked.info.status != "FINISHED" or tracked.data.metrics != {"m": 1.0}:
                raise RuntimeError(f"{key} run {submitted.run_id}: {tracked.info.status} {tracked.data.metrics}")
            samples[key].append(seconds)
            log(f"project run {i} ({key}): {seconds:.2f} s")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--project-repeats", type=int, default=3)
    args = parser.parse_args()
    from deltaflow.testing import LocalDatabricks

    load_before = machine_load()
    with tempfile.TemporaryDirectory(prefix="deltaflow-bench-databricks-") as folder, \
            LocalDatabricks(os.path.join(folder, "workspace")) as dbx:
        tasks = _task_runs(dbx, args.repeats, folder)
        projects = _project_runs(dbx, args.project_repeats, folder)
    rows = [("runs/submit call", tasks["submit_call"]), ("submit → RUNNING seen", tasks["to_running"]),
            ("submit → TERMINATED SUCCESS seen", tasks["to_success"]),
            ("bare command (python task.py)", tasks["bare_command"]),
            ("project run, databricks backend (emulator)", projects["databricks_backend"]),
            ("project run, local backend", projects["local_backend"])]
    print(f"\n{'measurement':<44} {'median':>9} {'p95':>9}   MLflow")
    for title, values in rows:
        print(f"{title:<44} {fmt_s(median(values)):>9} {fmt_s(percentile(values, 95)):>9}   -")
    print(f"(emulator startup_seconds {dbx.startup_seconds}; load average before {load_before['loadavg']}, "
          f"after {os.getloadavg()})")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    out = os.path.join(RESULTS_DIR, f"databricks-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(out, "w") as fh:
        json.dump({"environment": environment(), "load_before": load_before, "load_after": os.getloadavg(),
                   "tasks": tasks, "projects": projects}, fh, indent=1, default=str)
    print(f"samples: {out}")


if __name__ == "__main__":
    main()
