"""Rows measured in fresh child processes: import time, process start -> first durable metric, a 10-metric
script end to end, CLI commands, and memory for logging many points.

Every deltaflow child runs with ``DELTAFLOW_ENGINE=<engine of its column>`` and no SparkSession of its own
unless the engine starts one. The probe (``_probe/sitecustomize.py``) records at each child's exit whether
it imported pyspark and which engine its stores used: a figure from the wrong engine is an error, and the
rust column says whether any of its processes imported pyspark (it must not).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Optional

from _common import (
    BENCH_DIR,
    ENGINE_COLUMNS,
    ProcResult,
    Results,
    RssSampler,
    TempDirs,
    Watchdog,
    fmt_bytes,
    fmt_s,
    log,
    median,
    run_python,
    timed_process,
)
from _harness import T_CLI, T_IMPORT, T_MEMORY, T_SCRIPT, engine_env, guard

BIN = os.path.dirname(sys.executable)
# What each engine needs beyond ``import deltaflow`` (which loads neither: engines load on first store use).
ENGINE_LIBRARIES = {"spark": "pyspark.sql, delta", "rust": "deltalake"}

# The child programs. The tracking URI comes from the environment (DELTAFLOW_TRACKING_URI /
# MLFLOW_TRACKING_URI), so deltaflow's and MLflow's code differ only in the import (and deltaflow's flush).
FIRST_METRIC = {
    "deltaflow": """
import time
import deltaflow as mlflow
with mlflow.start_run():
    mlflow.log_metric("x", 1.0)
    mlflow.flush()
    print("T_DURABLE", time.monotonic(), flush=True)
""",
    "mlflow": """
import time
import mlflow
with mlflow.start_run():
    mlflow.log_metric("x", 1.0)  # synchronous: durable on return
    print("T_DURABLE", time.monotonic(), flush=True)
""",
}
SCRIPT = """
import LIB as mlflow
mlflow.start_run()
for i in range(10):
    mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
mlflow.end_run()
"""
POPULATE = """
import LIB as mlflow
for j in range(N_EXPERIMENTS):
    mlflow.create_experiment(f"bench-{j}")
for i in range(N_RUNS):
    with mlflow.start_run(run_name=f"r{i}"):
        mlflow.log_params({f"p{k}": str((i + k) % 7) for k in range(5)})
        mlflow.log_metrics({f"m{k}": (i * 5 + k) * 1e-3 for k in range(5)})
