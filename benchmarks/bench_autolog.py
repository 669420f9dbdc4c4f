#!/usr/bin/env python
"""Spark ML autologging overhead: the same fits with and without deltaflow's autolog and MLflow's
``mlflow.pyspark.ml.autolog``, in one process on one local SparkSession.

Two workloads: a LogisticRegression fit (200k rows x 10 features, maxIter 20) and a CrossValidator
over it (4-point grid, 3 folds). Five variants each: plain (no autolog), deltaflow autolog, deltaflow
autolog with ``log_models=False``, MLflow autolog, MLflow autolog with ``log_models=False``.

The issue's target, judged for deltaflow with models logged: ``fit`` returns within 5% of its un-logged
time, the run carries training metrics, and everything (model included) is complete and durable when
``deltaflow.flush()`` returns. For each variant the table shows the ``fit`` wall time (median of the
repeats), its overhead against plain, the time until the logged data is durable (deltaflow: ``fit`` then
``flush()``; MLflow: ``fit`` itself, it logs synchronously), and what the run holds when read back.

    python benchmarks/bench_autolog.py                 # full sizes, ~12 min on 2 (loaded) cores
    python benchmarks/bench_autolog.py --quick         # 20k rows, maxIter 5, 2 folds: ~5 min
    python benchmarks/bench_autolog.py --quick --skip-mlflow --only lr
    python benchmarks/bench_autolog.py --profile       # + cProfile of deltaflow's fit path
"""

from __future__ import annotations

import os
import sys


