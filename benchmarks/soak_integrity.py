#!/usr/bin/env python
"""Integrity soak: concurrent writers on both engines, compaction pressure, random SIGKILLs and a search
loop on one fresh store for a set time, then an exact audit of everything that was acknowledged.

Processes, all started by this script on one store in a temp folder:

* writers (``--rust-writers``, ``--spark-writers``): each logs runs of ``--points-per-run`` steps of two
  metrics (``m`` = step, ``n`` = -step) in ``log_batch`` calls of ``--flush-every`` steps, each followed by
  ``client.flush()``; only after ``flush()`` returned does it append one line per metric key
  (run id, key, last step) to its own ledger file and fsync it. After ``set_terminated(run, "FINISHED")``
  returns it appends a status line. A writer killed by the soak is restarted as a new process (with a new
  ledger file), which starts new runs.
* an optimize loop: ``maintenance.optimize(store, tables=[metrics, latest_metrics, runs], zorder=False,
  vacuum_hours=None)`` over and over (a busy compaction lease is counted, not an error).
* a search loop: ``search_runs(["0"], "metrics.m >= 100")``, counting queries, errors and results that
  break the filter.
* every ``--kill-every`` seconds on average (uniform 0.5x-1.5x), SIGKILL of one writer's process group
  (a Spark writer's JVM with it), chosen among writers that have acknowledged at least one flush.

Compaction pressure: ``DELTAFLOW_COMPACT_MIN_FILES=--min-files`` for every process, so the writers'
automatic compactions and the optimize loop race each other all the time.

At the end everything is stopped (a stop file: writers finish their batch and end their run), torn
flushes are healed (``recovery.heal_torn_flushes(location, window=None, grace_s=0)``) and the audit runs:
read with delta-rs directly (rows counted per (run_id, key, step), latest values, dead letters, Delta
history), and through each engine's client in a child process (``get_metric_history``, ``get_run``,
``search_runs``). It prints a figures table and a checks table and exits 1 if any check fails.

    python benchmarks/soak_integrity.py                                   # 3 rust + 1 spark writers, 120 s
    python benchmarks/soak_integrity.py --spark-writers 0 --seconds 60    # no JVM anywhere
    python benchmarks/soak_integrity.py --seed 7 --keep                   # reproduce; keep the store

Results (figures, checks, every sample failure) go to ``benchmarks/results/soak-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
KEYS = ("m", "n")
TS0 = 1_700_000_000_000
SEARCH_FILTER = "metrics.m >= 100"
OPTIMIZE_TABLES = ["metrics", "latest_metrics", "runs"]
HISTORY_TABLES = ("metrics", "latest_metrics", "runs")
REPAIR_MARKER = "deltaflow-compact-repair"


def value_of(key: str, step: int) -> float:
    """The value a writer logs for ``key`` at ``step`` (the audit checks every stored value against it)."""
    return float(step) if key == "m" else -float(step)


def stamp() -> str:
    return time.strftime("%H:%M:%S")


def say(msg: str) -> None:
    print(f"[{stamp()}] {msg}", file=sys.stderr, flush=True)


# =================================================================================================
# Child roles (this script run with --role ...)
# =================================================================================================
def _client(store: str, engine: str) -> Any:
    from deltaflow import DeltaflowClient

    client = DeltaflowClient(store, engine=engine)
    actual = client._store.engine.name
    if actual != engine:
        raise SystemExit(f"asked for engine {engine!r}, the store uses {actual!r}")
    return client


def role_writer(store: str, engine: str, ledger_path: str, stop: str, name: str, points: int, every: int) -> None:
    """Log runs until the stop file appears; ledger lines only after the call that acknowledges them."""
    from deltaflow import Metric

    client = _client(store, engine)
    fd = os.open(ledger_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.getpid()

    def ledger(records: list[dict[str, Any]]) -> None:
        now = round(time.time(), 3)
        data = "".join(json.dumps({"pid": pid, "t": now, **r}) + "\n" for r in records).encode()
        os.write(fd, data)
        os.fsync(fd)

    r = 0
    while not os.path.exists(stop):
        run_id = client.create_run("0", run_name=f"{name}-{pid}-r{r}").info.run_id
        r += 1
        for start in range(0, points, every):
            if os.path.exists(stop):
                break
            steps = range(start, min(start + every, points))
            client.log_batch(run_id, metrics=[Metric(k, value_of(k, i), TS0 + i, i) for i in steps for k in KEYS])
            client.flush()
            ledger([{"run_id": run_id, "key": k, "step": steps[-1]} for k in KEYS])
        client.set_terminated(run_id, "FINISHED")
        ledger([{"run_id": run_id, "status": "FINISHED"}])
    os.close(fd)


def role_optimizer(store: str, stop: str, out: str) -> None:
    from deltaflow.errors import ConcurrentModification
    from deltaflow.store import maintenance

    client = _client(store, "rust")
    passes = busy = 0
    errors: list[str] = []
    while not os.path.exists(stop):
        try:
            maintenance.optimize(client._store, tables=OPTIMIZE_TABLES, zorder=False, vacuum_hours=None)
            passes += 1
        except ConcurrentModification:
            busy += 1  # another process held a table's compaction lease for the whole wait
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(exc).__name__}: {exc}"[:500])
            time.sleep(0.5)
        time.sleep(0.05)
    with open(out, "w") as fh:
        json.dump({"passes": passes, "lease_busy": busy, "errors": errors}, fh)


def role_searcher(store: str, stop: str, out: str, engine: str) -> None:
    client = _client(store, engine)
    queries = results = 0
    errors: list[str] = []
    wrong: list[str] = []
    while not os.path.exists(stop):
        try:
            runs = client.search_runs(["0"], SEARCH_FILTER, max_results=200)
            queries += 1
            results += len(runs)
            for run in runs:
                m = run.data.metrics.get("m")
                if m is None or m < 100:
                    wrong.append(f"{run.info.run_id}: metrics.m = {m}")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            queries += 1
            errors.append(f"{type(exc).__name__}: {exc}"[:500])
        time.sleep(0.1)
    with open(out, "w") as fh:
        json.dump({"queries": queries, "results": results, "errors": errors, "wrong": wrong[:50],
                   "wrong_count": len(wrong)}, fh)


def role_audit_client(store: str, engine: str, runs_path: str, out: str) -> None:
    """Every run through one engine's client: history, latest values, status, and search."""
    with open(runs_path) as fh:
        run_ids: list[str] = json.load(fh)
    t0 = time.monotonic()
    client = _client(store, engine)
    report: dict[str, Any] = {}
    for run_id in run_ids:
        entry: dict[str, Any] = {}
        try:
            run = client.get_run(run_id)
        except Exception as exc:  # noqa: BLE001 - a run the table has history for must exist
            report[run_id] = {"error": f"get_run: {type(exc).__name__}: {exc}"[:500]}
            continue
        entry["status"] = run.info.status
        entry["latest"] = {k: run.data.metrics.get(k) for k in KEYS}
        for k in KEYS:
            hist = client.get_metric_history(run_id, k)
            steps = [m.step for m in hist]
            counts = Counter(steps)
            entry[k] = {
                "n": len(steps),
                "distinct": len(counts),
                "duplicates": sum(c - 1 for c in counts.values() if c > 1),
                "prefix": sorted(counts) == list(range(len(counts))),
                "bad_values": sum(1 for m in hist if m.value != value_of(k, m.step)),
                "last_step": max(steps) if steps else None,
            }
        report[run_id] = entry
    searched: dict[str, dict[str, Optional[float]]] = {}
    token = None
    while True:
        page = client.search_runs(["0"], "", max_results=1000, page_token=token)
        for run in page:
            searched[run.info.run_id] = {k: run.data.metrics.get(k) for k in KEYS}
        token = page.token
        if not token:
            break
    filtered = {run.info.run_id for run in client.search_runs(["0"], SEARCH_FILTER, max_results=50000)}
    with open(out, "w") as fh:
        json.dump({"engine": engine, "runs": report, "search": searched, "filtered": sorted(filtered),
                   "seconds": time.monotonic() - t0}, fh)


