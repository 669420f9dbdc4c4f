"""Helpers shared by the benchmark scripts: timing, temp stores, RSS sampling, timed child processes,
result rows (one column per deltaflow engine, plus MLflow) and output.

Nothing here knows about deltaflow or MLflow (the child-process probe, ``_probe/sitecustomize.py``, only
looks at ``sys.modules``); ``_harness.py`` and the ``*_rows.py`` modules hold the measurements.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(BENCH_DIR, "results")

_T0 = time.monotonic()


def log(msg: str) -> None:
    """Progress line on stderr, prefixed with the elapsed time of the whole benchmark."""
    elapsed = time.monotonic() - _T0
    print(f"[{elapsed:8.1f}s] {msg}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


class TempDirs:
    """Fresh temp folders under one base; removed on ``cleanup`` unless ``keep``."""

    def __init__(self, base: Optional[str] = None, keep: bool = False) -> None:
        self.base = tempfile.mkdtemp(prefix="deltaflow-bench-", dir=base)
        self.keep = keep

    def new(self, prefix: str) -> str:
        return tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.base)

    def remove(self, path: str) -> None:
        if not self.keep:
            shutil.rmtree(path, ignore_errors=True)

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)


def dir_size_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


class RssSampler:
    """Samples this process's RSS, and its children's (the Spark JVM), every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.start_self = self._proc.memory_info().rss
        self.start_children = self._children_rss()
        self.peak_self = self.start_self
        self.peak_total = self.start_self + self.start_children
        self.peak_children = self.start_children
        self.samples = 0

    def _children_rss(self) -> int:
        total = 0
        try:
            children = self._proc.children(recursive=True)
        except Exception:  # noqa: BLE001
            return 0
        for child in children:
            try:
                total += child.memory_info().rss
            except Exception:  # noqa: BLE001 - a child may exit between listing and reading
                pass
        return total

    def sample(self) -> None:
        own = self._proc.memory_info().rss
        kids = self._children_rss()
        self.peak_self = max(self.peak_self, own)
        self.peak_children = max(self.peak_children, kids)
        self.peak_total = max(self.peak_total, own + kids)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def run_python(code_or_args: list[str], env: Optional[dict[str, str]] = None, timeout: float = 600,
               cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


# -- timed child processes -----------------------------------------------------------------------
PROBE_DIR = os.path.join(BENCH_DIR, "_probe")


@dataclass
class ProcResult:
    """A finished child: wall time from just before spawn to exit, its output, and what the probe saw."""

    wall_s: float
    t_spawn: float  # time.monotonic() just before spawning (CLOCK_MONOTONIC: comparable across processes)
    returncode: int
    stdout: str
    stderr: str
    probe: dict[str, Any]

    def marker(self, name: str) -> Optional[float]:
        """Seconds from spawn to the child's ``print(name, time.monotonic())`` line, if it printed one."""
        for line in self.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == name:
                return float(parts[1]) - self.t_spawn
        return None

    def check(self, what: str) -> "ProcResult":
        if self.returncode != 0:
            raise RuntimeError(f"{what} failed ({self.returncode}): {self.stderr[-2500:]}")
        return self


def timed_process(cmd: list[str], env: dict[str, str], cwd: Optional[str] = None,
                  timeout: float = 900) -> ProcResult:
    """Run ``cmd`` to completion with the probe loaded (it records ``sys.modules`` at exit)."""
    env = dict(env)
    env["PYTHONPATH"] = PROBE_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    probe_dir = tempfile.mkdtemp(prefix="bench-probe-")
    probe_path = env["BENCH_PROBE_OUT"] = os.path.join(probe_dir, "probe.json")
    try:
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
        wall = time.monotonic() - t0
        probe: dict[str, Any] = {}
        if os.path.exists(probe_path):
            with open(probe_path) as fh:
                probe = json.load(fh)
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    return ProcResult(wall, t0, proc.returncode, proc.stdout, proc.stderr, probe)


# -- result rows ---------------------------------------------------------------------------------
NA = "n/a"
# Result columns: one per deltaflow engine, then MLflow. Rows store their cells by these keys.
ENGINE_COLUMNS = ("spark", "rust")
COLUMN_TITLES = {"spark": "deltaflow-spark", "rust": "deltaflow-rust", "mlflow": "MLflow (sqlite)"}


@dataclass
class Row:
    """One table line; ``cells``/``met``/``raw``/``notes`` are keyed by column ('spark', 'rust', 'mlflow')."""

    key: str  # row group, as accepted by --only
    metric: str
    cells: dict[str, str] = field(default_factory=dict)
    target: str = "-"
    met: dict[str, str] = field(default_factory=dict)  # engine -> "yes" / "not met" / "n/a ..." / "-"
    raw: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # "" = the whole row

    def note_text(self) -> str:
        parts = [self.notes[""]] if self.notes.get("") else []
        order = {c: i for i, c in enumerate(COLUMN_TITLES)}
        parts += [f"{COLUMN_TITLES.get(c, c)}: {n}"
                  for c, n in sorted(self.notes.items(), key=lambda cn: order.get(cn[0], 99)) if c and n]
        return "; ".join(parts)


def verdict(value: Optional[float], op: str, threshold: float) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    ok = value <= threshold if op == "<=" else value < threshold if op == "<" else value >= threshold
    return "yes" if ok else "not met"


def fmt_s(seconds: Optional[float]) -> str:
    if seconds is None or seconds != seconds:
        return NA
    if seconds < 0.001:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def fmt_ms(seconds: Optional[float]) -> str:
    if seconds is None or seconds != seconds:
        return NA
    return f"{seconds * 1e3:.4f} ms"


def fmt_rate(per_s: Optional[float], unit: str) -> str:
    if per_s is None or per_s != per_s:
        return NA
    return f"{per_s:,.0f} {unit}/s"


def fmt_bytes(n: Optional[float]) -> str:
    if n is None or n != n:
        return NA
    if abs(n) >= 1024 ** 3:
        return f"{n / 1024 ** 3:.2f} GiB"
    return f"{n / 1024 ** 2:.0f} MiB"


def render_table(rows: list[Row], engines: list[str]) -> str:
    """metric | one column per engine | MLflow | target | one "met?" column per engine; then the notes."""
    headers = (["metric"] + [COLUMN_TITLES[e] for e in engines] + [COLUMN_TITLES["mlflow"], "target"]
               + [f"met? {e}" for e in engines])
    data = [[r.metric] + [r.cells.get(e, NA) for e in engines] + [r.cells.get("mlflow", NA), r.target]
            + [r.met.get(e, "-") for e in engines] for r in rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) if data else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(d) for d in data]
    notes = [f"  [{r.metric}] {r.note_text()}" for r in rows if r.note_text()]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "hostname": platform.node(),
    }
    try:
        import psutil

        info["memory_total_bytes"] = psutil.virtual_memory().total
    except Exception:  # noqa: BLE001
        pass
    info["deltaflow_env"] = {k: v for k, v in os.environ.items() if k.startswith(("DELTAFLOW_", "MLFLOW_"))}
    return info