def _engine_from_argv() -> str:
    """``--engine`` is needed before deltaflow is imported; argparse checks it again in ``main``."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--engine" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--engine="):
            return arg.split("=", 1)[1]
    return "rust"


# deltaflow's tracking store writes through delta-rs (the rust engine) unless --engine spark; read when
# the store is made, so it is set before deltaflow is imported. Spark is the ML engine either way.
ENGINE = _engine_from_argv()
os.environ["DELTAFLOW_ENGINE"] = ENGINE
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("DELTAFLOW_USER", "bench")
# The benchmark switches autologging on and off itself: keep the wheel's start-up hook
# (deltaflow-autolog.pth, DELTAFLOW_AUTOLOG / spark.deltaflow.autolog.enabled) out of it.
os.environ["DELTAFLOW_AUTOLOG"] = "false"
# Spark's Python workers (MLflow's dataset profile runs an RDD job) must use this interpreter, not the
# first python3 on PATH.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402
from urllib.parse import unquote, urlparse  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RESULTS_DIR, Results, TempDirs, environment, fmt_s, log, machine_load, median  # noqa: E402

SIZES: dict[str, dict[str, int]] = {
    "full": {"rows": 200_000, "features": 10, "max_iter": 20, "cv_folds": 3, "cv_grid": 4,
             "warmup_rows": 2_000},
    "quick": {"rows": 20_000, "features": 10, "max_iter": 5, "cv_folds": 2, "cv_grid": 4,
              "warmup_rows": 1_000},
}
TARGET_OVERHEAD = 0.05  # fit() within 5% of its un-logged time, models logged

VARIANTS = ("plain", "deltaflow", "deltaflow-nomodels", "mlflow", "mlflow-nomodels")
WORKLOADS = ("lr", "cv")
WORKLOAD_TITLES = {"lr": "LR", "cv": "CV"}


def _variant_titles() -> dict[str, str]:
    try:
        from importlib.metadata import version

        mlv = version("mlflow")
    except Exception:  # noqa: BLE001
        mlv = "?"
    return {"plain": "plain (no autolog)", "deltaflow": "deltaflow autolog",
            "deltaflow-nomodels": "deltaflow log_models=False", "mlflow": f"MLflow {mlv} autolog",
            "mlflow-nomodels": f"MLflow {mlv} log_models=False"}


def _library(variant: str) -> Optional[str]:
    return None if variant == "plain" else variant.split("-")[0]


# -- one measurement ------------------------------------------------------------------------------
@dataclass
class Sample:
    variant: str
    workload: str
    repeat: int
    fit_s: float
    flush_s: Optional[float] = None  # deltaflow: flush() after fit
    durable_s: Optional[float] = None  # fit (+ flush) until everything logged is durable
    fit_path_s: Optional[float] = None  # deltaflow: time its patch spent on the fit path (instrumented)
    background_s: dict[str, float] = field(default_factory=dict)  # deltaflow: each background step
    fit_path_parts_s: dict[str, float] = field(default_factory=dict)  # deltaflow: inside _start
    code_cache_mb: Optional[tuple[float, float]] = None  # JVM JIT code cache (used, max) after the sample
    run_id: Optional[str] = None
    checks: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    recached: bool = False  # the training DataFrame had lost its cache after the fit


class _Collect(logging.Handler):
    """Keeps the WARNING+ records of a logger (MLflow's autolog reports its failures there)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(f"{record.name}: {record.getMessage()}"[:400])
        except Exception:  # noqa: BLE001
            pass


FIT_PATH = ("_start", "_finish")  # what deltaflow's patch does on the user's thread, around the fit
BACKGROUND = ("_log_training_metrics", "_log_tuning", "_log_datasets", "_log_model", "_end")  # after it
# Inside _start, timed on the fitting thread only: (label, module, attribute path). _start imports these
# at call time or reaches them through their module or class, so wrapping the attribute is enough.
FIT_PATH_PARTS = (
    ("params", "deltaflow.autologging._ml_info", "estimator_params"),
    ("delta_sources", "deltaflow.autologging._lineage", "delta_sources"),
    ("context tags", "deltaflow.tracking._context", "resolve_context_tags"),
    ("experiment", "deltaflow.tracking.fluent", "_experiment_for_new_run"),
    ("create_run", "deltaflow.tracking.client", "DeltaflowClient.create_run"),
    ("log_batch", "deltaflow.tracking.client", "DeltaflowClient.log_batch"),
)


class FitPathTimer:
    """Times deltaflow's autolog steps by wrapping them in this process: on the fit path ``_Fit._start``
    (params, Delta versions, creating the run; with its parts, ``FIT_PATH_PARTS``) and ``_Fit._finish``
    (hand-off to the background thread); in the background each logging step. A step deltaflow has
    renamed is simply not reported."""

    def __init__(self) -> None:
        import importlib
        import threading

        self.seconds: dict[str, float] = {}
        self.parts: dict[str, float] = {}
        self._open: set[str] = set()
        self.available = False
        self._main = threading.main_thread()
        try:
            from deltaflow.autologging import _spark_ml

            cls = _spark_ml._Fit
        except Exception:  # noqa: BLE001
            return
        if not all(hasattr(cls, name) for name in FIT_PATH):
            return
        for name in FIT_PATH + BACKGROUND:
            original = getattr(cls, name, None)
            if original is not None:
                setattr(cls, name, self._wrap(name, original, self.seconds_of))
        for label, module_name, attr in FIT_PATH_PARTS:
            try:
                owner: Any = importlib.import_module(module_name)
                *outer, leaf = attr.split(".")
                for part in outer:
                    owner = getattr(owner, part)
                original = getattr(owner, leaf)
            except Exception:  # noqa: BLE001
                continue
            setattr(owner, leaf, self._wrap(label, original, self.part_of))
        self.available = True

    def seconds_of(self) -> dict[str, float]:
        return self.seconds

    def part_of(self) -> Optional[dict[str, float]]:
        import threading

        # The benchmark fits on the main thread; the background thread's calls (child runs) are not
        # part of the fit path.
        return self.parts if threading.current_thread() is self._main and self.seconds.get("_start_open") else None

    def reset(self) -> None:
        self.seconds = {}
        self.parts = {}

    def fit_path(self) -> Optional[float]:
        return sum(self.seconds.get(name, 0.0) for name in FIT_PATH) if self.available else None

    def background(self) -> dict[str, float]:
        return {name: self.seconds[name] for name in BACKGROUND if name in self.seconds}

    def _wrap(self, name: str, original: Callable[..., Any], table: Callable[[], Optional[dict[str, float]]]
              ) -> Callable[..., Any]:
        timer = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if name in timer._open:  # a recursive call (estimator_params on a Pipeline's stages)
                return original(*args, **kwargs)
            timer._open.add(name)
            if name == "_start":
                timer.seconds["_start_open"] = 1.0
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                timer._open.discard(name)
                if name == "_start":
                    timer.seconds.pop("_start_open", None)
                into = table()
                if into is not None:
                    into[name] = into.get(name, 0.0) + elapsed

        timed.__wrapped__ = original  # type: ignore[attr-defined]
        return timed


def code_cache_mb(spark: Any) -> Optional[tuple[float, float]]:
    """(used, max) MB of the driver JVM's JIT code cache. When it fills, the JVM stops compiling and
    everything after runs slower: a benchmark that hits it measures a different JVM from then on."""
    try:
        used = total = 0.0
        for pool in spark._jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans():
            if "CodeCache" in pool.getName() or "CodeHeap" in pool.getName():
                usage = pool.getUsage()
                used += usage.getUsed() / 2**20
                total += usage.getMax() / 2**20
        return (used, total) if total else None
    except Exception:  # noqa: BLE001
        return None


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: dict[str, int], dirs: TempDirs, results: Results) -> None:
        self.args, self.sizes, self.dirs, self.results = args, sizes, dirs, results
        self.samples: list[Sample] = []
        self.titles = _variant_titles()
        self.mlflow: Any = None
        self.fit_timer: Optional[FitPathTimer] = None

    # -- set-up ------------------------------------------------------------------------------
    def setup_spark_and_data(self) -> None:
        from pyspark.ml.base import Estimator, Transformer
        from pyspark.ml.evaluation import Evaluator
        from pyspark.ml.feature import VectorAssembler
        from pyspark.sql import SparkSession
        from pyspark.sql import functions as F

        from deltaflow._spark import get_spark

        # The un-patched methods, to check that disabling each library really restores them.
        self.raw_methods = {"Estimator.fit": Estimator.__dict__["fit"],
                            "Transformer.transform": Transformer.__dict__["transform"],
                            "Evaluator.evaluate": Evaluator.__dict__["evaluate"]}
        log("starting the local SparkSession (deltaflow._spark.get_spark)")
        spark = self.spark = get_spark()
        active = SparkSession.getActiveSession()
        if active is None or not active._jsparkSession.equals(spark._jsparkSession):
            raise RuntimeError("get_spark()'s session is not the active session: MLflow would use another one")
        n, k = self.sizes["rows"], self.sizes["features"]
        weights = [((i % 5) - 2) * 0.6 + 0.3 for i in range(k)]
        cols = [F.randn(seed=100 + i).alias(f"f{i}") for i in range(k)]
        frame = spark.range(0, n, numPartitions=2).select(*cols)
        score = sum(F.col(f"f{i}") * w for i, w in enumerate(weights)) + F.randn(seed=7) * 0.8
        frame = frame.withColumn("label", (score > 0).cast("double"))
        assembler = VectorAssembler(inputCols=[f"f{i}" for i in range(k)], outputCol="features")
        if self.args.source == "delta":
            path = os.path.join(self.dirs.new("data"), "train")
            log(f"writing {n:,} rows x {k} features to a Delta table at {path}")
            frame.write.format("delta").save(path)
            source = spark.read.format("delta").load(path)
        else:
            source = frame
        self.train = assembler.transform(source).select("features", "label").cache()
        self.count = self.train.count()
        small = self.train.limit(self.sizes["warmup_rows"]).cache()
        small.count()
        self.small = small
        self.recaches = 0
        log(f"training data cached: {self.count:,} rows ({self.args.source})")

    def ensure_cached(self, df: Any) -> bool:
        """Re-cache ``df`` (outside the timers) if a fit dropped its cache; True if it had to."""
        level = df.storageLevel
        if level.useMemory or level.useDisk:
            return False
        df.cache()
        df.count()
        return True

    def setup_deltaflow(self) -> None:
        import deltaflow
        from deltaflow.config import resolve_location
        from deltaflow.store.factory import get_store, make_engine
        from deltaflow.store.schema import TABLES
        from deltaflow.store.tracking_store import TrackingStore

        self.df_uri = self.dirs.new("deltaflow-store")
        deltaflow.set_tracking_uri(self.df_uri)
        store = get_store(self.df_uri)
        if store.engine.name != ENGINE:
            raise RuntimeError(f"deltaflow's store uses engine {store.engine.name!r}, not {ENGINE}")
        store.engine.ensure_tables(list(TABLES.values()))
        self.df_experiment = store.default_experiment_id()
        # One throw-away run: warms the write path (as bench_tracking's harness does).
        with deltaflow.start_run(run_name="warmup"):
            deltaflow.log_param("p", "v")
            deltaflow.log_metric("m", 1.0)
        deltaflow.flush()
        location = resolve_location(self.df_uri)
        # An independent reader (own buffer, own engine object): what it sees is committed to Delta.
        self.df_reader = TrackingStore(location, make_engine(location, ENGINE))
        self.fit_timer = FitPathTimer()
        log(f"deltaflow store (engine {store.engine.name}) at {self.df_uri}")

    def setup_mlflow(self) -> None:
        import mlflow
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        folder = self.dirs.new("mlflow-store")
        self.ml_uri = f"sqlite:///{folder}/mlflow.db"
        self.ml_artifacts = os.path.join(folder, "artifacts")
        # Create the database with its default experiment's artifact root in the temp folder (MLflow's
        # default would be ./mlruns in the working directory). The default experiment is then used as
        # is: no set_experiment (it exports MLFLOW_EXPERIMENT_ID, which deltaflow reads too).
        SqlAlchemyStore(self.ml_uri, self.ml_artifacts)
        mlflow.set_tracking_uri(self.ml_uri)
        self.mlflow = mlflow
        self.ml_client = mlflow.MlflowClient(self.ml_uri)
        self.ml_experiment = "0"
        location = self.ml_client.get_experiment("0").artifact_location
        if not _local_path(location).startswith(folder):
            raise RuntimeError(f"MLflow's default experiment stores artifacts at {location}, outside the temp folder")
        with mlflow.start_run(experiment_id="0", run_name="warmup"):
            mlflow.log_param("p", "v")
            mlflow.log_metric("m", 1.0)
        from mlflow.utils._spark_utils import _get_active_spark_session

        theirs = _get_active_spark_session()
        if theirs is None or not theirs._jsparkSession.equals(self.spark._jsparkSession):
            raise RuntimeError("MLflow does not see deltaflow's SparkSession as the active one")
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines per run would drown the log
        log(f"MLflow store {self.ml_uri}, artifacts under {self.ml_artifacts}")

    # -- variants ----------------------------------------------------------------------------
    def enable(self, variant: str) -> None:
        if variant.startswith("deltaflow"):
            import deltaflow

            deltaflow.autolog(log_models=variant == "deltaflow")
        elif variant.startswith("mlflow"):
            self.mlflow.pyspark.ml.autolog(log_models=variant == "mlflow")

    def disable(self, variant: str) -> None:
        if variant.startswith("deltaflow"):
            import deltaflow

            deltaflow.autolog(disable=True)
        elif variant.startswith("mlflow"):
            self.mlflow.pyspark.ml.autolog(disable=True)
        self.check_unpatched()

    def check_unpatched(self) -> None:
        from pyspark.ml.base import Estimator, Transformer
        from pyspark.ml.evaluation import Evaluator

        now = {"Estimator.fit": Estimator.__dict__.get("fit"),
               "Transformer.transform": Transformer.__dict__.get("transform"),
               "Evaluator.evaluate": Evaluator.__dict__.get("evaluate")}
        changed = [k for k, v in now.items() if v is not self.raw_methods[k]]
        if changed:
            raise RuntimeError(f"after disabling autolog these methods are still patched: {changed}")

    def estimator(self, workload: str) -> Any:
        from pyspark.ml.classification import LogisticRegression
        from pyspark.ml.evaluation import BinaryClassificationEvaluator
        from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

        lr = LogisticRegression(maxIter=self.sizes["max_iter"])
        if workload == "lr":
            return lr
        grid = ParamGridBuilder().addGrid(lr.regParam, [0.0, 0.01]).addGrid(lr.elasticNetParam, [0.0, 0.5]).build()
        assert len(grid) == self.sizes["cv_grid"]
        return CrossValidator(estimator=lr, estimatorParamMaps=grid, evaluator=BinaryClassificationEvaluator(),
                              numFolds=self.sizes["cv_folds"], seed=1)

    def run_counts(self) -> tuple[int, int]:
        """(deltaflow runs, MLflow runs) in the default experiments, children included."""
        df_runs = len(self.df_reader.search_runs([self.df_experiment], max_results=50_000)[0])
        ml_runs = len(self.ml_client.search_runs([self.ml_experiment], max_results=50_000)) if self.mlflow else 0
        return df_runs, ml_runs

    def measure(self, variant: str, workload: str, repeat: int, data: Any = None, record: bool = True) -> Sample:
        data = self.train if data is None else data
        estimator = self.estimator(workload)
        before = self.run_counts() if record else (0, 0)
        lib = _library(variant)
        mlflow_log = _Collect()
        logging.getLogger("mlflow").addHandler(mlflow_log)
        self.enable(variant)
        try:
            gc.collect()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if self.fit_timer is not None:
                    self.fit_timer.reset()
                start = time.perf_counter()
                estimator.fit(data)
                fit_s = time.perf_counter() - start
                sample = Sample(variant, workload, repeat, fit_s)
                if lib == "deltaflow":
                    import deltaflow

                    if self.fit_timer is not None:
                        sample.fit_path_s = self.fit_timer.fit_path()
                        sample.fit_path_parts_s = dict(self.fit_timer.parts)
                    start = time.perf_counter()
                    deltaflow.flush()
                    sample.flush_s = time.perf_counter() - start
                    if self.fit_timer is not None:
                        sample.background_s = self.fit_timer.background()
                    sample.durable_s = fit_s + sample.flush_s
                elif lib == "mlflow":
                    sample.durable_s = fit_s  # synchronous: everything is written when fit returns
            sample.warnings = [f"{w.category.__name__}: {w.message}"[:400] for w in caught
                               if "autolog" in f"{w.category.__name__} {w.message}".lower()]
        finally:
            self.disable(variant)
            logging.getLogger("mlflow").removeHandler(mlflow_log)
        sample.warnings += mlflow_log.records
        sample.recached = self.ensure_cached(data)
        sample.code_cache_mb = code_cache_mb(self.spark)
        if record:
            sample.checks = self.read_back(variant, workload, before)
            self.samples.append(sample)
        return sample

    # -- reading the run back ----------------------------------------------------------------
    def read_back(self, variant: str, workload: str, before: tuple[int, int]) -> dict[str, Any]:
        after = self.run_counts()
        new = {"deltaflow": after[0] - before[0], "mlflow": after[1] - before[1]}
        lib = _library(variant)
        expected_runs = 1 + (self.sizes["cv_grid"] if workload == "cv" else 0)
        checks: dict[str, Any] = {"new_runs": new}
        problems = []
        for other in ("deltaflow", "mlflow"):
            want = expected_runs if other == lib else 0
            if new[other] != want:
                problems.append(f"{new[other]} new {other} runs, expected {want}")
        if lib == "deltaflow":
            checks.update(self._read_deltaflow(workload))
        elif lib == "mlflow":
            checks.update(self._read_mlflow(workload))
        if problems:
            checks["problems"] = problems
        return checks

    def _read_deltaflow(self, workload: str) -> dict[str, Any]:
        import deltaflow

        run_id = deltaflow.last_active_run().info.run_id
        run = self.df_reader.get_run(run_id)  # the independent reader: committed data only
        metrics = run.data.metrics
        training = sorted(k for k in metrics if k.startswith("training_"))
        model_dir = os.path.join(_local_path(run.info.artifact_uri), "model")
        children = self.df_reader.search_runs([self.df_experiment], f"tags.mlflow.parentRunId = '{run_id}'")[0]
        datasets = [{"name": i.dataset.name, "source_type": i.dataset.source_type,
                     "version": json.loads(i.dataset.source).get("delta_table_version")
                     if i.dataset.source_type.startswith("delta") else None}
                    for i in run.inputs.dataset_inputs]
        return {"run_id": run_id, "status": run.info.status, "metrics": sorted(metrics), "training_metrics": training,
                "params": len(run.data.params), "model": os.path.exists(os.path.join(model_dir, "MLmodel")),
                "children": len(children), "children_finished": sum(c.info.status == "FINISHED" for c in children),
                "child_metrics": sorted({k for c in children for k in c.data.metrics}), "datasets": datasets}

    def _read_mlflow(self, workload: str) -> dict[str, Any]:
        mlflow = self.mlflow
        run_id = mlflow.last_active_run().info.run_id
        run = self.ml_client.get_run(run_id)
        metrics = run.data.metrics
        models = mlflow.search_logged_models(experiment_ids=[self.ml_experiment],
                                             filter_string=f"source_run_id = '{run_id}'", output_format="list")
        # mlflow.spark.log_model(model, "model") (what its autolog calls) still writes MLflow 2-style, under the
        # run's artifacts; a LoggedModel would hold its own folder. Either counts.
        model_ok = os.path.exists(os.path.join(_local_path(run.info.artifact_uri), "model", "MLmodel")) or any(
            os.path.exists(os.path.join(_local_path(m.artifact_location), "MLmodel")) for m in models)
        children = self.ml_client.search_runs([self.ml_experiment], f"tags.mlflow.parentRunId = '{run_id}'")
        datasets = [{"name": i.dataset.name, "source_type": i.dataset.source_type, "version": None}
                    for i in run.inputs.dataset_inputs]
        return {"run_id": run_id, "status": run.info.status, "metrics": sorted(metrics),
                # MLflow has no naming convention for pyspark.ml training metrics: every metric it put
                # on the run counts.
                "training_metrics": sorted(metrics), "params": len(run.data.params), "model": model_ok,
                "logged_models": [m.name for m in models], "children": len(children),
                "children_finished": sum(c.info.status == "FINISHED" for c in children),
                "child_metrics": sorted({k for c in children for k in c.data.metrics}), "datasets": datasets}

    # -- the run ----------------------------------------------------------------------------
    def warm_up(self, variants: list[str], workloads: list[str]) -> None:
        """Untimed: one plain fit per workload on the full data (JIT, Spark code paths), then each logging
        variant once on a small sample (first-use imports of each library's logging path)."""
        for workload in workloads:
            log(f"warm-up: plain {workload} fit on the full data")
            self.measure("plain", workload, -1, record=False)
        for variant in variants:
            if variant != "plain":
                log(f"warm-up: {variant} lr fit on {self.sizes['warmup_rows']:,} rows")
                self.measure(variant, "lr", -1, data=self.small, record=False)

    def run(self, variants: list[str], workloads: list[str]) -> None:
        self.warm_up(variants, workloads)
        for workload in workloads:
            repeats = self.args.repeats if workload == "lr" else self.args.cv_repeats
            for repeat in range(repeats):
                # Interleaved, and rotated each repeat, so slow drift on the machine hits every variant.
                order = variants[repeat % len(variants):] + variants[:repeat % len(variants)]
                for variant in order:
                    log(f"{workload} repeat {repeat + 1}/{repeats}: {variant}")
                    load = os.getloadavg()[0]
                    sample = self.measure(variant, workload, repeat)
                    extra = f", flush {sample.flush_s:.2f}s" if sample.flush_s is not None else ""
                    extra += f", fit path {sample.fit_path_s * 1e3:.0f} ms" if sample.fit_path_s is not None else ""
                    log(f"  fit {sample.fit_s:.2f}s{extra}; load {load:.1f}"
                        + (f"; PROBLEMS {sample.checks['problems']}" if sample.checks.get("problems") else ""))
                    self.save()

    def save(self) -> None:
        from dataclasses import asdict

        self.results.meta["extra"]["samples"] = [asdict(s) for s in self.samples]
        self.results.meta["extra"]["recaches"] = sum(s.recached for s in self.samples)
        self.results.meta["machine_load"] = machine_load()
        self.results.save()

    # -- profile -----------------------------------------------------------------------------
    def profile(self) -> str:
        """cProfile of one deltaflow (log_models=True) LR fit's synchronous part, after the table."""
        import cProfile
        import io
        import pstats

        import deltaflow

        estimator = self.estimator("lr")
        profiler = cProfile.Profile()
        self.enable("deltaflow")
        try:
            gc.collect()
            start = time.perf_counter()
            profiler.enable()
            estimator.fit(self.train)
            profiler.disable()
            wall = time.perf_counter() - start
            deltaflow.flush()
        finally:
            self.disable("deltaflow")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        prof_path = os.path.join(RESULTS_DIR, f"autolog-profile-{stamp}.prof")
        profiler.dump_stats(prof_path)
        stats = pstats.Stats(profiler)
        entries = stats.stats  # type: ignore[attr-defined]

        def cum(func: str, file_part: str) -> float:
            return sum(v[3] for k, v in entries.items() if k[2] == func and file_part in k[0])

        def calls(func: str, file_part: str) -> int:
            return sum(v[1] for k, v in entries.items() if k[2] == func and file_part in k[0])

        patched = cum("fit", "autologging/_spark_ml.py")
        original = cum("fit", "pyspark/ml/base.py")
        lines = [f"cProfile of one deltaflow-autologged LR fit: wall {wall * 1e3:.0f} ms (profiled), "
                 f"patched fit {patched * 1e3:.0f} ms cumulative, pyspark's own Estimator.fit "
                 f"{original * 1e3:.0f} ms, deltaflow's share {(patched - original) * 1e3:.1f} ms",
                 "deltaflow's fit path, cumulative ms (calls):"]
        for func, part in (("_called_from_pyspark_ml", "_spark_ml.py"), ("is_feature_estimator", "_ml_info.py"),
                           ("_start", "_spark_ml.py"), ("active_run", "fluent.py"), ("_client", "fluent.py"),
                           ("estimator_params", "_ml_info.py"), ("delta_sources", "_lineage.py"),
                           ("resolve_context_tags", "_context.py"), ("_experiment_for_new_run", "fluent.py"),
                           ("default_experiment_id", "experiments.py"), ("create_run", "tracking/client.py"),
                           ("create_run", "store/tracking_store.py"), ("get_experiment", "experiments.py"),
                           ("log_batch", "tracking/client.py"), ("_finish", "_spark_ml.py"),
                           ("submit", "_pending.py")):
            lines.append(f"  {part + ':' + func:<46} {cum(func, part) * 1e3:9.2f} ms ({calls(func, part)} calls)")
        out = io.StringIO()
        restricted = pstats.Stats(profiler, stream=out)
        restricted.sort_stats("cumulative").print_callees(r"_spark_ml.py.*\(_start\)")
        restricted.sort_stats("cumulative").print_stats(r"deltaflow", 30)
        text = "\n".join(lines)
        self.results.meta["extra"]["profile"] = {"summary": text, "pstats": out.getvalue()[-20000:],
                                                 "prof_file": prof_path}
        self.results.save()
        return text + f"\n(full profile: {prof_path}; python -m pstats to browse)"


