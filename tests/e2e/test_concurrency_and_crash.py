"""Many processes on one store at once, and a writer killed mid-run: nothing lost or corrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

WORKERS = Path(__file__).parent / "workers"


def _env(**extra):
    env = dict(os.environ)
    # Compaction due every 10 files: writers of both engines compact (under the lease) while others write.
    env.update({"DELTAFLOW_FLUSH_ROWS": "400", "DELTAFLOW_FLUSH_INTERVAL_S": "0.5",
                "DELTAFLOW_DRIVER_MEMORY": "700m", "DELTAFLOW_COMPACT_MIN_FILES": "10", **extra})
    return env


# Which engine each of the four writers uses: all delta-rs, and two of each at once (the two Spark
# writers also conflict with each other, so four Spark writers would add only three JVM starts).
WRITER_ENGINES = {"rust": ["rust"] * 4, "mixed": ["spark", "rust", "rust", "spark"]}


def _metric_rows(engine_name: str, store: str):
    from deltaflow.store.factory import make_engine
    from deltaflow.config import resolve_location

    engine = make_engine(resolve_location(store), engine_name)
    return engine.read("metrics", columns=["run_id", "key", "step"]).to_pylist()


@pytest.mark.parametrize("mix", list(WRITER_ENGINES))
def test_four_processes_write_the_same_store(tmp_path, spark, mix):
    store = str(tmp_path / "store")
    import deltaflow
    from deltaflow import DeltaflowClient

    # No tables exist yet: the four workers race to create every table and the Default experiment.
    procs = [subprocess.Popen([sys.executable, str(WORKERS / "concurrent_writer.py"), store, str(i), "5000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(DELTAFLOW_ENGINE=engine))
             for i, engine in enumerate(WRITER_ENGINES[mix])]
    expected: dict[str, str] = {}
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        expected.update(json.loads(out.strip().splitlines()[-1]))
    assert len(expected) == 20

    for reader in ("spark", "rust"):  # both engines read what all writers wrote
        rows = _metric_rows(reader, store)
        assert len(rows) == 20_000, reader
        assert len({(r["run_id"], r["key"], r["step"]) for r in rows}) == 20_000, reader  # none duplicated
        client = DeltaflowClient(store, engine=reader)
        runs = {r.info.run_id: r for r in client.search_runs(["0"], max_results=100)}
        assert set(runs) == set(expected), reader
        for run_id, status in expected.items():
            assert runs[run_id].info.status == status, (reader, run_id)
            assert runs[run_id].data.metrics["m"] == 999.0  # latest by step
    deltaflow.set_tracking_uri(None)


@pytest.mark.parametrize("victim_engine, reader_engine", [("spark", "rust"), ("rust", "spark"), ("rust", "rust")])
def test_sigkill_after_flush_keeps_flushed_data(tmp_path, spark, victim_engine, reader_engine):
    store = str(tmp_path / "store")
    env = _env(DELTAFLOW_HEARTBEAT_INTERVAL_S="1", DELTAFLOW_ENGINE=victim_engine)
    proc = subprocess.Popen([sys.executable, str(WORKERS / "crash_victim.py"), store],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        deadline = time.time() + 600
        while not line.startswith("FLUSHED") and time.time() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()[-3000:]
        run_id = line.split()[1]
        time.sleep(3)  # let some unflushed-then-flushed tail commits happen (or not)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    from deltaflow import DeltaflowClient
    from deltaflow.store.maintenance import mark_dead_runs

    os.environ["DELTAFLOW_HEARTBEAT_INTERVAL_S"] = "1"
    try:
        client = DeltaflowClient(store, engine=reader_engine)
        history = client.get_metric_history(run_id, "flushed")
        assert [m.step for m in history] == list(range(1000))  # every flushed point, once
        run = client.get_run(run_id)
        assert run.data.params == {"p": "kept"}
        assert run.info.status == "RUNNING"
        time.sleep(3.5)  # > 3 missed heartbeats
        assert not client.get_run(run_id).info.is_alive
        tail = client.get_metric_history(run_id, "tail")
        assert [m.step for m in tail] == list(range(len(tail)))  # a prefix, no holes, no duplicates
        assert mark_dead_runs(client._store) == [run_id]
        killed = client.get_run(run_id).info
        assert killed.status == "KILLED" and killed.end_time is not None
    finally:
        del os.environ["DELTAFLOW_HEARTBEAT_INTERVAL_S"]
