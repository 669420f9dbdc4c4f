"""Experiment operations of the tracking store (a mixin of :class:`TrackingStore`).

Experiments are few and read often, so they are written synchronously (a create is a conflict-checked
MERGE that makes names unique across concurrent writers) and searched in Python over the folded state.

Reads never write: the Default experiment (id ``0``, as in MLflow) is created by the first write that
needs an experiment — creating another experiment, or a run in experiment ``0`` — never by a search
or a lookup, so a store the reader cannot write is still listed and searched.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Optional, Sequence

from deltaflow.entities import Experiment, LifecycleStage, ViewType
from deltaflow.errors import AlreadyExists, InvalidArgument, NotFound
from deltaflow.store import _arrow
from deltaflow.store.engine import Where
from deltaflow.store.fold import fold_experiments, fold_runs, fold_tags
from deltaflow.store.schema import TABLES
from deltaflow.tracking import _validation as V

__all__ = ["ExperimentsMixin", "DEFAULT_EXPERIMENT_ID", "DEFAULT_EXPERIMENT_NAME"]

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
_DEFAULT_KEY = "\x00default"  # cache slot of the Default experiment's id (not a valid experiment id)
# Run creation checks its experiment: a stale "active" for about a minute is acceptable (another
# process's delete is seen on the next refresh); beyond _STALE_OK_S the entry is read again first.
_CACHE_TTL_S = 60.0
_STALE_OK_S = 3600.0


def _new_experiment_id() -> str:
    # Random 18-digit ids (as MLflow's file store does): no allocation race between writers.
    return str(uuid.uuid4().int % 10**18).rjust(18, "1")


class ExperimentsMixin:
    engine: Any
    buffer: Any
    location: Any
    _experiment_cache: dict

    def _event(self) -> dict[str, int]:  # provided by TrackingStore
        raise NotImplementedError

    def _insert_experiment_event(self, row: dict[str, Any], key: str) -> bool:
        data = _arrow.table_from_pylist([row], TABLES["experiments"].schema)
        return self.engine.insert_if_absent("experiments", data, [key])

    def create_experiment(self, name: str, artifact_location: Optional[str] = None,
                          tags: Optional[dict[str, Any]] = None, *, experiment_id: Optional[str] = None) -> str:
        name = V.validate_experiment_name(name)
        checked_tags = [V.validate_tag(k, v) for k, v in (tags or {}).items()]
        if experiment_id is None:
            # A store gets MLflow's Default experiment with its first experiment (as MLflow's stores
            # create it when they are created); the Default itself is created with its fixed id.
            self.default_experiment_id()
        experiment_id = experiment_id or _new_experiment_id()
        location = artifact_location or f"{self.location.artifact_root.rstrip('/')}/{experiment_id}"
        event = self._event()
        row = {"experiment_id": experiment_id, "name": name, "artifact_location": location,
               "lifecycle_stage": LifecycleStage.ACTIVE, "creation_time": event["event_time"], **event}
        if not self._insert_experiment_event(row, "name"):
            existing = self._experiment_rows(Where())
            taken = [r for r in existing if r["name"] == name]
            stage = f" (lifecycle_stage {taken[0]['lifecycle_stage']})" if taken else ""
            raise AlreadyExists(f"an experiment named {name!r} already exists{stage}; names are unique, "
                                "deleted experiments keep theirs until purged")
        if checked_tags:
            self._append_experiment_tags(experiment_id, checked_tags)
        return experiment_id

    def _append_experiment_tags(self, experiment_id: str, tags: Sequence[tuple[str, Optional[str]]]) -> None:
        event = self._event()
        data = _arrow.table_from_pylist([{"experiment_id": experiment_id, "key": k, "value": v, **event} for k, v in tags],
                                        TABLES["experiment_tags"].schema)
        self.engine.append("experiment_tags", data, app_id=f"exp-{uuid.uuid4().hex}", version=1)
        self._experiment_cache.pop(experiment_id, None)

    def _experiment_rows(self, where: Where) -> list[dict[str, Any]]:
        """Folded experiments; ``where`` filters the folded state (the table is small)."""
        state = fold_experiments(self.engine.read("experiments").to_pylist()).values()
        return [row for row in state if all(_where_match(row, term) for term in where.terms)]

    def _to_experiment(self, row: dict[str, Any], tags: dict[str, str]) -> Experiment:
        return Experiment(experiment_id=row["experiment_id"], name=row["name"],
                          artifact_location=row["artifact_location"], lifecycle_stage=row["lifecycle_stage"],
                          tags=tags, creation_time=row["creation_time"], last_update_time=row["last_update_time"])

    def _experiments_with_tags(self, rows: list[dict[str, Any]]) -> list[Experiment]:
        ids = [r["experiment_id"] for r in rows]
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        if ids:
            tag_rows = self.engine.read("experiment_tags", Where.of(experiment_id=ids)).to_pylist()
            for owner, values in fold_tags(tag_rows, "experiment_id").items():
                tags[owner] = values
        return [self._to_experiment(r, tags[r["experiment_id"]]) for r in rows]

    def get_experiment(self, experiment_id: str) -> Experiment:
        experiment_id = V.validate_experiment_id(experiment_id)
        return self._cached(experiment_id, lambda: self._load_experiment(experiment_id))

    def _cached(self, key: str, load: Any) -> Any:
        """``load()``'s value, cached for _CACHE_TTL_S. Past that, a value younger than _STALE_OK_S is
        returned at once while a background thread reloads it: starting a run (an autologged fit)
        then never waits for a table read just because the process was idle for a minute."""
        cached = self._experiment_cache.get(key)
        if cached is not None:
            age = time.monotonic() - cached[1]
            if age < _CACHE_TTL_S:
                return cached[0]
            if age < _STALE_OK_S:
                self._refresh_in_background(key, load)
                return cached[0]
        value = load()
        self._experiment_cache[key] = (value, time.monotonic())
        return value

    def _refresh_in_background(self, key: str, load: Any) -> None:
        import threading

        refreshing = self.__dict__.setdefault("_refreshing", set())
        if key in refreshing:
            return
        refreshing.add(key)

        def refresh() -> None:
            try:
                self._experiment_cache[key] = (load(), time.monotonic())
            except Exception:  # noqa: BLE001 - e.g. deleted meanwhile: drop it; the next call reads afresh
                self._experiment_cache.pop(key, None)
            finally:
                refreshing.discard(key)

        threading.Thread(target=refresh, name="deltaflow-experiment-refresh", daemon=True).start()

    def _load_experiment(self, experiment_id: str) -> Experiment:
        rows = self._experiment_rows(Where.of(experiment_id=experiment_id))
        if not rows:
            raise NotFound(f"experiment {experiment_id!r} does not exist in store {self.location.uri!r}")
        return self._experiments_with_tags(rows)[0]

    def get_experiment_by_name(self, name: str) -> Optional[Experiment]:
        name = V.validate_experiment_name(name)
        rows = [r for r in self._experiment_rows(Where.of(name=name)) if r["name"] == name]
        return self._experiments_with_tags(rows)[0] if rows else None

    def default_experiment_id(self) -> str:
        """The id of the 'Default' experiment, creating it as id '0' the first time (as MLflow does);
        a write path: reads never call it.

        Cached like experiments (every run started without an experiment asks; on the spark engine the
        read costs ~0.4 s, which an autologged fit would otherwise pay each time)."""
        return self._cached(_DEFAULT_KEY, self._default_experiment_id)

    def _default_experiment_id(self) -> str:
        rows = [r for r in self._experiment_rows(Where.of(name=DEFAULT_EXPERIMENT_NAME))]
        if rows:
            return rows[0]["experiment_id"]
        try:
            return self.create_experiment(DEFAULT_EXPERIMENT_NAME, experiment_id=DEFAULT_EXPERIMENT_ID)
        except AlreadyExists:  # created concurrently by another process
            return self._experiment_rows(Where.of(name=DEFAULT_EXPERIMENT_NAME))[0]["experiment_id"]

    def _set_experiment_stage(self, experiment_id: str, stage: str) -> None:
        experiment = self.get_experiment(experiment_id)
        if experiment.lifecycle_stage == stage:
            raise InvalidArgument(f"experiment {experiment_id!r} is already {stage}")
        self.flush()  # type: ignore[attr-defined]
        event = self._event()
        data = _arrow.table_from_pylist([{"experiment_id": experiment_id, "lifecycle_stage": stage, **event}],
                                        TABLES["experiments"].schema)
        self.engine.append("experiments", data, app_id=f"exp-{uuid.uuid4().hex}", version=1)
        # MLflow deletes/restores the experiment's runs with it.
        runs = list(fold_runs(self.engine.read("runs", Where.of(experiment_id=experiment_id),
                                               ["run_id", "experiment_id", "event_time", "seq"]).to_pylist()).values())
        rows = [{"run_id": r["run_id"], "experiment_id": experiment_id, "lifecycle_stage": stage,
                 "writer_id": self.buffer.writer_id, **self._event()} for r in runs]
        self.buffer.add_rows("runs", rows)
        for r in runs:
            meta = self._runs.get(r["run_id"])  # type: ignore[attr-defined]
            if meta is not None:
                meta.lifecycle_stage = stage
        self.flush()  # type: ignore[attr-defined]
        self._experiment_cache.pop(experiment_id, None)

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.ACTIVE)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        new_name = V.validate_experiment_name(new_name)
        experiment = self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidArgument(f"experiment {experiment_id!r} is deleted; restore it before renaming")
        event = self._event()
        row = {"experiment_id": experiment_id, "name": new_name, **event}
        if not self._insert_experiment_event(row, "name"):
            raise AlreadyExists(f"an experiment named {new_name!r} already exists")
        self._experiment_cache.pop(experiment_id, None)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        key, value = V.validate_tag(key, value)
        self.get_experiment(experiment_id)
        self._append_experiment_tags(experiment_id, [(key, value)])

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        V.validate_key(key, "tag")
        if key not in self.get_experiment(experiment_id).tags:
            raise NotFound(f"tag {key!r} does not exist on experiment {experiment_id!r}")
        self._append_experiment_tags(experiment_id, [(key, None)])

    def search_experiments(self, view_type: Any = ViewType.ACTIVE_ONLY, max_results: int = 1000,
                           filter_string: Optional[str] = None, order_by: Optional[Sequence[str]] = None,
                           page_token: Optional[str] = None) -> tuple[list[Experiment], Optional[str]]:
        from deltaflow.store.tracking_store import SEARCH_MAX_RESULTS, decode_page_token, encode_page_token
        from deltaflow.tracking._search import parse_experiment_filter, parse_experiment_order_by

        stages = ViewType.stages(ViewType.from_any(view_type))
        if not isinstance(max_results, int) or isinstance(max_results, bool) or not 0 < max_results <= SEARCH_MAX_RESULTS:
            raise InvalidArgument(f"max_results {max_results!r} must be an integer from 1 to {SEARCH_MAX_RESULTS}")
        clauses = parse_experiment_filter(filter_string)
        orders = parse_experiment_order_by(list(order_by) if order_by else None)
        offset = decode_page_token(page_token)
        experiments = [e for e in self._experiments_with_tags(self._experiment_rows(Where()))
                       if e.lifecycle_stage in stages and all(_matches(c, e) for c in clauses)]
        # Default MLflow order: last_update_time DESC, then experiment_id; explicit keys go first.
        experiments.sort(key=lambda e: e.experiment_id)
        experiments.sort(key=lambda e: -(e.last_update_time or 0))
        for order in reversed(orders):
            experiments.sort(key=lambda e, o=order: _sort_key(_attr(e, o.entity, o.key)),
                             reverse=not order.ascending)
        page = experiments[offset:offset + max_results]
        token = encode_page_token(offset + max_results) if len(experiments) > offset + max_results else None
        return page, token


def _where_match(row: dict[str, Any], term: tuple[str, str, Any]) -> bool:
    column, op, value = term
    if op == "=":
        return row.get(column) == value
    if op == "in":
        return row.get(column) in value
    raise ValueError(f"unsupported Where op {op!r} for experiments")


def _attr(experiment: Experiment, entity: str, key: str) -> Any:
    if entity == "tag":
        return experiment.tags.get(key)
    return getattr(experiment, key)


def _sort_key(value: Any) -> tuple:
    return (value is None, value if value is not None else 0)


def _matches(clause: Any, experiment: Experiment) -> bool:
    from deltaflow.tracking._search import evaluate

    return evaluate(_attr(experiment, clause.entity, clause.key), clause)