def _local_path(uri: str) -> str:
    if uri.startswith("file:"):
        return unquote(urlparse(uri).path)
    return uri


# -- the table ------------------------------------------------------------------------------------
def _pct(value: float, base: float) -> str:
    return f"{(value / base - 1) * 100:+.1f}%"


def build_rows(bench: Bench, variants: list[str], workloads: list[str]) -> list[tuple[str, dict[str, str], str, str]]:
    """(metric, cells by variant, target, met?) rows; met? judges deltaflow with models logged."""
    rows = []
    by: dict[tuple[str, str], list[Sample]] = {}
    for s in bench.samples:
        by.setdefault((s.workload, s.variant), []).append(s)
    for workload in workloads:
        title = WORKLOAD_TITLES[workload]
        n = bench.args.repeats if workload == "lr" else bench.args.cv_repeats
        med = {v: median([s.fit_s for s in by[(workload, v)]]) for v in variants if by.get((workload, v))}
        plain = med.get("plain")
        cells = {}
        for v, t in med.items():
            times = [s.fit_s for s in by[(workload, v)]]
            cells[v] = fmt_s(t) + (f" ({min(times):.2f}-{max(times):.2f})" if len(times) > 1 else "")
        rows.append((f"{title}: fit() wall time, median of {n}" + (" (min-max)" if n > 1 else ""), cells, "-", "-"))
        cells, met = {}, "-"
        for v, t in med.items():
            if v != "plain" and plain:
                cells[v] = _pct(t, plain)
        if plain and "deltaflow" in med:
            met = "yes" if med["deltaflow"] / plain - 1 <= TARGET_OVERHEAD else "not met"
        rows.append((f"{title}: fit() overhead vs plain", cells, f"<= +{TARGET_OVERHEAD:.0%}", met))
        cells = {}
        for v in variants:
            fp = [s.fit_path_s for s in by.get((workload, v), []) if s.fit_path_s is not None]
            if fp:
                cells[v] = fmt_s(median(fp)) + (f" ({median(fp) / plain * 100:.2f}% of plain)" if plain else "")
        if cells:
            rows.append((f"{title}: of which deltaflow's patch (instrumented)", cells, "-", "-"))
        cells = {}
        for v in variants:
            ds = [s.durable_s for s in by.get((workload, v), []) if s.durable_s is not None]
            if ds:
                cells[v] = fmt_s(median(ds)) + (f" ({_pct(median(ds), plain)})" if plain else "")
            elif v == "plain":
                cells[v] = "- (nothing logged)"
        rows.append((f"{title}: durable (deltaflow: fit + flush(); MLflow: fit)", cells, "-", "-"))
        cells, met = {}, "-"
        for v in variants:
            if v == "plain" or not by.get((workload, v)):
                continue
            names = [s.checks.get("training_metrics", []) for s in by[(workload, v)]]
            least = min(len(x) for x in names)
            if _library(v) == "deltaflow":
                cells[v] = f"yes, {least} training_*" if least else "NO"
                if v == "deltaflow":
                    met = "yes" if least else "not met"
            else:
                cells[v] = f"{least} metrics" if least else "none"
        rows.append((f"{title}: training metrics on the run", cells, "present", met))
        cells, met = {}, "-"
        for v in variants:
            if v == "plain" or not by.get((workload, v)):
                continue
            ok = [bool(s.checks.get("model")) for s in by[(workload, v)]]
            finished = all(s.checks.get("status") == "FINISHED" for s in by[(workload, v)])
            cells[v] = ("yes" if all(ok) else "no" if not any(ok) else f"{sum(ok)}/{len(ok)}") + \
                ("" if finished else " (run not FINISHED)")
            if v == "deltaflow":
                met = "yes" if all(ok) and finished else "not met"
        rows.append((f"{title}: model logged (MLmodel on disk), run FINISHED", cells,
                     "durable at flush()", met))
        cells = {}
        for v in variants:
            if v == "plain" or not by.get((workload, v)):
                continue
            last = by[(workload, v)][-1].checks
            ds = last.get("datasets") or []
            cells[v] = ", ".join(f"{d['source_type']}" + (f" v{d['version']}" if d.get("version") is not None else "")
                                 for d in ds) or "none"
        rows.append((f"{title}: datasets on the run", cells, "-", "-"))
        if workload == "cv":
            cells = {}
            for v in variants:
                if v == "plain" or not by.get((workload, v)):
                    continue
                last = by[(workload, v)][-1].checks
                cells[v] = f"{last.get('children', 0)} ({', '.join(last.get('child_metrics', [])) or 'no metrics'})"
            rows.append((f"{title}: child runs (their metrics)", cells, "-", "-"))
    problems = [f"{s.workload}/{s.variant}#{s.repeat}: {p}" for s in bench.samples for p in s.checks.get("problems", [])]
    if problems:
        rows.append(("PROBLEMS", {variants[0]: "; ".join(problems)}, "-", "-"))
    return rows