"""


def _lib(column: str) -> str:
    return "mlflow" if column == "mlflow" else "deltaflow"


# =================================================================================================
class ChildStores:
    """One store per column (each engine, and MLflow), shared by the startup, script and CLI rows.

    The first process on a store finds an empty folder (deltaflow creates its tables, MLflow runs its
    migrations); that one-off is kept as its own figure, and every timed process then finds the store made.
    """

    def __init__(self, dirs: TempDirs, columns: list[str]) -> None:
        self.dirs = dirs
        self.columns = columns
        self.folders: dict[str, str] = {}
        self.first: dict[str, ProcResult] = {}
        self.populated: dict[str, int] = {}
        self.procs: dict[str, list[ProcResult]] = {c: [] for c in columns}  # every child, for the probe summary

    def env(self, column: str) -> dict[str, str]:
        folder = self.folders[column]
        if column == "mlflow":
            env = dict(os.environ)
            env["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
        else:
            env = engine_env(column)
            env["DELTAFLOW_TRACKING_URI"] = os.path.join(folder, "store")
        return env

    def run(self, column: str, cmd: list[str], what: str) -> ProcResult:
        proc = timed_process(cmd, self.env(column), cwd=self.folders[column]).check(f"{column}: {what}")
        if column != "mlflow":
            engines = set(proc.probe.get("engines", []))
            if proc.probe and engines - {column}:
                raise RuntimeError(f"{what}: asked for engine {column!r}, the child's stores used {sorted(engines)}")
        self.procs[column].append(proc)
        return proc

    def python(self, column: str, code: str, what: str) -> ProcResult:
        return self.run(column, [sys.executable, "-c", code], what)

    def ensure(self, column: str) -> None:
        if column in self.folders:
            return
        self.folders[column] = self.dirs.new(f"proc-{column}")
        self.first[column] = self.python(column, FIRST_METRIC[_lib(column)], "first process on an empty store")
        log(f"{column}: first process on an empty store {self.first[column].wall_s:.2f}s")

    def populate(self, column: str, runs: int, experiments: int) -> None:
        self.ensure(column)
        if column in self.populated:
            return
        code = (POPULATE.replace("LIB", _lib(column)).replace("N_RUNS", str(runs))
                .replace("N_EXPERIMENTS", str(experiments)))
        proc = self.python(column, code, f"populate {runs} runs")
        self.populated[column] = runs
        log(f"{column}: populated {runs} runs + {experiments} experiments in {proc.wall_s:.1f}s")

    def probe_note(self, column: str, procs: list[ProcResult]) -> str:
        """'pyspark imported in 0/4 processes' (rust must say 0)."""
        seen = [p for p in procs if p.probe]
        hits = sum(1 for p in seen if p.probe.get("pyspark"))
        text = f"pyspark imported in {hits}/{len(seen)} processes"
        if len(seen) < len(procs):
            text += f" ({len(procs) - len(seen)} without a probe report)"
        return text

    def cleanup(self) -> None:
        for folder in self.folders.values():
            self.dirs.remove(folder)


def _pyspark_flag(column: str, procs: list[ProcResult]) -> str:
    """Appended to a rust cell when one of its processes imported pyspark (it must not)."""
    if column == "rust" and any(p.probe.get("pyspark") for p in procs):
        return " (pyspark imported!)"
    return ""


def _judge(target: Any, value: Optional[float], column: str, procs: list[ProcResult]) -> Optional[str]:
    if column not in ENGINE_COLUMNS:
        return None
    verdict_ = target.judge(value, column) if target is not None else "-"
    if _pyspark_flag(column, procs):
        return "not met (pyspark imported)"
    return verdict_


# =================================================================================================
def row_import(res: Results, sizes: dict, engines: list[str], skip_mlflow: bool) -> None:
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

    codes = {"deltaflow": "import deltaflow"}
    codes.update({e: f"import deltaflow, {ENGINE_LIBRARIES[e]}" for e in engines})
    if not skip_mlflow:
        codes["mlflow"] = "import mlflow"
    n = sizes["import_repeats"]
    wall("; ".join(codes.values()))  # warm the OS file cache and .pyc files first
    base, per = [], {k: [] for k in codes}
    for _ in range(n):  # interleaved, so drift affects all alike
        base.append(wall("pass"))
        for k, code in codes.items():
            per[k].append(wall(code))
    values = {k: median(per[k]) - median(base) for k in codes}
    selfreported = {m: importtime(m) for m in ("deltaflow", "mlflow") if m in codes}
    label = f"import time (fresh process, median of {n})"
    for e in engines:  # `import deltaflow` loads no engine: the same figure for every engine
        res.put("import", label, e, fmt_s(values["deltaflow"]), target=T_IMPORT.text,
                met=T_IMPORT.judge(values["deltaflow"], e))
        res.put("import", "  import deltaflow + the engine's Delta library", e, fmt_s(values[e]),
                note=f"import deltaflow, {ENGINE_LIBRARIES[e]}")
    if "mlflow" in codes:
        res.put("import", label, "mlflow", fmt_s(values["mlflow"]))
    res.put("import", label, raw={"seconds": values, "samples": per, "baseline_samples": base,
                                  "x_importtime_cumulative_s": selfreported},
            note="wall(python -c 'import X') - wall(python -c 'pass'); `import deltaflow` loads no engine, so "
                 "both engine columns show the same figure; -X importtime cumulative: "
                 + ", ".join(f"{m} {fmt_s(v)}" for m, v in selfreported.items()))


# -- startup and script -------------------------------------------------------------------------
def row_startup(res: Results, sizes: dict, stores: ChildStores) -> None:
    """Fresh ``python -c``: import, start_run, log_metric, flush() -> durable; from spawn to that moment."""
    n = sizes["process_repeats"]
    for column in stores.columns:
        with guard(res, "startup", column):
            stores.ensure(column)
    columns = [c for c in stores.columns if c in stores.folders]
    samples: dict[str, list[ProcResult]] = {c: [] for c in columns}
    for i in range(n):  # interleaved across columns
        for column in columns:
            with guard(res, "startup", column):
                samples[column].append(stores.python(column, FIRST_METRIC[_lib(column)], "first durable metric"))
    label = f"process start -> first durable metric (fresh python -c, existing store, median of {n})"
    label_empty = "  same, first process on an empty folder (creates tables / runs migrations)"
    for column, procs in samples.items():
        if not procs:
            continue
        durable = [p.marker("T_DURABLE") for p in procs]
        med = median(durable)
        first = stores.first[column]
        res.put("startup", label, column, fmt_s(med) + _pyspark_flag(column, procs),
                met=_judge(None, med, column, procs),
                raw={"durable_s": durable, "process_wall_s": [p.wall_s for p in procs],
                     "probe": [p.probe for p in procs]},
                note=f"whole process incl. exit {fmt_s(median([p.wall_s for p in procs]))}"
                     + ("" if column == "mlflow" else "; " + stores.probe_note(column, procs)))
        res.put("startup", label_empty, column, fmt_s(first.marker("T_DURABLE")) + _pyspark_flag(column, [first]),
                raw={"durable_s": first.marker("T_DURABLE"), "process_wall_s": first.wall_s, "probe": first.probe})
    res.put("startup", label, note="timer: just before spawning the child -> the child's time.monotonic() printed "
                                   "after flush() returned (MLflow: after log_metric returned, it is synchronous)")


def _count_points(folder: str, key: str) -> Optional[int]:
    """Metric points with ``key`` in a deltaflow store, read with delta-rs (engine-neutral: same tables)."""
    try:
        import pyarrow.compute as pc
        from deltalake import DeltaTable
    except ImportError:
        return None
    table = DeltaTable(os.path.join(folder, "store", "tables", "metrics")).to_pyarrow_table(columns=["key"])
    return int(pc.sum(pc.equal(table["key"], key)).as_py() or 0)


def row_script(res: Results, sizes: dict, stores: ChildStores) -> None:
    """A whole script in a fresh process: import, start_run, 10 log_metric, end_run, exit (exit flush)."""
    n = sizes["process_repeats"]
    for column in stores.columns:
        with guard(res, "script", column):
            stores.ensure(column)
    columns = [c for c in stores.columns if c in stores.folders]
    samples: dict[str, list[ProcResult]] = {c: [] for c in columns}
    for i in range(n):
        for column in columns:
            with guard(res, "script", column):
                code = SCRIPT.replace("LIB", _lib(column))
                samples[column].append(stores.python(column, code, "10-metric script"))
    label = f"10-metric script end to end: import, start_run, 10 log_metric, end_run, exit (median of {n})"
    for column, procs in samples.items():
        if not procs:
            continue
        med = median([p.wall_s for p in procs])
        check, note = "", ""
        if column != "mlflow":
            with guard(res, "script", column):
                points = _count_points(stores.folders[column], "loss")
                expected = 10 * len(procs)
                if points is None:
                    note = "points not verified (deltalake missing); "
                elif points != expected:
                    check = f" (WRONG: {points}/{expected} points stored)"
                else:
                    note = f"all {expected} points durable after exit; "
            note += stores.probe_note(column, procs)
        res.put("script", label, column, fmt_s(med) + check + _pyspark_flag(column, procs), target=T_SCRIPT.text,
                met=None if column == "mlflow" else ("not met" if check else _judge(T_SCRIPT, med, column, procs)),
                raw={"process_wall_s": [p.wall_s for p in procs], "probe": [p.probe for p in procs]}, note=note)
    res.put("script", label, note="wall time from spawn to exit of `python -c` (deltaflow: end_run requests the "
                                  "commit, the exit hook waits for it; checked afterwards by reading the metrics "
                                  "table with delta-rs)")


# -- CLI ----------------------------------------------------------------------------------------
def row_cli(res: Results, sizes: dict, stores: ChildStores) -> None:
    """Fresh CLI processes on a store with some runs: runs list and experiments list."""
    n = sizes["process_repeats"]
    n_runs, n_exps = sizes["cli_runs"], sizes["cli_experiments"]
    for column in stores.columns:
        with guard(res, "cli", column):
            stores.populate(column, n_runs, n_exps)
    commands = {
        "runs": (f"CLI: deltaflow runs list --experiment-id 0 (fresh process, {n_runs:,} runs, median of {n})",
                 ["runs", "list", "--experiment-id", "0"], ["runs", "list", "--experiment-id", "0"]),
        "experiments": (f"CLI: deltaflow experiments list ({n_exps + 1} experiments, median of {n})",
                        ["experiments", "list"], ["experiments", "search"]),
    }
    for name, (label, df_args, ml_args) in commands.items():
        for column in stores.columns:
            if column not in stores.populated:
                continue
            with guard(res, "cli", column):
                exe = os.path.join(BIN, _lib(column))
                args = ml_args if column == "mlflow" else df_args
                procs = [stores.run(column, [exe, *args], " ".join([_lib(column), *args])) for _ in range(n)]
                med = median([p.wall_s for p in procs])
                check = ""
                if column != "mlflow" and name == "runs":
                    finished = sum(1 for line in procs[-1].stdout.splitlines() if "FINISHED" in line)
                    if finished < min(n_runs, 1000):
                        check = f" (WRONG: {finished} runs listed)"
                note = f"`{_lib(column)} {' '.join(args)}`"
                if column != "mlflow":
                    note += "; " + stores.probe_note(column, procs)
                res.put("cli", label, column, fmt_s(med) + check + _pyspark_flag(column, procs), target=T_CLI.text,
                        met=None if column == "mlflow" else ("not met" if check else _judge(T_CLI, med, column, procs)),
                        raw={"process_wall_s": [p.wall_s for p in procs], "probe": [p.probe for p in procs],
                             "stdout_lines": len(procs[-1].stdout.splitlines())},
                        note=note)


def row_pyspark_summary(res: Results, stores: ChildStores) -> None:
    """Every child of rows 9, 10 and 12 (set-up and populating children included): did it import pyspark?"""
    label = "fresh processes of rows 9, 10, 12 that imported pyspark (probe at exit)"
    for column in stores.columns:
        procs = stores.procs[column]
        if not procs:
            continue
        seen = [p for p in procs if p.probe]
        hits = sum(1 for p in seen if p.probe.get("pyspark"))
        met = None
        if column in ENGINE_COLUMNS:
            met = "-" if column != "rust" else ("yes" if hits == 0 and len(seen) == len(procs) else "not met")
        res.put("pyspark", label, column, f"{hits}/{len(procs)}" + ("" if len(seen) == len(procs) else
                                                                    f" ({len(procs) - len(seen)} unprobed)"),
                target="0 (rust)", met=met, raw={"engines_seen": sorted({e for p in seen for e in p.probe["engines"]
                                                                          if "engines" in p.probe})})
    res.put("pyspark", label, note="`'pyspark' in sys.modules` at interpreter exit (benchmarks/_probe); MLflow "
                                   "imports pyspark whenever it is installed")


# -- memory -------------------------------------------------------------------------------------
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
    from deltaflow.store.factory import get_store

    print(json.dumps({
        "points": points, "method": "deltaflow.log_metric loop (one key, step=i)",
        "engine": get_store(uri).engine.name, "pyspark_imported": "pyspark" in sys.modules,
        "start_rss": sampler.start_self, "peak_rss": sampler.peak_self,
        "peak_rss_delta": sampler.peak_self - sampler.start_self,
        "peak_children_rss": sampler.peak_children,
        "peak_total_delta": sampler.peak_total - sampler.start_self - sampler.start_children,
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "samples": sampler.samples, "setup_s": setup_s, "loop_s": loop_s, "total_s": total_s,
        "heartbeat_interval_s": os.environ.get("DELTAFLOW_HEARTBEAT_INTERVAL_S"),
    }))


def row_memory(res: Results, sizes: dict, dirs: TempDirs, args: Any, engines: list[str]) -> None:
    points = sizes["memory_points"]
    label = f"peak RSS - start RSS, {points:,} points via log_metric (fresh process)"
    label_total = "  same, incl. child processes (the Spark JVM)"
    for engine in engines:
        with guard(res, "memory", engine):
            uri = dirs.new(f"df-{engine}-memory")
            env = engine_env(engine)
            if not args.memory_heartbeats:
                # A heartbeat interval of a day: none falls due while the child runs (see README).
                env["DELTAFLOW_HEARTBEAT_INTERVAL_S"] = "86400"
            proc = run_python([os.path.join(BENCH_DIR, "bench_tracking.py"), "--child-memory", str(points),
                               "--child-uri", uri, "--stall-minutes", str(args.stall_minutes)],
                              env=env, timeout=3 * 3600)
            dirs.remove(uri)
            last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
            out = json.loads(last) if last.startswith("{") else {}
            if "stalled" in out:
                res.meta[f"memory_stall_stacks_{engine}"] = out["stacks"]
                raise RuntimeError(f"memory child hung after {out['points_logged']:,} points while {out['stalled']} "
                                   f"(stacks in meta.memory_stall_stacks_{engine})")
            if proc.returncode != 0:
                raise RuntimeError(f"memory child failed ({proc.returncode}): {proc.stderr[-3000:]}")
            if out.get("engine") != engine:
                raise RuntimeError(f"memory child used engine {out.get('engine')!r}, not {engine!r}")
            log(f"memory child [{engine}]: {out}")
            flag = " (pyspark imported!)" if engine == "rust" and out.get("pyspark_imported") else ""
            res.put("memory", label, engine, fmt_bytes(out["peak_rss_delta"]) + flag, target=T_MEMORY.text,
                    met=T_MEMORY.judge(out["peak_rss_delta"], engine), raw=out,
                    note=f"logging took {fmt_s(out['total_s'])} (loop {fmt_s(out['loop_s'])}); "
                         f"pyspark imported: {'yes' if out.get('pyspark_imported') else 'no'}")
            res.put("memory", label_total, engine, fmt_bytes(out["peak_total_delta"]) + flag, target=T_MEMORY.text,
                    met=T_MEMORY.judge(out["peak_total_delta"], engine))
    res.put("memory", label, note=f"Python process only, sampled every 50 ms; heartbeat interval "
                                  f"{'default (30 s)' if args.memory_heartbeats else '86400 s'}; MLflow not run "
                                  f"({points:,} synchronous log_metric calls would take hours)")
    res.put("memory", label_total, note="the Spark JVM is capped by spark.driver.memory (deltaflow default 2g); "
                                        "the rust engine starts no child process")
