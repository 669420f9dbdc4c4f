#!/usr/bin/env python
"""Cost of launching a project: ``deltaflow run`` beside ``mlflow run --env-manager local`` (MLflow 3.17), in one run.

One trivial project (an MLproject whose ``main`` entry point runs ``python train.py --alpha {alpha}``) is
launched, each repeat, three ways, one after the other so they share the machine's load:

* the bare command — ``bash -c "python train.py --alpha 0.5"`` in the project folder, what both launchers run;
* ``deltaflow --tracking-uri <store> run <project> -P alpha=0.5`` (a fresh path store; the launcher's engine is
  what ``auto`` picks: delta-rs, no JVM — the probe checks pyspark was never imported);
* ``mlflow run <project> -P alpha=0.5 --env-manager local`` against a fresh sqlite store
  (``MLFLOW_TRACKING_URI=sqlite:///…``, MLflow 3's default backend).

Launcher overhead = launcher wall time − bare command wall time (medians); the same difference in CPU
time (user + sys of the launcher and everything it waited for, from ``RUSAGE_CHILDREN``) is printed too,
as it hardly moves with the machine's load. A second project, whose entry
point imports its library and logs one metric into the handed-over run, is then launched the same way
(deltaflow's child imports deltaflow, MLflow's imports mlflow): the end-to-end cost a user sees. Each store
gets one untimed warm-up launch (table creation; MLflow's schema migrations) first. Every launch is checked
afterwards: the run exists, FINISHED, with its param (and metric).

    python benchmarks/bench_projects.py                 # 10 repeats
    python benchmarks/bench_projects.py --repeats 5 --skip-mlflow

Prints one table and writes ``benchmarks/results/projects-<timestamp>.json`` (every sample).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    COLUMN_TITLES,
    RESULTS_DIR,
    ProcResult,
    Results,
    TempDirs,
    fmt_s,
    log,
    median,
    percentile,
    timed_process,
    verdict,
)

KEY = "projects"
TARGET_OVERHEAD_S = 0.5
MLPROJECT = """name: bench
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.1}
    command: "python train.py --alpha {alpha}"
"""
TRIVIAL = "import sys\nalpha = float(sys.argv[2])\nprint('alpha', alpha)\n"
LOGGING = """import sys
import {lib} as lib
lib.log_metric("alpha_seen", float(sys.argv[2]))
"""


def _project(dirs: TempDirs, name: str, train: str) -> str:
    folder = dirs.new(name)
    with open(os.path.join(folder, "MLproject"), "w") as fh:
        fh.write(MLPROJECT)
    with open(os.path.join(folder, "train.py"), "w") as fh:
        fh.write(train)
    return folder


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # Both launchers run `python`: this interpreter, for the bare command too.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    for name in ("DELTAFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI", "DELTAFLOW_RUN_ID", "MLFLOW_RUN_ID",
                 "DELTAFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_ID", "DELTAFLOW_ENGINE"):
        env.pop(name, None)
    env.update(extra)
    return env


def _with_cpu(fn: Callable[[], ProcResult]) -> tuple[ProcResult, float]:
    """The result and the CPU time (user + sys) the process and every descendant it waited for used."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = fn()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


