#!/usr/bin/env python
"""Tracking benchmark: deltaflow (Delta tables via local Spark) against MLflow (sqlite) on this machine.

Prints one side-by-side table and writes ``benchmarks/results/tracking-<timestamp>.json``.
See ``benchmarks/README.md`` for what each row measures and how.

    python benchmarks/bench_tracking.py              # full run (30-60+ minutes on 2 cores)
    python benchmarks/bench_tracking.py --quick      # small sizes, a few minutes: validates the script
    python benchmarks/bench_tracking.py --only search,files --skip-mlflow
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    NA,
    Results,
    Row,
    RssSampler,
    Stopwatch,
    TempDirs,
    dir_size_bytes,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    fmt_s,
    Watchdog,
    log,
    machine_load,
    median,
    render_table,
    run_python,
    thread_stacks,
    timed_repeat,
    verdict,
)

SIZES: dict[str, dict[str, int]] = {
    "full": dict(
        import_repeats=5,
        log_metric_df=1_000_000, log_metric_ml=2_000,
        batches_df=1_000, batches_ml=20, batch_size=1_000,
        visibility_trials=3,
        runs_df=5_000, runs_ml=300,
        search_small=10_000, search_large=100_000,
        memory_points=10_000_000,
        search_repeats=3,
    ),
    "quick": dict(
        import_repeats=5,
        log_metric_df=100_000, log_metric_ml=500,
        batches_df=100, batches_ml=5, batch_size=1_000,
        visibility_trials=3,
        runs_df=500, runs_ml=50,
        search_small=1_000, search_large=2_000,
        memory_points=1_000_000,
        search_repeats=3,
    ),
}

ROW_KEYS = ("import", "log_metric", "batch", "visibility", "runs", "search", "files", "memory")
METRICS_PER_RUN_KEYS = 5
STEPS_PER_METRIC = 100
PARAMS_PER_RUN = 5
FILTER = "metrics.m0 > 0.5 and params.p0 = 'a'"
ORDER_BY = ["metrics.m1 DESC"]
MLFLOW_EST_NOTE = "n/a (not run; ≈{} to load, extrapolated from its {}-run load)"

# Targets (deltaflow). op, threshold, display.
T_IMPORT = ("<=", 0.3, "≤ 0.3 s")
T_LOG_METRIC = ("<=", 0.02e-3, "≤ 0.02 ms")
T_BATCH = (">=", 200_000, "≥ 200k/s")
T_RUNS = (">=", 2_000, "≥ 2,000/s")
T_SEARCH = ("<=", 2.0, "≤ 2 s")
T_MEMORY = ("<", 1024 ** 3, "< 1 GiB")


def met(value: Optional[float], target: tuple) -> str:
    return verdict(value, target[0], target[1])


# =================================================================================================
# deltaflow and MLflow harnesses: a fresh store per measurement, set-up kept out of the timings
# =================================================================================================
class DeltaflowHarness:
    def __init__(self, dirs: TempDirs) -> None:
        import deltaflow

        self.df = deltaflow
        self.dirs = dirs
        self.cold_start_s: Optional[float] = None

    def fresh(self, name: str) -> tuple[str, str, Any]:
        """A new store folder with every table created and the Spark session warm; returns (uri, exp, client)."""
        from deltaflow.store.schema import TABLES

        df = self.df
        uri = self.dirs.new(f"df-{name}")
        with Stopwatch() as sw:
            df.set_tracking_uri(uri)
            client = df.DeltaflowClient(uri)
            client._store.engine.ensure_tables(list(TABLES.values()))
            exp_id = df.set_experiment("bench").experiment_id
            # One throw-away run in another experiment: warms the write path and search planning.
            warm = client.create_experiment("warmup")
            run = client.create_run(warm)
            client.log_batch(run.info.run_id, metrics=[df.Metric("m0", 1.0, 0, 0)], params=[df.Param("p0", "a")])
            client.set_terminated(run.info.run_id)
            client.flush()
            client.search_runs([warm], FILTER, max_results=10)
        if self.cold_start_s is None:
            self.cold_start_s = sw.seconds
        log(f"deltaflow store {os.path.basename(uri)} ready in {sw.seconds:.1f}s")
        return uri, exp_id, client

    def second_store(self, uri: str) -> Any:
        """An independent TrackingStore (own buffer, own engine object) over the same location."""
        from deltaflow.config import resolve_location
        from deltaflow.store.factory import make_engine
        from deltaflow.store.tracking_store import TrackingStore

        location = resolve_location(uri)
        return TrackingStore(location, make_engine(location))


class MlflowHarness:
    def __init__(self, dirs: TempDirs) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.mlflow = mlflow
        self.Client = MlflowClient
        self.dirs = dirs

    def fresh(self, name: str) -> tuple[str, str, Any]:
        mlflow = self.mlflow
        folder = self.dirs.new(f"ml-{name}")
        uri = f"sqlite:///{folder}/mlflow.db"
        with Stopwatch() as sw:
            mlflow.set_tracking_uri(uri)
            client = self.Client(uri)
            exp_id = client.create_experiment("bench", artifact_location=f"file://{folder}/artifacts")
            mlflow.set_experiment(experiment_id=exp_id)
            warm = client.create_experiment("warmup", artifact_location=f"file://{folder}/artifacts-w")
            from mlflow.entities import Metric, Param

            run = client.create_run(warm)
            client.log_batch(run.info.run_id, metrics=[Metric("m0", 1.0, 0, 0)], params=[Param("p0", "a")])
            client.set_terminated(run.info.run_id)
            client.search_runs([warm], FILTER, max_results=10)
        log(f"mlflow store {os.path.basename(folder)} ready in {sw.seconds:.1f}s")
        return uri, exp_id, client


# =================================================================================================
# Rows
# =================================================================================================
def row_import(res: Results, sizes: dict, skip_mlflow: bool) -> None:
    """Wall time of ``python -c 'import x'`` minus ``python -c 'pass'``, medians of N fresh processes."""

    def wall(code: str) -> float:
        start = time.perf_counter()
        proc = run_python(["-c", code])
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"python -c {code!r} failed: {proc.stderr[-2000:]}")
        return elapsed

    def importtime(module: str) -> Optional[float]:
        proc = run_python(["-X", "importtime", "-c", f"import {module}"])
        for line in proc.stderr.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == module:
                return int(parts[1]) / 1e6
        return None

    modules = ["deltaflow"] + ([] if skip_mlflow else ["mlflow"])
    n = sizes["import_repeats"]
    wall(f"import {', '.join(modules)}")  # warm the OS file cache and .pyc files first
    base, per = [], {m: [] for m in modules}
    for _ in range(n):  # interleaved, so drift affects all alike
        base.append(wall("pass"))
        for m in modules:
            per[m].append(wall(f"import {m}"))
    values = {m: median(per[m]) - median(base) for m in modules}
    selfreported = {m: importtime(m) for m in modules}
    res.add(Row(
        "import", "import time (fresh process, median of %d)" % n,
        deltaflow=fmt_s(values["deltaflow"]), mlflow=fmt_s(values.get("mlflow")),
        target=T_IMPORT[2], met=met(values["deltaflow"], T_IMPORT),
        raw={"seconds": values, "samples": per, "baseline_samples": base, "x_importtime_cumulative_s": selfreported},
        note="wall(python -c 'import X') - wall(python -c 'pass'); -X importtime cumulative: "
             + ", ".join(f"{m} {fmt_s(v)}" for m, v in selfreported.items()),
    ))


def row_log_metric(res: Results, sizes: dict, dfh: DeltaflowHarness, mlh: Optional[MlflowHarness]) -> None:
    df = dfh.df
    n = sizes["log_metric_df"]
    _uri, exp_id, _client = dfh.fresh("log_metric")
    with df.start_run(experiment_id=exp_id):
        df.flush()
        start = time.perf_counter()
        for i in range(n):
            df.log_metric("loss", i * 1e-6, step=i)
        loop_s = time.perf_counter() - start
        df.flush()
        total_s = time.perf_counter() - start
    df_loop, df_total = loop_s / n, total_s / n
    log(f"deltaflow log_metric x{n}: loop {loop_s:.2f}s, with flush {total_s:.2f}s")

    ml_per = None
    m = sizes["log_metric_ml"]
    if mlh is not None:
        mlflow = mlh.mlflow
        mlh.fresh("log_metric")
        with mlflow.start_run():
            start = time.perf_counter()
            for i in range(m):
                mlflow.log_metric("loss", i * 1e-6, step=i)
            ml_s = time.perf_counter() - start
        ml_per = ml_s / m
        log(f"mlflow log_metric x{m}: {ml_s:.2f}s")
    res.add(Row("log_metric", f"log_metric per call, loop only (df {n:,} calls, MLflow {m:,})",
                deltaflow=fmt_ms(df_loop), mlflow=fmt_ms(ml_per), target=T_LOG_METRIC[2],
                met=met(df_loop, T_LOG_METRIC),
                raw={"deltaflow_calls": n, "deltaflow_loop_s": loop_s, "mlflow_calls": m,
                     "mlflow_s": None if ml_per is None else ml_per * m}))
    res.add(Row("log_metric", "log_metric per call, incl. final flush()",
                deltaflow=fmt_ms(df_total), mlflow=fmt_ms(ml_per), target=T_LOG_METRIC[2],
                met=met(df_total, T_LOG_METRIC), raw={"deltaflow_total_s": total_s},
                note="MLflow's log_metric is synchronous (durable on return), so its two figures are the same."))


def _batches(metric_cls: Callable, nb: int, size: int) -> list[list[Any]]:
    """``nb`` distinct batches of ``size`` metrics over 10 keys (no duplicate (key, step) pairs)."""
    ts = int(time.time() * 1000)
    return [[metric_cls(f"m{j % 10}", (b * size + j) * 1e-6, ts + b, b * (size // 10) + j // 10)
             for j in range(size)] for b in range(nb)]


def row_batch(res: Results, sizes: dict, dfh: DeltaflowHarness, mlh: Optional[MlflowHarness]) -> None:
    df = dfh.df
    nb, size = sizes["batches_df"], sizes["batch_size"]
    _uri, exp_id, client = dfh.fresh("batch")
    run_id = client.create_run(exp_id).info.run_id
    client.flush()
    batches = _batches(df.Metric, nb, size)
    start = time.perf_counter()
    for batch in batches:
        client.log_batch(run_id, metrics=batch)
    loop_s = time.perf_counter() - start
    client.flush()
    total_s = time.perf_counter() - start
    del batches
    df_rate, df_rate_loop = nb * size / total_s, nb * size / loop_s
    log(f"deltaflow log_batch {nb}x{size}: loop {loop_s:.2f}s, with flush {total_s:.2f}s")

    ml_rate = None
    mb = sizes["batches_ml"]
    if mlh is not None:
        from mlflow.entities import Metric as MlMetric

        _u, ml_exp, mclient = mlh.fresh("batch")
        ml_run = mclient.create_run(ml_exp).info.run_id
        batches = _batches(MlMetric, mb, size)
        start = time.perf_counter()
        for batch in batches:
            mclient.log_batch(ml_run, metrics=batch)
        ml_s = time.perf_counter() - start
        ml_rate = mb * size / ml_s
        log(f"mlflow log_batch {mb}x{size}: {ml_s:.2f}s")
    res.add(Row("batch", f"log_batch of {size:,} metrics, incl. flush (df {nb:,} batches, MLflow {mb})",
                deltaflow=fmt_rate(df_rate, "metrics"), mlflow=fmt_rate(ml_rate, "metrics"),
                target=T_BATCH[2], met=met(df_rate, T_BATCH),
                raw={"deltaflow_batches": nb, "batch_size": size, "deltaflow_loop_s": loop_s,
                     "deltaflow_total_s": total_s, "mlflow_batches": mb, "mlflow_rate": ml_rate},
                note="Metric objects are built before the timer starts, for both libraries."))
    res.add(Row("batch", "log_batch throughput, loop only (buffered, not yet durable)",
                deltaflow=fmt_rate(df_rate_loop, "metrics"), mlflow=fmt_rate(ml_rate, "metrics")))


def row_visibility(res: Results, sizes: dict, dfh: DeltaflowHarness, mlh: Optional[MlflowHarness]) -> None:
    """end_run, then poll search from a second, independent store/client until the run shows FINISHED."""
    trials = sizes["visibility_trials"]

    def measure(client: Any, reader_search: Callable[[str, str], list], exp_id: str, flush: Callable[[], None],
                durable_flush: bool) -> dict[str, float]:
        run_id = client.create_run(exp_id).info.run_id
        client.log_metric(run_id, "x", 1.0)
        flush()
        start = time.perf_counter()
        client.set_terminated(run_id)
        returned = time.perf_counter() - start
        if durable_flush:
            flush()
        durable = time.perf_counter() - start
        polls = 0
        while True:
            polls += 1
            runs = reader_search(exp_id, f"attributes.run_id = '{run_id}'")
            if runs and runs[0].info.status == "FINISHED":
                break
            if time.perf_counter() - start > 300:
                raise TimeoutError(f"run {run_id} not visible as FINISHED after 300 s")
        return {"end_run_returned_s": returned, "durable_s": durable,
                "visible_s": time.perf_counter() - start, "polls": polls}

    _uri, exp_id, client = dfh.fresh("visibility")
    reader = dfh.second_store(_uri)
    reader.search_runs([exp_id], "", max_results=10)  # warm the reader's engine

    def df_search(e: str, f: str) -> list:
        return reader.search_runs([e], f, max_results=10)[0]

    df_poll = [measure(client, df_search, exp_id, client.flush, False) for _ in range(trials)]
    df_durable = [measure(client, df_search, exp_id, client.flush, True) for _ in range(trials)]
    log(f"deltaflow visibility: {df_poll} / durable {df_durable}")
    ml_poll = None
    if mlh is not None:
        ml_uri, ml_exp, mclient = mlh.fresh("visibility")
        mreader = mlh.Client(ml_uri)

        def ml_search(e: str, f: str) -> list:
            return list(mreader.search_runs([e], f, max_results=10))

        ml_search(ml_exp, "")
        ml_poll = [measure(mclient, ml_search, ml_exp, lambda: None, False) for _ in range(trials)]
        log(f"mlflow visibility: {ml_poll}")

    def med(samples: Optional[list[dict]], key: str) -> Optional[float]:
        return None if samples is None else median([s[key] for s in samples])

    res.add(Row("visibility", f"end_run -> visible to search from a second store (median of {trials})",
                deltaflow=fmt_s(med(df_poll, "visible_s")), mlflow=fmt_s(med(ml_poll, "visible_s")),
                raw={"deltaflow_poll": df_poll, "deltaflow_durable": df_durable, "mlflow_poll": ml_poll},
                note="deltaflow: end_run requests a background commit; the reader is a second TrackingStore "
                     "(own buffer and engine object, same JVM) polling search_runs back to back, so the "
                     "figure includes up to one search latency of polling granularity."))
    res.add(Row("visibility", "end_run + flush() (durable), then one search sees it",
                deltaflow=fmt_s(med(df_durable, "visible_s")), mlflow=fmt_s(med(ml_poll, "durable_s")),
                raw={"deltaflow_end_plus_flush_s": med(df_durable, "durable_s")},
                note=f"deltaflow end_run+flush alone: {fmt_s(med(df_durable, 'durable_s'))}; "
                     "MLflow column: set_terminated return time (synchronous)."))


def row_runs(res: Results, sizes: dict, dfh: DeltaflowHarness, mlh: Optional[MlflowHarness]) -> None:
    df = dfh.df
    n = sizes["runs_df"]
    _uri, exp_id, _client = dfh.fresh("runs")
    start = time.perf_counter()
    for _ in range(n):
        df.start_run(experiment_id=exp_id)
        df.end_run()
    loop_s = time.perf_counter() - start
    df.flush()
    total_s = time.perf_counter() - start
    log(f"deltaflow {n} runs: loop {loop_s:.2f}s, with flush {total_s:.2f}s")
    ml_rate = None
    m = sizes["runs_ml"]
    if mlh is not None:
        mlflow = mlh.mlflow
        _u, ml_exp, _c = mlh.fresh("runs")
        start = time.perf_counter()
        for _ in range(m):
            mlflow.start_run(experiment_id=ml_exp)
            mlflow.end_run()
        ml_s = time.perf_counter() - start
        ml_rate = m / ml_s
        log(f"mlflow {m} runs: {ml_s:.2f}s")
    res.add(Row("runs", f"run creation (start_run+end_run; df {n:,} then flush, MLflow {m})",
                deltaflow=fmt_rate(n / total_s, "runs"), mlflow=fmt_rate(ml_rate, "runs"),
                target=T_RUNS[2], met=met(n / total_s, T_RUNS),
                raw={"deltaflow_runs": n, "deltaflow_loop_s": loop_s, "deltaflow_total_s": total_s,
                     "mlflow_runs": m, "mlflow_rate": ml_rate}))
    res.add(Row("runs", "run creation, loop only (deltaflow not yet durable)",
                deltaflow=fmt_rate(n / loop_s, "runs"), mlflow=fmt_rate(ml_rate, "runs")))


# -- search ---------------------------------------------------------------------------------------
WATCHDOG: Optional[Watchdog] = None  # set by main(): aborts the benchmark if a load stops making progress


def load_runs(client: Any, exp_id: str, n: int, metric_cls: Callable, param_cls: Callable, label: str,
              flush: Optional[Callable[[], None]] = None, flush_every: int = 0, seed: int = 7,
              budget_s: Optional[float] = None) -> dict[str, Any]:
    """n runs: create_run + one log_batch (5 metrics x 100 steps + 5 params) + set_terminated."""
    rng = random.Random(seed)
    ts0 = int(time.time() * 1000)
    expected = 0
    best_m1 = float("-inf")
    start = time.perf_counter()
    last_report = start
    loaded = 0
    if WATCHDOG is not None:
        WATCHDOG.arm(f"loading runs ({label})")
    for i in range(n):
        run_id = client.create_run(exp_id, run_name=f"r{i}").info.run_id
        metrics = [metric_cls(f"m{k}", rng.random(), ts0 + s, s)
                   for k in range(METRICS_PER_RUN_KEYS) for s in range(STEPS_PER_METRIC)]
        p0 = "a" if rng.random() < 0.5 else "b"
        params = [param_cls("p0", p0)] + [param_cls(f"p{k}", str(rng.randint(0, 9))) for k in range(1, PARAMS_PER_RUN)]
        client.log_batch(run_id, metrics=metrics, params=params)
        client.set_terminated(run_id)
        # "latest" value of a key is the one at the highest step
        if metrics[STEPS_PER_METRIC - 1].value > 0.5 and p0 == "a":
            expected += 1
        best_m1 = max(best_m1, metrics[2 * STEPS_PER_METRIC - 1].value)
        loaded = i + 1
        if WATCHDOG is not None:
            WATCHDOG.beat()
        if flush is not None and flush_every and loaded % flush_every == 0:
            flush()
        now = time.perf_counter()
        if budget_s is not None and now - start > budget_s:
            log(f"{label}: load budget of {budget_s:.0f}s used up after {loaded:,} runs; stopping the load")
            break
        if now - last_report > 30:
            last_report = now
            log(f"{label}: {i + 1:,}/{n:,} runs loaded, {(i + 1) / (now - start):,.0f} runs/s")
    produced = time.perf_counter() - start
    if flush is not None:
        flush()
    total = time.perf_counter() - start
    if WATCHDOG is not None:
        WATCHDOG.disarm()
    log(f"{label}: {loaded:,} runs loaded in {total:.1f}s (producer loop {produced:.1f}s)")
    return {"runs": loaded, "asked": n, "load_s": total, "producer_s": produced, "expected_filter_matches": expected,
            "expected_top_m1": best_m1}


def search_queries(search: Callable[..., list], exp_id: str, repeats: int, loaded: dict) -> dict[str, Any]:
    """Median of ``repeats`` warm runs (after one warm-up) of the two queries, plus correctness checks."""
    out: dict[str, Any] = {}
    med_f, times_f, runs_f = timed_repeat(lambda: search([exp_id], FILTER, max_results=100),
                                          warmups=1, repeats=repeats)
    med_o, times_o, runs_o = timed_repeat(lambda: search([exp_id], "", max_results=100, order_by=ORDER_BY),
                                          warmups=1, repeats=repeats)
    expected_n = min(100, loaded["expected_filter_matches"])
    filter_ok = len(runs_f) == expected_n and all(
        r.data.metrics.get("m0", 0) > 0.5 and r.data.params.get("p0") == "a" for r in runs_f)
    m1 = [r.data.metrics.get("m1") for r in runs_o]
    order_ok = (len(runs_o) == min(100, loaded["runs"]) and bool(m1) and m1[0] == loaded["expected_top_m1"]
                and all(a >= b for a, b in zip(m1, m1[1:])))
    out.update(filter_s=med_f, filter_samples=times_f, order_s=med_o, order_samples=times_o,
               filter_returned=len(runs_f), filter_correct=filter_ok, order_returned=len(runs_o),
               order_correct=order_ok)
    if not (filter_ok and order_ok):
        log(f"WARNING: search results look wrong: {out}")
    return out


def _check(result: dict, key: str) -> str:
    return "" if result.get(key, True) else " (WRONG RESULT)"


def _fmt_minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def row_search(res: Results, sizes: dict, dfh: DeltaflowHarness, mlh: Optional[MlflowHarness], args: Any,
               do_small: bool, do_large: bool, do_files: bool) -> None:
    """deltaflow first (small, then large + files), MLflow's slow small load last; its cells filled in after."""
    df = dfh.df
    reps = sizes["search_repeats"]
    small, large = sizes["search_small"], sizes["search_large"]
    budget = args.max_load_minutes * 60 if args.max_load_minutes else None
    small_rows: list[Row] = []
    large_rows: list[Row] = []
    if do_small:
        uri, exp_id, client = dfh.fresh(f"search{small}")
        loaded = load_runs(client, exp_id, small, df.Metric, df.Param, f"deltaflow {small:,}",
                           flush=client.flush, flush_every=args.load_flush_every)
        d = search_queries(client.search_runs, exp_id, reps, loaded)
        log(f"deltaflow search @{small}: {d}")
        dfh.dirs.remove(uri)
        small_rows = [
            res.add(Row("search", f"load {small:,} runs (each 5 params + 5x100 metric points, log_batch)",
                        deltaflow=fmt_s(loaded["load_s"]), raw={"deltaflow": loaded})),
            res.add(Row("search", f"search @{small:,} runs: {FILTER} (top 100)",
                        deltaflow=fmt_s(d["filter_s"]) + _check(d, "filter_correct"), raw={"deltaflow": d},
                        note=f"median of {reps} after 1 warm-up; {loaded['expected_filter_matches']:,} of "
                             f"{small:,} runs match")),
            res.add(Row("search", f"search @{small:,} runs: order_by metrics.m1 DESC (top 100)",
                        deltaflow=fmt_s(d["order_s"]) + _check(d, "order_correct"))),
        ]

    if do_large or do_files:
        uri, exp_id, client = dfh.fresh(f"search{large}")
        loaded = load_runs(client, exp_id, large, df.Metric, df.Param, f"deltaflow {large:,}",
                           flush=client.flush, flush_every=args.load_flush_every, budget_s=budget)
        n = loaded["runs"]
        partial = n < large
        buf = client._store.buffer
        loaded["flusher_commits"] = buf.commits
        loaded["flusher_commit_seconds"] = buf.commit_seconds
        loaded["store_bytes"] = dir_size_bytes(uri)
        label = f"{n:,}" + (f" (load stopped at the {args.max_load_minutes}-min budget; {large:,} asked)"
                            if partial else "")
        large_rows.append(res.add(Row(
            "search", f"load {label} runs ({n * 500:,} metric points)",
            deltaflow=fmt_s(loaded["load_s"]) + (" (partial)" if partial else ""), mlflow="n/a (not run)",
            raw={"deltaflow": loaded},
            note=f"deltaflow flusher: {buf.commits} flushes, {buf.commit_seconds:.0f}s committing; "
                 f"store on disk {fmt_bytes(loaded['store_bytes'])}; "
                 f"{n / loaded['load_s']:,.0f} runs/s, {n * 500 / loaded['load_s']:,.0f} metric points/s")))

        def judged(seconds: float, correct: bool) -> str:
            verdict_ = met(seconds, T_SEARCH) if correct else "not met"
            if partial and verdict_ == "yes":
                return f"n/a (only {n:,} runs)"
            return verdict_ + (f" (at {n:,})" if partial else "")

        if do_large:
            d = search_queries(client.search_runs, exp_id, reps, loaded)
            log(f"deltaflow search @{n}: {d}")
            large_rows.append(res.add(Row(
                "search", f"search @{n:,} runs: {FILTER} (top 100)",
                deltaflow=fmt_s(d["filter_s"]) + _check(d, "filter_correct"), mlflow="n/a (not run)",
                target=T_SEARCH[2] + " @100k", met=judged(d["filter_s"], d["filter_correct"]), raw={"deltaflow": d})))
            large_rows.append(res.add(Row(
                "search", f"search @{n:,} runs: order_by metrics.m1 DESC (top 100)",
                deltaflow=fmt_s(d["order_s"]) + _check(d, "order_correct"), mlflow="n/a (not run)",
                target=T_SEARCH[2] + " @100k", met=judged(d["order_s"], d["order_correct"]))))
        if do_files:
            row_files(res, dfh, client, exp_id, reps, loaded, n, do_large)
        dfh.dirs.remove(uri)

    if do_small and mlh is not None:
        from mlflow.entities import Metric as MlMetric, Param as MlParam

        _u, ml_exp, mclient = mlh.fresh(f"search{small}")
        ml_loaded = load_runs(mclient, ml_exp, small, MlMetric, MlParam, f"mlflow {small:,}")
        m = search_queries(lambda *a, **k: list(mclient.search_runs(*a, **k)), ml_exp, reps, ml_loaded)
        log(f"mlflow search @{small}: {m}")
        small_rows[0].mlflow = fmt_s(ml_loaded["load_s"])
        small_rows[0].raw["mlflow"] = ml_loaded
        small_rows[1].mlflow = fmt_s(m["filter_s"]) + _check(m, "filter_correct")
        small_rows[1].raw["mlflow"] = m
        small_rows[2].mlflow = fmt_s(m["order_s"]) + _check(m, "order_correct")
        if large_rows:
            n_large = large_rows[0].raw["deltaflow"]["runs"]
            est = _fmt_minutes(ml_loaded["load_s"] * n_large / small)
            large_rows[0].mlflow = MLFLOW_EST_NOTE.format(est, f"{small:,}")
            for row in large_rows[1:]:
                row.mlflow = f"n/a (≈{est} to load)"
        res.save()


