"""Rows 6-7 of the tracking benchmark: search over many runs, and data files before/after optimize.

Each deltaflow engine loads its own stores (10k and 100k runs at full size) and fills its column; MLflow
loads the small one last (its sqlite load is slow) and gets an extrapolated estimate for the large one.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, Optional

from _common import Results, Stopwatch, Watchdog, dir_size_bytes, fmt_bytes, fmt_s, log, timed_repeat
from _harness import FILTER, ORDER_BY, T_SEARCH, DeltaflowHarness, MlflowHarness, guard

METRICS_PER_RUN_KEYS = 5
STEPS_PER_METRIC = 100
PARAMS_PER_RUN = 5
MLFLOW_EST_NOTE = "n/a (not run; ≈{} to load, extrapolated from its {}-run load)"

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


def row_search(res: Results, sizes: dict, dfhs: list[DeltaflowHarness], mlh: Optional[MlflowHarness], args: Any,
               do_small: bool, do_large: bool, do_files: bool) -> None:
    """Each engine: small load + searches, then large load + searches + files; MLflow's small load last."""
    reps = sizes["search_repeats"]
    small, large = sizes["search_small"], sizes["search_large"]
    budget = args.max_load_minutes * 60 if args.max_load_minutes else None
    l_load_small = f"load {small:,} runs (each 5 params + 5x100 metric points, log_batch)"
    l_filter_small = f"search @{small:,} runs: {FILTER} (top 100)"
    l_order_small = f"search @{small:,} runs: order_by metrics.m1 DESC (top 100)"
    l_load_large = f"load {large:,} runs ({large * 500:,} metric points)"
    l_filter_large = f"search @{large:,} runs: {FILTER} (top 100)"
    l_order_large = f"search @{large:,} runs: order_by metrics.m1 DESC (top 100)"

    for h in dfhs:
        e = h.engine
        df = h.df
        if do_small:
            with guard(res, "search", e):
                uri, exp_id, client = h.fresh(f"search{small}")
                loaded = load_runs(client, exp_id, small, df.Metric, df.Param, f"deltaflow[{e}] {small:,}",
                                   flush=client.flush, flush_every=args.load_flush_every)
                d = search_queries(client.search_runs, exp_id, reps, loaded)
                log(f"deltaflow[{e}] search @{small}: {d}")
                h.dirs.remove(uri)
                res.put("search", l_load_small, e, fmt_s(loaded["load_s"]), raw=loaded)
                res.put("search", l_filter_small, e, fmt_s(d["filter_s"]) + _check(d, "filter_correct"), raw=d,
                        note=f"median of {reps} after 1 warm-up; {loaded['expected_filter_matches']:,} of "
                             f"{small:,} runs match")
                res.put("search", l_order_small, e, fmt_s(d["order_s"]) + _check(d, "order_correct"))

        if do_large or do_files:
            with guard(res, "search", e):
                uri, exp_id, client = h.fresh(f"search{large}")
                loaded = load_runs(client, exp_id, large, df.Metric, df.Param, f"deltaflow[{e}] {large:,}",
                                   flush=client.flush, flush_every=args.load_flush_every, budget_s=budget)
                n = loaded["runs"]
                partial = n < large
                buf = client._store.buffer
                loaded["flusher_commits"] = buf.commits
                loaded["flusher_commit_seconds"] = buf.commit_seconds
                loaded["store_bytes"] = dir_size_bytes(uri)
                at = f" (partial: {n:,} runs, {args.max_load_minutes}-min budget)" if partial else ""
                res.put("search", l_load_large, e, fmt_s(loaded["load_s"]) + at, raw=loaded,
                        note=f"flusher: {buf.commits} flushes, {buf.commit_seconds:.0f}s committing; store on disk "
                             f"{fmt_bytes(loaded['store_bytes'])}; {n / loaded['load_s']:,.0f} runs/s, "
                             f"{n * 500 / loaded['load_s']:,.0f} metric points/s")

                def judged(seconds: float, correct: bool) -> str:
                    verdict_ = T_SEARCH.judge(seconds, e) if correct else "not met"
                    if partial and verdict_ == "yes":
                        return f"n/a (only {n:,} runs)"
                    return verdict_ + (f" (at {n:,})" if partial else "")

                if do_large:
                    d = search_queries(client.search_runs, exp_id, reps, loaded)
                    log(f"deltaflow[{e}] search @{n}: {d}")
                    suffix = f" (at {n:,})" if partial else ""
                    res.put("search", l_filter_large, e, fmt_s(d["filter_s"]) + _check(d, "filter_correct") + suffix,
                            target=T_SEARCH.text + " @100k", met=judged(d["filter_s"], d["filter_correct"]), raw=d)
                    res.put("search", l_order_large, e, fmt_s(d["order_s"]) + _check(d, "order_correct") + suffix,
                            target=T_SEARCH.text + " @100k", met=judged(d["order_s"], d["order_correct"]))
                if do_files:
                    row_files(res, h, client, exp_id, reps, loaded, large, do_large)
                h.dirs.remove(uri)

    if do_small and mlh is not None:
        from mlflow.entities import Metric as MlMetric, Param as MlParam

        with guard(res, "search", "mlflow"):
            _u, ml_exp, mclient = mlh.fresh(f"search{small}")
            ml_loaded = load_runs(mclient, ml_exp, small, MlMetric, MlParam, f"mlflow {small:,}")
            m = search_queries(lambda *a, **k: list(mclient.search_runs(*a, **k)), ml_exp, reps, ml_loaded)
            log(f"mlflow search @{small}: {m}")
            res.put("search", l_load_small, "mlflow", fmt_s(ml_loaded["load_s"]), raw=ml_loaded)
            res.put("search", l_filter_small, "mlflow", fmt_s(m["filter_s"]) + _check(m, "filter_correct"), raw=m)
            res.put("search", l_order_small, "mlflow", fmt_s(m["order_s"]) + _check(m, "order_correct"))
            if do_large:
                est = _fmt_minutes(ml_loaded["load_s"] * large / small)
                res.put("search", l_load_large, "mlflow", MLFLOW_EST_NOTE.format(est, f"{small:,}"))
                for label in (l_filter_large, l_order_large):
                    res.put("search", label, "mlflow", f"n/a (≈{est} to load)")
    elif do_large and mlh is not None:
        for label in (l_load_large, l_filter_large, l_order_large):
            res.put("search", label, "mlflow", "n/a (not run)")


