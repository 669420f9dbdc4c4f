#!/usr/bin/env python
"""log_model time: deltaflow against MLflow (sqlite tracking) for a small scikit-learn model and a small
Spark ML pipeline, measured in the same run on the same machine.

Targets: deltaflow ``log_model`` under 1 s (sklearn) and under 3 s (Spark pipeline), with
correct pins. MLflow spends most of its time inferring requirements by reloading the model in a
subprocess; deltaflow reads installed versions instead. Each figure is the median of ``--repeats``
calls after one warm-up call (the warm-up pays one-time imports on both sides). The pins each side
wrote are printed under the table so their correctness can be checked by eye.

    python benchmarks/bench_models.py                 # both flavors, deltaflow and MLflow
    python benchmarks/bench_models.py --skip-mlflow --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import TempDirs, fmt_s, log, median, timed_repeat  # noqa: E402

TARGETS = {"sklearn": 1.0, "spark": 3.0}


def _sklearn_model() -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    labels = (frame["a"] + frame["b"] > 0).astype(int)
    return LogisticRegression().fit(frame, labels), frame.head(3)


def _spark_model() -> tuple[Any, Any]:
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer, VectorAssembler

    from deltaflow._spark import get_spark

    spark = get_spark()
    rows = [(float(i % 7), float(i % 3), "abc"[i % 3], float(i % 2)) for i in range(60)]
    frame = spark.createDataFrame(rows, "x double, y double, cat string, label double")
    pipeline = Pipeline(stages=[
        StringIndexer(inputCol="cat", outputCol="cat_idx"),
        VectorAssembler(inputCols=["x", "y", "cat_idx"], outputCol="features"),
        LogisticRegression(maxIter=5),
    ])
    return pipeline.fit(frame), frame.drop("label").limit(2).toPandas()


def _requirements(model_dir: str) -> str:
    path = os.path.join(model_dir, "requirements.txt")
    if not os.path.exists(path):
        return "(no requirements.txt)"
    with open(path) as handle:
        return ", ".join(line.strip() for line in handle if line.strip() and not line.startswith("#"))


# Each logger returns (log one model, fetch a logged model's folder); only the first is timed.
def _deltaflow_logger(flavor: str, model: Any, example: Any, store: str) -> tuple[Callable[[], str], Callable[[str], str]]:
    import deltaflow

    client = deltaflow.DeltaflowClient(store, engine="rust")
    deltaflow.set_tracking_uri(store)
    module = deltaflow.sklearn if flavor == "sklearn" else deltaflow.spark

    def log_once() -> str:
        with deltaflow.start_run() as run:
            module.log_model(model, name="model", input_example=example)
        return run.info.run_id

    def fetch(run_id: str) -> str:
        # The fluent API's store commits in the background; the rust client is another store object,
        # so make the run durable before it looks for it.
        deltaflow.flush()
        return client.download_artifacts(run_id, "model")

    return log_once, fetch


def _mlflow_logger(flavor: str, model: Any, example: Any, store: str) -> tuple[Callable[[], str], Callable[[str], str]]:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    # Artifacts in the temp folder too: MLflow's default artifact root is ./mlruns in the working
    # directory. Passed to start_run, not set_experiment: that exports MLFLOW_EXPERIMENT_ID, which
    # deltaflow's fluent API reads too.
    experiment_id = mlflow.create_experiment("bench-models", artifact_location=os.path.join(store, "artifacts"))
    module = mlflow.sklearn if flavor == "sklearn" else mlflow.spark
    # mlflow.spark.log_model still has MLflow 2's signature: artifact_path is required, name= is not accepted.
    where = {"name": "model"} if flavor == "sklearn" else {"artifact_path": "model"}

    def log_once() -> str:
        with mlflow.start_run(experiment_id=experiment_id):
            info = module.log_model(model, input_example=example, **where)
        return info.model_uri

    return log_once, lambda uri: mlflow.artifacts.download_artifacts(uri)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--flavors", default="sklearn,spark", help="comma-separated: sklearn, spark")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    flavors = [f.strip() for f in args.flavors.split(",") if f.strip()]
    unknown = set(flavors) - set(TARGETS)
    if unknown:
        parser.error(f"unknown flavor(s) {sorted(unknown)}; use sklearn, spark")
    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    dirs = TempDirs()
    rows, pins = [], []
    try:
        for flavor in flavors:
            model, example = _sklearn_model() if flavor == "sklearn" else _spark_model()
            sides = [("deltaflow", _deltaflow_logger)] + ([] if args.skip_mlflow else [("MLflow", _mlflow_logger)])
            figures: dict[str, float] = {}
            for label, make in sides:
                log(f"{label}: log_model({flavor}) x{args.repeats}")
                log_once, fetch = make(flavor, model, example, dirs.new(label))
                _, samples, logged = timed_repeat(log_once, warmups=1, repeats=args.repeats)
                figures[label] = median(samples)
                pins.append(f"  [{flavor}] {label} requirements.txt: {_requirements(fetch(logged))}")
            df = figures["deltaflow"]
            met = "yes" if df < TARGETS[flavor] else "not met"
            rows.append((f"log_model, small {flavor} model (median of {args.repeats})", fmt_s(df),
                         fmt_s(figures.get("MLflow")) if "MLflow" in figures else "not run",
                         f"< {TARGETS[flavor]:g} s", met))
    finally:
        dirs.cleanup()
    header = ("metric", "deltaflow", "MLflow 3.17 (sqlite)", "target", "met?")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    print("\npins written:")
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