class Launchers:
    """The three ways to run a project folder, each a timed child process."""

    def __init__(self, dirs: TempDirs) -> None:
        self.store = os.path.join(dirs.new("deltaflow"), "store")
        self.mlflow_uri = f"sqlite:///{os.path.join(dirs.new('mlflow'), 'mlflow.db')}"
        self.deltaflow_bin = os.path.join(os.path.dirname(sys.executable), "deltaflow")
        self.mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")

    def bare(self, project: str) -> ProcResult:
        return timed_process(["bash", "-c", "python train.py --alpha 0.5"], _env(), cwd=project).check("bare command")

    def deltaflow(self, project: str, experiment: str) -> ProcResult:
        cmd = [self.deltaflow_bin, "--tracking-uri", self.store, "run", project, "-P", "alpha=0.5",
               "--experiment-name", experiment]
        return timed_process(cmd, _env(DELTAFLOW_USER="bench")).check("deltaflow run")

    def mlflow(self, project: str, experiment: str) -> ProcResult:
        cmd = [self.mlflow_bin, "run", project, "-P", "alpha=0.5", "--env-manager", "local",
               "--experiment-name", experiment]
        env = _env(MLFLOW_TRACKING_URI=self.mlflow_uri, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        return timed_process(cmd, env).check("mlflow run")


def _check_deltaflow(store: str, experiment: str, count: int, metric: bool) -> Optional[str]:
    import deltaflow

    runs = deltaflow.DeltaflowClient(store).search_runs(
        [deltaflow.DeltaflowClient(store).get_experiment_by_name(experiment).experiment_id], max_results=1000)
    bad = [r.info.run_id for r in runs if r.info.status != "FINISHED" or r.data.params.get("alpha") != "0.5"
           or (metric and r.data.metrics.get("alpha_seen") != 0.5)]
    if len(runs) != count or bad:
        return f"{len(runs)} runs (expected {count}), not FINISHED with their param/metric: {bad[:3]}"
    return None


def _check_mlflow(uri: str, experiment: str, count: int, metric: bool) -> Optional[str]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    bad = [r.info.run_id for r in runs if r.info.status != "FINISHED" or r.data.params.get("alpha") != "0.5"
           or (metric and r.data.metrics.get("alpha_seen") != 0.5)]
    if len(runs) != count or bad:
        return f"{len(runs)} runs (expected {count}), not FINISHED with their param/metric: {bad[:3]}"
    return None


def measure(res: Results, launchers: Launchers, projects: dict[str, str], name: str, repeats: int,
            labels: dict[str, str], metric: bool) -> None:
    """Each repeat launches ``projects[column]`` with each launcher (and, for the trivial project, runs
    the bare command); one cell per launcher."""
    runners: list[tuple[str, Callable[[], ProcResult]]] = []
    if not metric:
        runners.append(("bare", lambda: launchers.bare(projects["rust"])))
    runners.append(("rust", lambda: launchers.deltaflow(projects["rust"], name)))
    if "mlflow" in projects:
        runners.append(("mlflow", lambda: launchers.mlflow(projects["mlflow"], name)))
    samples: dict[str, list[float]] = {column: [] for column, _fn in runners}
    cpu: dict[str, list[float]] = {column: [] for column, _fn in runners}
    engines: set[str] = set()
    spark_loaded = False
    for column, fn in runners[1:] if not metric else runners:  # warm-up: table creation, schema migrations
        if column != "bare":
            fn()
    for i in range(repeats):
        for column, fn in runners:
            result, cpu_s = _with_cpu(fn)
            samples[column].append(result.wall_s)
            cpu[column].append(cpu_s)
            if column == "rust":
                spark_loaded |= bool(result.probe.get("pyspark"))
                engines.update(result.probe.get("engines", []))
        log(f"{name} {i + 1}/{repeats}: " + ", ".join(f"{c} {samples[c][-1]:.2f}s" for c, _f in runners))
    problems = {"rust": _check_deltaflow(launchers.store, name, repeats + 1, metric)}
    if "mlflow" in projects:
        problems["mlflow"] = _check_mlflow(launchers.mlflow_uri, name, repeats + 1, metric)
    for column in problems:
        wrong = " (WRONG)" if problems[column] else ""
        wall = median(samples[column])
        res.put(KEY, labels["wall"], column, fmt_s(wall) + wrong,
                raw={"samples": samples[column], "problem": problems[column]})
        res.put(KEY, labels["p95"], column, fmt_s(percentile(samples[column], 95)))
        if not metric:
            bare = median(samples["bare"])
            res.put(KEY, labels["bare"], column, fmt_s(bare), raw={"samples": samples["bare"]})
            overhead = wall - bare
            res.put(KEY, labels["overhead"], column, fmt_s(overhead) + wrong,
                    met=verdict(overhead, "<=", TARGET_OVERHEAD_S) if column == "rust" else None,
                    target=f"≤ {TARGET_OVERHEAD_S} s (deltaflow)")
            # CPU time barely depends on how busy the machine is; wall time does.
            res.put(KEY, labels["cpu"], column, fmt_s(median(cpu[column]) - median(cpu["bare"])),
                    raw={"samples": cpu[column], "bare": cpu["bare"]})
    res.put(KEY, labels["wall"], "rust", note=f"launcher engine {'/'.join(sorted(engines)) or '?'}, "
                                              f"{'pyspark imported' if spark_loaded else 'no pyspark, no JVM'}")


def table(res: Results, columns: list[str]) -> str:
    headers = ["metric"] + [COLUMN_TITLES[c] for c in columns] + ["target", "met?"]
    data = [[r.metric] + [r.cells.get(c, "n/a") for c in columns] + [r.target, r.met.get("rust", "-")]
            for r in res.rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) if data else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, data)]
    out += [f"  [{r.metric}] {r.note_text()}" for r in res.rows if r.note_text()]
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--workdir", help="base folder for temp stores (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp stores")
    args = parser.parse_args(argv)
    dirs = TempDirs(args.workdir, keep=args.keep)
    res = Results("projects", sys.argv[1:] if argv is None else argv, {"repeats": args.repeats})
    res.path = os.path.join(RESULTS_DIR, f"projects-{time.strftime('%Y%m%d-%H%M%S')}.json")
    load = os.getloadavg()[0]
    try:
        launchers = Launchers(dirs)
        trivial = _project(dirs, "trivial", TRIVIAL)
        both = {"rust": trivial, **({} if args.skip_mlflow else {"mlflow": trivial})}
        measure(res, launchers, both, "trivial", args.repeats, {
            "bare": "bare command (python train.py), median",
            "wall": f"trivial project: launcher wall time, median of {args.repeats}",
            "p95": "  trivial project, p95",
            "overhead": "launcher overhead over the bare command (median − median)",
            "cpu": "  launcher CPU time (user+sys) over the bare command's",
        }, metric=False)
        logging_projects = {"rust": _project(dirs, "logs-deltaflow", LOGGING.format(lib="deltaflow"))}
        if not args.skip_mlflow:
            logging_projects["mlflow"] = _project(dirs, "logs-mlflow", LOGGING.format(lib="mlflow"))
        measure(res, launchers, logging_projects, "logging", args.repeats, {
            "wall": "project logging 1 metric with its own library: launcher wall time, median",
            "p95": "  project logging 1 metric, p95",
        }, metric=True)
        res.put(KEY, "machine load average, 1 min (before / after)", "rust", f"{load:.1f} / {os.getloadavg()[0]:.1f}")
        try:
            import mlflow

            res.meta["mlflow_version"] = mlflow.__version__
        except ImportError:
            pass
    finally:
        res.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        res.save()
        dirs.cleanup()
    columns = ["rust"] + ([] if args.skip_mlflow else ["mlflow"])
    print()
    print(f"launching a project: deltaflow run vs mlflow run --env-manager local "
          f"(MLflow {res.meta.get('mlflow_version', 'n/a')}) — {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs")
    print(table(res, columns))
    print(f"\nresults: {res.path}")
    failed = any((r.raw.get(c) or {}).get("problem") for r in res.rows for c in columns if isinstance(r.raw.get(c), dict))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
