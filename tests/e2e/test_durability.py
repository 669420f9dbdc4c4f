"""What a call acknowledges is durable, and a crash leaves nothing that reads disagree about:
end_run commits before it returns, a failed exit-time flush is a non-zero exit, a flush torn
between its two commits is healed, and a row no table can hold is set apart, not fatal."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

WORKERS = Path(__file__).parent / "workers"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "DELTAFLOW_ENGINE": "rust", **extra}


def _script(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300,
                          env=_env(DELTAFLOW_FLUSH_INTERVAL_S="60"))


def test_end_run_is_durable_before_it_returns(tmp_path):
    """os._exit right after the with-block skips every exit hook: the run must already be there."""
    store = tmp_path / "store"
    done = _script(tmp_path, f"""
        import os, deltaflow
        deltaflow.set_tracking_uri({str(store)!r})
        with deltaflow.start_run() as run:
            deltaflow.log_param("p", "1")
            for i in range(500):
                deltaflow.log_metric("m", float(i), step=i)
        print(run.info.run_id, flush=True)
        os._exit(0)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    from deltaflow import DeltaflowClient

    client = DeltaflowClient(str(store), engine="rust")
    run = client.get_run(done.stdout.strip())
    assert run.info.status == "FINISHED" and run.info.end_time is not None
    assert run.data.params == {"p": "1"} and run.data.metrics == {"m": 499.0}
    assert len(client.get_metric_history(run.info.run_id, "m")) == 500


def test_unwritable_store_end_run_raises_and_exit_is_non_zero(tmp_path):
    """A store that cannot be written (its metrics table replaced by a file; root ignores
    permission bits, so no chmod): end_run raises instead of returning, and a process that still
    holds unwritten records at exit exits 74 (EX_IOERR), not 0."""
    store = tmp_path / "store"
    done = _script(tmp_path, f"""
        import shutil, deltaflow
        from deltaflow.errors import StorageError
        deltaflow.set_tracking_uri({str(store)!r})
        with deltaflow.start_run():
            deltaflow.log_metric("warmup", 1.0)
        shutil.rmtree({str(store / "tables" / "metrics")!r})
        open({str(store / "tables" / "metrics")!r}, "w").close()
        deltaflow.start_run()
        deltaflow.log_metric("m", 1.0)
        try:
            deltaflow.end_run()
        except StorageError as exc:
            print("RAISED", type(exc).__name__, flush=True)
        print("END OF SCRIPT", flush=True)
    """)
    assert "RAISED StorageError" in done.stdout, (done.stdout, done.stderr[-3000:])
    assert "END OF SCRIPT" in done.stdout
    assert done.returncode == 74, (done.returncode, done.stderr[-3000:])
    assert "records are lost" in done.stderr