def _file_counts(store: Any) -> dict[str, int]:
    from deltaflow.store.schema import TABLES

    return {t: store.engine.file_count(t) for t in TABLES}


def _parquet_on_disk(uri: str) -> int:
    total = 0
    for _root, _dirs, files in os.walk(os.path.join(uri, "tables")):
        total += sum(1 for f in files if f.endswith(".parquet"))
    return total


def row_files(res: Results, dfh: DeltaflowHarness, client: Any, exp_id: str, reps: int, loaded: dict,
              n_runs: int, search_again: bool) -> None:
    from deltaflow.store.maintenance import optimize

    store = client._store
    uri = store.location.root
    before = _file_counts(store)
    disk_before = _parquet_on_disk(uri)
    with Stopwatch() as sw:
        report = optimize(store, vacuum_hours=0, force=True)
    after = _file_counts(store)
    disk_after = _parquet_on_disk(uri)
    log(f"optimize took {sw.seconds:.1f}s: {before} -> {after}")
    res.add(Row("files", f"data files in the store after the {n_runs:,}-run load (active snapshot)",
                deltaflow=f"{sum(before.values()):,}", mlflow="1 (sqlite file)",
                raw={"per_table": before, "parquet_on_disk": disk_before},
                note=f"per table: {before}; .parquet files on disk incl. unreferenced: {disk_before:,}"))
    res.add(Row("files", "data files after optimize(vacuum_hours=0, force=True)",
                deltaflow=f"{sum(after.values()):,}", mlflow="1 (sqlite file)",
                raw={"per_table": after, "parquet_on_disk": disk_after, "optimize_s": sw.seconds,
                     "optimize_report": report},
                note=f"optimize (Z-order + vacuum) took {fmt_s(sw.seconds)}; per table: {after}"))
    if search_again:
        d = search_queries(client.search_runs, exp_id, reps, loaded)
        log(f"deltaflow search after optimize: {d}")
        partial = loaded["runs"] < loaded.get("asked", loaded["runs"])

        def judged(seconds: float, correct: bool) -> str:
            verdict_ = met(seconds, T_SEARCH) if correct else "not met"
            if partial and verdict_ == "yes":
                return f"n/a (only {n_runs:,} runs)"
            return verdict_

        res.add(Row("files", f"search @{n_runs:,} after optimize: filter (top 100)",
                    deltaflow=fmt_s(d["filter_s"]) + _check(d, "filter_correct"),
                    target=T_SEARCH[2] + " @100k", met=judged(d["filter_s"], d["filter_correct"]),
                    raw={"deltaflow": d}))
        res.add(Row("files", f"search @{n_runs:,} after optimize: order_by (top 100)",
                    deltaflow=fmt_s(d["order_s"]) + _check(d, "order_correct"),
                    target=T_SEARCH[2] + " @100k", met=judged(d["order_s"], d["order_correct"])))