# =================================================================================================
# The soak
# =================================================================================================
@dataclass
class Writer:
    slot: str
    engine: str
    proc: subprocess.Popen
    ledger: str
    log: str
    started: float
    killed: bool = False


@dataclass
class Soak:
    args: argparse.Namespace
    work: str
    store: str
    stop: str
    env: dict[str, str]
    rng: random.Random
    writers: dict[str, Writer] = field(default_factory=dict)
    finished: list[Writer] = field(default_factory=list)
    incarnation: Counter = field(default_factory=Counter)
    kills: Counter = field(default_factory=Counter)

    def child(self, argv: list[str], engine: str, log_name: str) -> tuple[subprocess.Popen, str]:
        env = dict(self.env, DELTAFLOW_ENGINE=engine)
        log_path = os.path.join(self.work, "logs", log_name)
        fh = open(log_path, "w")
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv], stdout=fh, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)  # own process group: a kill takes the JVM too
        fh.close()
        return proc, log_path

    def start_writer(self, slot: str, engine: str) -> None:
        self.incarnation[slot] += 1
        n = self.incarnation[slot]
        ledger = os.path.join(self.work, "ledgers", f"{slot}-{n}.jsonl")
        proc, log_path = self.child(["--role", "writer", "--store", self.store, "--engine", engine, "--ledger", ledger,
                                     "--stop", self.stop, "--name", f"{slot}.{n}",
                                     "--points-per-run", str(self.args.points_per_run),
                                     "--flush-every", str(self.args.flush_every)],
                                    engine, f"writer-{slot}-{n}.log")
        self.writers[slot] = Writer(slot, engine, proc, ledger, log_path, time.monotonic())

    def kill_one(self) -> Optional[str]:
        eligible = [w for w in self.writers.values()
                    if w.proc.poll() is None and os.path.exists(w.ledger) and os.path.getsize(w.ledger) > 0]
        if not eligible:
            return None
        victim = self.rng.choice(sorted(eligible, key=lambda w: w.slot))
        try:
            os.killpg(victim.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        victim.proc.wait()
        victim.killed = True
        self.kills[victim.engine] += 1
        self.finished.append(victim)
        self.start_writer(victim.slot, victim.engine)
        return victim.slot


def source_state() -> dict[str, str]:
    """git HEAD, ``git status --short src`` and a digest of deltaflow's source files as imported by children:
    the code under test, and whether it changed while the soak ran."""
    import hashlib

    repo = os.path.dirname(BENCH_DIR)
    state: dict[str, str] = {}
    for key, cmd in (("head", ["git", "-C", repo, "rev-parse", "--short", "HEAD"]),
                     ("status_src", ["git", "-C", repo, "status", "--short", "src"])):
        try:
            state[key] = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception as exc:  # noqa: BLE001 - informational only
            state[key] = f"unavailable: {exc}"
    import deltaflow

    digest = hashlib.sha256()
    root = os.path.dirname(deltaflow.__file__)
    for folder, _dirs, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as fh:
                    digest.update(name.encode() + fh.read())
    state["src_digest"] = digest.hexdigest()[:16]
    return state


def read_ledgers(folder: str) -> dict[str, Any]:
    """Acknowledged state from every ledger: last step per (run, key), finished runs, unreadable lines."""
    acked: dict[tuple[str, str], int] = {}
    finished: set[str] = set()
    flushes = lines = bad = 0
    by_engine: Counter = Counter()
    for name in sorted(os.listdir(folder)):
        engine = "spark" if name.startswith("spark") else "rust"
        with open(os.path.join(folder, name)) as fh:
            for line in fh:
                lines += 1
                try:
                    rec = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if "status" in rec:
                    finished.add(rec["run_id"])
                    continue
                key = (rec["run_id"], rec["key"])
                acked[key] = max(acked.get(key, -1), int(rec["step"]))
                if rec["key"] == KEYS[0]:
                    flushes += 1
                    by_engine[engine] += 1
    return {"acked": acked, "finished": finished, "flushes": flushes, "by_engine": by_engine, "lines": lines,
            "bad_lines": bad}


def delta_history_figures(store: str) -> dict[str, Any]:
    """Compactions, repairs and files removed twice, from each table's Delta history and commit files."""
    from deltalake import DeltaTable

    out: dict[str, Any] = {}
    for table in HISTORY_TABLES:
        path = os.path.join(store, "tables", table)
        history = DeltaTable(path).history()
        removed: Counter = Counter()
        log_dir = os.path.join(path, "_delta_log")
        for name in os.listdir(log_dir):
            if not name.endswith(".json") or name.startswith("_"):
                continue
            with open(os.path.join(log_dir, name)) as fh:
                for line in fh:
                    action = json.loads(line)
                    if "remove" in action:
                        removed[action["remove"]["path"]] += 1
        out[table] = {
            "versions": len(history),
            "compactions": sum(1 for h in history if h.get("operation") == "OPTIMIZE"),
            "repairs": sum(1 for h in history if str(h.get("userMetadata") or "").startswith(REPAIR_MARKER)),
            "files_removed_twice": sum(1 for n in removed.values() if n > 1),
        }
    return out


def direct_audit(store: str) -> dict[str, Any]:
    """The metrics, latest_metrics and dead_letters tables read with delta-rs, no deltaflow code."""
    from deltalake import DeltaTable

    metrics = DeltaTable(os.path.join(store, "tables", "metrics")).to_pyarrow_table(
        columns=["run_id", "key", "step", "value"])
    cols = [metrics.column(c).to_pylist() for c in ("run_id", "key", "step", "value")]
    counts: Counter = Counter()
    steps: dict[tuple[str, str], set[int]] = defaultdict(set)
    bad_values = []
    for run_id, key, step, value in zip(*cols):
        counts[(run_id, key, step)] += 1
        steps[(run_id, key)].add(step)
        if value != value_of(key, step):
            bad_values.append((run_id, key, step, value))
    latest = DeltaTable(os.path.join(store, "tables", "latest_metrics")).to_pyarrow_table(
        columns=["run_id", "key", "step", "timestamp", "value"])
    best: dict[tuple[str, str], tuple] = {}
    for run_id, key, step, ts, value in zip(*(latest.column(c).to_pylist()
                                              for c in ("run_id", "key", "step", "timestamp", "value"))):
        order = (step, ts, value)
        if (run_id, key) not in best or order > best[(run_id, key)]:
            best[(run_id, key)] = order
    dead_path = os.path.join(store, "tables", "dead_letters")
    dead = DeltaTable(dead_path).to_pyarrow_table().num_rows if DeltaTable.is_deltatable(dead_path) else 0
    return {"rows": metrics.num_rows, "counts": counts, "steps": steps, "bad_values": bad_values,
            "latest": best, "dead_letters": dead}


def torn_pairs(direct: dict[str, Any]) -> list[str]:
    """(run, key) pairs whose latest_metrics maximum is not the last step of their history."""
    torn = []
    for (run_id, key), steps in sorted(direct["steps"].items()):
        last = max(steps)
        have = direct["latest"].get((run_id, key))
        if have is None or have[0] != last or have[2] != value_of(key, last):
            torn.append(f"{run_id}/{key}: history to step {last}, latest_metrics {have}")
    return torn


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rust-writers", type=int, default=3)
    p.add_argument("--spark-writers", type=int, default=1)
    p.add_argument("--seconds", type=float, default=120.0, help="how long writers run and are killed")
    p.add_argument("--kill-every", type=float, default=8.0,
                   help="mean seconds between SIGKILLs (each wait uniform in 0.5x-1.5x); 0: no kills")
    p.add_argument("--min-files", type=int, default=10, help="DELTAFLOW_COMPACT_MIN_FILES for every process")
    p.add_argument("--flush-every", type=int, default=100, help="steps per log_batch + flush()")
    p.add_argument("--points-per-run", type=int, default=2000, help="steps per run before it is ended")
    p.add_argument("--lease-s", type=float, default=None,
                   help="DELTAFLOW_COMPACT_LEASE_S for every process (default: the library's)")
    p.add_argument("--search-engine", default="rust", choices=("rust", "spark"))
    p.add_argument("--audit-engines", default=None,
                   help="engines whose clients audit the store (default: rust, plus spark if any spark writer)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", help="base folder for the store (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the store and logs afterwards")
    # child roles
    p.add_argument("--role", choices=("writer", "optimizer", "searcher", "audit-client"), help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--ledger", help=argparse.SUPPRESS)
    p.add_argument("--stop", help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--runs", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.role == "writer":
        role_writer(args.store, args.engine, args.ledger, args.stop, args.name, args.points_per_run, args.flush_every)
        return 0
    if args.role == "optimizer":
        role_optimizer(args.store, args.stop, args.out)
        return 0
    if args.role == "searcher":
        role_searcher(args.store, args.stop, args.out, args.engine)
        return 0
    if args.role == "audit-client":
        role_audit_client(args.store, args.engine, args.runs, args.out)
        return 0
    return run_soak(args, sys.argv[1:] if argv is None else argv)


def run_soak(args: argparse.Namespace, argv: list[str]) -> int:
    import shutil

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="deltaflow-soak-", dir=args.workdir)
    store = os.path.join(work, "store")
    stop = os.path.join(work, "stop")
    for sub in ("ledgers", "logs", "out"):
        os.makedirs(os.path.join(work, sub))
    env = dict(os.environ)
    env["DELTAFLOW_COMPACT_MIN_FILES"] = str(args.min_files)
    if args.lease_s is not None:
        env["DELTAFLOW_COMPACT_LEASE_S"] = str(args.lease_s)
    env.setdefault("DELTAFLOW_DRIVER_MEMORY", "1g")
    env.setdefault("DELTAFLOW_USER", "soak")
    env.setdefault("DELTAFLOW_WAREHOUSE_DIR", os.path.join(work, "warehouse"))
    env["PYTHONUNBUFFERED"] = "1"
    os.environ.update({k: env[k] for k in ("DELTAFLOW_COMPACT_MIN_FILES", "DELTAFLOW_USER")})
    audit_engines = ([e.strip() for e in args.audit_engines.split(",") if e.strip()] if args.audit_engines
                     else ["rust"] + (["spark"] if args.spark_writers > 0 else []))
    cmd = f"{sys.executable} benchmarks/soak_integrity.py " + " ".join(argv)
    if args.seed is None:
        cmd += f" --seed {seed}"
    say(f"seed {seed}; store {store}; reproduce: {cmd}")

    # The store and all its tables exist before any process starts (optimize never creates one).
    from deltaflow import DeltaflowClient
    from deltaflow.store.schema import TABLES

    setup = DeltaflowClient(store, engine="rust")
    setup._store.engine.ensure_tables(list(TABLES.values()))
    setup._store.default_experiment_id()
    setup.flush()

    src_before = source_state()
    load_before = os.getloadavg()[0]
    soak = Soak(args, work, store, stop, env, rng)
    t_start = time.monotonic()
    slots = [(f"rust{i}", "rust") for i in range(args.rust_writers)] + \
            [(f"spark{i}", "spark") for i in range(args.spark_writers)]
    for slot, engine in slots:
        soak.start_writer(slot, engine)
    opt_out = os.path.join(work, "out", "optimizer.json")
    search_out = os.path.join(work, "out", "searcher.json")
    optimizer, _ = soak.child(["--role", "optimizer", "--store", store, "--stop", stop, "--out", opt_out],
                              "rust", "optimizer.log")
    searcher, _ = soak.child(["--role", "searcher", "--store", store, "--stop", stop, "--out", search_out,
                              "--engine", args.search_engine], args.search_engine, "searcher.log")

    crashed: list[str] = []  # writers that exited on their own before the stop file
    deadline = t_start + args.seconds
    next_kill = time.monotonic() + (rng.uniform(0.5, 1.5) * args.kill_every if args.kill_every > 0 else 1e18)
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        for w in list(soak.writers.values()):
            if w.proc.poll() is not None:
                crashed.append(f"{w.slot} pid {w.proc.pid} exit {w.proc.returncode}: log {w.log}")
                soak.finished.append(w)
                soak.start_writer(w.slot, w.engine)
        if time.monotonic() >= next_kill:
            victim = soak.kill_one()
            if victim is not None:
                next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * args.kill_every
        if time.monotonic() - last_report > 15:
            last_report = time.monotonic()
            say(f"t={time.monotonic() - t_start:.0f}s kills {dict(soak.kills)} "
                f"flushes acked {read_ledgers(os.path.join(work, 'ledgers'))['flushes']}")

    say("stopping: writers finish their batch and end their run")
    with open(stop, "w"):
        pass
    stop_timeout = 300.0
    not_stopped: list[str] = []
    bad_exits: list[str] = []
    for w in soak.writers.values():
        try:
            w.proc.wait(timeout=max(1.0, stop_timeout - (time.monotonic() - deadline)))
        except subprocess.TimeoutExpired:
            not_stopped.append(f"{w.slot} pid {w.proc.pid}")
            os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait()
            w.killed = True
        if w.proc.returncode != 0 and not w.killed:
            bad_exits.append(f"{w.slot} pid {w.proc.pid} exit {w.proc.returncode}: log {w.log}")
        soak.finished.append(w)
    aux: dict[str, Any] = {}
    for name, proc, out in (("optimizer", optimizer, opt_out), ("searcher", searcher, search_out)):
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            not_stopped.append(name)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.returncode != 0 or not os.path.exists(out):
            bad_exits.append(f"{name} exit {proc.returncode}: log {os.path.join(work, 'logs', name + '.log')}")
            aux[name] = {}
        else:
            with open(out) as fh:
                aux[name] = json.load(fh)
    soak_seconds = time.monotonic() - t_start
    src_after = source_state()
    load_after = os.getloadavg()[0]
    say(f"all stopped after {soak_seconds:.0f}s; auditing")

    # -- the audit ---------------------------------------------------------------------------------
    from deltaflow.config import resolve_location
    from deltaflow.store.recovery import heal_torn_flushes

    ledgers = read_ledgers(os.path.join(work, "ledgers"))
    before = direct_audit(store)
    torn_before = torn_pairs(before)
    healed = heal_torn_flushes(resolve_location(store), window=None, grace_s=0)
    direct = direct_audit(store)
    history = delta_history_figures(store)
    counts, steps = direct["counts"], direct["steps"]
    duplicates = {k: n for k, n in counts.items() if n > 1}
    missing: list[str] = []
    acked_points = missing_points = 0
    for (run_id, key), last in sorted(ledgers["acked"].items()):
        acked_points += last + 1
        have = steps.get((run_id, key), set())
        lost = [s for s in range(last + 1) if s not in have]
        missing_points += len(lost)
        if lost:
            missing.append(f"{run_id}/{key}: {len(lost)} acknowledged steps missing, first {lost[:5]}")
    gaps = [f"{run_id}/{key}: {len(s)} steps, max {max(s)}" for (run_id, key), s in sorted(steps.items())
            if len(s) != max(s) + 1]
    torn_after = torn_pairs(direct)
    run_ids = sorted({r for r, _ in steps} | {r for r, _ in ledgers["acked"]} | ledgers["finished"])

    client_reports: dict[str, Any] = {}
    client_problems: dict[str, list[str]] = {}
    for engine in audit_engines:
        runs_file = os.path.join(work, "out", "runs.json")
        with open(runs_file, "w") as fh:
            json.dump(run_ids, fh)
        out = os.path.join(work, "out", f"audit-{engine}.json")
        proc, log_path = soak.child(["--role", "audit-client", "--store", store, "--engine", engine,
                                     "--runs", runs_file, "--out", out], engine, f"audit-{engine}.log")
        proc.wait()
        problems: list[str] = []
        if proc.returncode != 0 or not os.path.exists(out):
            with open(log_path) as fh:
                problems.append(f"audit client exit {proc.returncode}: {fh.read()[-1500:]}")
            client_problems[engine] = problems
            continue
        with open(out) as fh:
            rep = json.load(fh)
        client_reports[engine] = {"seconds": rep["seconds"], "runs": len(rep["runs"])}
        for run_id in run_ids:
            entry = rep["runs"][run_id]
            if "error" in entry:
                problems.append(f"{run_id}: {entry['error']}")
                continue
            searched = rep["search"].get(run_id)
            if searched is None:
                problems.append(f"{run_id}: not returned by search_runs")
            for key in KEYS:
                h = entry[key]
                acked = ledgers["acked"].get((run_id, key))
                table_steps = steps.get((run_id, key), set())
                if h["duplicates"] or h["bad_values"] or not h["prefix"]:
                    problems.append(f"{run_id}/{key}: history {h}")
                if h["distinct"] != len(table_steps):
                    problems.append(f"{run_id}/{key}: history has {h['distinct']} steps, the table {len(table_steps)}")
                if acked is not None and (h["last_step"] is None or h["last_step"] < acked):
                    problems.append(f"{run_id}/{key}: history ends at {h['last_step']}, acknowledged {acked}")
                want = None if h["last_step"] is None else value_of(key, h["last_step"])
                if entry["latest"][key] != want:
                    problems.append(f"{run_id}/{key}: get_run says {entry['latest'][key]}, history ends with {want}")
                if searched is not None and searched.get(key) != want:
                    problems.append(f"{run_id}/{key}: search_runs says {searched.get(key)}, history ends with {want}")
            last_m = entry["m"]["last_step"]
            if (last_m is not None and last_m >= 100) != (run_id in rep["filtered"]):
                problems.append(f"{run_id}: '{SEARCH_FILTER}' {'missed' if last_m is not None and last_m >= 100 else 'returned'}"
                                f" it (history ends at {last_m})")
            if run_id in ledgers["finished"] and entry["status"] != "FINISHED":
                problems.append(f"{run_id}: ended (acknowledged) but status {entry['status']}")
        client_problems[engine] = problems

    opt, srch = aux.get("optimizer", {}), aux.get("searcher", {})
    writers_started = sum(soak.incarnation.values())
    compactions = {t: history[t]["compactions"] for t in HISTORY_TABLES}
    figures = [
        ("writers (rust + spark)", f"{args.rust_writers} + {args.spark_writers}"),
        ("writer processes started", f"{writers_started}"),
        ("SIGKILLs (rust / spark)", f"{sum(soak.kills.values())} ({soak.kills['rust']} / {soak.kills['spark']})"),
        ("flushes acknowledged (rust / spark)",
         f"{ledgers['flushes']:,} ({ledgers['by_engine']['rust']:,} / {ledgers['by_engine']['spark']:,})"),
        ("points acknowledged (both keys)", f"{acked_points:,}"),
        ("runs (ended and acknowledged)", f"{len(run_ids)} ({len(ledgers['finished'])})"),
        ("metric rows in the table", f"{direct['rows']:,}"),
        ("duplicates (rows beyond one per run/key/step)", f"{sum(n - 1 for n in duplicates.values()):,}"),
        ("acknowledged points missing", f"{missing_points:,}"),
        ("runs/keys with gaps in history", f"{len(gaps)}"),
        ("torn before the final heal (run/key)", f"{len(torn_before)}"),
        ("flushes healed by the final heal", f"{healed}"),
        ("torn after heal (run/key)", f"{len(torn_after)}"),
        ("dead letters", f"{direct['dead_letters']}"),
        ("optimize passes (lease busy, errors)",
         f"{opt.get('passes', 'n/a')} ({opt.get('lease_busy', 'n/a')}, {len(opt.get('errors', [])) if opt else 'n/a'})"),
        ("compactions in Delta history (metrics / latest / runs)",
         f"{compactions['metrics']} / {compactions['latest_metrics']} / {compactions['runs']}"),
        ("repair commits / files removed twice",
         f"{sum(history[t]['repairs'] for t in HISTORY_TABLES)} / "
         f"{sum(history[t]['files_removed_twice'] for t in HISTORY_TABLES)}"),
        ("search queries (errors, wrong results)",
         f"{srch.get('queries', 'n/a')} ({len(srch.get('errors', [])) if srch else 'n/a'}, "
         f"{srch.get('wrong_count', 'n/a')})"),
        ("client audits (engine: runs, seconds)",
         ", ".join(f"{e}: {r['runs']}, {r['seconds']:.0f}s" for e, r in client_reports.items()) or "none"),
        ("code under test (HEAD, src digest)",
         f"{src_before['head']}{' + local changes' if src_before['status_src'] else ''}, {src_before['src_digest']}"
         + ("" if src_after["src_digest"] == src_before["src_digest"] else
            f" -> {src_after['src_digest']} (CHANGED during the soak)")),
        ("machine load average, 1 min (start / stop)", f"{load_before:.1f} / {load_after:.1f}"),
        ("seconds (soak incl. stop / audit)", f"{soak_seconds:.0f} / {time.monotonic() - t_start - soak_seconds:.0f}"),
    ]
    checks = [
        ("every acknowledged point present", not missing, f"{len(missing)} run/keys short"),
        ("no duplicate (run_id, key, step) rows", not duplicates, f"{len(duplicates)} keys duplicated"),
        ("every stored value is the one logged", not direct["bad_values"], f"{len(direct['bad_values'])} wrong"),
        ("history of each run/key is a gap-free prefix 0..n", not gaps, f"{len(gaps)} with gaps"),
        ("latest_metrics (delta-rs) = last step of history", not torn_after, f"{len(torn_after)} torn"),
        ("dead_letters empty", direct["dead_letters"] == 0, f"{direct['dead_letters']} rows"),
        ("search loop: no errors, no wrong results",
         bool(srch) and not srch.get("errors") and not srch.get("wrong_count"),
         f"{len(srch.get('errors', []))} errors, {srch.get('wrong_count')} wrong" if srch else "no report"),
        ("optimize loop: no errors", bool(opt) and not opt.get("errors"),
         f"{len(opt.get('errors', []))} errors" if opt else "no report"),
        ("at least one compaction in metrics' history", compactions["metrics"] > 0, f"{compactions['metrics']}"),
        ("stopped writers and loops exited 0", not bad_exits and not not_stopped,
         f"{len(bad_exits)} bad exits, {len(not_stopped)} not stopping"),
        ("no writer died unless killed", not crashed, f"{len(crashed)} died"),
        ("ledger lines all readable", ledgers["bad_lines"] == 0, f"{ledgers['bad_lines']} unreadable"),
    ]
    for engine in audit_engines:
        probs = client_problems.get(engine, ["not run"])
        checks.append((f"{engine} client: history, get_run, search_runs, status agree", not probs,
                       f"{len(probs)} problems"))

    print()
    print(f"deltaflow integrity soak — {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, seed {seed}, "
          f"--seconds {args.seconds:g} --kill-every {args.kill_every:g} --min-files {args.min_files} "
          f"--flush-every {args.flush_every} --points-per-run {args.points_per_run}"
          + (f" --lease-s {args.lease_s:g}" if args.lease_s is not None else ""))
    print(_table(["figure", "value"], [list(f) for f in figures]))
    print()
    print(_table(["check", "result", "detail"], [[c, "PASS" if ok else "FAIL", d] for c, ok, d in checks]))
    failed = [c for c, ok, _ in checks if not ok]
    samples = {
        "missing": missing[:20], "duplicates": [f"{k}: {n}" for k, n in list(duplicates.items())[:20]],
        "bad_values": [str(v) for v in direct["bad_values"][:20]], "gaps": gaps[:20],
        "torn_before": torn_before[:20], "torn_after": torn_after[:20], "bad_exits": bad_exits,
        "not_stopped": not_stopped, "crashed": crashed, "optimizer_errors": opt.get("errors", [])[:20],
        "search_errors": srch.get("errors", [])[:20], "search_wrong": srch.get("wrong", [])[:20],
        "client_problems": {e: v[:20] for e, v in client_problems.items()},
    }
    if failed:
        print("\nFAILED:", "; ".join(failed))
        for name, items in samples.items():
            if items:
                print(f"  {name}: {json.dumps(items, indent=1)[:3000]}")
        print(f"reproduce: {cmd}")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({"argv": argv, "seed": seed, "source_before": src_before, "source_after": src_after, "reproduce": cmd, "figures": figures,
                   "checks": [{"check": c, "ok": ok, "detail": d} for c, ok, d in checks],
                   "history": history, "client_audits": client_reports, "samples": samples,
                   "optimizer": opt, "searcher": {k: v for k, v in srch.items() if k != "wrong"},
                   "work": work if args.keep or failed else None}, fh, indent=2, default=str)
    print(f"\nresults: {path}" + (f"; store kept at {work}" if args.keep or failed else ""))
    if not args.keep and not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
