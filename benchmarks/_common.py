"""Helpers shared by the benchmark scripts: timing, temp stores, RSS sampling, result rows and output.

Nothing here knows about deltaflow or MLflow; ``bench_tracking.py`` holds the measurements.
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


# -- result rows ---------------------------------------------------------------------------------
NA = "n/a"


@dataclass
class Row:
    key: str  # row group, as accepted by --only
    metric: str
    deltaflow: str = NA
    mlflow: str = NA
    target: str = "-"
    met: str = "-"
    raw: dict[str, Any] = field(default_factory=dict)
    note: str = ""


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


def render_table(rows: list[Row]) -> str:
    headers = ["metric", "deltaflow", "MLflow", "target", "met?"]
    data = [[r.metric, r.deltaflow, r.mlflow, r.target, r.met] for r in rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) if data else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(d) for d in data]
    notes = [f"  [{r.metric}] {r.note}" for r in rows if r.note]
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
        self.meta: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mode": mode, "argv": argv,
                                     "sizes": sizes, "environment": environment(), "errors": {}, "extra": {}}

    def add(self, row: Row) -> Row:
        self.rows.append(row)
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
