"""What an estimator and its fitted model tell us: params with readable names, training metrics,
feature importances, and the tuning results of CrossValidator / TrainValidationSplit."""

from __future__ import annotations

import json
import math
from typing import Any, Optional

__all__ = ["estimator_params", "param_map_params", "training_metrics", "feature_importances", "tuning_results",
           "is_tuner", "is_feature_estimator", "model_input_columns", "label_columns"]

_MAX_VALUE = 6000  # the tracking store's param value limit
_TUNERS = ("CrossValidator", "TrainValidationSplit")


def is_tuner(estimator: Any) -> bool:
    return type(estimator).__name__ in _TUNERS and type(estimator).__module__.startswith("pyspark.ml.tuning")


def is_feature_estimator(estimator: Any) -> bool:
    """pyspark.ml.feature estimators (StringIndexer, StandardScaler, ...): data preparation, not a model
    worth a run when fitted on their own (MLflow skips them too)."""
    return type(estimator).__module__.startswith("pyspark.ml.feature")


def _value(value: Any) -> str:
    if hasattr(value, "uid") and hasattr(value, "extractParamMap"):  # a nested estimator/evaluator
        return type(value).__name__
    if isinstance(value, (list, tuple)):
        text = json.dumps([_value(v) if hasattr(v, "uid") else v for v in value], default=str)
    elif isinstance(value, float) and math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        text = repr(value)
    else:
        text = str(value)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE - 3] + "..."


def _stage_names(stages: list[Any]) -> list[str]:
    """Class names, numbered from the second of a kind: VectorAssembler, VectorAssembler_2."""
    seen: dict[str, int] = {}
    names = []
    for stage in stages:
        base = type(stage).__name__
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def estimator_params(estimator: Any, prefix: str = "") -> dict[str, str]:
    """Every param (set or default) of ``estimator``, recursing into stages and nested estimators.

    Pipeline stages are prefixed by their class name (``LogisticRegression.maxIter``); a tuner's
    estimator and evaluator by ``estimator.`` / ``evaluator.``; the grid is summarised by its size."""
    out: dict[str, str] = {}
    name = type(estimator).__name__
    if name == "Pipeline":
        stages = estimator.getStages()
        out[f"{prefix}stages"] = json.dumps(_stage_names(stages))
        for stage_name, stage in zip(_stage_names(stages), stages):
            out.update(estimator_params(stage, f"{prefix}{stage_name}."))
        return out
    for param, value in estimator.extractParamMap().items():
        key = param.name
        if is_tuner(estimator) and key == "estimatorParamMaps":
            out[f"{prefix}estimatorParamMaps"] = f"{len(value)} param maps"
            continue
        if hasattr(value, "extractParamMap") and hasattr(value, "uid"):
            out[f"{prefix}{key}"] = type(value).__name__
            out.update(estimator_params(value, f"{prefix}{key}."))
            continue
        out[f"{prefix}{key}"] = _value(value)
    return {k: v for k, v in out.items() if len(k) <= 250}


def param_map_params(param_map: dict[Any, Any], estimator: Any) -> dict[str, str]:
    """One grid point's params, named as :func:`estimator_params` names them under the tuner's
    estimator (the parent run logs them with an ``estimator.`` prefix; child runs without it)."""
    owner_names: dict[str, str] = {}
    if type(estimator).__name__ == "Pipeline":
        stages = estimator.getStages()
        owner_names = {stage.uid: f"{n}." for n, stage in zip(_stage_names(stages), stages)}
    out = {}
    for param, value in param_map.items():
        out[f"{owner_names.get(param.parent, '')}{param.name}"] = _value(value)
    return out


