#!/usr/bin/env python
"""REST scoring: ``deltaflow models serve`` beside ``mlflow models serve`` (MLflow 3.17, ``--env-manager
local``) for the same scikit-learn model, in one run on the same machine.

One LogisticRegression (4 double features) is saved twice: by ``deltaflow.sklearn.save_model`` and by
``mlflow.sklearn.save_model``, each with the same signature. Each server runs as its own process group
with the same number of uvicorn workers (``--workers``, default 1, both servers' default) and is warmed
with 200 requests. Then, for each concurrency level (default 1, 8 and 32), that many client threads in
this process each hold one keep-alive HTTP/1.1 connection (``http.client``) and post the same
``dataframe_split`` payload (``--rows`` rows, default 1) back to back for ``--seconds`` (default 5).
Every request is timed from send to the last byte of the answer; a non-200 answer or a connection
error counts as a failure. Reported: requests/s (successful requests / wall time), p50 and p99 latency.
Targets: deltaflow's throughput above MLflow's and its p99 below MLflow's at every level.

The client threads share the machine with the server (2 cores here), equally for both servers; on a
busy machine the absolute figures are noisy and the ratio is what counts.

    python benchmarks/bench_serving.py
    python benchmarks/bench_serving.py --concurrency 1,8 --seconds 3 --workers 2 --rows 100

``run_section(...)`` returns the rows (and prints the table) for other benchmark scripts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RESULTS_DIR, environment, log, machine_load, percentile  # noqa: E402

FEATURES = ("f0", "f1", "f2", "f3")
BIN = os.path.dirname(sys.executable)
START_TIMEOUT = 180.0


@dataclass
class LevelResult:
    """One server at one concurrency level."""

    server: str
    concurrency: int
    requests: int
    failures: int
    seconds: float
    cpu_s: float = float("nan")  # CPU time the server's processes used during the level
    latencies: list[float] = field(repr=False, default_factory=list)

    @property
    def cpu_per_request(self) -> float:
        return self.cpu_s / self.requests if self.requests else float("nan")

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


@dataclass
class ServingRow:
    metric: str
    deltaflow: str
    mlflow: str
    ratio: str
    target: str
    met: str


# -- the model, saved both ways -------------------------------------------------------------------
def _models(folder: str) -> tuple[str, str, Any]:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import deltaflow.sklearn
    from deltaflow.models.infer import infer_signature

    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(500, len(FEATURES))), columns=list(FEATURES))
    labels = (frame["f0"] + frame["f1"] * 0.5 - frame["f3"] > 0).astype(int)
    model = LogisticRegression().fit(frame, labels)
    ours, theirs = os.path.join(folder, "deltaflow-model"), os.path.join(folder, "mlflow-model")
    deltaflow.sklearn.save_model(model, ours, signature=infer_signature(frame, model.predict(frame)))
    import mlflow.models
    import mlflow.sklearn

    mlflow.sklearn.save_model(model, theirs, signature=mlflow.models.infer_signature(frame, model.predict(frame)))
    return ours, theirs, frame


def _payload(frame: Any, rows: int) -> bytes:
    sample = frame.head(rows)
    return json.dumps({"dataframe_split": {"columns": list(sample.columns),
                                           "data": sample.to_numpy().tolist()}}).encode()


# -- servers ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server in its own process group (MLflow's CLI starts uvicorn as a child; workers are children)."""

    def __init__(self, name: str, command: list[str], port: int, env: dict[str, str], log_path: str) -> None:
        self.name, self.port, self.log_path = name, port, log_path
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(log_path, errors="replace") as fh:
                    raise RuntimeError(f"{name} server did not start:\n{fh.read()[-3000:]}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process and every child (uvicorn workers) so far."""
        import psutil

        total = 0.0
        try:
            root = psutil.Process(self.proc.pid)
            for proc in [root, *root.children(recursive=True)]:
                try:
                    times = proc.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        return total

    def _ping(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/ping")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group this script started
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_deltaflow(model_dir: str, workers: int, folder: str) -> ServerProcess:
    port = _free_port()
    command = [os.path.join(BIN, "deltaflow"), "models", "serve", "-m", model_dir, "--port", str(port),
               "--workers", str(workers), "--log-level", "warning"]
    env = dict(os.environ, DELTAFLOW_TRACKING_URI=os.path.join(folder, "store"))
    return ServerProcess("deltaflow", command, port, env, os.path.join(folder, "deltaflow-server.log"))


def start_mlflow(model_dir: str, workers: int, folder: str) -> ServerProcess:
    port = _free_port()
    command = [os.path.join(BIN, "mlflow"), "models", "serve", "-m", model_dir, "--port", str(port),
               "--workers", str(workers), "--env-manager", "local"]
    # MLflow's CLI runs `uvicorn` from PATH: this interpreter's bin folder first.
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return ServerProcess("MLflow", command, port, env, os.path.join(folder, "mlflow-server.log"))


# -- load ---------------------------------------------------------------------------------------------
def _client(port: int, body: bytes, stop: threading.Event, latencies: list[float], failures: list[str]) -> None:
    headers = {"Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        start = time.perf_counter()
        try:
            conn.request("POST", "/invocations", body, headers)
            response = conn.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200 or not payload.startswith(b'{"predictions"'):
                failures.append(f"{response.status}: {payload[:200]!r}")
            else:
                latencies.append(elapsed)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.close()


def measure(server: ServerProcess, body: bytes, concurrency: int, seconds: float) -> LevelResult:
    stop = threading.Event()
    per_thread: list[list[float]] = [[] for _ in range(concurrency)]
    failures: list[str] = []
    threads = [threading.Thread(target=_client, args=(server.port, body, stop, per_thread[i], failures),
                                daemon=True) for i in range(concurrency)]
    cpu_before = server.cpu_seconds()
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(120)
    wall = time.perf_counter() - start
    cpu = server.cpu_seconds() - cpu_before
    latencies = [x for chunk in per_thread for x in chunk]
    if failures:
        log(f"{server.name} c={concurrency}: {len(failures)} failed requests, first: {failures[0]}")
    return LevelResult(server.name, concurrency, len(latencies), len(failures), wall, cpu, latencies)


def _warm(server: ServerProcess, body: bytes, expected: Optional[bytes]) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    answer = b""
    for _ in range(200):
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"{server.name} answered {response.status}: {answer[:300]!r}")
    conn.close()
    if expected is not None and json.loads(answer) != json.loads(expected):
        raise RuntimeError(f"the servers disagree: deltaflow {expected[:200]!r}, {server.name} {answer[:200]!r}")
    return answer


# -- the section ------------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds == seconds else "n/a"


def rows_from(results: dict[tuple[str, int], LevelResult], levels: list[int]) -> list[ServingRow]:
    rows = []
    for c in levels:
        ours, theirs = results.get(("deltaflow", c)), results.get(("MLflow", c))
        if ours is None:
            continue
        rate_ratio = ours.rate / theirs.rate if theirs and theirs.rate else float("nan")
        p99_ratio = ours.p99 / theirs.p99 if theirs and theirs.p99 else float("nan")
        clean = ours.failures == 0
        rows.append(ServingRow(f"requests/s, {c} client(s)", f"{ours.rate:,.0f}", f"{theirs.rate:,.0f}" if theirs else
                               "not run", f"{rate_ratio:.2f}x" if rate_ratio == rate_ratio else "-", "> MLflow",
                               "yes" if clean and rate_ratio > 1 else ("not met" if theirs else "-")))
        rows.append(ServingRow(f"p50 latency, {c} client(s)", _ms(ours.p50), _ms(theirs.p50) if theirs else "not run",
                               f"{ours.p50 / theirs.p50:.2f}x" if theirs and theirs.p50 else "-", "-", "-"))
        rows.append(ServingRow(f"p99 latency, {c} client(s)", _ms(ours.p99), _ms(theirs.p99) if theirs else "not run",
                               f"{p99_ratio:.2f}x" if p99_ratio == p99_ratio else "-", "< MLflow",
                               "yes" if clean and p99_ratio < 1 else ("not met" if theirs else "-")))
        cpu_ratio = ours.cpu_per_request / theirs.cpu_per_request if theirs and theirs.cpu_per_request else float("nan")
        rows.append(ServingRow(f"server CPU per request, {c} client(s)", _ms(ours.cpu_per_request),
                               _ms(theirs.cpu_per_request) if theirs else "not run",
                               f"{cpu_ratio:.2f}x" if cpu_ratio == cpu_ratio else "-", "-", "-"))
        if ours.failures or (theirs and theirs.failures):
            rows.append(ServingRow(f"failed requests, {c} client(s)", str(ours.failures),
                                   str(theirs.failures) if theirs else "-", "-", "0", "yes" if clean else "not met"))
    return rows


def render(rows: list[ServingRow]) -> str:
    header = ServingRow("metric", "deltaflow serve", "mlflow models serve", "ratio", "target", "met?")
    table = [asdict(r) for r in [header, *rows]]
    keys = list(table[0])
    widths = {k: max(len(str(r[k])) for r in table) for k in keys}
    lines = ["| " + " | ".join(str(r[k]).ljust(widths[k]) for k in keys) + " |" for r in table]
    lines.insert(1, "|" + "|".join("-" * (widths[k] + 2) for k in keys) + "|")
    return "\n".join(lines)


def run_section(concurrency: tuple[int, ...] = (1, 8, 32), seconds: float = 5.0, workers: int = 1, rows: int = 1,
                skip_mlflow: bool = False, echo: bool = True) -> list[ServingRow]:
    """Measure both servers at each concurrency level; print the table (``echo``) and return its rows."""
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    levels = list(concurrency)
    results: dict[tuple[str, int], LevelResult] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder:
        ours_dir, theirs_dir, frame = _models(folder)
        body = _payload(frame, rows)
        starters = [("deltaflow", start_deltaflow, ours_dir)]
        if not skip_mlflow:
            starters.append(("MLflow", start_mlflow, theirs_dir))
        reference: Optional[bytes] = None
        for name, start, model_dir in starters:  # one server at a time: they do not compete for the CPU
            log(f"starting {name} ({workers} worker(s))")
            server = start(model_dir, workers, folder)
            try:
                answer = _warm(server, body, reference)
                reference = reference or answer
                for c in levels:
                    result = results[(name, c)] = measure(server, body, c, seconds)
                    log(f"{name} c={c}: {result.rate:,.0f} req/s, p50 {_ms(result.p50)}, p99 {_ms(result.p99)}, "
                        f"server CPU {_ms(result.cpu_per_request)}/request")
            finally:
                server.stop()
    table = rows_from(results, levels)
    if echo:
        print(f"\nREST scoring, scikit-learn LogisticRegression, {rows} row(s) per request, {workers} worker(s), "
              f"{seconds:g} s per level")
        print(render(table))
    _save(results, levels, {"seconds": seconds, "workers": workers, "rows": rows})
    return table


def _save(results: dict[tuple[str, int], LevelResult], levels: list[int], sizes: dict[str, Any]) -> None:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"serving-{time.strftime('%Y%m%d-%H%M%S')}.json")
    data = {"sizes": sizes, "levels": levels, "environment": environment(), "load": machine_load(),
            "results": [{"server": r.server, "concurrency": r.concurrency, "requests": r.requests,
                         "failures": r.failures, "seconds": r.seconds, "rate": r.rate, "p50": r.p50, "p99": r.p99,
                         "cpu_s": r.cpu_s, "cpu_per_request": r.cpu_per_request}
                        for r in results.values()]}
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
    log(f"results written to {path}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="load time per level")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, both servers")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args(argv)
    try:
        levels = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
    except ValueError:
        parser.error(f"--concurrency {args.concurrency!r} must be comma-separated whole numbers")
    if not levels or min(levels) < 1 or args.seconds <= 0 or args.workers < 1 or args.rows < 1:
        parser.error("concurrency levels, --seconds, --workers and --rows must be positive")
    run_section(levels, args.seconds, args.workers, args.rows, args.skip_mlflow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
