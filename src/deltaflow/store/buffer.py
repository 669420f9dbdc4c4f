"""The write path: a bounded in-memory buffer and the background thread that commits it.

Log calls append to per-table column lists under one lock and return; they never wait for Delta.
The flusher commits everything buffered as one blind append per table per flush, every
``flush_interval_s`` seconds, every ``flush_rows`` records, on ``flush()``, at ``end_run`` and at
interpreter exit. Each flush carries ``(writer_id, batch_no)`` as a commit marker, so a retry of a
commit that in fact landed is skipped rather than duplicated. A failed batch is kept and retried
with backoff; nothing is dropped. When producers outrun the flusher, ``max_buffered_rows`` blocks them
until the flusher catches up, so memory stays bounded.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Optional

import pyarrow as pa

from deltaflow.errors import StorageError
from deltaflow.store.engine import Engine
from deltaflow.store import _arrow
from deltaflow.store.fold import metric_order
from deltaflow.store.schema import DEAD_LETTER_TABLE, TABLES

__all__ = ["WriteBuffer"]

_log = logging.getLogger(__name__)
_FAILURES_BEFORE_RAISE = 3
_TABLE_ORDER = ("experiments", "experiment_tags", "runs", "params", "tags", "inputs", "metrics", "latest_metrics")


# MLflow's "latest" is the max of (step, timestamp, value); NaN sorts above every number so that
# the comparison is total (plain float comparison with NaN is always False).
def _newer(value: float, step: int, ts: int, cand: tuple) -> bool:
    """Whether (value, step, ts) beats the buffered latest candidate ``(exp, value, step, ts)``.

    Same order as ``metric_order``; step and timestamp decide almost always, so the NaN-aware value
    comparison is only built on a tie (this runs once per logged metric)."""
    if step != cand[2]:
        return step > cand[2]
    if ts != cand[3]:
        return ts > cand[3]
    return metric_order(value, step, ts) > metric_order(cand[1], cand[2], cand[3])


class _Batch:
    """Columns per table plus the latest-metric candidates, as swapped out of the buffer."""

    __slots__ = ("columns", "latest", "rows", "number", "committed")

    def __init__(self) -> None:
        self.columns: dict[str, dict[str, list]] = {}
        self.latest: dict[tuple[str, str], tuple] = {}
        self.rows = 0
        self.number = 0
        # Tables whose commit of this batch landed: a retry after a later table failed must not
        # append them again (the engines' marker check only covers the append that raised).
        self.committed: set[str] = set()

    def column_lists(self, table: str) -> dict[str, list]:
        cols = self.columns.get(table)
        if cols is None:
            cols = {name: [] for name in TABLES[table].schema.names}
            self.columns[table] = cols
        return cols

    def tables(self) -> tuple[dict[str, pa.Table], list[tuple[str, dict[str, Any], str]]]:
        """The batch as one Arrow table per event table, plus the rows no table can hold
        ``(table, row, error)``: those are set apart so they never fail anyone else's rows."""
        out: dict[str, pa.Table] = {}
        dead: list[tuple[str, dict[str, Any], str]] = []
        for table in _TABLE_ORDER:
            if table == "latest_metrics":
                if not self.latest:
                    continue
                names = TABLES[table].schema.names
                cols: Optional[dict[str, list]] = {n: [] for n in names}
                for (run_id, key), (exp_id, value, step, ts) in self.latest.items():
                    for n, v in zip(names, (run_id, exp_id, key, value, step, ts)):
                        cols[n].append(v)
            else:
                cols = self.columns.get(table)
            if cols and next(iter(cols.values())):
                data, bad = _to_arrow(table, cols)
                dead.extend(bad)
                if data.num_rows:
                    out[table] = data
        return out, dead


def _to_arrow(table: str, cols: dict[str, list]) -> tuple[pa.Table, list[tuple[str, dict[str, Any], str]]]:
    """Convert a table's buffered columns; on failure, find the rows that cannot be converted (or
    lack a required value) one by one and return them apart with their error."""
    schema = TABLES[table].schema
    required = [f.name for f in schema if not f.nullable]
    try:
        if not any(None in cols[n] for n in required):
            return _arrow.table(cols, schema), []
    except Exception:  # noqa: BLE001 - isolate the bad rows below
        pass
    good: dict[str, list] = {n: [] for n in schema.names}
    bad: list[tuple[str, dict[str, Any], str]] = []
    for values in zip(*(cols[n] for n in schema.names)):
        row = dict(zip(schema.names, values))
        try:
            missing = [n for n in required if row[n] is None]
            if missing:
                raise ValueError(f"no value for required column(s) {', '.join(missing)}")
            _arrow.table({n: [row[n]] for n in schema.names}, schema)
        except Exception as exc:  # noqa: BLE001 - the row, not the store, is at fault
            bad.append((table, row, f"{type(exc).__name__}: {exc}"))
            continue
        for n, v in zip(schema.names, values):
            good[n].append(v)
    return _arrow.table(good, schema), bad


