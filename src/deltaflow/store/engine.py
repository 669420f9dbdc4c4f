"""The one narrow seam between the tracking store and a Delta engine.

Everything the store does to a table goes through :class:`Engine`: blind appends, filtered reads,
a conflict-checked insert, deletes for purging, maintenance and run search (which folds the event
tables inside the engine; point reads fold in Python, ``fold.py``). An engine speaks Arrow at this boundary and takes filters as the small neutral
:class:`Where` form or the typed search tree; it never receives SQL text. The Spark engine lives in
``spark_engine.py``; a second engine implements the same class without touching the layers above.
"""

from __future__ import annotations

import abc
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, TypeVar

import pyarrow as pa

from deltaflow.store.schema import TableSpec

__all__ = ["Where", "RunQuery", "Engine", "retry_conflicts", "EXPERIMENT_STATE_COLUMNS", "RUN_STATE_COLUMNS"]

T = TypeVar("T")

RUN_STATE_COLUMNS = (
    "run_id", "experiment_id", "run_name", "user_id", "status", "start_time", "end_time",
    "artifact_uri", "lifecycle_stage", "heartbeat_time",
)
EXPERIMENT_STATE_COLUMNS = (
    "experiment_id", "name", "artifact_location", "lifecycle_stage", "creation_time", "last_update_time",
)


@dataclass(frozen=True)
class Where:
    """A conjunction of ``column op value`` terms; ops: ``=``, ``in``, ``<``, ``<=``, ``>``, ``>=``."""

    terms: tuple[tuple[str, str, Any], ...] = ()

    @classmethod
    def of(cls, **equals: Any) -> "Where":
        terms = []
        for column, value in equals.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple, set, frozenset)):
                terms.append((column, "in", tuple(value)))
            else:
                terms.append((column, "=", value))
        return cls(tuple(terms))

    def and_(self, column: str, op: str, value: Any) -> "Where":
        return Where(self.terms + ((column, op, value),))


@dataclass(frozen=True)
class RunQuery:
    experiment_ids: tuple[str, ...]
    lifecycle_stages: tuple[str, ...]
    clauses: tuple[Any, ...] = ()  # deltaflow.tracking._search.Comparison
    order_by: tuple[Any, ...] = ()  # deltaflow.tracking._search.OrderBy
    offset: int = 0
    limit: Optional[int] = None  # None: everything (output_format="spark")
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(abc.ABC):
    """Table I/O for one store. Implementations must be thread-safe for concurrent calls."""

    name: str = "abstract"

    # -- tables -----------------------------------------------------------------------------
    @abc.abstractmethod
    def ensure_tables(self, specs: Sequence[TableSpec]) -> None:
        """Create missing tables (idempotent, safe when many processes race to create them)."""

    @abc.abstractmethod
    def append(self, table: str, data: pa.Table, *, app_id: str, version: int) -> None:
        """One blind-append commit. ``(app_id, version)`` makes it idempotent: a retry of a commit that
        in fact landed is skipped by Delta instead of duplicating rows."""

    @abc.abstractmethod
    def read(self, table: str, where: Where = Where(), columns: Optional[Sequence[str]] = None) -> pa.Table:
        """Raw rows of an event table."""

    @abc.abstractmethod
    def insert_if_absent(self, table: str, data: pa.Table, key_columns: Sequence[str]) -> bool:
        """Conflict-checked insert of rows whose key is not yet in the table (MERGE); False when the key
        already existed. Retries losing commits."""

    @abc.abstractmethod
    def delete_where(self, table: str, where: Where) -> int:
        """Delete rows (used only by purging gc); returns rows deleted when known, else -1."""

    def row_stored(self, table: str, data: pa.Table, key_columns: Sequence[str]) -> bool:
        """Whether the first row of ``data`` is the table's only row with its key, exactly (its
        event_time/seq or event id included).

        After an insert_if_absent that did not insert, this tells "the key was taken by someone
        else" from "our own earlier attempt landed but reported an error". Requiring it to be the
        only row makes a True answer mean "this key is ours" even if an engine's conflict check
        ever let a second insert of the key through."""
        mine = data.to_pylist()[0]
        stored = self.read(table, Where.of(**{k: mine[k] for k in key_columns})).to_pylist()
        return len(stored) == 1 and all(stored[0].get(k) == mine.get(k) for k in mine)

    def read_many(self, requests: dict[str, tuple[Where, Optional[Sequence[str]]]]) -> dict[str, pa.Table]:
        """Several filtered reads at once (engines may run them concurrently)."""
        return {table: self.read(table, where, columns) for table, (where, columns) in requests.items()}

    # -- search -----------------------------------------------------------------------------
    @abc.abstractmethod
    def search_runs(self, query: RunQuery) -> list[str]:
        """Run ids matching the query, ordered, ``query.offset``/``query.limit`` applied."""

    # -- maintenance ------------------------------------------------------------------------
    @abc.abstractmethod
    def optimize(self, table: str, zorder_by: Sequence[str]) -> dict[str, Any]:
        ...

    @abc.abstractmethod
    def vacuum(self, table: str, retention_hours: float, force: bool = False) -> None:
        ...

    @abc.abstractmethod
    def file_count(self, table: str) -> int:
        ...

    @abc.abstractmethod
    def table_version(self, table: str) -> int:
        ...

    def close(self) -> None:  # pragma: no cover - engines without resources
        pass


def retry_conflicts(
    fn: Callable[[], T],
    *,
    is_conflict: Callable[[BaseException], bool],
    attempts: int,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``fn`` again after a commit conflict, with jittered exponential backoff.

    Jitter matters: writers that collided once would otherwise collide again in lock step.
    """
    from deltaflow.errors import ConcurrentModification

    delay = 0.05
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered by is_conflict
            if not is_conflict(exc) or attempt == attempts:
                if is_conflict(exc):
                    raise ConcurrentModification(
                        f"{what} lost to concurrent writers {attempts} times in a row; last error: {exc}"
                    ) from exc
                raise
            sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")  # pragma: no cover
