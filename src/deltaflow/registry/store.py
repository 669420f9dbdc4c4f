"""The registry store: its event log on the store's engine, serialised changes, model copies.

Every change is one row of ``registry_events``. A writer folds the log up to revision n, decides the
change against that state (validating input and permissions, so a refused change writes nothing),
and claims revision n+1 with the engine's conflict-checked insert. Losing the claim means another
writer changed the registry first: fold its change and decide again. Version numbers, name
uniqueness, "one version per alias" and "archive the other Production versions" are therefore
decided on an up-to-date state by exactly one writer at a time, in any number of processes.

A writer holding the registry key signs each row (``_integrity``); in a signed registry a row
without a valid signature is skipped by every reader and reported (:meth:`RegistryStore.verify`).
The acting user is :func:`deltaflow.config.acting_user`; registry admins are recorded in the log.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Optional

from deltaflow.errors import ConcurrentModification, NotFound, PermissionDenied
from deltaflow.registry import _rules as R
from deltaflow.registry.state import RegistryState, _Model, _Version

if TYPE_CHECKING:  # pragma: no cover
    from deltaflow.store.tracking_store import TrackingStore

__all__ = ["RegistryStore", "registry_store", "Decision"]

_log = logging.getLogger(__name__)
_LOG = "registry_events"
_CLAIM_ATTEMPTS = 60  # losing a claim means someone else committed; 60 losses in a row is pathological
ADMINS_ENV = "DELTAFLOW_REGISTRY_ADMINS"  # no longer read: admins are recorded in the registry
DEFAULT_PERMISSION_ENV = "DELTAFLOW_REGISTRY_DEFAULT_PERMISSION"


class Decision(dict):
    """An event to commit: ``action``, ``name`` and optional version/stages/comment/details."""


def _now_ms() -> int:
    return int(time.time() * 1000)


_warned_admins_env: list[bool] = []


def _warn_admins_env() -> None:
    if os.environ.get(ADMINS_ENV) and not _warned_admins_env:
        _warned_admins_env.append(True)
        _log.warning("deltaflow: %s is ignored: registry admins are recorded in the registry "
                     "(client.add_registry_admin / `deltaflow models admins add`)", ADMINS_ENV)


def default_permission() -> Optional[str]:
    """The level every user gets on a new model (``users`` grant); ``NONE`` gives none."""
    raw = os.environ.get(DEFAULT_PERMISSION_ENV, "CAN_READ").strip()
    return None if raw.upper() == "NONE" else R.check_level(raw)


def _registry_engine(tracking: "TrackingStore") -> Any:
    """The engine the registry's two small tables use.

    The tracking store's, except for a local folder store on the spark engine chosen by ``auto``
    (a notebook or job with a local SparkSession): there delta-rs does a registry change in ~0.1 s
    where a local Spark session needs seconds per read and MERGE, and both engines share these
    tables safely (the registration race is tested with both at once). A forced engine
    (DELTAFLOW_ENGINE) and cloud or metastore stores keep the tracking engine, whose credentials
    and catalog are the ones configured."""
    from deltaflow.config import settings

    engine = tracking.engine
    location = tracking.location
    if engine.name != "spark" or (settings.engine or "auto").strip().lower() != "auto":
        return engine
    if location.kind != "path" or not location.is_local:
        return engine
    try:
        from deltaflow.store.factory import make_engine

        return make_engine(location, "rust")
    except Exception:  # noqa: BLE001 - no deltalake here: the tracking engine serves the registry too
        return engine


class RegistryStore:
    def __init__(self, tracking: "TrackingStore") -> None:
        self.tracking = tracking
        self.engine = _registry_engine(tracking)
        self.location = tracking.location
        self._state = RegistryState()
        self._lock = threading.RLock()
        self._dispatcher: Any = None
        self.lost_claims = 0  # revisions another writer took first (a measure of contention)
        _warn_admins_env()

    # -- the log ----------------------------------------------------------------------------
    def _catch_up(self) -> RegistryState:
        """Fold every revision newer than ours (an incremental read), checking row signatures."""
        from deltaflow.registry import _integrity
        from deltaflow.store.engine import Where

        rows = self.engine.read(_LOG, Where((("revision", ">", self._state.revision),))).to_pylist()
        rejected = len(self._state.rejected)
        _integrity.fold_rows(self._state, rows, _integrity.load_key(), self.location.uri)
        for bad in self._state.rejected[rejected:]:
            _log.warning("deltaflow: registry revision %d row %s (%s by %r) ignored: %s", bad.revision,
                         bad.event_id, bad.action, bad.user_id, bad.reason)
        return self._state

    def state(self, refresh: bool = True) -> RegistryState:
        """A consistent snapshot, brought up to date first unless ``refresh`` is False (right after
        this process's own commit the local state already holds it: read-your-writes for free)."""
        with self._lock:
            return (self._catch_up() if refresh else self._state).copy()

    def events(self) -> list[dict[str, Any]]:
        """Every applied log row, decoded, oldest first (one per revision; rejected rows left out)."""
        return self._full_fold()[1]

    def verify(self) -> RegistryState:
        """The registry folded from its whole log, with every rejected row in ``rejected``."""
        return self._full_fold()[0]

    def _full_fold(self) -> tuple[RegistryState, list[dict[str, Any]]]:
        from deltaflow.registry import _integrity

        applied: list[dict[str, Any]] = []
        state = RegistryState()
        rows = self.engine.read(_LOG).to_pylist()  # the whole log: it is small
        _integrity.fold_rows(state, rows, _integrity.load_key(), self.location.uri, applied)
        return state, applied

    def commit(self, decide: Callable[[RegistryState, str], Optional[Decision]]) -> Optional[dict[str, Any]]:
        """Decide a change on the current state and commit it as the next revision.

        ``decide(state, user)`` raises to refuse (nothing is written) or returns the event; None
        means "nothing to change". Returns the committed event.
        """
        from deltaflow.config import acting_user
        from deltaflow.registry import _integrity
        from deltaflow.store import _arrow
        from deltaflow.store.schema import TABLES

        user = acting_user()
        key = _integrity.load_key()
        delay = 0.02
        for _attempt in range(_CLAIM_ATTEMPTS):
            with self._lock:
                state = self._catch_up()
                decision = decide(state, user)
                if decision is None:
                    return None
                event = {"revision": state.revision + 1, "event_id": uuid.uuid4().hex, "event_time": _now_ms(),
                         "user_id": user, "version": None, "from_stage": None, "to_stage": None,
                         "comment": None, **decision}
                event["details"] = dict(event.get("details") or {})
                if key is not None:  # signed even in an unsigned registry: harmless, and checkable later
                    event["details"][_integrity.SIG] = _integrity.sign_row(key, event)
                row = dict(event, details=json.dumps(event["details"], sort_keys=True))
                data = _arrow.table_from_pylist([row], TABLES[_LOG].schema)
                if self.engine.insert_if_absent(_LOG, data, ["revision"]):
                    state.apply(event)
                    if key is not None and (event["revision"] == 1 or event["action"] == "SEAL_REGISTRY"):
                        state.key_id = key.key_id  # this process created or sealed a signed registry
                    self._notify(event)
                    return event
                self.lost_claims += 1
            time.sleep(delay * (0.5 + random.random()))  # let the winner's commit settle, then refold
            delay = min(delay * 1.5, 0.5)
        raise ConcurrentModification(f"registry change lost to concurrent writers {_CLAIM_ATTEMPTS} times in a row")

    # -- webhooks ---------------------------------------------------------------------------
    def _notify(self, event: dict[str, Any]) -> None:
        from deltaflow.registry import webhooks

        try:
            deliveries = webhooks.deliveries_for(event, self._state)
            if deliveries:
                if self._dispatcher is None:
                    self._dispatcher = webhooks.Dispatcher(self._record_delivery)
                self._dispatcher.submit(deliveries)
        except Exception:  # noqa: BLE001 - a webhook problem must never undo or fail a committed change
            _log.warning("deltaflow: could not queue webhooks for registry revision %s", event["revision"],
                         exc_info=True)

    def _record_delivery(self, record: dict[str, Any]) -> None:
        from deltaflow.store import _arrow
        from deltaflow.store.schema import TABLES

        data = _arrow.table_from_pylist([record], TABLES["webhook_deliveries"].schema)
        # One delivery id for all attempts of a delivery: the attempt number keeps each append distinct.
        self.engine.append("webhook_deliveries", data, app_id=f"wh-{record['delivery_id']}",
                           version=record["attempt"])

    def wait_for_webhooks(self, timeout: Optional[float] = None) -> bool:
        """Block until queued deliveries (and their retries) are done; False on timeout."""
        return self._dispatcher.wait(timeout) if self._dispatcher is not None else True

    def deliveries(self, webhook_id: Optional[str] = None) -> list[dict[str, Any]]:
        from deltaflow.store.engine import Where

        rows = self.engine.read("webhook_deliveries", Where.of(webhook_id=webhook_id)).to_pylist()
        return sorted(rows, key=lambda r: (r["event_time"], r["revision"], r["attempt"]))

    # -- model copies -----------------------------------------------------------------------
    def copy_model(self, name: str, source: str) -> tuple[str, Optional[str]]:
        """Copy the model at ``source`` (any model URI) into the registry's own storage, so a version
        stays loadable when its run is deleted. Returns ``(storage_location, run_id)``. An incomplete
        model is refused before anything is written; the copy is published whole (registry/copies.py)."""
        from deltaflow.registry.copies import checked_source, publish_copy

        with checked_source(source, self.location.uri) as (local, run_id):
            return publish_copy(self.location.artifact_root, name, local), run_id


# -- decisions' shared checks --------------------------------------------------------------
def need_model(state: RegistryState, name: str) -> _Model:
    model = state.models.get(name)
    if model is None:
        raise NotFound(f"registered model {name!r} does not exist")
    return model


def need_version(state: RegistryState, name: str, version: int) -> tuple[_Model, _Version]:
    model = need_model(state, name)
    v = model.versions.get(version)
    if v is None:
        existing = sorted(model.versions)
        shown = f"its versions are {', '.join(map(str, existing[-10:]))}" if existing else "it has no versions"
        raise NotFound(f"model {name!r} has no version {version}; {shown}")
    return model, v


def need_level(state: RegistryState, model: _Model, user: str, level: str, what: str) -> None:
    held = state.permission_of(model, user)
    if not R.level_at_least(held, level):
        raise PermissionDenied(f"user {user!r} lacks {level} on registered model {model.name!r} "
                               f"(holds {held or 'no permission'}), which {what} needs")


def need_admin(state: RegistryState, user: str, what: str) -> None:
    if user not in state.admins:
        shown = ", ".join(sorted(state.admins)) or "none"
        raise PermissionDenied(f"user {user!r} is not a registry admin, which {what} needs (admins: {shown}; an "
                               "admin adds one with `deltaflow models admins add <user>`)")


def registry_store(tracking: "TrackingStore") -> RegistryStore:
    """The registry of a tracking store (one per store per process)."""
    store = getattr(tracking, "_registry_store", None)
    if store is None:
        with tracking._lock:
            store = getattr(tracking, "_registry_store", None)
            if store is None:
                store = RegistryStore(tracking)
                tracking._registry_store = store
    return store
