"""Autologging for pyspark.ml: patches on ``Estimator.fit``, ``Transformer.transform`` and
``Evaluator.evaluate``.

The fit itself pays only for what must be captured before it returns — params (pure Python), the
Delta versions the training data reads (one JVM call per table), creating the run — and everything
that costs Spark jobs or file I/O (training-summary metrics, feature importances, dataset row counts,
tuning child runs, saving the model) runs afterwards on deltaflow's background logging thread. That
work belongs to the run: ending the run, ``deltaflow.flush()`` and interpreter exit wait for it, and a
run autolog opened itself is ended by it, FINISHED, once everything is written.

Nesting: only the outermost fit is a run. Fits inside it on the same thread are seen through a
context variable; fits a tuner or OneVsRest runs on its worker threads are recognised by pyspark.ml
code among their callers.
"""

from __future__ import annotations

import contextvars
import csv
import io
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

from deltaflow.autologging import _ml_info as info
from deltaflow.autologging._safety import AutologWarning, Patches, Safety

__all__ = ["AutologConfig", "autolog", "config", "DEFAULT_ALLOWLIST"]

AUTOLOG_TAG = "mlflow.autologging"
SUPPORTED_PYSPARK = ((3, 3), (4, 1))  # [min, max): tested with 3.5
# Fitted model classes whose models are logged by default: everything pyspark.ml fits, except the
# feature transformers' models (they are saved as part of a PipelineModel when inside one).
DEFAULT_ALLOWLIST = ("pyspark.ml.classification.", "pyspark.ml.regression.", "pyspark.ml.clustering.",
                     "pyspark.ml.recommendation.", "pyspark.ml.fpm.", "pyspark.ml.pipeline.PipelineModel",
                     "pyspark.ml.tuning.CrossValidatorModel", "pyspark.ml.tuning.TrainValidationSplitModel")


@dataclass(frozen=True)
class AutologConfig:
    log_models: bool = True
    log_datasets: bool = True
    exclusive: bool = False
    silent: bool = False
    log_post_training_metrics: bool = True
    registered_model_name: Optional[str] = None
    log_input_examples: bool = False
    log_model_signatures: bool = True
    log_model_allowlist: Optional[tuple[str, ...]] = None
    extra_tags: dict[str, str] = field(default_factory=dict)

    def model_allowed(self, model: Any) -> bool:
        qualified = f"{type(model).__module__}.{type(model).__name__}"
        allow = self.log_model_allowlist if self.log_model_allowlist is not None else DEFAULT_ALLOWLIST
        return any(qualified == entry or (entry.endswith(".") and qualified.startswith(entry)) for entry in allow)


_config: Optional[AutologConfig] = None
_patches = Patches()
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("deltaflow_autolog_depth", default=0)
_lock = threading.Lock()
_model_runs: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
_predictions: "weakref.WeakKeyDictionary[Any, tuple[str, str]]" = weakref.WeakKeyDictionary()
_autolog_runs: set[str] = set()
_evaluation_steps: dict[tuple[str, str], int] = {}


def config() -> Optional[AutologConfig]:
    return _config


def _pyspark_supported() -> bool:
    import pyspark

    parts = tuple(int(p) for p in pyspark.__version__.split(".")[:2])
    return SUPPORTED_PYSPARK[0] <= parts < SUPPORTED_PYSPARK[1]


