"""Run search on Arrow: the typed search tree compiled to pyarrow expressions and kernels.

The twin of ``spark_search.py`` for engines without Spark. It needs only ``engine.read`` (filtered
Arrow reads), folds the event tables with pyarrow's ordered group-by, and must return exactly what the
Spark compilation returns — the same rows in the same order — which the store suite checks by running
every search test on both engines. Semantics kept identical to Spark's:

* a run lacking the metric/param/tag a clause names does not match; a NULL comparison is false;
* NaN metrics compare as MLflow's stores do: NaN matches only ``!=`` (never ``=, >, >=, <, <=``);
* ORDER BY puts runs lacking the key last in either direction and NaN just before them (after every
  number, ascending or descending), as MLflow does;
  ties break on start_time DESC (nulls last), then run_id ASC.

User text only ever becomes pyarrow scalars and LIKE patterns compiled to RE2 regexes, which RE2
matches in time linear in the value's length (an automaton, no backtracking).

A search has a time limit (:class:`SearchDeadline`, ``DELTAFLOW_SEARCH_TIMEOUT_S``), checked here
between steps (each table read, fold and clause) and enforced by ``spark_search`` by cancelling the
search's Spark jobs.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Optional

import pyarrow as pa
import pyarrow.compute as pc

from deltaflow.config import settings
from deltaflow.errors import InvalidArgument, SearchTimeout
from deltaflow.store import _arrow
from deltaflow.store.engine import RUN_STATE_COLUMNS, Engine, RunQuery, Where
from deltaflow.store.schema import TABLES

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["search_run_ids", "fold_runs_state", "key_values", "compare", "SearchDeadline", "TIMEOUT_ENV"]

_RUN_LAST = ("run_name", "user_id", "status", "start_time", "end_time", "artifact_uri", "lifecycle_stage")
_DATASET_COLUMNS = {"name": "name", "digest": "digest", "context": "context"}


TIMEOUT_ENV = "DELTAFLOW_SEARCH_TIMEOUT_S"


class SearchDeadline:
    """The time limit of one search, started when the search starts.

    ``limit_s`` defaults to ``settings.search_timeout_s`` (``DELTAFLOW_SEARCH_TIMEOUT_S``, 300 s);
    0 means no limit.
    """

    def __init__(self, limit_s: Optional[float] = None) -> None:
        limit = settings.search_timeout_s if limit_s is None else limit_s
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit < 0:
            raise InvalidArgument(f"search time limit {limit!r} ({TIMEOUT_ENV}) must be a number of seconds "
                                  ">= 0 (0: no limit)")
        self.limit_s = float(limit)
        self.started = time.monotonic()

    @property
    def bounded(self) -> bool:
        return self.limit_s > 0

    def remaining(self) -> float:
        """Seconds left (infinite without a limit, never negative)."""
        if not self.bounded:
            return math.inf
        return max(0.0, self.limit_s - (time.monotonic() - self.started))

    def expired(self) -> bool:
        return self.bounded and time.monotonic() - self.started >= self.limit_s

    def error(self, step: str) -> SearchTimeout:
        return SearchTimeout(
            f"search_runs stopped after {time.monotonic() - self.started:.3g} s ({step}): the search time "
            f"limit is {self.limit_s:g} s. Raise it with the environment variable {TIMEOUT_ENV} "
            "(seconds; 0 removes the limit), or narrow the filter or the experiments searched."
        )

    def check(self, step: str) -> None:
        """Raise :class:`~deltaflow.errors.SearchTimeout` if the limit has passed."""
        if self.expired():
            raise self.error(step)


def _state_schema() -> pa.Schema:
    runs = TABLES["runs"].schema
    return pa.schema([runs.field(c).with_nullable(True) for c in RUN_STATE_COLUMNS])


# Folds use sorting plus numpy segment reductions rather than Table.group_by: group_by runs on
# pyarrow.acero, whose import pulls in pandas (half a second of a CLI call's one-second budget).
def _segments(sorted_ids: Any) -> "tuple[np.ndarray, np.ndarray]":
    """Start and end (inclusive) row of each run of equal ids in an id-sorted column."""
    import numpy as np

    n = len(sorted_ids)
    ids = sorted_ids.combine_chunks() if isinstance(sorted_ids, pa.ChunkedArray) else sorted_ids
    change = _arrow.to_numpy(pc.not_equal(ids.slice(0, n - 1), ids.slice(1)), bool)
    starts = np.concatenate(([0], np.flatnonzero(change) + 1))
    ends = np.concatenate((starts[1:] - 1, [n - 1]))
    return starts, ends


def _last_valid(column: Any, starts: "np.ndarray") -> "np.ndarray":
    """Per segment, the row of the last non-null value (-1 when all are null)."""
    import numpy as np

    valid = _arrow.to_numpy(pc.is_valid(column), bool)
    rows = np.where(valid, np.arange(len(valid)), -1)
    return np.maximum.reduceat(rows, starts)


def _segment_max(column: Any, starts: "np.ndarray") -> pa.Array:
    """Per segment, the max of an int64 column ignoring NULLs (NULL when all are null)."""
    import numpy as np

    low = np.iinfo(np.int64).min
    values = _arrow.to_numpy(pc.fill_null(column, _arrow.scalar(low, pa.int64())), np.int64)
    best = np.maximum.reduceat(values, starts)
    return _arrow.from_numpy(best, pa.int64(), best == low)


def _take(column: Any, rows: "np.ndarray") -> Any:
    """column[rows], NULL where rows is -1."""
    import numpy as np

    return column.take(_arrow.from_numpy(np.where(rows < 0, 0, rows), pa.int64(), rows < 0))


def _sorted(events: pa.Table, *keys: str) -> pa.Table:
    return events.take(pc.sort_indices(events, sort_keys=[(k, "ascending") for k in keys]))


def fold_runs_state(events: pa.Table) -> pa.Table:
    """Latest non-null attribute per run by (event_time, seq); the max heartbeat."""
    schema = _state_schema()
    if events.num_rows == 0:
        return _arrow.empty_table(schema)
    ordered = _sorted(events, "run_id", "event_time", "seq")
    starts, ends = _segments(ordered["run_id"])
    columns = {"run_id": _take(ordered["run_id"], starts), "experiment_id": _take(ordered["experiment_id"], starts)}
    for name in _RUN_LAST:
        columns[name] = _take(ordered[name], _last_valid(ordered[name], starts))
    columns["heartbeat_time"] = _segment_max(ordered["heartbeat_time"], starts)
    return pa.Table.from_arrays([columns[c] for c in RUN_STATE_COLUMNS], names=list(RUN_STATE_COLUMNS)).cast(schema)


def _pairs(run_ids: Any, values: Any) -> pa.Table:
    return pa.Table.from_arrays([run_ids, values], names=["run_id", "value"])


def _fold_first_or_last(events: pa.Table, how: str) -> pa.Table:
    """(run_id, value): the first (params) or last (tags, NULL kept as a deletion) value by event order."""
    if events.num_rows == 0:
        return _pairs(_arrow.array([], pa.string()), _arrow.array([], pa.string()))
    ordered = _sorted(events, "run_id", "event_time", "seq")
    starts, ends = _segments(ordered["run_id"])
    rows = starts if how == "first" else ends
    return _pairs(_take(ordered["run_id"], rows), _take(ordered["value"], rows))


def _fold_latest_metric(events: pa.Table) -> pa.Table:
    """(run_id, value) of the max by (step, timestamp, value); pyarrow sorts NaN above numbers."""
    if events.num_rows == 0:
        return _pairs(_arrow.array([], pa.string()), _arrow.array([], pa.float64()))
    ordered = _sorted(events, "run_id", "step", "timestamp", "value")
    starts, ends = _segments(ordered["run_id"])
    return _pairs(_take(ordered["run_id"], ends), _take(ordered["value"], ends))


def key_values(engine: Engine, entity: str, key: str, experiment_ids: tuple[str, ...]) -> pa.Table:
    """(run_id, value) of one metric/param/tag key within the searched experiments."""
    where = Where.of(experiment_id=list(experiment_ids)).and_("key", "=", key)
    if entity == "metric":
        return _fold_latest_metric(engine.read("latest_metrics", where, ["run_id", "value", "step", "timestamp"]))
    if entity == "param":
        return _fold_first_or_last(engine.read("params", where, ["run_id", "value", "event_time", "seq"]), "first")
    if entity == "tag":
        folded = _fold_first_or_last(engine.read("tags", where, ["run_id", "value", "event_time", "seq"]), "last")
        return folded.filter(pc.is_valid(folded["value"]))
    raise InvalidArgument(f"unknown entity {entity!r}")


def like_to_re2(pattern: str) -> str:
    """A LIKE pattern as an anchored RE2 regex, with deltaflow's escape rule (``like_to_regex``).

    Not ``pc.match_like``: Arrow rewrites ``'prefix%'`` to a starts-with test on the still-escaped
    prefix, so ``'C:\\\\d%'`` never matches ``C:\\dir``. Every character that is not an ASCII letter or
    digit is written as ``\\x{..}``, so no user character can act as regex syntax.
    """
    out = ["(?s)^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and pattern[i + 1 : i + 2] in ("%", "_", "\\"):
            ch = pattern[i + 1]
            out.append(f"\\x{{{ord(ch):X}}}")
            i += 2
            continue
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        elif ch.isascii() and ch.isalnum():
            out.append(ch)
        else:
            out.append(f"\\x{{{ord(ch):X}}}")
        i += 1
    out.append("\\z")
    return "".join(out)


_ORDERED = {"=": pc.equal, ">": pc.greater, ">=": pc.greater_equal, "<": pc.less, "<=": pc.less_equal}


def compare(values: Any, op: str, value: Any) -> Any:
    """A boolean mask (NULL where the value is NULL, which filtering drops, as SQL does)."""
    is_float = pa.types.is_floating(values.type)
    if op in ("=", "!=", ">", ">=", "<", "<="):
        value = _arrow.scalar(float(value) if is_float else value, values.type)
    if op == "!=":
        return pc.not_equal(values, value)
    if op in _ORDERED:
        mask = _ORDERED[op](values, value)
        # MLflow: a NaN metric matches none of =, >, >=, <, <= (whatever the literal).
        return pc.and_(mask, pc.invert(pc.is_nan(values))) if is_float else mask
    if op in ("LIKE", "ILIKE"):
        return pc.match_substring_regex(values, pattern=like_to_re2(value), ignore_case=op == "ILIKE")
    if op in ("IN", "NOT IN"):
        inside = pc.is_in(values, value_set=_arrow.array(list(value), values.type))
        # is_in answers false for NULL; SQL answers NULL (no match) for both IN and NOT IN.
        inside = pc.if_else(pc.is_valid(values), inside, _arrow.scalar(None, pa.bool_()))
        return inside if op == "IN" else pc.invert(inside)
    if op == "IS NULL":
        return pc.is_null(values)
    if op == "IS NOT NULL":
        return pc.is_valid(values)
    raise InvalidArgument(f"comparator {op!r} is not supported")


def _keep_ids(state: pa.Table, ids: Any, *, inside: bool) -> pa.Table:
    mask = pc.is_in(state["run_id"], value_set=ids)
    return state.filter(mask if inside else pc.invert(mask))


def _apply_clause(engine: Engine, state: pa.Table, clause: Any, query: RunQuery) -> pa.Table:
    entity, key, op, value = clause.entity, clause.key, clause.op, clause.value
    if state.num_rows == 0:
        return state
    if entity == "attribute":
        column = state[key]
        return state.filter(compare(column, op, value))
    if entity == "dataset":
        inputs = engine.read("inputs", Where.of(experiment_id=list(query.experiment_ids)),
                             ["run_id", _DATASET_COLUMNS[key]])
        column = inputs[_DATASET_COLUMNS[key]]
        matched = inputs.filter(compare(column, op, value))["run_id"]
        return _keep_ids(state, pc.unique(matched.combine_chunks()), inside=True)
    values = key_values(engine, entity, key, query.experiment_ids)
    if op == "IS NULL":
        return _keep_ids(state, values["run_id"].combine_chunks(), inside=False)
    if op == "IS NOT NULL":
        return _keep_ids(state, values["run_id"].combine_chunks(), inside=True)
    column = values["value"]
    matches = values.filter(compare(column, op, value))
    return _keep_ids(state, matches["run_id"].combine_chunks(), inside=True)


def _sort_keys(column: Any, ascending: bool) -> "list[np.ndarray]":
    """Keys for np.lexsort, most significant first: numbers, then NaN, then NULL (MLflow's order in
    both directions), then the value's dense rank."""
    import numpy as np

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    nulls = _arrow.to_numpy(pc.is_null(array), np.int8) * 2
    if pa.types.is_floating(array.type):
        nulls = nulls + _arrow.to_numpy(pc.fill_null(pc.is_nan(array), False), np.int8)
    # Dense rank of the values (all NaNs share one rank, so ties among them fall to the next keys).
    ranks = _arrow.to_numpy(pc.rank(array, sort_keys="ascending", tiebreaker="dense"), np.int64)
    return [nulls, ranks if ascending else -ranks]


