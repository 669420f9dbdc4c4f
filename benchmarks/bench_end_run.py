#!/usr/bin/env python
"""Cost of a durable ``end_run``: deltaflow on each engine (spark, rust) beside MLflow (sqlite), in one run.

Each repeat, through the fluent API of each library: ``start_run()``, 10 × ``log_metric("loss", v, step=i)``,
then ``end_run()`` alone is timed. deltaflow's ``end_run`` returns only once everything the process logged
before it (the run, its 10 points, the FINISHED status) is committed; MLflow's calls are synchronous, so
its ``end_run`` writes the status only. After each timed call (outside the timer) an independent reader
checks the run is FINISHED with its 10 points: for deltaflow a second ``TrackingStore`` over the same
folder (own buffer, own engine object), for MLflow a second ``MlflowClient``.

Stores are made by the tracking benchmark's harnesses (``_harness.py``): a fresh folder per engine with
every table created and one warm-up run; a fresh sqlite file for MLflow. Engines run one after the other
in this process (rust first, before Spark's JVM starts), then MLflow. 2 untimed warm-up repeats, then
``--repeats`` (default 30) timed; median and p95 (linear interpolation).

    python benchmarks/bench_end_run.py                      # spark, rust, MLflow
    python benchmarks/bench_end_run.py --engines rust --skip-mlflow --repeats 10

Prints one table and writes ``benchmarks/results/end_run-<timestamp>.json`` (every sample).
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
    ENGINE_COLUMNS,
    RESULTS_DIR,
    Results,
    TempDirs,
    fmt_s,
    log,
    median,
    percentile,
)
from _harness import DeltaflowHarness, MlflowHarness, guard  # noqa: E402

POINTS = 10
WARMUPS = 2
KEY = "end_run"


def measure(start: Callable[[], str], log_metric: Callable[[str, float, int], None], end: Callable[[], None],
            check: Callable[[str], Optional[str]], repeats: int) -> tuple[list[float], list[float], list[str]]:
    """``repeats`` timed end_run calls after WARMUPS untimed ones; returns the end_run samples, the
    samples of the 10 log_metric calls plus end_run, and the failed checks."""
    times: list[float] = []
    totals: list[float] = []
    problems: list[str] = []
    for i in range(WARMUPS + repeats):
        run_id = start()
        t_log = time.perf_counter()
        for step in range(POINTS):
            log_metric("loss", 1.0 / (step + 1), step)
        t0 = time.perf_counter()
        end()
        t1 = time.perf_counter()
        problem = check(run_id)
        if problem:
            problems.append(f"{run_id}: {problem}")
        if i >= WARMUPS:
            times.append(t1 - t0)
            totals.append(t1 - t_log)
    return times, totals, problems


def record(res: Results, column: str, times: list[float], totals: list[float], problems: list[str], load: tuple,
           labels: dict[str, str]) -> None:
    wrong = " (WRONG)" if problems else ""
    res.put(KEY, labels["end"], column, fmt_s(median(times)) + wrong, raw={"samples": times, "problems": problems})
    res.put(KEY, labels["end_p95"], column, fmt_s(percentile(times, 95)))
    res.put(KEY, labels["total"], column, fmt_s(median(totals)) + wrong, raw={"samples": totals})
    res.put(KEY, labels["total_p95"], column, fmt_s(percentile(totals, 95)))
    res.put(KEY, labels["durable"], column, f"{len(times) + WARMUPS - len(problems)}/{len(times) + WARMUPS}")
    res.put(KEY, labels["load"], column, f"{load[0]:.1f} / {os.getloadavg()[0]:.1f}")


def bench_deltaflow(res: Results, h: DeltaflowHarness, repeats: int, labels: dict[str, str]) -> None:
    df = h.df
    uri, _exp_id, _client = h.fresh("end-run")
    reader = h.second_store(uri)

    def check(run_id: str) -> Optional[str]:
        run = reader.get_run(run_id)
        points = len(reader.get_metric_history(run_id, "loss"))
        if run.info.status != "FINISHED" or points != POINTS:
            return f"second reader sees status {run.info.status}, {points} points"
        return None

    load = os.getloadavg()
    times, totals, problems = measure(lambda: df.start_run().info.run_id,
                                      lambda k, v, s: df.log_metric(k, v, step=s), df.end_run, check, repeats)
    log(f"deltaflow[{h.engine}] end_run: median {median(times) * 1e3:.1f} ms, p95 {percentile(times, 95) * 1e3:.1f} ms")
    record(res, h.engine, times, totals, problems, load, labels)


def bench_mlflow(res: Results, mlh: MlflowHarness, repeats: int, labels: dict[str, str]) -> None:
    mlflow = mlh.mlflow
    uri, _exp_id, _client = mlh.fresh("end-run")
    reader = mlh.Client(uri)

    def check(run_id: str) -> Optional[str]:
        run = reader.get_run(run_id)
        points = len(reader.get_metric_history(run_id, "loss"))
        if run.info.status != "FINISHED" or points != POINTS:
            return f"second client sees status {run.info.status}, {points} points"
        return None

    load = os.getloadavg()
    times, totals, problems = measure(lambda: mlflow.start_run().info.run_id,
                                      lambda k, v, s: mlflow.log_metric(k, v, step=s), mlflow.end_run, check,
                                      repeats)
    log(f"mlflow end_run: median {median(times) * 1e3:.1f} ms, p95 {percentile(times, 95) * 1e3:.1f} ms")
    record(res, "mlflow", times, totals, problems, load, labels)


def table(res: Results, engines: list[str]) -> str:
    """metric | one column per engine | MLflow (sqlite); then any errors."""
    columns = engines + ["mlflow"]
    headers = ["metric"] + [COLUMN_TITLES[c] for c in columns]
    data = [[r.metric] + [r.cells.get(c, "n/a") for c in columns] for r in res.rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) if data else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, data)]
    out += [f"  [{r.metric}] {r.note_text()}" for r in res.rows if r.note_text()]
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--engines", default="spark,rust", help="deltaflow engines, one column each")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--workdir", help="base folder for temp stores (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp stores")
    args = parser.parse_args(argv)
    engines = [e for e in ENGINE_COLUMNS if e in {x.strip() for x in args.engines.split(",")}]
    if not engines:
        raise SystemExit(f"--engines: use {', '.join(ENGINE_COLUMNS)}")

    dirs = TempDirs(args.workdir, keep=args.keep)
    os.environ.setdefault("DELTAFLOW_WAREHOUSE_DIR", dirs.new("warehouse"))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("DELTAFLOW_USER", "bench")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)

    res = Results("end_run", sys.argv[1:] if argv is None else argv, {"repeats": args.repeats, "points": POINTS,
                                                                       "warmups": WARMUPS})
    res.path = os.path.join(RESULTS_DIR, f"end_run-{time.strftime('%Y%m%d-%H%M%S')}.json")
    labels = {
        "end": f"end_run (durable), median of {args.repeats}: start_run + {POINTS} log_metric, end_run timed",
        "end_p95": "  end_run, p95",
        "total": f"{POINTS} log_metric + end_run (logged to durable), median",
        "total_p95": "  log_metric calls + end_run, p95",
        "durable": "runs durable when end_run returned (second reader)",
        "load": "machine load average, 1 min (before / after)",
    }
    try:
        # rust first: its store is made before this process starts Spark's JVM
        for engine in sorted(engines, key=lambda e: e != "rust"):
            with guard(res, KEY, engine):
                bench_deltaflow(res, DeltaflowHarness(dirs, engine), args.repeats, labels)
        if not args.skip_mlflow:
            with guard(res, KEY, "mlflow"):
                import mlflow

                bench_mlflow(res, MlflowHarness(dirs), args.repeats, labels)
                res.meta["mlflow_version"] = mlflow.__version__
    finally:
        res.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        res.save()
        dirs.cleanup()

    print()
    titles = ", ".join(COLUMN_TITLES[e] for e in engines)
    print(f"durable end_run: deltaflow ({titles}) vs MLflow (sqlite) — {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs")
    print(table(res, engines))
    print(f"\ndeltaflow's end_run commits the run, its {POINTS} points and the status before it returns"
          + (f"; MLflow {res.meta['mlflow_version']} wrote each log_metric synchronously, its end_run writes the "
             "status" if res.meta.get("mlflow_version") else "") + ".")
    print(f"\nresults: {res.path}")
    failed = res.meta["errors"] or any(r.raw.get(c, {}).get("problems") for r in res.rows for c in r.raw
                                       if isinstance(r.raw.get(c), dict))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