class Results:
    """Collects rows and rewrites the JSON file after every row, so a crash keeps what was measured."""

    def __init__(self, mode: str, argv: list[str], sizes: dict[str, Any]) -> None:
        os.makedirs(RESULTS_DIR, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = os.path.join(RESULTS_DIR, f"tracking-{stamp}.json")
        self.rows: list[Row] = []
        self._index: dict[tuple[str, str], Row] = {}
        self.meta: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mode": mode, "argv": argv,
                                     "sizes": sizes, "environment": environment(), "errors": {}, "extra": {}}

    def put(self, key: str, metric: str, column: Optional[str] = None, value: Optional[str] = None, *,
            target: Optional[str] = None, met: Optional[str] = None, raw: Any = None,
            note: Optional[str] = None) -> Row:
        """Set one cell of the row ``(key, metric)``, creating the row on first use, then save the JSON.

        Rows are found by their label, so each engine (and MLflow) fills its own column of a shared row.
        ``column`` None addresses the row itself (a row-wide ``note`` or ``raw``).
        """
        row = self._index.get((key, metric))
        if row is None:
            row = self._index[(key, metric)] = Row(key, metric)
            self.rows.append(row)
        col = column or ""
        if column is not None and value is not None:
            row.cells[column] = value
        if target is not None:
            row.target = target
        if met is not None and column is not None:
            row.met[column] = met
        if raw is not None:
            row.raw[col] = raw
        if note:
            row.notes[col] = note
        self.save()
        return row

    def error(self, key: str, message: str) -> None:
        self.meta["errors"][key] = message
        self.save()

    def save(self) -> None:
        self.meta["saved"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        payload = {"meta": self.meta, "rows": [asdict(r) for r in self.rows]}
        tmp = self.path + ".part"
        with open(tmp, "w") as fh:
            json.dump(payload, fh, indent=2, default=str)
        os.replace(tmp, self.path)


def timed_repeat(fn: Callable[[], Any], warmups: int = 1, repeats: int = 3) -> tuple[float, list[float], Any]:
    """Median of ``repeats`` timed calls after ``warmups`` untimed ones; also returns the last result."""
    result = None
    for _ in range(warmups):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return median(times), times, result


def thread_stacks() -> str:
    """Every Python thread's stack, for diagnosing a hang."""
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    out = []
    for ident, frame in sys._current_frames().items():
        out.append(f"--- thread {names.get(ident, ident)}")
        out.extend(line.rstrip() for line in traceback.format_stack(frame))
    return "\n".join(out)


class Watchdog:
    """Calls ``on_stall(what, stacks)`` once when armed and ``beat()`` has not been called for ``stall_s``."""

    def __init__(self, stall_s: float, on_stall: Callable[[str, str], None]) -> None:
        self.stall_s = stall_s
        self._on_stall = on_stall
        self._what: Optional[str] = None
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="bench-watchdog", daemon=True)
        self._thread.start()

    def arm(self, what: str) -> None:
        self._last = time.monotonic()
        self._what = what

    def beat(self) -> None:
        self._last = time.monotonic()

    def disarm(self) -> None:
        self._what = None

    def _run(self) -> None:
        while True:
            time.sleep(5)
            what = self._what
            if what is not None and time.monotonic() - self._last > self.stall_s:
                self._what = None
                self._on_stall(what, thread_stacks())


def machine_load() -> dict[str, Any]:
    """Load average and other JVM/Python processes on the machine (not ours): they skew the timings."""
    info: dict[str, Any] = {"loadavg": os.getloadavg()}
    try:
        import psutil

        me = psutil.Process()
        ours = {me.pid} | {c.pid for c in me.children(recursive=True)}
        foreign = []
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            if proc.info["pid"] in ours:
                continue
            name = proc.info["name"] or ""
            if name.startswith(("java", "python")):
                foreign.append(" ".join(proc.info["cmdline"] or [name])[:120])
        info["foreign_java_python"] = foreign
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info