class WriteBuffer:
    def __init__(
        self,
        engine: Engine,
        writer_id: str,
        *,
        flush_interval_s: float,
        flush_rows: int,
        max_buffered_rows: int,
        on_tick: Optional[Callable[[], None]] = None,
    ) -> None:
        self._engine = engine
        self.writer_id = writer_id
        self._interval = flush_interval_s
        self._flush_rows = flush_rows
        self._max_rows = max_buffered_rows
        self._on_tick = on_tick  # called by the flusher each wake-up (heartbeats)
        self._cond = threading.Condition()
        self._batch = _Batch()
        self._added = 0  # records ever added
        self._committed = 0  # records known durable
        self._flush_requested = False
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._next_batch_no = int(time.time() * 1000)  # monotonic across restarts of a writer id
        self.last_error: Optional[BaseException] = None
        self._failures = 0  # consecutive failed commit attempts
        self.commits = 0
        self.commit_seconds = 0.0
        self.dead_lettered = 0  # rows set apart in dead_letters by this writer

    # -- producers --------------------------------------------------------------------------
    def _wait_for_room(self, incoming: int = 1) -> None:
        """Block until ``incoming`` more rows fit under the cap (or the batch is empty: a single call
        larger than the cap — bounded by MLflow's per-call limits — then goes alone)."""
        # Called with the lock held: backpressure instead of unbounded memory.
        if threading.current_thread() is self._thread:
            # The flusher itself adds a few rows (heartbeats) and is the only one who can make
            # room: waiting here would deadlock it and every producer with it.
            return
        self._flush_requested = True
        self._cond.notify_all()
        while (self._batch.rows + incoming > self._max_rows and self._batch.rows > 0
               and not self._stopping):
            self._cond.wait(0.5)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="deltaflow-flusher", daemon=True)
        self._thread.start()

    def add_metric(self, run_id: str, experiment_id: str, key: str, value: float, step: int, ts: int) -> None:
        with self._cond:
            if self._thread is None:
                self._start()
            batch = self._batch
            if batch.rows >= self._max_rows:
                self._wait_for_room()
                batch = self._batch
            cols = batch.columns.get("metrics") or batch.column_lists("metrics")
            cols["run_id"].append(run_id)
            cols["experiment_id"].append(experiment_id)
            cols["key"].append(key)
            cols["value"].append(value)
            cols["step"].append(step)
            cols["timestamp"].append(ts)
            lk = (run_id, key)
            cand = batch.latest.get(lk)
            if cand is None or _newer(value, step, ts, cand):
                batch.latest[lk] = (experiment_id, value, step, ts)
            batch.rows += 1
            self._added += 1
            if batch.rows >= self._flush_rows:
                self._cond.notify_all()

    def add_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Buffer whole rows (runs, params, tags, ...); all or nothing under one lock."""
        if not rows:
            return
        names = TABLES[table].schema.names
        with self._cond:
            if self._thread is None:
                self._start()
            if self._batch.rows + len(rows) > self._max_rows and self._batch.rows > 0:
                self._wait_for_room(len(rows))
            cols = self._batch.column_lists(table)
            for row in rows:
                for name in names:
                    cols[name].append(row.get(name))
            self._batch.rows += len(rows)
            self._added += len(rows)
            if self._batch.rows >= self._flush_rows:
                self._cond.notify_all()

    def add_metrics(self, run_id: str, experiment_id: str, metrics: list[tuple[str, float, int, int]]) -> None:
        """A validated batch of (key, value, timestamp, step) under one lock acquisition."""
        if not metrics:
            return
        with self._cond:
            if self._thread is None:
                self._start()
            if self._batch.rows + len(metrics) > self._max_rows and self._batch.rows > 0:
                self._wait_for_room(len(metrics))
            batch = self._batch
            cols = batch.columns.get("metrics") or batch.column_lists("metrics")
            n = len(metrics)
            cols["run_id"].extend([run_id] * n)
            cols["experiment_id"].extend([experiment_id] * n)
            keys, values, stamps, steps = zip(*metrics)
            cols["key"].extend(keys)
            cols["value"].extend(values)
            cols["timestamp"].extend(stamps)
            cols["step"].extend(steps)
            latest = batch.latest
            for key, value, ts, step in metrics:
                lk = (run_id, key)
                cand = latest.get(lk)
                if cand is None or _newer(value, step, ts, cand):
                    latest[lk] = (experiment_id, value, step, ts)
            batch.rows += n
            self._added += n
            if batch.rows >= self._flush_rows:
                self._cond.notify_all()

    # -- flushing ---------------------------------------------------------------------------
    def pending_rows(self, table: str, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Buffered, not yet committed rows of a table matching ``predicate`` (read-your-writes)."""
        with self._cond:
            cols = self._batch.columns.get(table)
            if not cols:
                return []
            names = list(cols)
            return [r for r in (dict(zip(names, vals)) for vals in zip(*cols.values())) if predicate(r)]

    def request_flush(self) -> None:
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()

    def flush(self, timeout: Optional[float] = None) -> None:
        """Block until everything added before this call is committed."""
        with self._cond:
            target = self._added
            if self._committed >= target:
                return
            if self._thread is None:
                self._start()
            self._flush_requested = True
            self._cond.notify_all()
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._committed < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise StorageError(
                        f"flush did not complete within {timeout}s "
                        f"({target - self._committed} records still pending; last error: {self.last_error})"
                    )
                self._cond.wait(min(remaining, 1.0) if remaining is not None else 1.0)
                if self._failures >= _FAILURES_BEFORE_RAISE:
                    # The data stays buffered and the flusher keeps retrying; the caller learns now
                    # instead of hanging on a store that cannot be written.
                    raise StorageError(
                        f"cannot commit to the store ({self._failures} attempts failed; "
                        f"{target - self._committed} records kept in memory and retried): {self.last_error}"
                    ) from self.last_error
                if self._thread is not None and not self._thread.is_alive():
                    raise StorageError(f"the flusher thread died; last error: {self.last_error}")

    def close(self, timeout: Optional[float] = None) -> None:
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()

    def _run(self) -> None:
        inflight: Optional[_Batch] = None
        upto = 0
        backoff = 0.1
        while True:
            with self._cond:
                if inflight is None:
                    deadline = time.monotonic() + self._interval
                    while not (self._flush_requested or self._stopping or self._batch.rows >= self._flush_rows):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                    if self._stopping and self._batch.rows == 0:
                        return
                    self._flush_requested = False
            if self._on_tick is not None and inflight is None:
                try:
                    self._on_tick()  # may add heartbeat rows to the current batch
                except Exception:  # noqa: BLE001 - heartbeats must never stop the flusher
                    _log.debug("heartbeat tick failed", exc_info=True)
            with self._cond:
                if inflight is None:
                    if self._batch.rows == 0:
                        self._committed = self._added
                        self._cond.notify_all()
                        continue
                    inflight, self._batch = self._batch, _Batch()
                    inflight.number = self._next_batch_no
                    self._next_batch_no += 1
                    upto = self._added
                    self._cond.notify_all()  # producers blocked on room may continue
            try:
                self._commit(inflight)
            except Exception as exc:  # noqa: BLE001 - kept and retried; surfaced through flush()
                self.last_error = exc
                with self._cond:
                    self._failures += 1
                    self._cond.notify_all()
                _log.warning("deltaflow flush failed, will retry: %s", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.1
            with self._cond:
                inflight = None
                self._committed = upto
                self.last_error = None
                self._failures = 0
                self._cond.notify_all()

    def _commit(self, batch: _Batch) -> None:
        started = time.perf_counter()
        tables, dead = batch.tables()
        if dead and DEAD_LETTER_TABLE not in batch.committed:
            self._dead_letter(dead, batch.number)
            batch.committed.add(DEAD_LETTER_TABLE)
        for table, data in tables.items():
            if table in batch.committed:
                continue
            self._engine.append(table, data, app_id=self.writer_id, version=batch.number)
            batch.committed.add(table)
        self.commits += 1
        self.commit_seconds += time.perf_counter() - started

    def _dead_letter(self, dead: list[tuple[str, dict[str, Any], str]], batch_no: int) -> None:
        """Write rows no table could hold to ``dead_letters`` (with the batch's own commit marker, so
        a retried batch does not write them twice) and say so loudly."""
        now = int(time.time() * 1000)
        rows = {"table_name": [t for t, _, _ in dead],
                "row_json": [json.dumps(r, default=repr, sort_keys=True) for _, r, _ in dead],
                "error": [e[:2000] for _, _, e in dead],
                "writer_id": [self.writer_id] * len(dead), "event_time": [now] * len(dead)}
        spec = TABLES[DEAD_LETTER_TABLE]
        self._engine.ensure_tables([spec])
        self._engine.append(DEAD_LETTER_TABLE, _arrow.table(rows, spec.schema), app_id=self.writer_id,
                            version=batch_no)
        self.dead_lettered += len(dead)
        _log.error("deltaflow: %d row(s) could not be written and were set apart in the %s table "
                   "(first: %s row %s: %s)", len(dead), DEAD_LETTER_TABLE, dead[0][0], rows["row_json"][0][:200],
                   dead[0][2][:200])