def background_lines(bench: Bench, variants: list[str], workloads: list[str]) -> list[str]:
    """Where deltaflow's flush() time goes: its background steps (median seconds each)."""
    labels = {"_log_training_metrics": "training metrics", "_log_tuning": "tuning child runs",
              "_log_datasets": "datasets", "_log_model": "model", "_end": "end run"}
    out = []
    for workload in workloads:
        for v in variants:
            samples = [s for s in bench.samples if s.workload == workload and s.variant == v and s.background_s]
            if not samples:
                continue
            parts = []
            for key, label in labels.items():
                values = [s.background_s.get(key) for s in samples if key in s.background_s]
                if values:
                    parts.append(f"{label} {median(values):.2f}")
            flush = median([s.flush_s for s in samples if s.flush_s is not None])
            out.append(f"  {WORKLOAD_TITLES[workload]} {bench.titles[v]}: {', '.join(parts)}; "
                       f"flush() {flush:.2f} in all")
    return out


def fit_path_lines(bench: Bench, variants: list[str], workloads: list[str]) -> list[str]:
    """Where deltaflow's fit-path time goes (median ms of each part of ``_start``), and its worst case."""
    out = []
    for workload in workloads:
        for v in variants:
            samples = [s for s in bench.samples if s.workload == workload and s.variant == v
                       and s.fit_path_s is not None]
            if not samples:
                continue
            labels = [label for label, _, _ in FIT_PATH_PARTS]
            parts = []
            for label in labels:
                values = [s.fit_path_parts_s.get(label, 0.0) for s in samples]
                parts.append(f"{label} {median(values) * 1e3:.1f}")
            worst = max(samples, key=lambda s: s.fit_path_s or 0.0)
            worst_part = max(worst.fit_path_parts_s.items(), key=lambda kv: kv[1], default=("-", 0.0))
            out.append(f"  {WORKLOAD_TITLES[workload]} {bench.titles[v]}: {', '.join(parts)}; max fit path "
                       f"{(worst.fit_path_s or 0) * 1e3:.0f} ms (largest part: {worst_part[0]} "
                       f"{worst_part[1] * 1e3:.0f} ms)")
    return out


