"""The tracking store: MLflow's store operations on the Delta tables, engine-agnostic.

Writes go into the :class:`WriteBuffer` (never waiting for Delta); reads flush this process's buffer
first, so a process always reads its own writes, then ask the engine for folded state. This module
holds no Spark code: everything table-shaped goes through :class:`~deltaflow.store.engine.Engine`.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence


from deltaflow.config import StoreLocation, settings
from deltaflow.entities import (
    heartbeat_interval_s,
    Dataset,
    DatasetInput,
    InputTag,
    LifecycleStage,
    Metric,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunStatus,
)
from deltaflow.errors import InvalidArgument, InvalidState, NotFound
from deltaflow.store.buffer import WriteBuffer
from deltaflow.store.engine import Engine, RunQuery, Where
from deltaflow.store.experiments import DEFAULT_EXPERIMENT_ID, ExperimentsMixin
from deltaflow.store.fold import fold_latest_metrics, fold_params, fold_runs, fold_tags
from deltaflow.tracking import _validation as V

__all__ = ["TrackingStore", "encode_page_token", "decode_page_token", "SEARCH_MAX_RESULTS"]

_log = logging.getLogger(__name__)
SEARCH_MAX_RESULTS = 50_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(token: Optional[str]) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()).decode())["offset"]
    except Exception:  # noqa: BLE001 - any garbage token is the caller's error
        raise InvalidArgument(f"page_token {token[:40]!r} is not a token returned by a previous search") from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidArgument(f"page_token {token[:40]!r} is not a token returned by a previous search")
    return offset


@dataclass
class _RunMeta:
    """What the write path needs to know about a run without reading the tables each call."""

    experiment_id: str
    lifecycle_stage: str
    params: Optional[dict[str, str]] = None  # loaded lazily for runs not created here
    lock: threading.Lock = field(default_factory=threading.Lock)


class TrackingStore(ExperimentsMixin):
    def __init__(self, location: StoreLocation, engine: Engine) -> None:
        self.location = location
        self.engine = engine
        self.writer_id = uuid.uuid4().hex
        self._seq = itertools.count()
        self._runs: dict[str, _RunMeta] = {}
        self._active: set[str] = set()  # runs this process heartbeats for
        self._last_heartbeat = time.monotonic()
        self._lock = threading.Lock()
        self._experiment_cache: dict[str, Any] = {}
        self._spark_engine: Optional[Engine] = None
        self._healed_at: Optional[float] = None  # monotonic time of the last torn-flush check
        self.buffer = WriteBuffer(
            engine,
            self.writer_id,
            flush_interval_s=settings.flush_interval_s,
            flush_rows=settings.flush_rows,
            max_buffered_rows=settings.max_buffered_rows,
            on_tick=self._heartbeat_tick,
        )

    # -- plumbing ---------------------------------------------------------------------------
    def _event(self) -> dict[str, int]:
        return {"event_time": _now_ms(), "seq": next(self._seq)}

    def flush(self, timeout: Optional[float] = None) -> None:
        self.buffer.flush(timeout)

    def spark_engine(self) -> Any:
        """A Spark engine over this store's tables, for Spark-only features (DataFrame output, SQL
        views) when the store itself writes through another engine. This process's buffer is flushed
        first so Spark sees everything logged so far."""
        if self.engine.name == "spark":
            self.flush()
            return self.engine
        from deltaflow.store.factory import make_engine

        with self._lock:
            if self._spark_engine is None:
                self._spark_engine = make_engine(self.location, "spark")
        self.flush()
        return self._spark_engine

    def _heal_if_due(self) -> None:
        """Before reading latest values: repair flushes torn by a crash (recovery.py), on the first
        read and then at most once a minute (stores delta-rs reaches)."""
        now = time.monotonic()
        if self._healed_at is not None and now - self._healed_at < 60.0:
            return
        self._healed_at = now
        from deltaflow.store import rust_engine

        # delta-rs cannot run in a process forked after it started; the engine itself says so.
        if rust_engine.supports(self.location) and not rust_engine.forked_after_start():
            from deltaflow.store.recovery import heal_quietly

            heal_quietly(self.location)

    def close(self, timeout: Optional[float] = None) -> None:
        self.buffer.close(timeout if timeout is not None else settings.exit_flush_timeout_s)

    def _heartbeat_tick(self) -> None:
        if not self._active or time.monotonic() - self._last_heartbeat < heartbeat_interval_s():
            return
        self._last_heartbeat = time.monotonic()
        now = _now_ms()
        rows = []
        for run_id in list(self._active):
            meta = self._runs.get(run_id)
            if meta is not None:
                rows.append({"run_id": run_id, "experiment_id": meta.experiment_id, "heartbeat_time": now,
                             "writer_id": self.writer_id, **self._event()})
        self.buffer.add_rows("runs", rows)

    # -- runs: write ------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: Optional[int],
        tags: Sequence[tuple[str, str]],
        run_name: Optional[str],
        status: str = RunStatus.RUNNING,
    ) -> Run:
        experiment_id = V.validate_experiment_id(experiment_id)
        run_name = V.validate_run_name(run_name)
        tags = [V.validate_tag(k, v) for k, v in tags]
        try:
            experiment = self.get_experiment(experiment_id)
        except NotFound:
            if experiment_id != DEFAULT_EXPERIMENT_ID:
                raise
            self.default_experiment_id()  # a run in Default creates it on a store that has none yet
            experiment = self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidState(
                f"experiment {experiment_id!r} ({experiment.name!r}) is deleted; restore it before creating runs in it"
            )
        tag_dict = dict(tags)
        if run_name is None:
            run_name = tag_dict.get("mlflow.runName") or _generate_run_name()
        tag_dict["mlflow.runName"] = run_name
        run_id = uuid.uuid4().hex
        start = int(start_time) if start_time is not None else _now_ms()
        artifact_uri = f"{experiment.artifact_location.rstrip('/')}/{run_id}/artifacts"
        row = {
            "run_id": run_id, "experiment_id": experiment_id, "run_name": run_name, "user_id": user_id,
            "status": status, "start_time": start, "end_time": None, "artifact_uri": artifact_uri,
            "lifecycle_stage": LifecycleStage.ACTIVE, "heartbeat_time": _now_ms(),
            "writer_id": self.writer_id, **self._event(),
        }
        self._runs[run_id] = _RunMeta(experiment_id, LifecycleStage.ACTIVE, params={})
        self._active.add(run_id)
        self.buffer.add_rows("runs", [row])
        self._add_tags(run_id, experiment_id, list(tag_dict.items()))
        info = RunInfo(run_id=run_id, experiment_id=experiment_id, run_name=run_name, user_id=user_id,
                       status=status, start_time=start, end_time=None, artifact_uri=artifact_uri,
                       lifecycle_stage=LifecycleStage.ACTIVE, last_heartbeat_time=row["heartbeat_time"])
        return Run(info=info, data=RunData(tags=tag_dict))

    def _meta(self, run_id: str) -> _RunMeta:
        V.validate_run_id(run_id)
        meta = self._runs.get(run_id)
        if meta is None:
            state = self._run_state(run_id)
            meta = _RunMeta(state["experiment_id"], state["lifecycle_stage"] or LifecycleStage.ACTIVE)
            self._runs[run_id] = meta
        return meta

    def _writable(self, run_id: str) -> _RunMeta:
        meta = self._meta(run_id)
        if meta.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidState(
                f"run {run_id!r} is deleted (lifecycle_stage {meta.lifecycle_stage!r}); restore it before logging to it"
            )
        return meta

    def update_run_info(self, run_id: str, status: Optional[str] = None, end_time: Optional[int] = None,
                        run_name: Optional[str] = None) -> None:
        meta = self._writable(run_id)
        if status is not None and status not in RunStatus.ALL:
            raise InvalidArgument(f"run status {status!r} is not valid; use one of {', '.join(RunStatus.ALL)}")
        run_name = V.validate_run_name(run_name)
        row = {"run_id": run_id, "experiment_id": meta.experiment_id, "status": status, "end_time": end_time,
               "run_name": run_name, "writer_id": self.writer_id, "heartbeat_time": _now_ms(), **self._event()}
        self.buffer.add_rows("runs", [row])
        if run_name is not None:
            self._add_tags(run_id, meta.experiment_id, [("mlflow.runName", run_name)])
        if status is not None:
            if RunStatus.is_terminated(status):
                self._active.discard(run_id)
                self.buffer.request_flush()  # end_run: commit now, without making the caller wait
            else:
                self._active.add(run_id)

    def set_run_lifecycle(self, run_id: str, stage: str) -> None:
        meta = self._meta(run_id)
        self.buffer.add_rows("runs", [{"run_id": run_id, "experiment_id": meta.experiment_id,
                                       "lifecycle_stage": stage, "writer_id": self.writer_id, **self._event()}])
        meta.lifecycle_stage = stage
        self.buffer.flush()

    def _params_of(self, run_id: str, meta: _RunMeta) -> dict[str, str]:
        if meta.params is None:
            self.flush()
            rows = self.engine.read("params", Where.of(run_id=run_id)).to_pylist()
            meta.params = fold_params(rows).get(run_id, {})
        return meta.params

    def log_batch(self, run_id: str, metrics: Iterable[Any] = (), params: Iterable[Any] = (),
                  tags: Iterable[Any] = ()) -> None:
        """Validate everything first, check param immutability, then buffer (all or nothing)."""
        metrics, params, tags = V.validate_batch(list(metrics), list(params), list(tags))
        meta = self._writable(run_id)
        if params:
            with meta.lock:
                existing = self._params_of(run_id, meta)
                new = []
                for key, value in params:
                    old = existing.get(key)
                    if old is None:
                        new.append((key, value))
                    elif old != value:
                        raise InvalidArgument(
                            f"param {key!r} of run {run_id!r} was already logged with value {old[:200]!r}; "
                            f"it cannot change to {value[:200]!r} (params are immutable; use a tag or metric "
                            "for values that change)"
                        )
                if new:
                    event = self._event()
                    self.buffer.add_rows("params", [
                        {"run_id": run_id, "experiment_id": meta.experiment_id, "key": k, "value": v, **event}
                        for k, v in new])
                    existing.update(new)
        if tags:
            self._add_tags(run_id, meta.experiment_id, tags)
        self.buffer.add_metrics(run_id, meta.experiment_id, metrics)

    def log_metric_fast(self, run_id: str, key: str, value: Any, timestamp: Optional[int], step: Optional[int]) -> None:
        """The hot path of ``log_metric``: validation, one dict lookup, one buffered append."""
        meta = self._runs.get(run_id)
        if meta is None or meta.lifecycle_stage != LifecycleStage.ACTIVE:
            meta = self._writable(run_id)
        key, value, ts, step = V.validate_metric(key, value, timestamp if timestamp is not None else _now_ms(),
                                                 step if step is not None else 0)
        self.buffer.add_metric(run_id, meta.experiment_id, key, value, step, ts)

    def _add_tags(self, run_id: str, experiment_id: str, tags: Sequence[tuple[str, Optional[str]]]) -> None:
        event = self._event()
        self.buffer.add_rows("tags", [{"run_id": run_id, "experiment_id": experiment_id, "key": k, "value": v,
                                       **event} for k, v in tags])

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        key, value = V.validate_tag(key, value)
        meta = self._writable(run_id)
        self._add_tags(run_id, meta.experiment_id, [(key, value)])
        if key == "mlflow.runName":
            self.buffer.add_rows("runs", [{"run_id": run_id, "experiment_id": meta.experiment_id,
                                           "run_name": value, "writer_id": self.writer_id, **self._event()}])

    def delete_tag(self, run_id: str, key: str) -> None:
        V.validate_key(key, "tag")
        meta = self._writable(run_id)
        current = self.get_run(run_id).data.tags
        if key not in current:
            raise NotFound(f"tag {key!r} does not exist on run {run_id!r}")
        self._add_tags(run_id, meta.experiment_id, [(key, None)])

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        meta = self._writable(run_id)
        rows = []
        for item in datasets:
            ds = item.dataset
            for name, value in (("name", ds.name), ("digest", ds.digest), ("source_type", ds.source_type),
                                ("source", ds.source)):
                if not isinstance(value, str) or not value:
                    raise InvalidArgument(f"dataset {name} {value!r} must be a non-empty string")
            tags = {t.key: t.value for t in item.tags}
            version = getattr(ds, "version", None)
            rows.append({"run_id": run_id, "experiment_id": meta.experiment_id, "name": ds.name,
                         "digest": ds.digest, "source_type": ds.source_type, "source": ds.source,
                         "dataset_version": version, "schema": ds.schema, "profile": ds.profile,
                         "context": tags.get("mlflow.data.context"), "tags_json": json.dumps(tags, sort_keys=True),
                         **self._event()})
        self.buffer.add_rows("inputs", rows)

    # -- runs: read -------------------------------------------------------------------------
    def _run_state_rows(self, run_ids: Sequence[str], flush: bool = True) -> list[dict[str, Any]]:
        if flush:
            self.flush()
        rows = self.engine.read("runs", Where.of(run_id=list(run_ids))).to_pylist()
        return list(fold_runs(rows).values())

    def _run_state(self, run_id: str, flush: bool = True) -> dict[str, Any]:
        """The run's folded row of the runs table; NotFound when it has none."""
        state = self._run_state_rows([run_id], flush)
        if not state:
            raise NotFound(f"run {run_id!r} does not exist in store {self.location.uri!r}")
        return state[0]

    def run_status(self, run_id: str, *, committed: bool = False) -> str:
        """The run's status, read from the runs table alone (what a launcher checks when its entry
        point exits, without the params, tags and metrics ``get_run`` also reads).

        ``committed=True`` reads what is committed without first committing this process's pending
        writes: what another process (the entry point) recorded. Rows fold by event time, so a
        status this process logged earlier and has not committed yet cannot hide a later one."""
        V.validate_run_id(run_id)
        return self._run_state(run_id, flush=not committed)["status"]

    def get_run(self, run_id: str) -> Run:
        V.validate_run_id(run_id)
        runs = self.load_runs([run_id])
        if not runs:
            raise NotFound(f"run {run_id!r} does not exist in store {self.location.uri!r}")
        return runs[0]

    def load_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """Whole runs for the given ids, in the given order (missing ids skipped)."""
        if not run_ids:
            return []
        self.flush()
        self._heal_if_due()
        where = Where.of(run_id=list(run_ids))
        raw = self.engine.read_many({t: (where, None) for t in
                                     ("runs", "latest_metrics", "params", "tags", "inputs")})
        states = fold_runs(raw["runs"].to_pylist())
        metrics = fold_latest_metrics(raw["latest_metrics"].to_pylist())
        params = fold_params(raw["params"].to_pylist())
        tags = fold_tags(raw["tags"].to_pylist(), "run_id")
        inputs: dict[str, list[DatasetInput]] = {}
        seen: set[tuple] = set()
        for r in sorted(raw["inputs"].to_pylist(), key=lambda r: (r["event_time"], r["seq"])):
            identity = (r["run_id"], r["name"], r["digest"], r["context"])
            if identity in seen:
                continue
            seen.add(identity)
            in_tags = [InputTag(k, v) for k, v in json.loads(r["tags_json"] or "{}").items()]
            ds = Dataset(name=r["name"], digest=r["digest"], source_type=r["source_type"], source=r["source"],
                         schema=r["schema"], profile=r["profile"])
            inputs.setdefault(r["run_id"], []).append(DatasetInput(dataset=ds, tags=in_tags))
        out = []
        for run_id in run_ids:
            s = states.get(run_id)
            if s is None:
                continue
            info = RunInfo(run_id=run_id, experiment_id=s["experiment_id"], run_name=s["run_name"] or "",
                           user_id=s["user_id"] or "", status=s["status"] or RunStatus.RUNNING,
                           start_time=s["start_time"], end_time=s["end_time"], artifact_uri=s["artifact_uri"] or "",
                           lifecycle_stage=s["lifecycle_stage"] or LifecycleStage.ACTIVE,
                           last_heartbeat_time=s["heartbeat_time"])
            run_metrics = {k: v["value"] for k, v in metrics.get(run_id, {}).items()}
            data = RunData(metrics=run_metrics, params=params.get(run_id, {}), tags=tags.get(run_id, {}))
            out.append(Run(info=info, data=data, inputs=RunInputs(inputs.get(run_id, []))))
        return out

    def get_metric_history(self, run_id: str, key: str, max_results: Optional[int] = None) -> list[Metric]:
        V.validate_run_id(run_id)
        V.validate_key(key, "metric")
        try:
            self._meta(run_id)
        except NotFound:
            return []  # MLflow: the history of a run that does not exist is empty
        self.flush()
        rows = self.engine.read("metrics", Where.of(run_id=run_id, key=key),
                                columns=["key", "value", "timestamp", "step"]).to_pylist()
        rows.sort(key=lambda r: (r["step"], r["timestamp"]))
        if max_results is not None:
            rows = rows[:max_results]
        return [Metric(key=r["key"], value=r["value"], timestamp=r["timestamp"], step=r["step"], run_id=run_id)
                for r in rows]

    def run_query(self, experiment_ids: Sequence[str], filter_string: Optional[str], run_view_type: int,
                  order_by: Optional[Sequence[str]], offset: int = 0, limit: Optional[int] = None) -> RunQuery:
        from deltaflow.entities import ViewType
        from deltaflow.tracking._search import parse_run_filter, parse_run_order_by

        if isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        ids = tuple(V.validate_experiment_id(e) for e in experiment_ids)
        if not ids:
            raise InvalidArgument("search_runs needs at least one experiment id or name")
        if order_by is not None and isinstance(order_by, str):
            order_by = [order_by]
        return RunQuery(experiment_ids=ids, lifecycle_stages=ViewType.stages(ViewType.from_any(run_view_type)),
                        clauses=parse_run_filter(filter_string), order_by=parse_run_order_by(order_by),
                        offset=offset, limit=limit)

    def search_runs(self, experiment_ids: Sequence[str], filter_string: Optional[str] = None,
                    run_view_type: int = 1, max_results: int = 1000, order_by: Optional[Sequence[str]] = None,
                    page_token: Optional[str] = None) -> tuple[list[Run], Optional[str]]:
        if not isinstance(max_results, int) or isinstance(max_results, bool) or not 0 < max_results <= SEARCH_MAX_RESULTS:
            raise InvalidArgument(f"max_results {max_results!r} must be an integer from 1 to {SEARCH_MAX_RESULTS}")
        if isinstance(experiment_ids, (list, tuple)) and not experiment_ids:
            return [], None  # as MLflow: no experiments (e.g. search_all_experiments on an empty store)
        offset = decode_page_token(page_token)
        query = self.run_query(experiment_ids, filter_string, run_view_type, order_by, offset, max_results + 1)
        self.flush()
        self._heal_if_due()
        ids = self.engine.search_runs(query)
        token = encode_page_token(offset + max_results) if len(ids) > max_results else None
        return self.load_runs(ids[:max_results]), token


_ADJECTIVES = ("bold", "calm", "eager", "fast", "gentle", "keen", "lucid", "merry", "nimble", "quiet",
               "rapid", "sharp", "steady", "vivid", "wise", "zesty")
_NOUNS = ("lake", "delta", "river", "spark", "stream", "tide", "wave", "harbor", "reef", "brook",
          "cove", "fjord", "inlet", "lagoon", "marsh", "shoal")


def _generate_run_name() -> str:
    import random

    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(0, 999)}"