def autolog(log_models: bool = True, log_datasets: bool = True, disable: bool = False, exclusive: bool = False,
            disable_for_unsupported_versions: bool = False, silent: bool = False,
            log_post_training_metrics: bool = True, registered_model_name: Optional[str] = None,
            log_input_examples: bool = False, log_model_signatures: bool = True,
            log_model_allowlist: Optional[list[str]] = None, extra_tags: Optional[dict[str, Any]] = None) -> None:
    """Enable (or with ``disable=True`` turn off and un-patch) autologging of pyspark.ml, with
    MLflow's arguments and meanings (see the README's autologging section)."""
    global _config
    from deltaflow.autologging import _startup
    from deltaflow.errors import InvalidArgument

    _startup.remove_probe()  # an explicit call decides; the startup hook's conf probe steps aside
    if disable:
        _config = None
        _patches.revert()
        return
    if registered_model_name is not None:
        from deltaflow.registry._rules import check_model_name

        check_model_name(registered_model_name)
    if extra_tags is not None and not isinstance(extra_tags, dict):
        raise InvalidArgument(f"extra_tags must be a dict of tag -> value, got {type(extra_tags).__name__}")
    if log_model_allowlist is not None and (isinstance(log_model_allowlist, str)
                                            or not all(isinstance(x, str) for x in log_model_allowlist)):
        raise InvalidArgument("log_model_allowlist must be a list of fully qualified model class names")
    try:
        import pyspark.ml  # noqa: F401
    except ImportError:
        from deltaflow.errors import MissingDependency

        raise MissingDependency.for_extra("Autologging Spark ML", "pyspark", "spark") from None
    if disable_for_unsupported_versions and not _pyspark_supported():
        _config = None
        _patches.revert()
        return
    _config = AutologConfig(
        log_models=log_models, log_datasets=log_datasets, exclusive=exclusive, silent=silent,
        log_post_training_metrics=log_post_training_metrics, registered_model_name=registered_model_name,
        log_input_examples=log_input_examples, log_model_signatures=log_model_signatures,
        log_model_allowlist=tuple(log_model_allowlist) if log_model_allowlist is not None else None,
        extra_tags={str(k): str(v) for k, v in (extra_tags or {}).items()})
    _install()


def _install() -> None:
    from pyspark.ml.base import Estimator, Transformer
    from pyspark.ml.evaluation import Evaluator

    _patches.patch(Estimator, "fit", _make_fit)
    _patches.patch(Transformer, "transform", _make_transform)
    _patches.patch(Evaluator, "evaluate", _make_evaluate)


# -- nesting --------------------------------------------------------------------------------
def _called_from_pyspark_ml() -> bool:
    """Whether pyspark.ml's own code is calling this fit: a Pipeline fitting its stages, a tuner or
    OneVsRest fitting on its worker threads (where our context variable does not reach: pyspark's
    pools do not copy it). A user's own fit has no pyspark.ml frame among its callers."""
    import sys

    frame = sys._getframe(2)  # skip this function and the fit wrapper
    try:
        while frame is not None:
            if frame.f_globals.get("__name__", "").startswith("pyspark.ml"):
                return True
            frame = frame.f_back
        return False
    finally:
        del frame


def _nested(original: Any, *args: Any) -> Any:
    token = _depth.set(_depth.get() + 1)
    try:
        return original(*args)
    finally:
        _depth.reset(token)


# -- the patches ----------------------------------------------------------------------------
def _make_fit(original: Any) -> Any:
    def fit(self: Any, dataset: Any, params: Any = None) -> Any:
        cfg = _config
        if (cfg is None or _depth.get() > 0 or _called_from_pyspark_ml() or info.is_feature_estimator(self)
                or isinstance(params, (list, tuple))):
            return _nested(original, self, dataset, params)
        return _Fit(cfg, self, dataset, params).run(original)

    return fit


def _make_transform(original: Any) -> Any:
    def transform(self: Any, dataset: Any, params: Any = None) -> Any:
        result = original(self, dataset, params)
        cfg = _config
        if cfg is not None and cfg.log_post_training_metrics and _depth.get() == 0:
            run_id = _model_runs.get(self) if _weakrefable(self) else None
            if run_id is not None:
                Safety(cfg.silent).run("track predictions for post-training metrics", _track, result, dataset,
                                       run_id)
        return result

    return transform


def _make_evaluate(original: Any) -> Any:
    def evaluate(self: Any, dataset: Any, params: Any = None) -> Any:
        value = original(self, dataset, params)
        cfg = _config
        if cfg is not None and cfg.log_post_training_metrics and _depth.get() == 0:
            tracked = _predictions.get(dataset) if _weakrefable(dataset) else None
            if tracked is not None:
                Safety(cfg.silent).run("log a post-training metric", _log_evaluation, self, value, params, *tracked)
        return value

    return evaluate


