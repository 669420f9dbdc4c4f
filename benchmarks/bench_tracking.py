#!/usr/bin/env python
"""Tracking benchmark: deltaflow, one column per engine (spark: delta-spark; rust: delta-rs), against MLflow
(sqlite) on this machine.

Prints one side-by-side table and writes ``benchmarks/results/tracking-<timestamp>.json``.
See ``benchmarks/README.md`` for what each row measures and how.

    python benchmarks/bench_tracking.py                        # full run (hours on 2 cores)
    python benchmarks/bench_tracking.py --quick                # small sizes: validates the script
    python benchmarks/bench_tracking.py --only search,files --skip-mlflow --engines rust

Modules: ``_common.py`` (timing, rows, table), ``_harness.py`` (targets, engines, store harnesses),
``_process_rows.py`` (rows measured in fresh processes: import, startup, script, CLI, memory),
``_search_rows.py`` (search and files); the in-process write-path rows are here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _search_rows  # noqa: E402
from _common import (  # noqa: E402
    COLUMN_TITLES,
    ENGINE_COLUMNS,
    Results,
    Stopwatch,
    TempDirs,
    Watchdog,
    fmt_ms,
    fmt_rate,
    fmt_s,
    log,
    machine_load,
    median,
    percentile,
    render_table,
)
from _harness import (  # noqa: E402
    T_BATCH,
    T_LOG_METRIC,
    T_RUNS,
    DeltaflowHarness,
    MlflowHarness,
    guard,
    known_engines,
)
from _process_rows import (  # noqa: E402
    ChildStores,
    child_memory,
    row_cli,
    row_import,
    row_memory,
    row_pyspark_summary,
    row_script,
    row_startup,
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
        process_repeats=5, cli_runs=1_000, cli_experiments=10,
        flush_repeats=50, flush_batch=100,
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
        process_repeats=3, cli_runs=100, cli_experiments=10,
        flush_repeats=30, flush_batch=100,
    ),
}

ROW_KEYS = ("import", "log_metric", "batch", "visibility", "runs", "search", "files", "memory",
            "startup", "script", "flush", "cli")
PROCESS_ROWS = {"startup", "script", "cli"}


# =================================================================================================
# In-process rows: each engine's harness in turn, then MLflow; each fills its own column
# =================================================================================================
def row_log_metric(res: Results, sizes: dict, dfhs: list[DeltaflowHarness], mlh: Optional[MlflowHarness]) -> None:
    n, m = sizes["log_metric_df"], sizes["log_metric_ml"]
    label_loop = f"log_metric per call, loop only (df {n:,} calls, MLflow {m:,})"
    label_total = "log_metric per call, incl. final flush()"
    for h in dfhs:
        e, df = h.engine, h.df
        with guard(res, "log_metric", e):
            _uri, exp_id, _client = h.fresh("log_metric")
            with df.start_run(experiment_id=exp_id):
                df.flush()
                start = time.perf_counter()
                for i in range(n):
                    df.log_metric("loss", i * 1e-6, step=i)
                loop_s = time.perf_counter() - start
                df.flush()
                total_s = time.perf_counter() - start
            log(f"deltaflow[{e}] log_metric x{n}: loop {loop_s:.2f}s, with flush {total_s:.2f}s")
            res.put("log_metric", label_loop, e, fmt_ms(loop_s / n), target=T_LOG_METRIC.text,
                    met=T_LOG_METRIC.judge(loop_s / n, e), raw={"calls": n, "loop_s": loop_s})
            res.put("log_metric", label_total, e, fmt_ms(total_s / n), target=T_LOG_METRIC.text,
                    met=T_LOG_METRIC.judge(total_s / n, e), raw={"total_s": total_s})
    if mlh is not None:
        with guard(res, "log_metric", "mlflow"):
            mlflow = mlh.mlflow
            mlh.fresh("log_metric")
            with mlflow.start_run():
                start = time.perf_counter()
                for i in range(m):
                    mlflow.log_metric("loss", i * 1e-6, step=i)
                ml_s = time.perf_counter() - start
            log(f"mlflow log_metric x{m}: {ml_s:.2f}s")
            res.put("log_metric", label_loop, "mlflow", fmt_ms(ml_s / m), raw={"calls": m, "seconds": ml_s})
            res.put("log_metric", label_total, "mlflow", fmt_ms(ml_s / m),
                    note="MLflow's log_metric is synchronous (durable on return), so its two figures are the same")


def _batches(metric_cls: Callable, nb: int, size: int) -> list[list[Any]]:
    """``nb`` distinct batches of ``size`` metrics over 10 keys (no duplicate (key, step) pairs)."""
    ts = int(time.time() * 1000)
    return [[metric_cls(f"m{j % 10}", (b * size + j) * 1e-6, ts + b, b * (size // 10) + j // 10)
             for j in range(size)] for b in range(nb)]


def row_batch(res: Results, sizes: dict, dfhs: list[DeltaflowHarness], mlh: Optional[MlflowHarness]) -> None:
    nb, mb, size = sizes["batches_df"], sizes["batches_ml"], sizes["batch_size"]
    label = f"log_batch of {size:,} metrics, incl. flush (df {nb:,} batches, MLflow {mb})"
    label_loop = "log_batch throughput, loop only (buffered, not yet durable)"
    for h in dfhs:
        e = h.engine
        with guard(res, "batch", e):
            _uri, exp_id, client = h.fresh("batch")
            run_id = client.create_run(exp_id).info.run_id
            client.flush()
            batches = _batches(h.df.Metric, nb, size)
            start = time.perf_counter()
            for batch in batches:
                client.log_batch(run_id, metrics=batch)
            loop_s = time.perf_counter() - start
            client.flush()
            total_s = time.perf_counter() - start
            del batches
            log(f"deltaflow[{e}] log_batch {nb}x{size}: loop {loop_s:.2f}s, with flush {total_s:.2f}s")
            rate = nb * size / total_s
            res.put("batch", label, e, fmt_rate(rate, "metrics"), target=T_BATCH.text, met=T_BATCH.judge(rate, e),
                    raw={"batches": nb, "batch_size": size, "loop_s": loop_s, "total_s": total_s})
            res.put("batch", label_loop, e, fmt_rate(nb * size / loop_s, "metrics"))
    if mlh is not None:
        from mlflow.entities import Metric as MlMetric

        with guard(res, "batch", "mlflow"):
            _u, ml_exp, mclient = mlh.fresh("batch")
            ml_run = mclient.create_run(ml_exp).info.run_id
            batches = _batches(MlMetric, mb, size)
            start = time.perf_counter()
            for batch in batches:
                mclient.log_batch(ml_run, metrics=batch)
            ml_s = time.perf_counter() - start
            log(f"mlflow log_batch {mb}x{size}: {ml_s:.2f}s")
            res.put("batch", label, "mlflow", fmt_rate(mb * size / ml_s, "metrics"), raw={"batches": mb, "seconds": ml_s})
            res.put("batch", label_loop, "mlflow", fmt_rate(mb * size / ml_s, "metrics"))
    res.put("batch", label, note="Metric objects are built before the timer starts, for every column")


def row_visibility(res: Results, sizes: dict, dfhs: list[DeltaflowHarness], mlh: Optional[MlflowHarness]) -> None:
    """end_run, then poll search from a second, independent store/client until the run shows FINISHED."""
    trials = sizes["visibility_trials"]
    label = f"end_run -> visible to search from a second store (median of {trials})"
    label_durable = "end_run + flush() (durable), then one search sees it"

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

    def med(samples: list[dict], key: str) -> float:
        return median([s[key] for s in samples])

    for h in dfhs:
        e = h.engine
        with guard(res, "visibility", e):
            uri, exp_id, client = h.fresh("visibility")
            reader = h.second_store(uri)
            reader.search_runs([exp_id], "", max_results=10)  # warm the reader's engine

            def df_search(x: str, f: str) -> list:
                return reader.search_runs([x], f, max_results=10)[0]

            poll = [measure(client, df_search, exp_id, client.flush, False) for _ in range(trials)]
            durable = [measure(client, df_search, exp_id, client.flush, True) for _ in range(trials)]
            log(f"deltaflow[{e}] visibility: {poll} / durable {durable}")
            res.put("visibility", label, e, fmt_s(med(poll, "visible_s")), raw=poll)
            res.put("visibility", label_durable, e, fmt_s(med(durable, "visible_s")), raw=durable,
                    note=f"end_run+flush alone {fmt_s(med(durable, 'durable_s'))}")
    if mlh is not None:
        with guard(res, "visibility", "mlflow"):
            ml_uri, ml_exp, mclient = mlh.fresh("visibility")
            mreader = mlh.Client(ml_uri)

            def ml_search(x: str, f: str) -> list:
                return list(mreader.search_runs([x], f, max_results=10))

            ml_search(ml_exp, "")
            poll = [measure(mclient, ml_search, ml_exp, lambda: None, False) for _ in range(trials)]
            log(f"mlflow visibility: {poll}")
            res.put("visibility", label, "mlflow", fmt_s(med(poll, "visible_s")), raw=poll)
            res.put("visibility", label_durable, "mlflow", fmt_s(med(poll, "durable_s")),
                    note="set_terminated return time (synchronous)")
    res.put("visibility", label,
            note="deltaflow: end_run requests a background commit; the reader is a second TrackingStore (own "
                 "buffer and engine object, same process) polling search_runs back to back, so the figure "
                 "includes up to one search latency of polling granularity")


def row_runs(res: Results, sizes: dict, dfhs: list[DeltaflowHarness], mlh: Optional[MlflowHarness]) -> None:
    n, m = sizes["runs_df"], sizes["runs_ml"]
    label = f"run creation (start_run+end_run; df {n:,} then flush, MLflow {m})"
    label_loop = "run creation, loop only (deltaflow not yet durable)"
    for h in dfhs:
        e, df = h.engine, h.df
        with guard(res, "runs", e):
            _uri, exp_id, _client = h.fresh("runs")
            start = time.perf_counter()
            for _ in range(n):
                df.start_run(experiment_id=exp_id)
                df.end_run()
            loop_s = time.perf_counter() - start
            df.flush()
            total_s = time.perf_counter() - start
            log(f"deltaflow[{e}] {n} runs: loop {loop_s:.2f}s, with flush {total_s:.2f}s")
            res.put("runs", label, e, fmt_rate(n / total_s, "runs"), target=T_RUNS.text,
                    met=T_RUNS.judge(n / total_s, e), raw={"runs": n, "loop_s": loop_s, "total_s": total_s})
            res.put("runs", label_loop, e, fmt_rate(n / loop_s, "runs"))
    if mlh is not None:
        with guard(res, "runs", "mlflow"):
            mlflow = mlh.mlflow
            _u, ml_exp, _c = mlh.fresh("runs")
            start = time.perf_counter()
            for _ in range(m):
                mlflow.start_run(experiment_id=ml_exp)
                mlflow.end_run()
            ml_s = time.perf_counter() - start
            log(f"mlflow {m} runs: {ml_s:.2f}s")
            res.put("runs", label, "mlflow", fmt_rate(m / ml_s, "runs"), raw={"runs": m, "seconds": ml_s})
            res.put("runs", label_loop, "mlflow", fmt_rate(m / ml_s, "runs"))


def row_flush(res: Results, sizes: dict, dfhs: list[DeltaflowHarness], mlh: Optional[MlflowHarness]) -> None:
    """Per-flush commit latency: log_batch of a small batch, then time flush(); N times after 2 warm-ups."""
    n, size = sizes["flush_repeats"], sizes["flush_batch"]
    label = f"flush() commit latency after a {size}-metric log_batch: median of {n}"
    label_p95 = "  same, p95"
    for h in dfhs:
        e = h.engine
        with guard(res, "flush", e):
            _uri, exp_id, client = h.fresh("flush")
            run_id = client.create_run(exp_id).info.run_id
            client.flush()
            buf = client._store.buffer
            batches = _batches(h.df.Metric, n + 2, size)
            times, commits = [], []
            for i, batch in enumerate(batches):
                client.log_batch(run_id, metrics=batch)
                before = buf.commits
                start = time.perf_counter()
                client.flush()
                if i >= 2:
                    times.append(time.perf_counter() - start)
                    commits.append(buf.commits - before)
            log(f"deltaflow[{e}] flush latency: median {median(times):.3f}s p95 {percentile(times, 95):.3f}s")
            res.put("flush", label, e, fmt_s(median(times)), raw={"samples": times, "commits_per_flush": commits})
            res.put("flush", label_p95, e, fmt_s(percentile(times, 95)))
    if mlh is not None:
        from mlflow.entities import Metric as MlMetric

        with guard(res, "flush", "mlflow"):
            _u, ml_exp, mclient = mlh.fresh("flush")
            ml_run = mclient.create_run(ml_exp).info.run_id
            times = []
            for i, batch in enumerate(_batches(MlMetric, n + 2, size)):
                start = time.perf_counter()
                mclient.log_batch(ml_run, metrics=batch)
                if i >= 2:
                    times.append(time.perf_counter() - start)
            res.put("flush", label, "mlflow", fmt_s(median(times)), raw={"samples": times},
                    note="the synchronous log_batch itself (MLflow has no separate commit)")
            res.put("flush", label_p95, "mlflow", fmt_s(percentile(times, 95)))
    res.put("flush", label, note="each deltaflow flush appends once to `metrics` and once to `latest_metrics` "
                                 "(plus `runs` when a heartbeat is due); 2 untimed warm-ups first")


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
            raise SystemExit(f"--only: unknown row {item!r}; use 1-{len(ROW_KEYS)} or {', '.join(ROW_KEYS)}")
    return chosen


def parse_engines(value: str) -> list[str]:
    engines = [e.strip().lower() for e in value.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINE_COLUMNS:
            raise SystemExit(f"--engines: unknown engine {e!r}; use {', '.join(ENGINE_COLUMNS)}")
    if not engines:
        raise SystemExit("--engines: give at least one engine")
    return [e for e in ENGINE_COLUMNS if e in engines]  # table order: spark, rust


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for validating the script")
    parser.add_argument("--only", help=f"comma-separated rows: 1-{len(ROW_KEYS)} or " + ", ".join(ROW_KEYS)
                        + " (also search-small, search-large)")
    parser.add_argument("--engines", default="spark,rust",
                        help="deltaflow engines to measure, one column each (default: spark,rust)")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--size", action="append", default=[], metavar="KEY=N",
                        help="override a size, e.g. --size search_large=20000")
    parser.add_argument("--load-flush-every", type=int, default=1000,
                        help="call flush() every N runs while loading (default 1000 = 500k metric rows; 0: rely "
                             "on the background flusher alone)")
    parser.add_argument("--stall-minutes", type=float, default=10.0,
                        help="abort (keeping the results so far) if a load makes no progress for this long")
    parser.add_argument("--max-load-minutes", type=float, default=None,
                        help="stop each engine's large load after this long and search what was loaded "
                             "(the cells then say so); default: no limit")
    parser.add_argument("--workdir", help="base folder for temp stores (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp stores")
    parser.add_argument("--memory-heartbeats", action="store_true",
                        help="row 8 with the default heartbeat interval (see README)")
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
    engines = parse_engines(args.engines)

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
    res.meta.update(engines=engines, load_flush_every=args.load_flush_every,
                    max_load_minutes=args.max_load_minutes)
    available = known_engines()
    res.meta["factory_engines"] = list(available)
    missing = [e for e in engines if e not in available]
    if missing:
        res.meta["unavailable_engines"] = missing
        log(f"WARNING: deltaflow does not know engine(s) {missing} (factory ENGINES = {available}); "
            "their columns stay n/a")
    run_engines = [e for e in engines if e in available]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for key, cmd in (("git_head", ["git", "-C", repo, "rev-parse", "HEAD"]),
                     ("git_status_src", ["git", "-C", repo, "status", "--short", "src"])):
        try:
            res.meta[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception as exc:  # noqa: BLE001 - informational only
            res.meta[key] = f"unavailable: {exc}"
    log(f"mode={mode} rows={sorted(only)} engines={run_engines} mlflow={'off' if args.skip_mlflow else 'on'} "
        f"-> {res.path}")

    def on_stall(what: str, stacks: str) -> None:
        msg = f"no progress for {args.stall_minutes:g} min while {what}; aborting"
        log(msg + "\n" + stacks)
        res.error("stall", msg)
        res.meta["stall_stacks"] = stacks
        res.put("stall", f"STALLED: {what}", note=msg + " (thread stacks in the JSON, meta.stall_stacks)")
        res.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        res.save()
        print_table(res, mode, engines)
        sys.stdout.flush()
        dirs.cleanup()
        os._exit(3)

    _search_rows.WATCHDOG = Watchdog(args.stall_minutes * 60, on_stall)

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
            res.put(key, f"{key}: ERROR", note=f"{type(exc).__name__}: {str(exc)[:300]}")

    columns = run_engines + ([] if args.skip_mlflow else ["mlflow"])
    try:
        # Rows in fresh processes first, before this process starts its own engines (and a JVM).
        if "import" in only:
            attempt("import", lambda: row_import(res, sizes, run_engines, args.skip_mlflow))
        if "memory" in only:
            attempt("memory", lambda: row_memory(res, sizes, dirs, args, run_engines))
        if only & PROCESS_ROWS:
            stores = ChildStores(dirs, columns)
            if "startup" in only:
                attempt("startup", lambda: row_startup(res, sizes, stores))
            if "script" in only:
                attempt("script", lambda: row_script(res, sizes, stores))
            if "cli" in only:
                attempt("cli", lambda: row_cli(res, sizes, stores))
            row_pyspark_summary(res, stores)
            stores.cleanup()
        in_process = only & {"log_metric", "batch", "visibility", "runs", "flush", "search-small", "search-large",
                             "files"}
        if in_process and run_engines:
            mlh = None if args.skip_mlflow else MlflowHarness(dirs)
            # rust first: its first store is made before this process starts Spark's JVM
            dfhs = [DeltaflowHarness(dirs, e) for e in sorted(run_engines, key=lambda e: e != "rust")]
            for h in dfhs:
                with guard(res, "cold_start", h.engine):
                    h.fresh("cold-start")
                    res.put("cold_start", "first store in a process: engine start (Spark: JVM) + create tables + "
                            "warm-up", h.engine, fmt_s(h.cold_start_s), raw={"seconds": h.cold_start_s},
                            note="pyspark already imported in this process: "
                                 + ("yes (MLflow imports it)" if "pyspark" in sys.modules else "no"))
            dfhs = [h for h in dfhs if h.cold_start_s is not None]
            rows = (("log_metric", row_log_metric), ("batch", row_batch), ("visibility", row_visibility),
                    ("runs", row_runs), ("flush", row_flush))
            for key, fn in rows:
                if key in only:
                    attempt(key, lambda fn=fn: fn(res, sizes, dfhs, mlh))
            if only & {"search-small", "search-large", "files"}:
                attempt("search", lambda: _search_rows.row_search(
                    res, sizes, dfhs, mlh, args, "search-small" in only, "search-large" in only, "files" in only))
    finally:
        res.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        res.save()
        dirs.cleanup()

    print_table(res, mode, engines)
    return 1 if res.meta["errors"] else 0


def print_table(res: Results, mode: str, engines: list[str]) -> None:
    order = {k: i for i, k in enumerate(("import", "startup", "script", "cli", "pyspark", "log_metric", "batch", "flush",
                                         "visibility", "runs", "search", "files", "memory", "cold_start"))}
    rows = sorted(res.rows, key=lambda r: order.get(r.key, 99))  # stable: keeps order within a group
    print()
    titles = ", ".join(COLUMN_TITLES[e] for e in engines)
    print(f"deltaflow ({titles}) vs MLflow (sqlite) — {mode} mode — {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs; 'met? <engine>' judges that engine's column")
    print(render_table(rows, engines))
    if res.meta.get("unavailable_engines"):
        print(f"\nnot measured: engine(s) {res.meta['unavailable_engines']} unknown to this deltaflow "
              f"(factory ENGINES = {res.meta.get('factory_engines')})")
    foreign = sorted({p for v in res.meta.get("machine_load", {}).values() for ph in v.values()
                      for p in ph.get("foreign_java_python", [])})
    if foreign:
        print(f"\nwarning: {len(foreign)} other java/python processes were seen during the run (timings may be "
              "skewed); see meta.machine_load in the JSON")
    print(f"\nresults: {res.path}")


if __name__ == "__main__":
    sys.exit(main())