def search_state(engine: Engine, query: RunQuery,
                 deadline: Optional[SearchDeadline] = None) -> tuple[pa.Table, "np.ndarray"]:
    """The matching runs' state and the order to read them in (indices into the table).

    With a ``deadline``, its limit is checked after every step (a read plus its fold or filter).
    """
    import numpy as np

    deadline = deadline or SearchDeadline(0)
    events = engine.read("runs", Where.of(experiment_id=list(query.experiment_ids)))
    state = fold_runs_state(events)
    stages = _arrow.array(list(query.lifecycle_stages), pa.string())
    state = state.filter(pc.is_in(state["lifecycle_stage"], value_set=stages))
    deadline.check("after reading the runs")
    for number, clause in enumerate(query.clauses, 1):
        state = _apply_clause(engine, state, clause, query)
        deadline.check(f"after filter clause {number} of {len(query.clauses)}")
    if state.num_rows == 0:
        return state, np.zeros(0, dtype=np.int64)
    keys: list[np.ndarray] = []
    for number, order in enumerate(query.order_by, 1):
        if order.entity == "attribute":
            column = state[order.key]
        else:
            values = key_values(engine, order.entity, order.key, query.experiment_ids)
            positions = pc.index_in(state["run_id"], value_set=values["run_id"].combine_chunks())
            column = values["value"].combine_chunks().take(positions)
        keys += _sort_keys(column, order.ascending)
        deadline.check(f"after order_by item {number} of {len(query.order_by)}")
    keys += _sort_keys(state["start_time"], ascending=False)
    keys += _sort_keys(state["run_id"], ascending=True)
    # np.lexsort sorts by the last key first.
    order_index = np.lexsort(tuple(reversed(keys)))
    return state, order_index


def search_run_ids(engine: Engine, query: RunQuery) -> list[str]:
    """The ids of the matching runs, in order, within the search time limit."""
    deadline = SearchDeadline()
    state, order_index = search_state(engine, query, deadline)
    end = None if query.limit is None else query.offset + query.limit
    chosen = order_index[query.offset:end]
    return state["run_id"].take(_arrow.from_numpy(chosen, pa.int64())).to_pylist() if len(chosen) else []