def render(rows: list[tuple[str, dict[str, str], str, str]], variants: list[str], titles: dict[str, str]) -> str:
    headers = ["metric"] + [titles[v] for v in variants] + ["target (deltaflow)", "met?"]
    data = [[m] + [cells.get(v, "-") for v in variants] + [target, met] for m, cells, target, met in rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, data)])


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=20,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k rows, maxIter 5, CV 2 folds")
    parser.add_argument("--repeats", type=int, default=3, help="LR fits per variant (median reported)")
    parser.add_argument("--cv-repeats", type=int, default=1, help="CrossValidator fits per variant")
    parser.add_argument("--only", default="lr,cv", help="workloads: lr, cv (comma-separated)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--skip-mlflow", action="store_true", help="drop the MLflow variants")
    parser.add_argument("--source", choices=("delta", "memory"), default="delta",
                        help="training data read from a Delta table (default) or generated in memory")
    parser.add_argument("--engine", choices=("rust", "spark"), default="rust",
                        help="deltaflow's tracking-store engine (default rust: delta-rs)")
    parser.add_argument("--profile", action="store_true",
                        help="after the table, cProfile one deltaflow LR fit's synchronous part")
    parser.add_argument("--size", action="append", default=[], metavar="KEY=N",
                        help=f"override a size ({', '.join(SIZES['full'])})")
    parser.add_argument("--workdir", default=None, help="where the temp stores go (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp stores")
    args = parser.parse_args(argv)
    workloads = [w.strip() for w in args.only.split(",") if w.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.skip_mlflow:
        variants = [v for v in variants if _library(v) != "mlflow"]
    if set(workloads) - set(WORKLOADS) or set(variants) - set(VARIANTS) or not workloads or not variants:
        parser.error(f"--only takes {WORKLOADS}, --variants {VARIANTS}")
    if "plain" in variants:  # the baseline first in every column order
        variants = ["plain"] + [v for v in variants if v != "plain"]
    if min(args.repeats, args.cv_repeats) < 1:
        parser.error("repeats must be >= 1")
    mode = "quick" if args.quick else "full"
    sizes = dict(SIZES[mode])
    for item in args.size:
        key, _, value = item.partition("=")
        if key not in sizes:
            parser.error(f"unknown size {key!r}")
        sizes[key] = int(value)
    dirs = TempDirs(base=args.workdir, keep=args.keep)
    os.environ.setdefault("DELTAFLOW_WAREHOUSE_DIR", dirs.new("warehouse"))
    results = Results(mode, sys.argv, sizes)
    results.path = os.path.join(RESULTS_DIR, f"autolog-{time.strftime('%Y%m%d-%H%M%S')}.json")
    results.meta["variants"], results.meta["workloads"] = variants, workloads
    results.meta["git_head"] = _git("rev-parse", "HEAD")
    results.meta["git_status_src"] = _git("status", "--short", "--", "../src")
    repo_mlruns = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mlruns")
    mlruns_before = os.path.exists(repo_mlruns) or os.path.exists("mlruns")
    bench = Bench(args, sizes, dirs, results)
    try:
        bench.setup_spark_and_data()
        bench.setup_deltaflow()
        if any(_library(v) == "mlflow" for v in variants):
            bench.setup_mlflow()
        results.meta["environment"] = environment()
        bench.run(variants, workloads)
        rows = build_rows(bench, variants, workloads)
        results.meta["extra"]["table"] = [{"metric": m, "cells": c, "target": t, "met": met} for m, c, t, met in rows]
        bench.save()
        import pyspark

        from deltaflow.store.factory import get_store

        print(f"\nSpark ML autologging: LogisticRegression(maxIter={sizes['max_iter']}) on {bench.count:,} rows x "
              f"{sizes['features']} features ({args.source}, cached); CrossValidator {sizes['cv_grid']}-point grid, "
              f"{sizes['cv_folds']} folds. pyspark {pyspark.__version__}, local SparkSession "
              f"{bench.spark.sparkContext.master} shared by every variant.")
        engine = get_store(bench.df_uri).engine.name
        print(f"deltaflow tracking store engine: {engine} (DELTAFLOW_ENGINE={ENGINE}"
              f"{', delta-rs' if engine == 'rust' else ', delta-spark on the same session'}); MLflow: sqlite + "
              f"local artifacts. Machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n")
        print(render(rows, variants, bench.titles))
        lines = fit_path_lines(bench, variants, workloads)
        if lines:
            print("\ndeltaflow's fit path, ms (median of each part of _Fit._start, on the fitting thread):")
            print("\n".join(lines))
        lines = background_lines(bench, variants, workloads)
        if lines:
            print("\ndeltaflow's background work, seconds (median; runs on the deltaflow-pending thread after "
                  "fit returns, flush() waits for it, then commits):")
            print("\n".join(lines))
        if results.meta["extra"].get("recaches"):
            print(f"\nnote: {results.meta['extra']['recaches']} fit(s) left the cached training DataFrame "
                  "un-cached (MLflow's autolog persists the input and unpersists it at the end of fit, dropping "
                  "the caller's cache); it was re-cached outside the timers.")
        full = [s for s in bench.samples if s.code_cache_mb and s.code_cache_mb[0] >= 0.98 * s.code_cache_mb[1]]
        if full:
            first = full[0]
            print(f"\nWARNING: the driver JVM's JIT code cache was full ({first.code_cache_mb[0]:.0f} of "
                  f"{first.code_cache_mb[1]:.0f} MB) from {first.workload}/{first.variant} repeat {first.repeat + 1} "
                  f"on ({len(full)} of {len(bench.samples)} samples): the JVM stopped compiling, later "
                  "figures are slower and noisier (raise -XX:ReservedCodeCacheSize in DELTAFLOW_DRIVER_JAVA_OPTIONS).")
        warned = sorted({w for s in bench.samples for w in s.warnings})
        if warned:
            print(f"\nautolog warnings ({len(warned)} distinct; all in the JSON):")
            for w in warned[:8]:
                print(f"  {w[:200]}")
        if args.profile:
            print("\n" + bench.profile())
        mlruns_after = os.path.exists(repo_mlruns) or os.path.exists("mlruns")
        if mlruns_after and not mlruns_before:
            print("\nWARNING: an ./mlruns folder appeared during the run")
        print(f"\nresults: {results.path}")
    finally:
        results.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        bench.save()
        dirs.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
