"""Autologging's contract with the user's code, on real Spark.

Nested fits are not runs; the user's own run is used (and ``exclusive=True`` keeps out of it);
a feature estimator fitted alone is not a run; ``disable=True`` puts the original methods back; a
broken logger never breaks ``fit`` (a warning) but raises in test mode; the user's own exception
passes through unchanged and fails the autolog run; concurrent fits each get their own correct run.
"""

from __future__ import annotations

import json
import threading
import warnings

import pytest

import deltaflow
import deltaflow.spark
from deltaflow.autologging import _ml_info
from deltaflow.autologging._safety import AutologWarning
from tests.autolog.conftest import artifact_paths, experiment_runs, predictions

pytestmark = [pytest.mark.spark, pytest.mark.parametrize("engine", ["rust"], indirect=True)]


def _coefficients(model) -> list[float]:
    return model.coefficients.toArray().tolist()


@pytest.fixture(scope="module")
def reference_lr(binary_df):
    """The model a plain (un-autologged) fit gives: autolog must hand back exactly this."""
    from pyspark.ml.classification import LogisticRegression

    deltaflow.autolog(disable=True)
    return LogisticRegression(maxIter=5).fit(binary_df)


def test_user_run_is_used_and_left_open(autolog, client, binary_df, reference_lr):
    from pyspark.ml.classification import LogisticRegression

    with deltaflow.start_run() as run:
        model = LogisticRegression(maxIter=5).fit(binary_df)
        assert deltaflow.last_active_run().info.run_id == run.info.run_id
        assert deltaflow.active_run().info.run_id == run.info.run_id
    # Leaving the block ended the run after its pending model logging (no flush() needed).
    assert "model/MLmodel" in artifact_paths(client, run.info.run_id, "model")
    assert _coefficients(model) == _coefficients(reference_lr)
    after = client.get_run(run.info.run_id)
    assert after.info.status == "FINISHED"
    assert after.data.params["maxIter"] == "5" and "training_accuracy" in after.data.metrics

    # Two fits in a run that stays open: autolog never ends a run it did not open. The second
    # fit's changed param keeps its first value (params are immutable; a warning, even in test
    # mode, as it is the user's situation), and its metrics and model are still logged.
    with deltaflow.start_run() as second:
        deltaflow.log_param("owner", "me")
        first_model = LogisticRegression(maxIter=2).fit(binary_df)
        with pytest.warns(AutologWarning, match=r"different values for 1 param\(s\) of this fit \(maxIter\)"):
            LogisticRegression(maxIter=5).fit(binary_df)
        deltaflow.flush()
        during = client.get_run(second.info.run_id)
        assert during.info.status == "RUNNING"
        assert during.data.params["maxIter"] == "2" and during.data.params["tol"] == "1e-06"
        assert during.data.params["owner"] == "me"
        history = client.get_metric_history(second.info.run_id, "training_accuracy")
        assert [m.value for m in history] == pytest.approx([first_model.summary.accuracy,
                                                            reference_lr.summary.accuracy])
        loaded = deltaflow.spark.load_model(f"runs:/{second.info.run_id}/model")
        assert loaded.stages[0].getMaxIter() == 5  # the latest fit's model
    assert "mlflow.autologging" not in after.data.tags  # the user's run, not one autolog made
    assert len(experiment_runs(client)) == 2