def _number(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def _summary_metrics(summary: Any) -> dict[str, float]:
    metrics: dict[str, float] = {}
    names = {
        # classification
        "accuracy": "accuracy", "areaUnderROC": "areaUnderROC", "weightedPrecision": "weightedPrecision",
        "weightedRecall": "weightedRecall", "weightedTruePositiveRate": "weightedTruePositiveRate",
        "weightedFalsePositiveRate": "weightedFalsePositiveRate",
        # regression
        "rootMeanSquaredError": "rmse", "r2": "r2", "r2adj": "r2adj", "meanAbsoluteError": "mae",
        "meanSquaredError": "mse", "explainedVariance": "explainedVariance",
        # clustering
        "trainingCost": "cost", "logLikelihood": "logLikelihood",
        # generalized linear models
        "aic": "aic", "deviance": "deviance", "nullDeviance": "nullDeviance",
    }
    for attr, label in names.items():
        try:
            value = getattr(summary, attr)
        except Exception:  # noqa: BLE001 - not every summary has every metric (e.g. AUC is binary-only)
            continue
        number = _number(value)
        if number is not None:
            metrics[f"training_{label}"] = number
    weighted_f = getattr(summary, "weightedFMeasure", None)
    if callable(weighted_f):
        try:
            metrics["training_weightedFMeasure"] = float(weighted_f())
        except Exception:  # noqa: BLE001
            pass
    return metrics


def training_metrics(model: Any) -> dict[str, float]:
    """Metrics the fitted model exposes about its training data (its training summary, tree sizes).

    For a PipelineModel, those of its stages; for a tuner's model, those of the best model.
    Reading a summary runs Spark jobs: call it off the user's path."""
    name = type(model).__name__
    if name == "PipelineModel":
        out: dict[str, float] = {}
        for stage in model.stages:
            out.update(training_metrics(stage))
        return out
    if name in ("CrossValidatorModel", "TrainValidationSplitModel"):
        return training_metrics(model.bestModel)
    metrics: dict[str, float] = {}
    try:
        has_summary = bool(getattr(model, "hasSummary", False))
    except Exception:  # noqa: BLE001
        has_summary = False
    if has_summary:
        metrics.update(_summary_metrics(model.summary))
    for attr, label in (("totalNumNodes", "training_totalNumNodes"), ("numNodes", "training_numNodes"),
                        ("depth", "training_depth"), ("getNumTrees", "training_numTrees")):
        value = getattr(model, attr, None)
        value = value() if callable(value) else value
        number = _number(value)
        if number is not None:
            metrics[label] = number
    return metrics


def _final_model(model: Any) -> Any:
    name = type(model).__name__
    if name == "PipelineModel":
        return model.stages[-1] if model.stages else None
    if name in ("CrossValidatorModel", "TrainValidationSplitModel"):
        return _final_model(model.bestModel)
    return model


def feature_importances(model: Any, training_df: Any) -> Optional[dict[str, float]]:
    """Tree models' feature importances keyed by feature name (from the features column's ML
    attributes when the training data carries them, else ``feature_<i>``)."""
    final = _final_model(model)
    importances = getattr(final, "featureImportances", None) if final is not None else None
    if importances is None:
        return None
    values = importances.toArray().tolist()
    names = [f"feature_{i}" for i in range(len(values))]
    try:
        features_col = final.getOrDefault("featuresCol")
        schema = model.transform(training_df).schema if final is not model else training_df.schema
        attrs = schema[features_col].metadata.get("ml_attr", {}).get("attrs", {})
        for group in attrs.values():
            for attr in group:
                if 0 <= attr["idx"] < len(names):
                    names[attr["idx"]] = attr["name"]
    except Exception:  # noqa: BLE001 - names are a nicety; indices always work
        pass
    return dict(zip(names, values))


def tuning_results(tuner_model: Any, tuner: Any) -> list[dict[str, Any]]:
    """One row per grid point: its params and the metric's mean (and std for CrossValidator)."""
    maps = tuner.getEstimatorParamMaps()
    estimator = tuner.getEstimator()
    evaluator = tuner.getEvaluator()
    metric = evaluator.getMetricName() if hasattr(evaluator, "getMetricName") else "metric"
    larger_better = evaluator.isLargerBetter()
    if type(tuner_model).__name__ == "CrossValidatorModel":
        means = list(tuner_model.avgMetrics)
        stds = list(getattr(tuner_model, "stdMetrics", None) or [None] * len(means))
    else:
        means = list(tuner_model.validationMetrics)
        stds = [None] * len(means)
    best = (max if larger_better else min)(range(len(means)), key=lambda i: means[i])
    rows = []
    for i, (param_map, mean, std) in enumerate(zip(maps, means, stds)):
        rows.append({"index": i, "params": param_map_params(param_map, estimator), "metric": metric,
                     "mean": float(mean), "std": None if std is None else float(std), "best": i == best})
    return rows


# Params naming the columns a stage reads, and the columns it writes. A predictor's featuresCol is
# an input, except RFormula's (it writes it); recommendation / frequent-pattern models name theirs.
_INPUT_PARAMS = ("inputCol", "inputCols", "featuresCol", "userCol", "itemCol", "itemsCol")
_OUTPUT_PARAMS = ("outputCol", "outputCols", "predictionCol", "probabilityCol", "rawPredictionCol")
_LABEL_PARAMS = ("labelCol", "weightCol")


def _columns(stage: Any, names: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for name in names:
        if stage.hasParam(name) and stage.isDefined(name):
            value = stage.getOrDefault(name)
            out.extend(value if isinstance(value, (list, tuple)) else [value])
    return out


def _flat_stages(model: Any) -> list[Any]:
    if type(model).__name__ == "PipelineModel":
        return [s for stage in model.stages for s in _flat_stages(stage)]
    return [model]


def label_columns(model: Any) -> set[str]:
    """The label and weight columns any stage of the fitted model names."""
    return {c for stage in _flat_stages(model) for c in _columns(stage, _LABEL_PARAMS)}


def model_input_columns(model: Any, columns: list[str]) -> Optional[list[str]]:
    """The columns of the training frame (``columns``, in their order) that the fitted model reads
    to predict: for a PipelineModel, the raw inputs of its stages that no earlier stage produced,
    less labels and whatever only feeds a label (a StringIndexer turning ``species`` into
    ``label``: pyspark skips it when its input is missing, so prediction does not need it).

    None when a stage's inputs cannot be told from its params (SQLTransformer, RFormula, a
    third-party stage): the caller then keeps every column but the labels."""
    stages = _flat_stages(model)
    labels = label_columns(model)
    produced: set[str] = set()
    needed: list[str] = []
    for stage in stages:
        if type(stage).__name__ == "RFormulaModel":
            return None
        inputs = _columns(stage, _INPUT_PARAMS)
        outputs = set(_columns(stage, _OUTPUT_PARAMS))
        if not inputs:
            return None
        if outputs and outputs <= labels:  # a label indexer: not needed to predict
            produced |= outputs
            continue
        needed.extend(c for c in inputs if c not in produced and c not in needed)
        produced |= outputs
    if any(c not in columns for c in needed):
        return None  # the model reads something the training frame lacks: we misread a stage
    return [c for c in columns if c in needed and c not in labels]
