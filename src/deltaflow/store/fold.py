"""Folding event rows into current state, in plain Python (engine-neutral).

Point reads (a run, a few runs, all experiments) fetch raw rows with a filter and fold them here;
searches fold inside the engine. Both follow the same rules, and tests compare them:

* run and experiment attributes: latest non-null value by ``(event_time, seq)``;
* tags: latest value by ``(event_time, seq)``; a NULL value is a deletion;
* params: the first value logged wins (they are immutable);
* latest metric: max by ``(step, timestamp, value)``, NaN above every number.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from deltaflow.store.engine import EXPERIMENT_STATE_COLUMNS, RUN_STATE_COLUMNS

__all__ = ["fold_runs", "fold_experiments", "fold_tags", "fold_params", "fold_latest_metrics"]

_RUN_LAST = ("run_name", "user_id", "status", "start_time", "end_time", "artifact_uri", "lifecycle_stage")


def _order(row: dict[str, Any]) -> tuple[int, int]:
    return (row["event_time"], row["seq"])


def fold_runs(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=_order):
        current = state.get(row["run_id"])
        if current is None:
            current = {c: None for c in RUN_STATE_COLUMNS}
            current["run_id"] = row["run_id"]
            current["experiment_id"] = row["experiment_id"]
            state[row["run_id"]] = current
        for column in _RUN_LAST:
            if row.get(column) is not None:
                current[column] = row[column]
        hb = row.get("heartbeat_time")
        if hb is not None and (current["heartbeat_time"] is None or hb > current["heartbeat_time"]):
            current["heartbeat_time"] = hb
    return state


def fold_experiments(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=_order):
        current = state.get(row["experiment_id"])
        if current is None:
            current = {c: None for c in EXPERIMENT_STATE_COLUMNS}
            current["experiment_id"] = row["experiment_id"]
            state[row["experiment_id"]] = current
        for column in ("name", "artifact_location", "lifecycle_stage"):
            if row.get(column) is not None:
                current[column] = row[column]
        created = row.get("creation_time")
        if created is not None and (current["creation_time"] is None or created < current["creation_time"]):
            current["creation_time"] = created
        current["last_update_time"] = row["event_time"]
    return state


def fold_tags(rows: Iterable[dict[str, Any]], id_column: str) -> dict[str, dict[str, str]]:
    latest: dict[tuple[str, str], Any] = {}
    for row in sorted(rows, key=_order):
        latest[(row[id_column], row["key"])] = row["value"]
    out: dict[str, dict[str, str]] = {}
    for (owner, key), value in latest.items():
        if value is not None:
            out.setdefault(owner, {})[key] = value
    return out


def fold_params(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for row in sorted(rows, key=_order):
        out.setdefault(row["run_id"], {}).setdefault(row["key"], row["value"])
    return out


def metric_order(value: float, step: int, timestamp: int) -> tuple:
    return (step, timestamp, (1, 0.0) if math.isnan(value) else (0, value))


def fold_latest_metrics(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """run_id -> key -> {value, step, timestamp} of the latest value."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        k = (row["run_id"], row["key"])
        cur = best.get(k)
        if cur is None or metric_order(row["value"], row["step"], row["timestamp"]) > metric_order(
                cur["value"], cur["step"], cur["timestamp"]):
            best[k] = row
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (run_id, key), row in best.items():
        out.setdefault(run_id, {})[key] = {"value": row["value"], "step": row["step"], "timestamp": row["timestamp"]}
    return out