def test_exclusive_keeps_out_of_the_user_run(autolog, client, binary_df):
    from pyspark.ml.classification import LogisticRegression

    autolog(exclusive=True, log_models=False)
    with deltaflow.start_run() as run:
        LogisticRegression(maxIter=3).fit(binary_df)
    deltaflow.flush()
    user_run = client.get_run(run.info.run_id)
    assert user_run.data.params == {} and user_run.data.metrics == {}
    assert artifact_paths(client, run.info.run_id) == set()
    assert len(experiment_runs(client)) == 1
    # Outside a user run, exclusive autolog still makes its own run: here without a model or a
    # dataset (log_models / log_datasets off) and with the extra tags.
    autolog(exclusive=True, log_models=False, log_datasets=False, extra_tags={"team": "fraud", "n": 1})
    LogisticRegression(maxIter=3).fit(binary_df)
    own = deltaflow.last_active_run()
    deltaflow.flush()
    own = client.get_run(own.info.run_id)
    assert own.info.run_id != run.info.run_id and own.data.params["maxIter"] == "3"
    assert own.info.status == "FINISHED" and "model" not in artifact_paths(client, own.info.run_id)
    assert own.inputs.dataset_inputs == [] and "training_accuracy" in own.data.metrics
    assert own.data.tags["team"] == "fraud" and own.data.tags["n"] == "1"


def test_feature_estimator_alone_is_not_a_run(autolog, client, raw_df):
    from pyspark.ml.feature import StringIndexer

    indexer_model = StringIndexer(inputCol="cat", outputCol="cat_idx").fit(raw_df)
    assert sorted(indexer_model.labels) == ["a", "b", "c"]
    deltaflow.flush()
    assert deltaflow.last_active_run() is None
    assert experiment_runs(client) == []


def test_one_vs_rest_is_one_run(autolog, client, spark):
    from pyspark.ml.classification import LogisticRegression, OneVsRest
    from pyspark.ml.linalg import Vectors

    # Three classes; OneVsRest fits one classifier per class on its own worker threads.
    rows = [(Vectors.dense([float(i % 3) + 0.1 * (i % 5), float(i % 4)]), float(i % 3)) for i in range(30)]
    training = spark.createDataFrame(rows, ["features", "label"])
    ovr = OneVsRest(classifier=LogisticRegression(maxIter=4), parallelism=2)
    model = ovr.fit(training)
    run_id = deltaflow.last_active_run().info.run_id
    deltaflow.flush()
    runs = experiment_runs(client)
    assert [r.info.run_id for r in runs] == [run_id]
    run = runs[0]
    assert run.info.run_name == "OneVsRest" and run.info.status == "FINISHED"
    assert run.data.params["classifier"] == "LogisticRegression"
    assert run.data.params["classifier.maxIter"] == "4" and run.data.params["parallelism"] == "2"
    # Compared by the per-class models: OneVsRestModel.transform runs a Python UDF, which needs the
    # executors' Python to be this venv's (the shared local session does not set PYSPARK_PYTHON).
    loaded = deltaflow.spark.load_model(f"runs:/{run_id}/model").stages[0]
    assert type(loaded).__name__ == "OneVsRestModel" and len(loaded.models) == len(model.models) == 3
    for ours, theirs in zip(loaded.models, model.models):
        assert _coefficients(ours) == _coefficients(theirs)


def test_disable_restores_the_original_methods(autolog, client, binary_df):
    from pyspark.ml.base import Estimator, Transformer
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import Evaluator

    deltaflow.autolog(disable=True)
    originals = (Estimator.fit, Transformer.transform, Evaluator.evaluate)
    autolog()
    autolog(log_models=False)  # enabling twice does not wrap twice
    assert Estimator.fit is not originals[0] and Estimator.fit.__wrapped__ is originals[0]
    assert Transformer.transform.__wrapped__ is originals[1]
    assert Evaluator.evaluate.__wrapped__ is originals[2]
    deltaflow.autolog(disable=True)
    assert (Estimator.fit, Transformer.transform, Evaluator.evaluate) == originals
    assert Estimator.fit is originals[0] and LogisticRegression.fit is originals[0]
    for method, qualname in zip(originals, ("Estimator.fit", "Transformer.transform", "Evaluator.evaluate")):
        # pyspark's own functions, not some wrapper left in place.
        assert method.__qualname__ == qualname and method.__module__.startswith("pyspark.ml")
        assert not hasattr(method, "__wrapped__")
    assert "fit" in Estimator.__dict__ and "fit" not in LogisticRegression.__dict__
    LogisticRegression(maxIter=2).fit(binary_df)
    deltaflow.flush()
    assert experiment_runs(client) == [] and deltaflow.last_active_run() is None