def test_crashes_mid_flush_never_leave_latest_values_behind_history(tmp_path):
    """SIGKILL a writer that commits every 200 steps at random moments, 6 times on one store: once
    healed, every run's latest value (get_run, search) is the last step of its history."""
    from deltaflow import DeltaflowClient
    from deltaflow.store.recovery import heal_torn_flushes

    store = str(tmp_path / "store")
    rng = random.Random(7)
    run_ids = []
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(WORKERS / "metric_streamer.py"), store],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        try:
            line = proc.stdout.readline()
            assert line.startswith("RUN"), proc.stderr.read()[-3000:]
            run_ids.append(line.split()[1])
            time.sleep(rng.uniform(0.3, 1.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
    from deltaflow.config import resolve_location

    heal_torn_flushes(resolve_location(store), window=None, grace_s=0.0)
    client = DeltaflowClient(store, engine="rust")
    for run_id in run_ids:
        history = client.get_metric_history(run_id, "m")
        steps = [m.step for m in history]
        assert steps == list(range(len(steps)))  # a prefix: no holes, no duplicates
        if steps:
            assert client.get_run(run_id).data.metrics["m"] == float(steps[-1]), run_id
            found = client.search_runs(["0"], f"metrics.m >= {steps[-1]}", max_results=100)
            assert run_id in {r.info.run_id for r in found}


def test_a_torn_flush_is_healed_on_the_next_read(tmp_path):
    """The state a kill between the two commits leaves (metrics committed under a flush's marker,
    latest_metrics not): a reader's first read heals it, and only once."""
    from deltalake import DeltaTable

    from deltaflow import DeltaflowClient, Metric
    from deltaflow.config import resolve_location
    from deltaflow.store import _arrow
    from deltaflow.store.factory import make_engine
    from deltaflow.store.schema import TABLES

    store = str(tmp_path / "store")
    writer = DeltaflowClient(store, engine="rust")
    run_id = writer.create_run("0").info.run_id
    writer.log_batch(run_id, metrics=[Metric("m", 1.0, 1, 0)], synchronous=True)
    engine = make_engine(resolve_location(store), "rust")
    rows = {"run_id": [run_id] * 3, "experiment_id": ["0"] * 3, "key": ["m"] * 3,
            "value": [5.0, 7.0, float("nan")], "step": [5, 7, 6], "timestamp": [2, 3, 4]}
    engine.append("metrics", _arrow.table(rows, TABLES["metrics"].schema), app_id="crashed-writer", version=1)
    latest = DeltaTable(f"{store}/tables/latest_metrics")
    before = latest.version()

    reader = DeltaflowClient(store, engine="rust")
    time.sleep(5.1)  # past the healer's grace period for a live writer between its two commits
    reader._store._healed_at = None
    assert reader.get_run(run_id).data.metrics["m"] == 7.0
    assert [r.info.run_id for r in reader.search_runs(["0"], "metrics.m = 7")] == [run_id]
    latest.update_incremental()
    assert latest.version() == before + 1
    assert latest.history(1)[0]["userMetadata"] == "deltaflow:crashed-writer:1"
    from deltaflow.store.recovery import heal_torn_flushes

    assert heal_torn_flushes(resolve_location(store), grace_s=0.0) == 0  # paired now: nothing to do


def test_a_row_no_table_can_hold_is_set_apart_not_fatal(tmp_path):
    """The flusher's second line behind argument validation: a bad row in the buffer goes to
    dead_letters with its error, and every other row of the flush (another run's 5,000 metrics)
    is committed."""
    from deltalake import DeltaTable

    from deltaflow import DeltaflowClient

    store = str(tmp_path / "store")
    client = DeltaflowClient(store, engine="rust")
    victim = client.create_run("0").info.run_id
    other = client.create_run("0").info.run_id
    client.flush()
    s = client._store
    s.buffer.add_rows("runs", [{"run_id": victim, "experiment_id": "0", "status": "FINISHED",
                                "end_time": "x", "writer_id": s.writer_id, **s._event()}])
    for i in range(5000):
        client.log_metric(other, "m", float(i), step=i)
    client.flush()
    assert len(client.get_metric_history(other, "m")) == 5000
    assert client.get_run(victim).info.status == "RUNNING"  # the bad status row was not applied
    dead = DeltaTable(f"{store}/tables/dead_letters").to_pyarrow_table().to_pylist()
    assert len(dead) == 1 and dead[0]["table_name"] == "runs"
    assert '"end_time": "x"' in dead[0]["row_json"] and dead[0]["error"]
    assert s.buffer.dead_lettered == 1


def test_a_flush_retried_after_its_second_table_failed_does_not_append_the_first_again(tmp_path):
    """metrics commits, latest_metrics fails (its folder is briefly replaced by a file), the batch is
    retried: the retry commits latest_metrics only — the metric history holds every point once."""
    from deltalake import DeltaTable

    from deltaflow import DeltaflowClient, Metric

    store = tmp_path / "store"
    client = DeltaflowClient(str(store), engine="rust")
    run_id = client.create_run("0").info.run_id
    client.log_batch(run_id, metrics=[Metric("m", 0.0, 1, 0)], synchronous=True)
    latest_dir, parked = store / "tables" / "latest_metrics", tmp_path / "parked"
    metrics_version = DeltaTable(str(store / "tables" / "metrics")).version()
    latest_dir.rename(parked)
    latest_dir.write_text("not a table")
    try:
        client.log_batch(run_id, metrics=[Metric("m", float(i), 2, i) for i in range(1, 101)])
        client._store.buffer.request_flush()
        deadline = time.time() + 60
        while client._store.buffer._failures == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert client._store.buffer._failures >= 1  # latest_metrics' append failed ...
        assert DeltaTable(str(store / "tables" / "metrics")).version() == metrics_version + 1  # ... after metrics'
    finally:
        latest_dir.unlink()
        parked.rename(latest_dir)
    client.flush()
    steps = [m.step for m in client.get_metric_history(run_id, "m")]
    assert steps == list(range(101))  # each point once
    assert client.get_run(run_id).data.metrics["m"] == 100.0
