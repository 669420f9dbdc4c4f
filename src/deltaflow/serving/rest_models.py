"""What the REST server serves: a model URI resolved through delta-rs, loaded without a JVM, and
replaced when the registry moves the alias (or stage, or ``latest``) it was named by.

``models:/`` and ``runs:/`` URIs are resolved by a client on the rust engine, so the server process
never starts a JVM; a store only Spark can read (``metastore:``, ``dbfs:/``) is a clear error at start.
Spark ML models are refused before anything is loaded: their ``predict`` needs a SparkSession.

:class:`ModelSlot` holds the model being served. A request takes the slot's current model once and
uses it to the end, so swapping in a new version (one attribute assignment) never changes the model
under a request already running; the old model is freed when its last request finishes.
:class:`ModelWatcher` polls the registry and loads the new version beside the old before swapping.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from deltaflow.errors import DeltaflowError, InvalidArgument, NotFound

__all__ = ["ServedModel", "ModelSlot", "ModelWatcher", "load_served", "model_folder", "watches_registry", "check_servable",
           "resolve_version"]

_log = logging.getLogger("deltaflow.serving")
# Loaders whose predict needs a SparkSession (MLflow's name and ours).
_SPARK_LOADERS = ("mlflow.spark", "deltaflow.spark")


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and where it came from (``version``: the registry version, for ``models:/``)."""

    model: Any  # deltaflow.pyfunc.PyFuncModel
    uri: str
    path: str
    version: Optional[int] = None
    loaded_at: float = field(default_factory=time.time)

    @property
    def label(self) -> str:
        return f"{self.uri} (version {self.version})" if self.version is not None else self.uri


class ModelSlot:
    """The model currently served. ``current`` is read once per request; ``swap`` replaces it."""

    def __init__(self, served: ServedModel) -> None:
        self._current = served
        self.swaps = 0

    @property
    def current(self) -> ServedModel:
        return self._current

    def swap(self, served: ServedModel) -> ServedModel:
        """Serve ``served`` from now on; returns the model it replaced (requests holding it finish on it)."""
        old, self._current = self._current, served  # one reference store: atomic for every reader
        self.swaps += 1
        return old


def check_servable(meta: Any, where: str) -> None:
    """InvalidArgument unless the MLmodel ``meta`` describes a model the server can load without Spark."""
    pyfunc = meta.flavors.get("python_function")
    if not isinstance(pyfunc, dict):
        raise InvalidArgument(f"{where} has no python_function flavor (it has {sorted(meta.flavors)}); the "
                              "scoring server serves models with the generic python_function interface")
    if pyfunc.get("loader_module") in _SPARK_LOADERS:
        raise InvalidArgument(
            f"{where} is a Spark ML model (loader_module {pyfunc.get('loader_module')!r}): its predict needs a "
            "JVM and a SparkSession, which the REST server does not start. Score it in Spark with "
            "`deltaflow models score` or deltaflow.pyfunc.spark_udf, or serve a scikit-learn or custom "
            "Python model")


def watches_registry(uri: str) -> bool:
    """Whether ``uri`` names a registry pointer that can move (an alias, a stage or ``latest``)."""
    from deltaflow.models.uri import parse_model_uri

    parsed = parse_model_uri(uri)
    return parsed.kind == "models" and parsed.version is None


def _client(tracking_uri: Optional[str]) -> Any:
    """A client reading the store through delta-rs only: the server process never starts a JVM."""
    from deltaflow.config import resolve_location
    from deltaflow.store.factory import choose_engine
    from deltaflow.tracking.client import DeltaflowClient

    location = resolve_location(tracking_uri)
    try:
        choose_engine(location, "rust")
    except InvalidArgument as exc:
        raise InvalidArgument(
            f"the scoring server reads the registry through delta-rs, so that no JVM runs in the server "
            f"process, and delta-rs cannot read store {location.uri!r} ({exc.message}). Serve a model folder "
            "or a store delta-rs reaches, or export the model (`deltaflow models export`) where Spark "
            "runs") from exc
    return DeltaflowClient(tracking_uri, engine="rust")


def resolve_version(client: Any, uri: str) -> Any:
    """The ModelVersion a ``models:/`` URI names right now."""
    from deltaflow.models.uri import parse_model_uri

    parsed = parse_model_uri(uri)
    name = parsed.name or ""
    if parsed.version is not None:
        return client.get_model_version(name, parsed.version)
    if parsed.alias is not None:
        return client.get_model_version_by_alias(name, parsed.alias)
    found = client.get_latest_versions(name, [parsed.stage] if parsed.stage is not None else None)
    if not found:
        what = f"no version in stage {parsed.stage}" if parsed.stage is not None else "no versions"
        raise NotFound(f"cannot serve {uri!r}: registered model {name!r} has {what}")
    return max(found, key=lambda v: v.version)