def _broken(what: str):
    def fail(*args, **kwargs):
        raise RuntimeError(f"deliberately broken {what}")

    return fail


def test_broken_logger_warns_and_the_fit_still_works(autolog, client, binary_df, reference_lr, monkeypatch):
    from pyspark.ml.classification import LogisticRegression

    monkeypatch.setenv("DELTAFLOW_AUTOLOG_TESTING", "false")
    monkeypatch.setattr(_ml_info, "estimator_params", _broken("params"))
    monkeypatch.setattr(_ml_info, "training_metrics", _broken("metrics"))
    with pytest.warns(AutologWarning) as caught:
        model = LogisticRegression(maxIter=5).fit(binary_df)
        run_id = deltaflow.last_active_run().info.run_id
        deltaflow.flush()  # the metrics step fails on the background thread: still a warning
    messages = [str(w.message) for w in caught if issubclass(w.category, AutologWarning)]
    assert any("deliberately broken params" in m for m in messages), messages
    assert any("deliberately broken metrics" in m for m in messages), messages
    assert _coefficients(model) == _coefficients(reference_lr)
    # Only the broken parts are missing: the run, its dataset and its model are all there.
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {} and not any(k.startswith("training_") for k in run.data.metrics)
    assert len(run.inputs.dataset_inputs) == 1 and "model" in artifact_paths(client, run_id)

    # silent=True: the same failures, no warning.
    autolog(silent=True, log_models=False, log_datasets=False)
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        LogisticRegression(maxIter=5).fit(binary_df)
        deltaflow.flush()
    assert not [w for w in quiet if issubclass(w.category, AutologWarning)]


def test_broken_logger_raises_in_test_mode(autolog, client, binary_df, monkeypatch):
    from pyspark.ml.classification import LogisticRegression

    autolog(log_models=False, log_datasets=False)
    with monkeypatch.context() as patch:
        patch.setattr(_ml_info, "estimator_params", _broken("params"))
        with pytest.raises(RuntimeError, match="deliberately broken params"):
            LogisticRegression(maxIter=3).fit(binary_df)
    deltaflow.flush()
    assert experiment_runs(client) == []  # failed before any run was created

    with monkeypatch.context() as patch:
        patch.setattr(_ml_info, "training_metrics", _broken("metrics"))
        model = LogisticRegression(maxIter=3).fit(binary_df)  # the failing step runs after the fit
        run_id = deltaflow.last_active_run().info.run_id
        with pytest.raises(RuntimeError, match="deliberately broken metrics"):
            deltaflow.flush()
    assert model.numFeatures == 2
    deltaflow.flush()
    assert client.get_run(run_id).info.status == "FINISHED"  # the run is still ended, not left RUNNING


def test_user_exception_propagates_unchanged_and_fails_the_run(autolog, client, binary_df):
    from pyspark.ml.classification import LogisticRegression

    deltaflow.autolog(disable=True)
    with pytest.raises(Exception) as plain:
        LogisticRegression(featuresCol="no_such_column").fit(binary_df)
    autolog()
    with pytest.raises(Exception) as logged:
        LogisticRegression(featuresCol="no_such_column").fit(binary_df)
    assert type(logged.value) is type(plain.value)
    assert str(logged.value) == str(plain.value) and "no_such_column" in str(logged.value)
    run = deltaflow.last_active_run()
    deltaflow.flush()
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FAILED" and run.data.params["featuresCol"] == "no_such_column"
    assert artifact_paths(client, run.info.run_id) == set()