# -- memory ---------------------------------------------------------------------------------------
def child_memory(points: int, uri: str, stall_minutes: float) -> None:
    """Runs in a fresh interpreter: log ``points`` metric points with a log_metric loop, report RSS."""
    import resource

    sampler = RssSampler(0.05)
    import deltaflow as df

    progress = [0]

    def on_stall(what: str, stacks: str) -> None:
        print(json.dumps({"stalled": what, "points_logged": progress[0], "stacks": stacks}), flush=True)
        os._exit(3)

    watchdog = Watchdog(stall_minutes * 60, on_stall)
    with sampler:
        start = time.perf_counter()
        df.set_tracking_uri(uri)
        exp = df.set_experiment("memory")
        setup_s = time.perf_counter() - start
        with df.start_run(experiment_id=exp.experiment_id):
            t0 = time.perf_counter()
            watchdog.arm("logging metric points")
            for i in range(points):
                df.log_metric("loss", i * 1e-7, step=i)
                if not i & 0xFFF:
                    progress[0] = i
                    watchdog.beat()
            loop_s = time.perf_counter() - t0
            df.flush()
            total_s = time.perf_counter() - t0
            watchdog.disarm()
    print(json.dumps({
        "points": points, "method": "deltaflow.log_metric loop (one key, step=i)",
        "start_rss": sampler.start_self, "peak_rss": sampler.peak_self,
        "peak_rss_delta": sampler.peak_self - sampler.start_self,
        "peak_children_rss": sampler.peak_children,
        "peak_total_delta": sampler.peak_total - sampler.start_self - sampler.start_children,
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "samples": sampler.samples, "setup_s": setup_s, "loop_s": loop_s, "total_s": total_s,
        "heartbeat_interval_s": os.environ.get("DELTAFLOW_HEARTBEAT_INTERVAL_S"),
    }))