def model_folder(uri: str, tracking_uri: Optional[str], client: Any, version: Optional[int]) -> tuple[str, Optional[int]]:
    """A local folder holding the model ``uri`` names, and its registry version (``models:/`` URIs).

    ``client`` reads the registry (a delta-rs one is made when None); ``version`` pins a ``models:/`` URI."""
    from deltaflow.models.uri import download_model, parse_model_uri

    parsed = parse_model_uri(uri)
    if parsed.kind == "models":
        client = client or _client(tracking_uri)
        found = (client.get_model_version(parsed.name, version) if version is not None
                 else resolve_version(client, uri))
        if not found.storage_location:
            raise NotFound(f"{uri!r} resolved to version {found.version} of {parsed.name!r}, which has no stored copy")
        return download_model(found.storage_location), found.version
    if parsed.kind == "runs":
        client = client or _client(tracking_uri)
        try:
            return client.download_artifacts(parsed.run_id, parsed.artifact_path or ""), None
        except NotFound as exc:
            raise NotFound(f"no model at {uri!r}: {exc}") from exc
    return download_model(uri), None


def load_served(uri: str, tracking_uri: Optional[str] = None, *, version: Optional[int] = None,
                client: Any = None) -> ServedModel:
    """Resolve and load ``uri`` (``version`` pins a ``models:/`` URI to that registry version)."""
    from deltaflow import pyfunc
    from deltaflow.models.model import Model

    path, found = model_folder(uri, tracking_uri, client, version)
    where = f"the model {uri!r}" + (f" (version {found})" if found is not None else "")
    check_servable(Model.load(path), where)
    return ServedModel(pyfunc.load_model(path), uri, path, found)


class ModelWatcher:
    """Checks the registry for the version ``slot``'s URI names, and swaps in a moved version.

    ``check()`` does one poll (blocking: a registry read, and a model load when the version moved);
    the server runs it in a thread every ``interval`` seconds. A version that fails to load is logged
    and not retried while the pointer stays on it; the model being served stays in place.
    """

    def __init__(self, slot: ModelSlot, tracking_uri: Optional[str], interval: float,
                 loader: Callable[..., ServedModel] = load_served) -> None:
        if interval <= 0:
            raise InvalidArgument(f"poll interval {interval!r} must be a positive number of seconds")
        self.slot = slot
        self.uri = slot.current.uri
        self.tracking_uri = tracking_uri
        self.interval = float(interval)
        self._loader = loader
        self._client: Any = None
        self._refused: Optional[int] = None
        self._lock = threading.Lock()  # one check at a time, whoever calls it
        self.checks = 0

    def check(self) -> Optional[ServedModel]:
        """Poll once; returns the model swapped in, or None when nothing changed."""
        with self._lock:
            self.checks += 1
            if self._client is None:
                self._client = _client(self.tracking_uri)
            try:
                target = resolve_version(self._client, self.uri).version
            except DeltaflowError as exc:  # e.g. the alias was deleted: keep serving what we have
                _log.warning("deltaflow serve: cannot resolve %s (%s); still serving version %s",
                             self.uri, exc.message, self.slot.current.version)
                return None
            if target == self.slot.current.version:
                self._refused = None  # the pointer came back: a later move to that version is tried again
                return None
            if target == self._refused:
                return None
            _log.info("deltaflow serve: %s moved to version %s; loading it beside version %s",
                      self.uri, target, self.slot.current.version)
            try:
                new = self._loader(self.uri, self.tracking_uri, version=target, client=self._client)
            except Exception as exc:  # noqa: BLE001 - a bad new version must not stop the server
                self._refused = target
                _log.error("deltaflow serve: version %s of %s cannot be served (%s: %s); still serving version %s",
                           target, self.uri, type(exc).__name__, exc, self.slot.current.version)
                return None
            self._refused = None
            old = self.slot.swap(new)
            _log.info("deltaflow serve: now serving %s (was version %s)", new.label, old.version)
            return new

    async def run(self) -> None:
        """Poll forever (until cancelled), every ``interval`` seconds, off the event loop."""
        import asyncio

        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # noqa: BLE001 - storage hiccups: log and try again next time
                _log.exception("deltaflow serve: registry check of %s failed", self.uri)