def _in_threads(*targets):
    """Run the targets at the same moment on their own threads; re-raise the first error."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(target):
        def go():
            try:
                barrier.wait()
                target()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                errors.append(exc)

        return go

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    if errors:
        raise errors[0]


def test_two_threads_two_estimators(autolog, client, binary_df):
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.clustering import KMeans

    results: dict[str, tuple] = {}

    def fit(name, estimator, df):
        def go():
            model = estimator.fit(df)
            results[name] = (model, deltaflow.last_active_run().info.run_id)

        return go

    points = binary_df.select("features")
    _in_threads(fit("lr", LogisticRegression(maxIter=4), binary_df), fit("km", KMeans(k=2, seed=1), points))
    deltaflow.flush()
    (lr_model, lr_run), (km_model, km_run) = results["lr"], results["km"]
    assert lr_run != km_run and len(experiment_runs(client)) == 2
    lr, km = client.get_run(lr_run), client.get_run(km_run)
    assert lr.info.run_name == "LogisticRegression" and km.info.run_name == "KMeans"
    assert lr.data.params["maxIter"] == "4" and "k" not in lr.data.params
    assert km.data.params["k"] == "2" and "regParam" not in km.data.params
    assert "training_accuracy" in lr.data.metrics and "training_cost" in km.data.metrics
    assert "training_accuracy" not in km.data.metrics
    assert lr.info.status == km.info.status == "FINISHED"
    loaded_lr = deltaflow.spark.load_model(f"runs:/{lr_run}/model")
    loaded_km = deltaflow.spark.load_model(f"runs:/{km_run}/model")
    assert predictions(loaded_lr, binary_df) == predictions(lr_model, binary_df)
    assert predictions(loaded_km, points) == predictions(km_model, points)


def test_two_threads_one_estimator(autolog, client, spark, binary_df, tmp_path):
    from pyspark.ml.classification import LogisticRegression

    path = str(tmp_path / "train.parquet")
    binary_df.write.parquet(path)
    lr = LogisticRegression()
    results: dict[int, tuple] = {}

    def fit(max_iter):
        def go():
            # The same object, different params; each thread reads the same files itself.
            model = lr.fit(spark.read.parquet(path), {lr.maxIter: max_iter})
            results[max_iter] = (model, deltaflow.last_active_run().info.run_id)

        return go

    _in_threads(fit(2), fit(9))
    deltaflow.flush()
    assert results[2][1] != results[9][1] and len(experiment_runs(client)) == 2
    for max_iter, (model, run_id) in results.items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["maxIter"] == str(max_iter) == str(model.getMaxIter())
        assert run.data.metrics["training_accuracy"] == pytest.approx(model.summary.accuracy)
        loaded = deltaflow.spark.load_model(f"runs:/{run_id}/model")
        assert loaded.stages[0].getMaxIter() == max_iter
        assert _coefficients(loaded.stages[0]) == _coefficients(model)
    # Two reads of the same files are the same dataset: same digest (session expression ids
    # must not leak into it), with the row count.
    datasets = [client.get_run(run_id).inputs.dataset_inputs[0].dataset for _, run_id in results.values()]
    assert datasets[0].digest == datasets[1].digest
    assert [json.loads(d.profile)["num_rows"] for d in datasets] == [40, 40]


def test_reads_right_after_fit_see_the_background_logging(autolog, client, binary_df):
    """fit() returns before its metrics and model are logged (a background thread does that), but
    a read in the same process sees them at once, with no flush(): read your own writes."""
    from pyspark.ml.classification import LogisticRegression

    LogisticRegression(maxIter=3).fit(binary_df)
    run = deltaflow.last_active_run()
    assert run.info.status == "FINISHED"
    assert run.data.params["maxIter"] == "3" and "training_accuracy" in run.data.metrics
    found = deltaflow.search_runs(output_format="list")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    assert "training_accuracy" in found[0].data.metrics
    assert "model/MLmodel" in {f.path for f in client.list_artifacts(run.info.run_id, "model")}