def row_memory(res: Results, sizes: dict, dirs: TempDirs, args: Any) -> None:
    points = sizes["memory_points"]
    uri = dirs.new("df-memory")
    env = dict(os.environ)
    if not args.memory_heartbeats:
        # With heartbeats on, a log_metric loop that fills the buffer can deadlock the flusher (see
        # README); a heartbeat interval of a day means none is due while this child runs.
        env["DELTAFLOW_HEARTBEAT_INTERVAL_S"] = "86400"
    proc = run_python([os.path.abspath(__file__), "--child-memory", str(points), "--child-uri", uri,
                       "--stall-minutes", str(args.stall_minutes)], env=env, timeout=3 * 3600)
    dirs.remove(uri)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
    out = json.loads(last) if last.startswith("{") else {}
    if "stalled" in out:
        res.meta["memory_stall_stacks"] = out["stacks"]
        raise RuntimeError(f"memory child hung after {out['points_logged']:,} points while {out['stalled']} "
                           "(stacks in meta.memory_stall_stacks)")
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}): {proc.stderr[-3000:]}")
    log(f"memory child: {out}")
    res.add(Row("memory", f"peak RSS - start RSS, {points:,} points via log_metric (fresh process)",
                deltaflow=fmt_bytes(out["peak_rss_delta"]), mlflow=NA, target=T_MEMORY[2],
                met=met(out["peak_rss_delta"], T_MEMORY), raw=out,
                note=f"Python process only, sampled every 50 ms; heartbeat interval "
                     f"{out.get('heartbeat_interval_s') or 'default (30 s)'}; logging took {fmt_s(out['total_s'])} "
                     f"(loop {fmt_s(out['loop_s'])}); MLflow not run ({points:,} synchronous log_metric "
                     "calls would take hours)."))
    res.add(Row("memory", "  same, incl. the Spark JVM child process",
                deltaflow=fmt_bytes(out["peak_total_delta"]), mlflow=NA, target=T_MEMORY[2],
                met=met(out["peak_total_delta"], T_MEMORY),
                note="the JVM is capped by spark.driver.memory (deltaflow default 2g)"))


