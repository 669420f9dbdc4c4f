"""The explicit client: MlflowClient's method names with explicit ids, over the tracking store.

No storage logic lives here: every argument is validated (:mod:`deltaflow.tracking._validation`, an
:class:`~deltaflow.errors.InvalidArgument` naming the bad value) before anything reaches the store's
write buffer, then passed to the store; artifacts go through :mod:`deltaflow.artifacts`.
``synchronous=True`` on a write makes it durable before returning.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import time
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from deltaflow.entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    LifecycleStage,
    Metric,
    PagedList,
    Param,
    Run,
    RunStatus,
    RunTag,
    ViewType,
)
from deltaflow.errors import InvalidArgument, MissingDependency
from deltaflow.registry.client import RegistryClientMixin
from deltaflow.tracking import _pending
from deltaflow.tracking import _validation as V

if TYPE_CHECKING:  # pragma: no cover
    from deltaflow.store.tracking_store import TrackingStore

SEARCH_MAX_RESULTS = 50_000  # MLflow's page-size ceiling

__all__ = ["DeltaflowClient", "MlflowClient"]


class DeltaflowClient(RegistryClientMixin):
    """Explicit-id tracking and registry client (``MlflowClient`` is an alias, for porting)."""

    def __init__(self, tracking_uri: Optional[str] = None, registry_uri: Optional[str] = None, *,
                 engine: Optional[str] = None) -> None:
        """``engine``: ``"auto"`` (default, or ``DELTAFLOW_ENGINE``), ``"spark"`` or ``"rust"``."""
        self._tracking_uri = tracking_uri
        self._registry_uri = registry_uri
        self._engine = engine
        self._store_obj: "Optional[TrackingStore]" = None

    @property
    def _store(self) -> "TrackingStore":
        if self._store_obj is None:  # lazy: building a client is free, and pyarrow loads on first use
            from deltaflow.store.factory import get_store

            self._store_obj = get_store(self._tracking_uri, engine=self._engine)
        return self._store_obj

    @property
    def tracking_uri(self) -> str:
        return self._store.location.uri

    # -- experiments ------------------------------------------------------------------------
    def create_experiment(self, name: str, artifact_location: Optional[str] = None,
                          tags: Optional[dict[str, Any]] = None) -> str:
        name = V.validate_experiment_name(name)
        artifact_location = V.validate_artifact_location(artifact_location)
        checked = V.validate_tags(tags, "experiment tags")
        return self._store.create_experiment(name, artifact_location, dict(checked) if tags is not None else None)

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._store.get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str) -> Optional[Experiment]:
        return self._store.get_experiment_by_name(name)

    def search_experiments(self, view_type: int = ViewType.ACTIVE_ONLY, max_results: int = SEARCH_MAX_RESULTS,
                           filter_string: Optional[str] = None, order_by: Optional[Sequence[str]] = None,
                           page_token: Optional[str] = None) -> PagedList:
        items, token = self._store.search_experiments(view_type, max_results, filter_string, order_by, page_token)
        return PagedList(items, token)

    def delete_experiment(self, experiment_id: str) -> None:
        self._store.delete_experiment(experiment_id)

    def restore_experiment(self, experiment_id: str) -> None:
        self._store.restore_experiment(experiment_id)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self._store.rename_experiment(experiment_id, new_name)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self._store.set_experiment_tag(experiment_id, key, value)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self._store.delete_experiment_tag(experiment_id, key)

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, experiment_id: str, start_time: Optional[int] = None,
                   tags: Optional[dict[str, Any]] = None, run_name: Optional[str] = None, *,
                   status: str = RunStatus.RUNNING) -> Run:
        """MLflow's ``create_run``; ``status`` (a deltaflow extension) creates the run in another state,
        e.g. SCHEDULED for a launcher that starts the work later, in the run's first commit."""
        from deltaflow.tracking._context import resolve_user

        experiment_id = V.validate_experiment_id(experiment_id)
        if start_time is not None:
            start_time = V.validate_timestamp(start_time, "start_time")
        checked = dict(V.validate_tags(tags, "run tags"))
        run_name = V.validate_run_name(run_name)
        if run_name is not None and checked.get(V.RUN_NAME_TAG, run_name) != run_name:
            raise InvalidArgument(
                f"run_name {run_name!r} and tag {V.RUN_NAME_TAG!r} {checked[V.RUN_NAME_TAG]!r} disagree; "
                "give one of them, or the same value to both"
            )
        status = V.validate_status(status)
        user = V.check_text(checked.get("mlflow.user") or str(resolve_user()), "user")
        return self._store.create_run(experiment_id, user, start_time, list(checked.items()), run_name, status)

    def get_run(self, run_id: str) -> Run:
        _pending.settle_for_read()  # a read sees this process's background logging too
        return self._store.get_run(run_id)

    def update_run(self, run_id: str, status: Optional[str] = None, name: Optional[str] = None) -> None:
        V.validate_run_id(run_id)
        if status is not None:
            V.validate_status(status)
        V.validate_run_name(name)
        self._store.update_run_info(run_id, status=status, run_name=name)

    def set_terminated(self, run_id: str, status: Optional[str] = None, end_time: Optional[int] = None) -> None:
        V.validate_run_id(run_id)
        status = V.validate_status(RunStatus.FINISHED if status is None else status)
        end_time = V.validate_timestamp(end_time, "end_time") if end_time is not None else int(time.time() * 1000)
        self._store.update_run_info(run_id, status=status, end_time=end_time)
        # Ending a run is acknowledged only once it is durable (MLflow's set_terminated/end_run are
        # synchronous too): everything this process logged before it is committed, or this raises.
        self._store.flush()

    def delete_run(self, run_id: str) -> None:
        self._store.set_run_lifecycle(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id: str) -> None:
        self._store.set_run_lifecycle(run_id, LifecycleStage.ACTIVE)

    def _maybe_sync(self, synchronous: Optional[bool]) -> None:
        if synchronous:
            self._store.flush()

    def log_metric(self, run_id: str, key: str, value: float, timestamp: Optional[int] = None,
                   step: Optional[int] = None, synchronous: Optional[bool] = None) -> None:
        V.validate_run_id(run_id)
        self._store.log_metric_fast(run_id, key, value, timestamp, step)
        if synchronous:
            self._store.flush()

    def log_param(self, run_id: str, key: str, value: Any, synchronous: Optional[bool] = None) -> Any:
        key, text = V.validate_param(key, value)
        self._store.log_batch(run_id, params=[Param(key, text)])
        self._maybe_sync(synchronous)
        return value

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: Optional[bool] = None) -> None:
        self._store.set_tag(run_id, key, value)
        self._maybe_sync(synchronous)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._store.delete_tag(run_id, key)

    def log_batch(self, run_id: str, metrics: Iterable[Metric] = (), params: Iterable[Param] = (),
                  tags: Iterable[RunTag] = (), synchronous: Optional[bool] = None) -> None:
        """Log metrics, params and tags together. The whole batch is validated first (a bad item
        writes nothing); a batch past MLflow's per-request limits (1,000 metrics, 100 params, 100
        tags, 1,000 in all) is then sent as several requests, as ``MlflowClient.log_batch`` does."""
        V.validate_run_id(run_id)
        metrics = V.batch_items(metrics, "metrics", "Metric")
        params = V.batch_items(params, "params", "Param")
        tags = V.batch_items(tags, "tags", "RunTag")
        chunks = V.split_batch(metrics, params, tags)
        if len(chunks) > 1:  # one request is validated whole by the store; several, here first
            V.validate_batch(metrics, params, tags, limits=False)
        for chunk in chunks:
            self._store.log_batch(run_id, *chunk)
        self._maybe_sync(synchronous)

    def log_inputs(self, run_id: str, datasets: Optional[Sequence[DatasetInput]] = None) -> None:
        V.validate_run_id(run_id)
        self._store.log_inputs(run_id, V.validate_dataset_inputs(datasets))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        _pending.settle_for_read()  # a read sees this process's background logging too
        return self._store.get_metric_history(run_id, key)

    def search_runs(self, experiment_ids: Sequence[str], filter_string: str = "",
                    run_view_type: int = ViewType.ACTIVE_ONLY, max_results: int = 1000,
                    order_by: Optional[Sequence[str]] = None, page_token: Optional[str] = None) -> PagedList:
        _pending.settle_for_read()  # a read sees this process's background logging too
        if isinstance(experiment_ids, (str, int)) and not isinstance(experiment_ids, bool):
            experiment_ids = [experiment_ids]  # as MlflowClient.search_runs
        elif not isinstance(experiment_ids, (list, tuple)):
            raise InvalidArgument(
                f"experiment_ids {V._excerpt(experiment_ids)} must be a list of experiment ids"
            )
        runs, token = self._store.search_runs(experiment_ids, filter_string, run_view_type, max_results,
                                              order_by, page_token)
        return PagedList(runs, token)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Make everything logged so far durable (one Delta commit per table)."""
        self._store.flush(timeout)

    # -- artifacts --------------------------------------------------------------------------
    def _artifacts(self, run_id: str):  # noqa: ANN202
        from deltaflow.artifacts import get_artifact_repository

        return get_artifact_repository(self.get_run(run_id).info.artifact_uri)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: Optional[str] = None) -> None:
        if not isinstance(local_path, (str, os.PathLike)) or not os.path.isfile(local_path):
            raise InvalidArgument(f"local_path {local_path!r} is not a file")
        self._artifacts(run_id).log_artifact(local_path, artifact_path)

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: Optional[str] = None) -> None:
        if not isinstance(local_dir, (str, os.PathLike)) or not os.path.isdir(local_dir):
            raise InvalidArgument(f"local_dir {local_dir!r} is not a directory")
        self._artifacts(run_id).log_artifacts(local_dir, artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        check_artifact_file(artifact_file)
        if not isinstance(text, str):
            raise InvalidArgument(f"log_text needs a str, got {type(text).__name__}")
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates
            raise InvalidArgument(f"log_text's text is not encodable as UTF-8: {exc}") from None
        self._artifacts(run_id).write_bytes(artifact_file, data)

    def log_dict(self, run_id: str, dictionary: Any, artifact_file: str) -> None:
        check_artifact_file(artifact_file)
        self._artifacts(run_id).write_bytes(artifact_file, serialize_dict(dictionary, artifact_file))

    def log_figure(self, run_id: str, figure: Any, artifact_file: str, *, save_kwargs: Optional[dict] = None) -> None:
        check_artifact_file(artifact_file)
        module = check_figure(figure)
        buf = io.BytesIO()
        if module.startswith("matplotlib"):
            fmt = posixpath.splitext(artifact_file)[1].lstrip(".") or "png"
            figure.savefig(buf, format=fmt, **(save_kwargs or {}))
        else:
            if artifact_file.endswith(".html"):
                buf.write(figure.to_html(**(save_kwargs or {})).encode("utf-8"))
            else:
                buf.write(figure.to_image(format=posixpath.splitext(artifact_file)[1].lstrip(".") or "png"))
        self._artifacts(run_id).write_bytes(artifact_file, buf.getvalue())

    def log_image(self, run_id: str, image: Any, artifact_file: str) -> None:
        check_artifact_file(artifact_file)
        try:
            from PIL import Image
        except ImportError as exc:
            raise MissingDependency("log_image needs Pillow: pip install pillow") from exc
        buf = io.BytesIO()
        (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(
            buf, format=posixpath.splitext(artifact_file)[1].lstrip(".").upper() or "PNG")
        self._artifacts(run_id).write_bytes(artifact_file, buf.getvalue())

    def list_artifacts(self, run_id: str, path: Optional[str] = None) -> list[FileInfo]:
        _pending.settle_for_read()  # a read sees this process's background logging too
        return self._artifacts(run_id).list_artifacts(path)

    def download_artifacts(self, run_id: str, path: str = "", dst_path: Optional[str] = None) -> str:
        _pending.settle_for_read()  # a read sees this process's background logging too
        if dst_path is not None:
            os.makedirs(dst_path, exist_ok=True)
        return self._artifacts(run_id).download_artifacts(path, dst_path)


def check_artifact_file(artifact_file: Any) -> str:
    """An artifact file path below the run's root (checked before any work or write)."""
    from deltaflow.artifacts import validate_artifact_path

    if validate_artifact_path(artifact_file) is None:
        raise InvalidArgument(f"artifact file {artifact_file!r} must name a file below the root")
    return artifact_file