def _weakrefable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def _dataset_name(dataset: Any) -> str:
    """The caller's variable name for the DataFrame (as MLflow names post-training metrics: train and
    test splits of one table stay apart), else the Delta table it reads, else 'dataset'."""
    import inspect

    frame = inspect.currentframe()
    try:
        for _ in range(8):  # out of our wrappers into the user's frame
            frame = frame.f_back if frame is not None else None
            if frame is None:
                break
            if frame.f_globals.get("__name__", "").startswith(("deltaflow.", "pyspark.")):
                continue
            for name, value in frame.f_locals.items():
                if value is dataset and not name.startswith("_"):
                    return name
            break  # only the frame that called transform: deeper frames' names mean other things
    finally:
        del frame
    from deltaflow.autologging._lineage import delta_sources

    try:
        sources = delta_sources(dataset)
    except Exception:  # noqa: BLE001
        sources = []
    if len(sources) == 1:
        table, path = sources[0]["table_name"], sources[0]["path"]
        # A table identifier's last part (catalog.schema.name); a path's last segment, whole (a
        # folder named "sales.delta" keeps its dot).
        return table.split(".")[-1] if table else path.rstrip("/").split("/")[-1]
    return "dataset"


def _track(result: Any, dataset: Any, run_id: str) -> None:
    _predictions[result] = (run_id, _dataset_name(dataset))


def _log_evaluation(evaluator: Any, value: Any, params: Any, run_id: str, dataset_name: str) -> None:
    from deltaflow.tracking.fluent import _client

    metric = evaluator.getMetricName() if hasattr(evaluator, "getMetricName") else type(evaluator).__name__
    if isinstance(params, dict):
        metric = next((str(v) for p, v in params.items() if p.name == "metricName"), metric)
    key = f"{metric}_{dataset_name}"
    with _lock:  # repeated evaluations become steps 0, 1, ... (counted here: reading the history
        step = _evaluation_steps.get((run_id, key), 0)  # would cost a flush and a table read)
        _evaluation_steps[(run_id, key)] = step + 1
    _client().log_metric(run_id, key, float(value), step=step)


