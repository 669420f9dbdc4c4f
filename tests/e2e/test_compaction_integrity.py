"""Compaction never duplicates or loses a row: concurrent writers that each compact, `deltaflow
optimize` running beside them, and a compaction that races one made outside deltaflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

pytestmark = pytest.mark.e2e

WORKERS = Path(__file__).parent / "workers"


def _metric_rows(store: str) -> list[tuple]:
    from deltalake import DeltaTable

    table = DeltaTable(f"{store}/tables/metrics").to_pyarrow_table(columns=["run_id", "key", "step"])
    return list(zip(*(table.column(c).to_pylist() for c in ("run_id", "key", "step"))))


def test_writers_compacting_at_once_and_optimize_never_duplicate(tmp_path):
    """3 delta-rs writers committing every 100 points with compaction due every 10 files, plus an
    optimize loop: every acknowledged point is in the table exactly once (before the lease this
    made hundreds of thousands of rows out of 30,000)."""
    store = str(tmp_path / "store")
    stop = tmp_path / "stop"
    env = {**os.environ, "DELTAFLOW_ENGINE": "rust", "DELTAFLOW_COMPACT_MIN_FILES": "10"}
    # The store exists before the optimizer starts (optimize never creates one by itself).
    from deltaflow import DeltaflowClient

    DeltaflowClient(store, engine="rust")._store.default_experiment_id()
    optimizer = subprocess.Popen([sys.executable, str(WORKERS / "optimize_loop.py"), store, str(stop)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    writers = [subprocess.Popen([sys.executable, str(WORKERS / "flushing_writer.py"), store, str(i), "5", "2000", "100"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for i in range(3)]
    expected: dict[str, str] = {}
    try:
        for p in writers:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:]
            expected.update(json.loads(out.strip().splitlines()[-1]))
    finally:
        stop.touch()
        out, err = optimizer.communicate(timeout=300)
    assert optimizer.returncode == 0, err[-3000:]
    assert int(out.strip()) >= 1

    rows = _metric_rows(store)
    counts = Counter(rows)
    assert len(expected) == 15
    assert not [k for k, n in counts.items() if n > 1][:5]  # nothing duplicated
    assert len(rows) == 30_000  # nothing lost: 3 writers x 5 runs x 2,000 points
    assert {r for r, _, _ in rows} == set(expected)
    from deltalake import DeltaTable

    history = DeltaTable(f"{store}/tables/metrics").history()
    compactions = [h for h in history if h.get("operation") == "OPTIMIZE"]
    assert len(compactions) >= 3  # the pressure was real: many compactions ran
    client = DeltaflowClient(store, engine="rust")
    for run_id in expected:
        assert [m.step for m in client.get_metric_history(run_id, "m")] == list(range(2000))
        assert expected[run_id] == "FINISHED"


def _small_files_table(store: str, files: int = 20, rows_per_file: int = 100) -> tuple[str, int]:
    """A store whose metrics table has ``files`` small files (one commit each)."""
    from deltaflow import DeltaflowClient

    client = DeltaflowClient(store, engine="rust")
    run_id = client.create_run("0").info.run_id
    for f in range(files):
        client.log_batch(run_id, metrics=[
            __import__("deltaflow").Metric("m", float(f * rows_per_file + i), 1_700_000_000_000 + i,
                                           f * rows_per_file + i) for i in range(rows_per_file)],
            synchronous=True)
    client.flush()
    return run_id, files * rows_per_file


def test_compaction_racing_an_outside_compaction_is_repaired(tmp_path, monkeypatch):
    """A compaction outside deltaflow (plain delta-rs here; a Spark OPTIMIZE or a holder that
    outlived its lease alike) commits between our compactor's read and its commit: delta-rs lets
    both remove the same files, the audit sees the double remove and takes the extra copies out."""
    from deltalake import DeltaTable

    from deltaflow import DeltaflowClient
    from deltaflow.config import resolve_location
    from deltaflow.store.compaction import Compactor

    monkeypatch.setenv("DELTAFLOW_COMPACT_MIN_FILES", "1000")  # no automatic compaction meanwhile
    store = str(tmp_path / "store")
    run_id, total = _small_files_table(store)
    path = f"{store}/tables/metrics"
    ours = DeltaTable(path)  # our compactor's snapshot: read before the outside compaction commits
    DeltaTable(path).optimize.compact()  # the outside compaction wins the race
    assert DeltaTable(path).to_pyarrow_table().num_rows == total

    compactor = Compactor(resolve_location(store))
    result = compactor.compact_holding_lease("metrics", ours, (), token="test")
    assert result.files_removed >= 20  # delta-rs committed our compaction of the same files
    assert result.rows_repaired == total  # every row had been made live twice, and was taken out once
    table = DeltaTable(path).to_pyarrow_table()
    assert table.num_rows == total
    assert sorted(table.column("step").to_pylist()) == list(range(total))
    client = DeltaflowClient(store, engine="rust")
    assert [m.step for m in client.get_metric_history(run_id, "m")] == list(range(total))


def test_repair_keeps_legitimate_duplicates_and_rows_of_other_runs(tmp_path, monkeypatch):
    """The repair removes one copy per doubled row only: a point the user logged twice stays twice,
    rows of runs not in the doubled files are untouched, NaN values pair up like any other."""
    from deltalake import DeltaTable

    from deltaflow import DeltaflowClient, Metric
    from deltaflow.config import resolve_location
    from deltaflow.store.compaction import Compactor

    monkeypatch.setenv("DELTAFLOW_COMPACT_MIN_FILES", "1000")
    store = str(tmp_path / "store")
    client = DeltaflowClient(store, engine="rust")
    a = client.create_run("0").info.run_id
    b = client.create_run("0").info.run_id
    for i in range(6):
        client.log_batch(a, metrics=[Metric("m", float("nan") if i == 2 else 1.0, 5, 0)] * 2, synchronous=True)
    path = f"{store}/tables/metrics"
    ours = DeltaTable(path)
    DeltaTable(path).optimize.compact()
    client.log_batch(b, metrics=[Metric("m", 7.0, 5, 0)], synchronous=True)  # lands after both read
    Compactor(resolve_location(store)).compact_holding_lease("metrics", ours, (), token="test")
    table = DeltaTable(path).to_pyarrow_table()
    assert table.column("run_id").to_pylist().count(a) == 12  # 6 batches x the same point twice
    assert table.column("run_id").to_pylist().count(b) == 1


def test_compaction_racing_a_spark_optimize_is_repaired(tmp_path, monkeypatch, spark):
    """Spark's OPTIMIZE (or auto-compaction a session conf forces on) commits first; delta-rs
    commits our compaction of the same files after it: the audit repairs the doubled rows. (The
    other order is safe by itself: delta-spark refuses a double remove.)"""
    from delta.tables import DeltaTable as SparkDeltaTable
    from deltalake import DeltaTable

    from deltaflow.config import resolve_location
    from deltaflow.store.compaction import Compactor

    monkeypatch.setenv("DELTAFLOW_COMPACT_MIN_FILES", "1000")
    store = str(tmp_path / "store")
    _, total = _small_files_table(store, files=8)
    path = f"{store}/tables/metrics"
    ours = DeltaTable(path)
    SparkDeltaTable.forPath(spark, path).optimize().executeCompaction()
    result = Compactor(resolve_location(store)).compact_holding_lease("metrics", ours, (), token="test")
    assert result.rows_repaired == total
    assert spark.read.format("delta").load(path).count() == total
    assert DeltaTable(path).to_pyarrow_table().num_rows == total