def _file_counts(store: Any) -> dict[str, int]:
    from deltaflow.store.schema import TABLES

    return {t: store.engine.file_count(t) for t in TABLES}


def _parquet_on_disk(uri: str) -> int:
    total = 0
    for _root, _dirs, files in os.walk(os.path.join(uri, "tables")):
        total += sum(1 for f in files if f.endswith(".parquet"))
    return total


def row_files(res: Results, h: DeltaflowHarness, client: Any, exp_id: str, reps: int, loaded: dict,
              large: int, search_again: bool) -> None:
    from deltaflow.store.maintenance import optimize

    e = h.engine
    n_runs = loaded["runs"]
    partial = n_runs < loaded.get("asked", n_runs)
    at = f" (at {n_runs:,})" if partial else ""
    store = client._store
    uri = store.location.root
    before = _file_counts(store)
    disk_before = _parquet_on_disk(uri)
    with Stopwatch() as sw:
        report = optimize(store, vacuum_hours=0, force=True)
    after = _file_counts(store)
    disk_after = _parquet_on_disk(uri)
    log(f"deltaflow[{e}] optimize took {sw.seconds:.1f}s: {before} -> {after}")
    res.put("files", f"data files in the store after the {large:,}-run load (active snapshot)", e,
            f"{sum(before.values()):,}{at}", raw={"per_table": before, "parquet_on_disk": disk_before},
            note=f"per table: {before}; .parquet files on disk incl. unreferenced: {disk_before:,}")
    res.put("files", f"data files in the store after the {large:,}-run load (active snapshot)", "mlflow",
            "1 (sqlite file)")
    label = "data files after optimize(vacuum_hours=0, force=True)"
    res.put("files", label, e, f"{sum(after.values()):,}{at}",
            raw={"per_table": after, "parquet_on_disk": disk_after, "optimize_s": sw.seconds,
                 "optimize_report": report},
            note=f"optimize (Z-order + vacuum) took {fmt_s(sw.seconds)}; per table: {after}")
    res.put("files", label, "mlflow", "1 (sqlite file)")
    if search_again:
        d = search_queries(client.search_runs, exp_id, reps, loaded)
        log(f"deltaflow[{e}] search after optimize: {d}")

        def judged(seconds: float, correct: bool) -> str:
            verdict_ = T_SEARCH.judge(seconds, e) if correct else "not met"
            if partial and verdict_ == "yes":
                return f"n/a (only {n_runs:,} runs)"
            return verdict_

        res.put("files", f"search @{large:,} after optimize: filter (top 100)", e,
                fmt_s(d["filter_s"]) + _check(d, "filter_correct") + at,
                target=T_SEARCH.text + " @100k", met=judged(d["filter_s"], d["filter_correct"]), raw=d)
        res.put("files", f"search @{large:,} after optimize: order_by (top 100)", e,
                fmt_s(d["order_s"]) + _check(d, "order_correct") + at,
                target=T_SEARCH.text + " @100k", met=judged(d["order_s"], d["order_correct"]))