class _Fit:
    """One autologged outermost fit."""

    def __init__(self, cfg: AutologConfig, estimator: Any, dataset: Any, params: Any) -> None:
        self.cfg, self.estimator, self.dataset, self.params = cfg, estimator, dataset, params
        self.effective = estimator
        self.safety = Safety(cfg.silent)
        self.run_id: Optional[str] = None
        self.owns_run = False
        self.sources: list[dict[str, Any]] = []

    def run(self, original: Any) -> Any:
        started = self.safety.run("start the autolog run", self._start, default=False)
        if not started:
            return _nested(original, self.estimator, self.dataset, self.params)
        try:
            model = _nested(original, self.estimator, self.dataset, self.params)
        except BaseException as error:
            if self.owns_run:
                # As a `with start_run()` block ends its run: an interrupt is KILLED, not FAILED.
                status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
                self.safety.run("end the failed run", self._end, status)
            raise
        self.safety.run("record the fitted model", self._finish, model)
        return model

    # -- before the fit ---------------------------------------------------------------------
    def _start(self) -> bool:
        from deltaflow.autologging._lineage import delta_sources
        from deltaflow.tracking import fluent
        from deltaflow.tracking._context import resolve_context_tags

        active = fluent.active_run()
        if active is not None and self.cfg.exclusive and active.info.run_id not in _autolog_runs:
            return False  # exclusive: never write into a run the user opened
        client = fluent._client()
        # fit(df, {param: value}) trains a copy with those values: that copy is what was trained.
        self.effective = self.estimator.copy(self.params) if isinstance(self.params, dict) else self.estimator
        # Each capture is its own safe step, done before the run exists: a failure costs that part
        # (a warning), not the run, and in test mode it raises without leaving a run behind.
        params = self.safety.run("read the estimator's params", info.estimator_params, self.effective, default={})
        self.sources = (self.safety.run("read the Delta versions of the training data", delta_sources,
                                        self.dataset, default=[])
                        if self.cfg.log_datasets else [])
        if active is not None:
            self.run_id = active.info.run_id
        else:
            tags = {**resolve_context_tags(), AUTOLOG_TAG: "pyspark.ml", **self.cfg.extra_tags}
            experiment_id = fluent._experiment_for_new_run(None, client)
            run = client.create_run(experiment_id, tags=tags, run_name=type(self.estimator).__name__)
            self.run_id, self.owns_run = run.info.run_id, True
            _autolog_runs.add(self.run_id)
            fluent._last_run_id.set(self.run_id)
        # From here the run exists: a failure must not turn this into an unlogged fit that leaves
        # the run RUNNING, so logging the params is a step of its own.
        self.safety.run("log the params", self._log_params, client, params)
        return True

    def _log_params(self, client: Any, params: dict[str, str]) -> None:
        from deltaflow.entities import Param

        if not self.owns_run and params:
            # The user's run may hold params already (an earlier fit in it, their own log_param).
            # Params are immutable and a batch with one changed value is refused whole, so only
            # new keys are logged; a changed value is the user's situation, not our failure: a
            # warning even in test mode, and the fit's metrics and model are still logged.
            # The store's own read: the client's would wait for earlier fits' background work,
            # and fit must stay fast.
            existing = client._store.get_run(self.run_id).data.params
            changed = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
            params = {k: v for k, v in params.items() if k not in existing}
            if changed and not self.cfg.silent:
                shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
                warnings.warn(f"deltaflow autologging: run {self.run_id} already has different values for "
                              f"{len(changed)} param(s) of this fit ({shown}); they keep their first values",
                              AutologWarning, stacklevel=2)
        if params:
            client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()])

    # -- after the fit ----------------------------------------------------------------------
    def _finish(self, model: Any) -> None:
        from deltaflow.tracking import _pending

        if _weakrefable(model):
            _model_runs[model] = self.run_id
        _pending.submit(self.run_id, lambda: self._background(model))

    def _step(self, what: str, fn: Any, *args: Any) -> None:
        self.safety.run(what, fn, *args)

    def _background(self, model: Any) -> None:
        # Everything below is deltaflow's own work (a transform for feature names, a scoring for
        # the signature): marked nested, so the patches never track or log it as the user's.
        token = _depth.set(_depth.get() + 1)
        try:
            self._step("log training metrics", self._log_training_metrics, model)
            if info.is_tuner(self.effective):
                self._step("log the tuning results", self._log_tuning, model)
            if self.cfg.log_datasets:
                self._step("log the training dataset", self._log_datasets)
            if self.cfg.log_models:
                self._step("log the model", self._log_model, model)
        finally:
            _depth.reset(token)
            if self.owns_run:
                self._step("end the run", self._end, "FINISHED")

    def _client(self) -> Any:
        from deltaflow.tracking.fluent import _client

        return _client()

    def _end(self, status: str) -> None:
        self._client().set_terminated(self.run_id, status)
        _autolog_runs.discard(self.run_id)

    def _log_training_metrics(self, model: Any) -> None:
        from deltaflow.entities import Metric

        metrics = info.training_metrics(model)
        importances = info.feature_importances(model, self.dataset)
        client = self._client()
        if metrics:
            import time

            now = int(time.time() * 1000)
            client.log_batch(self.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
        if importances:
            ranked = dict(sorted(importances.items(), key=lambda kv: -kv[1]))
            client.log_dict(self.run_id, ranked, "feature_importances.json")

    def _log_tuning(self, model: Any) -> None:
        import time

        from deltaflow.entities import Metric, Param
        from deltaflow.tracking._context import resolve_context_tags

        client = self._client()
        rows = info.tuning_results(model, self.effective)
        experiment_id = client.get_run(self.run_id).info.experiment_id
        now = int(time.time() * 1000)
        metric = rows[0]["metric"] if rows else "metric"
        base_name = type(self.effective.getEstimator()).__name__
        for row in rows:
            tags = {**resolve_context_tags(), AUTOLOG_TAG: "pyspark.ml", "mlflow.parentRunId": self.run_id,
                    **self.cfg.extra_tags}
            child = client.create_run(experiment_id, tags=tags, run_name=f"{base_name}-{row['index']}")
            metrics = [Metric(f"avg_{metric}", row["mean"], now, 0)]
            if row["std"] is not None:
                metrics.append(Metric(f"std_{metric}", row["std"], now, 0))
            client.log_batch(child.info.run_id, metrics=metrics,
                             params=[Param(k, v) for k, v in row["params"].items()])
            client.set_terminated(child.info.run_id, "FINISHED")
        best = next(row for row in rows if row["best"])
        client.log_batch(self.run_id, metrics=[Metric(f"best_{metric}", best["mean"], now, 0)],
                         params=[Param(f"best_{k}", v) for k, v in best["params"].items()])
        client.log_text(self.run_id, _results_csv(rows), "search_results.csv")

    def _log_datasets(self) -> None:
        from deltaflow.autologging._lineage import datasets_for
        from deltaflow.entities import DatasetInput, InputTag

        inputs = [DatasetInput(dataset=ds, tags=[InputTag("mlflow.data.context", "training")])
                  for ds in datasets_for(self.dataset, self.sources)]
        self._client().log_inputs(self.run_id, inputs)

    def _log_model(self, model: Any) -> None:
        import deltaflow.spark

        to_log = model.bestModel if type(model).__name__ in ("CrossValidatorModel", "TrainValidationSplitModel") \
            else model
        if not self.cfg.model_allowed(model):
            return
        features = self._feature_frame(to_log)
        signature = None
        if self.cfg.log_model_signatures:
            # Its own step: a column no signature type describes costs the signature, not the model.
            signature = self.safety.run("infer the model signature", _signature, to_log, features)
        example = _input_example(features) if self.cfg.log_input_examples else None
        # signature=False, not None: with None, saving infers one from the input example, which
        # log_model_signatures=False forbids, and which fails on a vector column (lost the model).
        deltaflow.spark.log_model(to_log, name="model", run_id=self.run_id,
                                  signature=signature if signature is not None else False,
                                  input_example=example, registered_model_name=self.cfg.registered_model_name)

    def _feature_frame(self, model: Any) -> Any:
        """The training data as the model takes it for prediction: only the columns it reads (a
        lone model: its features column; a PipelineModel: its stages' raw inputs), else every
        column but the label and weight ones."""
        columns = info.model_input_columns(model, list(self.dataset.columns))
        if columns:
            return self.dataset.select(*columns)
        return self.dataset.drop(*[c for c in info.label_columns(model) if c in self.dataset.columns])


def _is_vector(data_type: Any) -> bool:
    return type(data_type).__name__ == "VectorUDT"


def _column_type(data_type: Any) -> Any:
    """The MLflow column type of a Spark type: a scalar name, MLflow's ``sparkml_vector`` for a
    pyspark.ml vector (the usual input of a lone estimator), or an ``array`` spec of scalars
    (FPGrowth's items). Anything else has no MLflow type: the signature is then not logged."""
    from deltaflow.errors import InvalidArgument
    from deltaflow.models.infer import _SPARK_TYPES  # the one Spark -> MLflow scalar table

    name = type(data_type).__name__
    if name == "VectorUDT":
        return {"type": "sparkml_vector"}
    if name in _SPARK_TYPES:
        return _SPARK_TYPES[name]
    if name == "ArrayType" and type(data_type.elementType).__name__ in _SPARK_TYPES:
        return {"type": "array", "items": {"type": _SPARK_TYPES[type(data_type.elementType).__name__]}}
    raise InvalidArgument(f"Spark type {data_type.simpleString()} has no MLflow signature type")


def _signature(model: Any, features: Any) -> Any:
    """Inputs: the feature columns. Output: the prediction column, one unnamed column typed as the
    model really outputs it (a double for classifiers and regressors, an integer for clustering)."""
    from deltaflow.models import ModelSignature
    from deltaflow.models.schema import ColSpec, Schema
    from deltaflow.spark import _prediction_col

    inputs = Schema([ColSpec(_column_type(f.dataType), f.name) for f in features.schema.fields])
    outputs = None
    scored = model.transform(features.limit(0))  # only its schema is read: analysis, no Spark job
    column = _prediction_col(model)
    if column in scored.columns:
        outputs = Schema([ColSpec(_column_type(scored.schema[column].dataType))])
    return ModelSignature(inputs, outputs)


def _input_example(features: Any) -> Any:
    """The first rows of the feature columns as pandas; vectors become lists of floats (as MLflow
    writes them), since a pyspark.ml vector is not JSON."""
    example = features.limit(5).toPandas()
    for f in features.schema.fields:
        if _is_vector(f.dataType):
            example[f.name] = [None if v is None else [float(x) for x in v.toArray()] for v in example[f.name]]
    return example


def _results_csv(rows: list[dict[str, Any]]) -> str:
    keys = sorted({k for row in rows for k in row["params"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    metric = rows[0]["metric"] if rows else "metric"
    writer.writerow(["index", *keys, f"mean_{metric}", f"std_{metric}", "best"])
    for row in rows:
        writer.writerow([row["index"], *[row["params"].get(k, "") for k in keys], row["mean"],
                         "" if row["std"] is None else row["std"], row["best"]])
    return buffer.getvalue()