def check_figure(figure: Any) -> str:
    """The figure's module if log_figure can save it (matplotlib or plotly), else InvalidArgument."""
    module = type(figure).__module__
    if not module.startswith(("matplotlib", "plotly")):
        raise InvalidArgument(
            f"log_figure supports matplotlib and plotly figures, got {module}.{type(figure).__name__}"
        )
    return module


def serialize_dict(dictionary: Any, artifact_file: str) -> bytes:
    """``dictionary`` as JSON, or YAML for a .yaml/.yml file; InvalidArgument when it cannot be
    serialised (a circular structure, keys JSON cannot hold, objects YAML cannot represent)."""
    ext = posixpath.splitext(artifact_file)[1].lower()
    try:
        if ext in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_dump(dictionary, default_flow_style=False, sort_keys=False)
        else:
            data = json.dumps(dictionary, indent=2, default=str)
        return data.encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError) as exc:
        raise InvalidArgument(
            f"log_dict cannot serialise {type(dictionary).__name__} {V._excerpt(dictionary)} to "
            f"{'YAML' if ext in ('.yaml', '.yml') else 'JSON'}: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError and friends without importing yaml here
        if type(exc).__module__.startswith("yaml"):
            raise InvalidArgument(f"log_dict cannot serialise the value to YAML: {str(exc)[:200]}") from None
        raise


MlflowClient = DeltaflowClient
