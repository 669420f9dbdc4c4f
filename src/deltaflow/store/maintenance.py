"""Store maintenance: purging deleted runs (gc), marking dead runs, compaction/Z-order and VACUUM.

Lease-guarded automatic compaction (compaction.py) keeps small files bounded during normal use; ``optimize`` is the
deeper pass: Z-ORDER on the columns searches filter by, then VACUUM with a retention that never
goes below Delta's safe default unless forced, so concurrent readers never lose files under them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from deltaflow.entities import LifecycleStage, RunStatus, heartbeat_timeout_s
from deltaflow.errors import InvalidArgument
from deltaflow.store.engine import Where
from deltaflow.store.fold import fold_runs
from deltaflow.store.schema import LEASE_TABLE, TABLES

__all__ = ["GcReport", "gc", "mark_dead_runs", "optimize", "DEFAULT_VACUUM_HOURS"]

_log = logging.getLogger(__name__)
DEFAULT_VACUUM_HOURS = 168.0  # Delta's own safe default: 7 days
_RUN_TABLES = ("metrics", "latest_metrics", "params", "tags", "inputs", "runs")


@dataclass
class GcReport:
    run_ids: list[str] = field(default_factory=list)
    experiment_ids: list[str] = field(default_factory=list)
    artifact_uris: list[str] = field(default_factory=list)


def _deleted_since(rows: list[dict[str, Any]], id_column: str) -> dict[str, int]:
    """id -> event_time of the lifecycle event that deleted it (only ids currently deleted)."""
    last: dict[str, tuple[tuple[int, int], str]] = {}
    for row in rows:
        stage = row.get("lifecycle_stage")
        if stage is None:
            continue
        order = (row["event_time"], row["seq"])
        cur = last.get(row[id_column])
        if cur is None or order > cur[0]:
            last[row[id_column]] = (order, stage)
    return {k: v[0][0] for k, v in last.items() if v[1] == LifecycleStage.DELETED}


def gc(store: Any, older_than_ms: Optional[int] = None, run_ids: Optional[Sequence[str]] = None,
       experiment_ids: Optional[Sequence[str]] = None, dry_run: bool = False) -> GcReport:
    """Permanently remove deleted runs (and deleted experiments with all their runs) and their artifacts.

    ``older_than_ms``: only what was deleted before this epoch-ms time. Explicit ``run_ids`` /
    ``experiment_ids`` must be deleted already, or InvalidArgument is raised and nothing is removed.
    """
    from deltaflow.artifacts import get_artifact_repository

    store.flush()
    engine = store.engine
    run_rows = engine.read("runs", Where(), ["run_id", "experiment_id", "lifecycle_stage", "artifact_uri",
                                             "event_time", "seq"]).to_pylist()
    exp_rows = engine.read("experiments").to_pylist()
    deleted_runs = _deleted_since(run_rows, "run_id")
    deleted_exps = _deleted_since(exp_rows, "experiment_id")
    cutoff = older_than_ms if older_than_ms is not None else int(time.time() * 1000) + 1
    if run_ids is not None:
        missing = [r for r in run_ids if r not in deleted_runs]
        if missing:
            raise InvalidArgument(f"runs {missing[:5]} are not deleted; delete them before gc purges them")
        target_runs = set(run_ids)
    else:
        target_runs = {r for r, t in deleted_runs.items() if t < cutoff}
    if experiment_ids is not None:
        missing = [e for e in experiment_ids if e not in deleted_exps]
        if missing:
            raise InvalidArgument(f"experiments {missing[:5]} are not deleted; delete them before gc purges them")
        target_exps = set(experiment_ids)
    elif run_ids is None:
        target_exps = {e for e, t in deleted_exps.items() if t < cutoff}
    else:
        target_exps = set()
    states = fold_runs(run_rows)
    target_runs |= {r for r, s in states.items() if s["experiment_id"] in target_exps}
    report = GcReport(run_ids=sorted(target_runs), experiment_ids=sorted(target_exps),
                      artifact_uris=sorted({states[r]["artifact_uri"] for r in target_runs
                                            if r in states and states[r]["artifact_uri"]}))
    if dry_run or not (target_runs or target_exps):
        return report
    # Artifacts first: if we crash between the two steps the run rows still point at what is left,
    # and a second gc finishes the job; the reverse order would leak unreachable artifact folders.
    for uri in report.artifact_uris:
        try:
            get_artifact_repository(uri).delete_artifacts()
        except Exception as exc:  # noqa: BLE001 - a missing folder must not stop the purge
            _log.warning("could not delete artifacts at %s: %s", uri, exc)
    ids = sorted(target_runs)
    for chunk_start in range(0, len(ids), 5000):
        chunk = ids[chunk_start:chunk_start + 5000]
        for table in _RUN_TABLES:
            engine.delete_where(table, Where.of(run_id=chunk))
    if target_exps:
        exp_ids = sorted(target_exps)
        engine.delete_where("experiment_tags", Where.of(experiment_id=exp_ids))
        engine.delete_where("experiments", Where.of(experiment_id=exp_ids))
    for run_id in ids:
        store._runs.pop(run_id, None)
    store._experiment_cache.clear()
    return report


def mark_dead_runs(store: Any, timeout_s: Optional[float] = None, dry_run: bool = False) -> list[str]:
    """End RUNNING runs whose writer stopped heartbeating as KILLED (end_time = last heartbeat)."""
    timeout_s = heartbeat_timeout_s() if timeout_s is None else timeout_s
    store.flush()
    rows = store.engine.read("runs").to_pylist()
    now = int(time.time() * 1000)
    dead = []
    for run_id, state in fold_runs(rows).items():
        if state["status"] != RunStatus.RUNNING or state["lifecycle_stage"] != LifecycleStage.ACTIVE:
            continue
        last = state["heartbeat_time"] or state["start_time"] or 0
        if now - last > timeout_s * 1000 and run_id not in store._active:
            dead.append((run_id, state["experiment_id"], last))
    if not dry_run:
        from deltaflow.store.rust_engine import supports

        if supports(store.location):
            # Dead writers may have died between a flush's two commits: heal over the whole history.
            from deltaflow.store.recovery import heal_torn_flushes

            heal_torn_flushes(store.location, window=None, grace_s=0.0)
        for run_id, experiment_id, last in dead:
            store.buffer.add_rows("runs", [{"run_id": run_id, "experiment_id": experiment_id,
                                            "status": RunStatus.KILLED, "end_time": last,
                                            "writer_id": store.writer_id, **store._event()}])
        store.flush()
    return [d[0] for d in dead]


def optimize(store: Any, tables: Optional[Sequence[str]] = None, zorder: bool = True,
             vacuum_hours: Optional[float] = DEFAULT_VACUUM_HOURS, force: bool = False) -> list[dict[str, Any]]:
    """Compact (Z-ordered) every table, then VACUUM files older than ``vacuum_hours``."""
    names = list(tables or (t for t in TABLES if t != LEASE_TABLE))
    unknown = [t for t in names if t not in TABLES or t == LEASE_TABLE]
    if unknown:
        raise InvalidArgument(f"unknown tables {unknown}; the store's tables are {', '.join(TABLES)}")
    if vacuum_hours is not None and vacuum_hours < DEFAULT_VACUUM_HOURS and not force:
        raise InvalidArgument(
            f"vacuum retention {vacuum_hours}h is below the safe {DEFAULT_VACUUM_HOURS:.0f}h: readers and "
            "writers still using older table versions would fail. Pass force=True (--force) if no job runs"
        )
    store.flush()
    engine = store.engine
    engine.ensure_tables([TABLES[t] for t in names])
    results = []
    for table in names:
        result = engine.optimize(table, TABLES[table].zorder_by if zorder else ())
        if vacuum_hours is not None:
            engine.vacuum(table, vacuum_hours, force=force)
            result["files_after_vacuum"] = engine.file_count(table)
        results.append(result)
    return results