# =================================================================================================
def parse_only(value: Optional[str]) -> set[str]:
    if not value:
        return set(ROW_KEYS)
    chosen = set()
    for item in value.split(","):
        item = item.strip().lower()
        if item.isdigit() and 1 <= int(item) <= len(ROW_KEYS):
            chosen.add(ROW_KEYS[int(item) - 1])
        elif item in ROW_KEYS:
            chosen.add(item)
        elif item in ("search-small", "search-large"):
            chosen.add(item)
        else:
            raise SystemExit(f"--only: unknown row {item!r}; use 1-8 or {', '.join(ROW_KEYS)}")
    return chosen


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for validating the script")
    parser.add_argument("--only", help="comma-separated rows: 1-8 or " + ", ".join(ROW_KEYS)
                        + " (also search-small, search-large)")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--size", action="append", default=[], metavar="KEY=N",
                        help="override a size, e.g. --size search_large=20000")
    parser.add_argument("--load-flush-every", type=int, default=1000,
                        help="call flush() every N runs while loading (default 1000 = 500k metric rows; 0: rely "
                             "on the background flusher alone, which can deadlock, see README)")
    parser.add_argument("--stall-minutes", type=float, default=10.0,
                        help="abort (keeping the results so far) if a load makes no progress for this long")
    parser.add_argument("--max-load-minutes", type=float, default=None,
                        help="stop the large deltaflow load after this long and search what was loaded "
                             "(the rows then say so); default: no limit")
    parser.add_argument("--workdir", help="base folder for temp stores (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp stores")
    parser.add_argument("--memory-heartbeats", action="store_true",
                        help="row 8 with the default heartbeat interval (can deadlock, see README)")
    parser.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-uri", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_memory:
        child_memory(args.child_memory, args.child_uri, args.stall_minutes)
        return 0

    mode = "quick" if args.quick else "full"
    sizes = dict(SIZES[mode])
    for item in args.size:
        key, _, value = item.partition("=")
        if key not in sizes:
            raise SystemExit(f"--size: unknown key {key!r}; known: {', '.join(sizes)}")
        sizes[key] = int(value)
    only = parse_only(args.only)
    if "search" in only:
        only |= {"search-small", "search-large"}

    dirs = TempDirs(args.workdir, keep=args.keep)
    # Keep Spark's and MLflow's side files out of the working directory; no telemetry from MLflow.
    os.environ.setdefault("DELTAFLOW_WAREHOUSE_DIR", dirs.new("warehouse"))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("DELTAFLOW_USER", "bench")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)

    res = Results(mode, sys.argv[1:] if argv is None else argv, sizes)
    res.meta["load_flush_every"] = args.load_flush_every
    res.meta["max_load_minutes"] = args.max_load_minutes
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for key, cmd in (("git_head", ["git", "-C", repo, "rev-parse", "HEAD"]),
                     ("git_status_src", ["git", "-C", repo, "status", "--short", "src"])):
        try:
            res.meta[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception as exc:  # noqa: BLE001 - informational only
            res.meta[key] = f"unavailable: {exc}"
    log(f"mode={mode} rows={sorted(only)} mlflow={'off' if args.skip_mlflow else 'on'} -> {res.path}")

    def on_stall(what: str, stacks: str) -> None:
        msg = f"no progress for {args.stall_minutes:g} min while {what}; aborting"
        log(msg + "\n" + stacks)
        res.error("stall", msg)
        res.meta["stall_stacks"] = stacks
        res.add(Row("stall", f"STALLED: {what}", deltaflow="hung", met="error",
                    note=msg + " (thread stacks in the JSON, meta.stall_stacks)"))
        res.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        res.save()
        print_table(res, mode)
        sys.stdout.flush()
        dirs.cleanup()
        os._exit(3)

    global WATCHDOG
    WATCHDOG = Watchdog(args.stall_minutes * 60, on_stall)

    def attempt(key: str, fn: Callable[[], None]) -> None:
        log(f"== {key}")
        res.meta.setdefault("machine_load", {})[key] = {"before": machine_load()}
        try:
            with Stopwatch() as sw:
                fn()
            res.meta.setdefault("row_seconds", {})[key] = sw.seconds
            res.meta["machine_load"][key]["after"] = machine_load()
            res.save()
        except Exception as exc:  # noqa: BLE001 - one failing row must not lose the others
            traceback.print_exc()
            res.error(key, f"{type(exc).__name__}: {exc}")
            res.add(Row(key, f"{key}: ERROR", deltaflow="error", mlflow="error", met="error",
                        note=f"{type(exc).__name__}: {str(exc)[:300]}"))

    try:
        if "import" in only:
            attempt("import", lambda: row_import(res, sizes, args.skip_mlflow))
        if "memory" in only:  # before this process starts its own JVM
            attempt("memory", lambda: row_memory(res, sizes, dirs, args))
        in_process = only & {"log_metric", "batch", "visibility", "runs", "search-small", "search-large", "files"}
        if in_process:
            dfh = DeltaflowHarness(dirs)
            mlh = None if args.skip_mlflow else MlflowHarness(dirs)
            attempt("cold_start", lambda: dfh.fresh("cold-start"))
            if dfh.cold_start_s is not None:
                res.add(Row("cold_start", "first store in a process: Spark start + create tables + warm-up",
                            deltaflow=fmt_s(dfh.cold_start_s), raw={"seconds": dfh.cold_start_s},
                            note="one-off per process; every later measurement uses a fresh store whose "
                                 "set-up is excluded from the timings"))
            if "log_metric" in only:
                attempt("log_metric", lambda: row_log_metric(res, sizes, dfh, mlh))
            if "batch" in only:
                attempt("batch", lambda: row_batch(res, sizes, dfh, mlh))
            if "visibility" in only:
                attempt("visibility", lambda: row_visibility(res, sizes, dfh, mlh))
            if "runs" in only:
                attempt("runs", lambda: row_runs(res, sizes, dfh, mlh))
            if only & {"search-small", "search-large", "files"}:
                attempt("search", lambda: row_search(res, sizes, dfh, mlh, args, "search-small" in only,
                                                     "search-large" in only, "files" in only))
    finally:
        res.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        res.save()
        dirs.cleanup()

    print_table(res, mode)
    return 1 if res.meta["errors"] else 0


def print_table(res: Results, mode: str) -> None:
    order = {k: i for i, k in enumerate(("import", "log_metric", "batch", "visibility", "runs", "search",
                                         "files", "memory", "cold_start"))}
    rows = sorted(res.rows, key=lambda r: order.get(r.key, 99))  # stable: keeps order within a group
    print()
    print(f"deltaflow vs MLflow (sqlite) — {mode} mode — {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs; 'met?' judges the deltaflow column")
    print(render_table(rows))
    foreign = sorted({p for v in res.meta.get("machine_load", {}).values() for ph in v.values()
                      for p in ph.get("foreign_java_python", [])})
    if foreign:
        print(f"\nwarning: {len(foreign)} other java/python processes were seen during the run (timings may be "
              "skewed); see meta.machine_load in the JSON")
    print(f"\nresults: {res.path}")


if __name__ == "__main__":
    sys.exit(main())
