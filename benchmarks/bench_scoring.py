#!/usr/bin/env python
"""Spark scoring: deltaflow beside MLflow 3.17, every figure from one run on the same machine and rows.

* spark_udf: a scikit-learn RandomForest (20 trees, depth 8, 10 features) over ``--rows`` rows (2M):
  deltaflow's UDF, ``mlflow.pyfunc.spark_udf`` (``env_manager="local"``), and the limit — one process's
  ``model.predict`` on the same rows, times the cores. Each UDF runs in its own fresh local[2] Spark
  process, so each first call (``spark_udf()`` plus the first action) starts cold Python workers.
  The same process also times a ``mapInArrow`` transport that keeps every column, the alternative the
  UDF was chosen over.
* score(): a Spark ML pipeline over the same rows, ``deltaflow.score`` against plain
  ``model.transform`` (the timed action; model resolution and loading are shown apart).
* batch_score: the rows as a Delta table scored into a Delta table end to end, lineage written, beside
  the same job written by hand with MLflow (read, ``spark_udf``, write; no lineage).
* REST serving: ``benchmarks/bench_serving.py``'s ``run_section`` when that file exists.

Outputs are written with Spark's ``noop`` sink in the UDF and score() sections, so what is timed is
the scoring, not a file format. Figures are medians of ``--repeats`` actions after the first.

    python benchmarks/bench_scoring.py                       # everything, 2M rows
    python benchmarks/bench_scoring.py --rows 200000 --only udf,sparkml --skip-rest
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)

from _common import RESULTS_DIR, fmt_rate, fmt_s, log, machine_load  # noqa: E402

FEATURES = [f"f{i}" for i in range(10)]
SECTIONS = ("udf", "sparkml", "batch", "rest")
TARGET_RATIO, TARGET_FIRST_S, TARGET_SPARKML = 1.5, 5.0, 0.05


# -- children: one fresh Spark process per contender ---------------------------------------------
def _spark() -> Any:
    from deltaflow._spark import get_spark

    return get_spark()  # local[2], Arrow on; the same session settings for every contender


def _noop(df: Any) -> None:
    df.write.format("noop").mode("overwrite").save()


def _timed(action: Any, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def child_prepare(work: str, rows: int, partitions: int) -> dict[str, Any]:
    """The input Delta table, the RandomForest saved by both libraries and registered, the pipeline."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression
    from pyspark.sql import functions as F
    from sklearn.ensemble import RandomForestRegressor

    import deltaflow
    import deltaflow.sklearn
    import deltaflow.spark

    spark = _spark()
    table = os.path.join(work, "input")
    (spark.range(rows, numPartitions=partitions)
     .select("id", *[F.rand(seed=i).alias(c) for i, c in enumerate(FEATURES)])
     .write.format("delta").save(table))
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.random((20_000, len(FEATURES))), columns=FEATURES)
    target = train.to_numpy() @ np.arange(1, len(FEATURES) + 1) + rng.normal(size=len(train))
    forest = RandomForestRegressor(n_estimators=20, max_depth=8, random_state=0).fit(train, target)
    deltaflow.sklearn.save_model(forest, os.path.join(work, "rf-deltaflow"), input_example=train.head(3))
    mlflow.sklearn.save_model(forest, os.path.join(work, "rf-mlflow"), input_example=train.head(3),
                              serialization_format="cloudpickle")  # the same pickle format on both sides
    store = os.path.join(work, "store")
    deltaflow.set_tracking_uri(store)
    with deltaflow.start_run():
        info = deltaflow.sklearn.log_model(forest, name="model", input_example=train.head(3),
                                           registered_model_name="bench_rf")
    deltaflow.MlflowClient(store).set_registered_model_alias("bench_rf", "champion", info.registered_model_version)
    sample = spark.read.format("delta").load(table).limit(20_000).withColumn(
        "y", sum(F.col(c) * (i + 1) for i, c in enumerate(FEATURES)))
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=FEATURES, outputCol="features"),
                                LinearRegression(labelCol="y", maxIter=10)]).fit(sample)
    deltaflow.spark.save_model(pipeline, os.path.join(work, "pipeline"))
    deltaflow.flush()
    return {"table": table, "store": store}


def _cached_input(spark: Any, work: str) -> Any:
    df = spark.read.format("delta").load(os.path.join(work, "input")).select(*FEATURES).cache()
    df.count()
    return df


def child_udf(work: str, library: str, repeats: int) -> dict[str, Any]:
    spark = _spark()
    df = _cached_input(spark, work)
    rows = df.count()
    if library == "deltaflow":
        import deltaflow.pyfunc

        make = lambda: deltaflow.pyfunc.spark_udf(spark, os.path.join(work, "rf-deltaflow"))  # noqa: E731
    else:
        import mlflow.pyfunc

        make = lambda: mlflow.pyfunc.spark_udf(spark, os.path.join(work, "rf-mlflow"), env_manager="local")  # noqa: E731
    start = time.perf_counter()
    udf = make()
    created = time.perf_counter() - start
    _noop(df.withColumn("prediction", udf(*FEATURES)))
    first = time.perf_counter() - start
    median, times = _timed(lambda: _noop(df.withColumn("prediction", udf(*FEATURES))), repeats)
    out = {"rows": rows, "create_s": created, "first_s": first, "median_s": median, "times": times,
           "rows_per_s": rows / median}
    if library == "deltaflow":
        out["map_in_arrow"] = _map_in_arrow(spark, df, os.path.join(work, "rf-deltaflow"), repeats)
        out["limit"] = _raw_predict(df, os.path.join(work, "rf-deltaflow"))
    return out


def _map_in_arrow(spark: Any, df: Any, model_path: str, repeats: int) -> dict[str, Any]:
    """The same model through ``mapInArrow``, keeping every input column (as withColumn does)."""
    import pyarrow as pa
    from pyspark.sql.types import DoubleType, StructField, StructType

    schema = StructType(list(df.schema.fields) + [StructField("prediction", DoubleType())])
    cache: dict[str, Any] = {}

    def score(batches: Any) -> Any:
        if "model" not in cache:
            import deltaflow.pyfunc

            cache["model"] = deltaflow.pyfunc.load_model(model_path)
        model = cache["model"]
        for batch in batches:
            predicted = model.predict(batch.to_pandas())
            yield pa.RecordBatch.from_arrays(list(batch.columns) + [pa.array(predicted, pa.float64())],
                                             schema=batch.schema.append(pa.field("prediction", pa.float64())))

    _noop(df.mapInArrow(score, schema))  # warm
    median, times = _timed(lambda: _noop(df.mapInArrow(score, schema)), repeats)
    return {"median_s": median, "times": times, "rows_per_s": df.count() / median}


def _raw_predict(df: Any, model_path: str) -> dict[str, Any]:
    """One process, one call: model.predict on the same rows (the ceiling per core)."""
    import deltaflow.pyfunc

    frame = df.toPandas()
    model = deltaflow.pyfunc.load_model(model_path).get_raw_model()
    model.predict(frame.head(1000))
    start = time.perf_counter()
    model.predict(frame)
    seconds = time.perf_counter() - start
    return {"rows_per_s_per_core": len(frame) / seconds, "cores": os.cpu_count()}


def child_sparkml(work: str, repeats: int) -> dict[str, Any]:
    import deltaflow
    import deltaflow.spark

    spark = _spark()
    df = _cached_input(spark, work)
    path = os.path.join(work, "pipeline")
    start = time.perf_counter()
    model = deltaflow.spark.load_model(path)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    scored = deltaflow.score(df, path)
    score_prepare_s = time.perf_counter() - start
    plain = model.transform(df)
    _noop(plain)
    _noop(scored)  # both plans warm
    transform_times, score_times = [], []
    for _ in range(repeats):  # alternated, so drift in the machine's load hits both alike
        transform_times.append(_timed(lambda: _noop(plain), 1)[0])
        score_times.append(_timed(lambda: _noop(scored), 1)[0])
    python_in_plan = "Python" in scored._jdf.queryExecution().executedPlan().toString()
    return {"transform_s": statistics.median(transform_times), "score_s": statistics.median(score_times),
            "transform_times": transform_times, "score_times": score_times, "load_s": load_s,
            "score_prepare_s": score_prepare_s, "python_in_plan": python_in_plan, "rows": df.count()}


def child_batch(work: str, library: str) -> dict[str, Any]:
    spark = _spark()
    table = os.path.join(work, "input")
    output = os.path.join(work, f"scored-{library}")
    start = time.perf_counter()
    if library == "deltaflow":
        import deltaflow

        deltaflow.set_tracking_uri(os.path.join(work, "store"))
        result = deltaflow.batch_score(table, "models:/bench_rf@champion", output)
        seconds = time.perf_counter() - start
        row = spark.read.format("delta").load(output).select("_model_name", "_model_version", "_model_alias",
                                                              "_input_version").first()
        return {"seconds": seconds, "rows": result.rows, "output_version": result.output_version,
                "lineage_row": row.asDict(), "lineage_commit": result.lineage}
    import mlflow.pyfunc

    udf = mlflow.pyfunc.spark_udf(spark, os.path.join(work, "rf-mlflow"), env_manager="local")
    frame = spark.read.format("delta").load(table)
    frame.withColumn("prediction", udf(*FEATURES)).write.format("delta").save(output)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": spark.read.format("delta").load(output).count()}


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--library", default="deltaflow")
    args = parser.parse_args(argv)
    if args.child == "prepare":
        out = child_prepare(args.work, args.rows, args.partitions)
    elif args.child == "udf":
        out = child_udf(args.work, args.library, args.repeats)
    elif args.child == "sparkml":
        out = child_sparkml(args.work, args.repeats)
    else:
        out = child_batch(args.work, args.library)
    print("RESULT " + json.dumps(out, default=str), flush=True)
    return 0


# -- parent: orchestration and the table -------------------------------------------------------
def _run_child(name: str, work: str, **kwargs: Any) -> Optional[dict[str, Any]]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--work", work]
    for key, value in kwargs.items():
        cmd += [f"--{key}", str(value)]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true", "DELTAFLOW_ENGINE": "rust",
           "DELTAFLOW_WAREHOUSE_DIR": os.path.join(work, "warehouse")}
    log(f"{name} {kwargs}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        log(f"{name} failed ({proc.returncode}): {proc.stderr[-2500:]}")
        return None
    return json.loads(lines[-1][len("RESULT "):])


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    return f"{a / b:.2f}×" if a and b else "n/a"


def _table(rows: list[list[str]]) -> str:
    headers = ["metric", "deltaflow", "MLflow 3.17", "deltaflow / MLflow", "target", "met?"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=8, help="partitions of the input table")
    parser.add_argument("--repeats", type=int, default=3, help="timed actions after the first")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-rest", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (tables, models)")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if args.skip_rest:
        only.discard("rest")
    unknown = only - set(SECTIONS)
    if unknown or args.rows < 1000:
        parser.error(f"--only takes {', '.join(SECTIONS)} (got {sorted(unknown)}); --rows at least 1000")
    meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:], "load_before": machine_load()}
    results: dict[str, Any] = {"meta": meta}
    table: list[list[str]] = []
    notes: list[str] = []
    work = tempfile.mkdtemp(prefix="bench-scoring-")
    if only - {"rest"}:
        results["prepare"] = _run_child("prepare", work, rows=args.rows, partitions=args.partitions)
        if results["prepare"] is None:
            return 1
    if "udf" in only:
        ours = _run_child("udf", work, library="deltaflow", repeats=args.repeats)
        theirs = None if args.skip_mlflow else _run_child("udf", work, library="mlflow", repeats=args.repeats)
        results["udf"] = {"deltaflow": ours, "mlflow": theirs}
        o_rate = ours["rows_per_s"] if ours else None
        t_rate = theirs["rows_per_s"] if theirs else None
        met = "yes" if o_rate and t_rate and o_rate >= TARGET_RATIO * t_rate else "not met"
        table.append([f"spark_udf, RandomForest 20×8, {args.rows:,} rows", fmt_rate(o_rate, "rows"),
                      fmt_rate(t_rate, "rows"), _ratio(o_rate, t_rate), f"≥ {TARGET_RATIO}× MLflow", met])
        o_first = ours["first_s"] if ours else None
        table.append(["spark_udf first call (create + first action, cold workers)", fmt_s(o_first),
                      fmt_s(theirs["first_s"] if theirs else None), _ratio(o_first, theirs["first_s"] if theirs else None),
                      f"≤ {TARGET_FIRST_S:.0f} s", "yes" if o_first is not None and o_first <= TARGET_FIRST_S else "not met"])
        if ours:
            limit = ours["limit"]["rows_per_s_per_core"] * ours["limit"]["cores"]
            table.append(["limit: model.predict in one process × cores", fmt_rate(limit, "rows"), "-",
                          _ratio(o_rate, limit) + " of it", "-", "-"])
            arrow = ours["map_in_arrow"]["rows_per_s"]
            table.append(["transport alternative: mapInArrow keeping every column", fmt_rate(arrow, "rows"), "-",
                          f"UDF {_ratio(o_rate, arrow)} of it", "-", "-"])
            notes.append(f"raw predict {ours['limit']['rows_per_s_per_core']:,.0f} rows/s per core × "
                         f"{ours['limit']['cores']} cores; the UDF reaches {o_rate / limit:.0%} of that: the same two "
                         "cores also run the JVM, which reads the cached rows, turns them into Arrow batches, "
                         "joins the predictions back to the rows and drives the sink, and each row crosses the "
                         "JVM/Python boundary twice.")
    if "sparkml" in only:
        ml = _run_child("sparkml", work, repeats=args.repeats)
        results["sparkml"] = ml
        if ml:
            gap = ml["score_s"] / ml["transform_s"] - 1
            table.append([f"Spark ML pipeline, {ml['rows']:,} rows: score() vs model.transform (action)",
                          fmt_s(ml["score_s"]), fmt_s(ml["transform_s"]) + " (plain transform)",
                          f"{gap:+.1%}", "within 5%", "yes" if abs(gap) <= TARGET_SPARKML else "not met"])
            table.append(["  score() model resolution + load / PipelineModel.load", fmt_s(ml["score_prepare_s"]),
                          fmt_s(ml["load_s"]) + " (load only)", "-", "-", "-"])
            notes.append(f"score() applies the Spark model natively: Python operators in its plan: "
                         f"{ml['python_in_plan']}.")
    if "batch" in only:
        ours = _run_child("batch", work, library="deltaflow")
        theirs = None if args.skip_mlflow else _run_child("batch", work, library="mlflow")
        results["batch"] = {"deltaflow": ours, "mlflow": theirs}
        o_s, t_s = (ours or {}).get("seconds"), (theirs or {}).get("seconds")
        table.append([f"batch_score Delta → Delta, {args.rows:,} rows, lineage written (end to end)",
                      f"{fmt_s(o_s)} ({fmt_rate(args.rows / o_s if o_s else None, 'rows')})",
                      f"{fmt_s(t_s)} (read + spark_udf + write, no lineage)", _ratio(t_s, o_s) + " faster" if o_s and t_s else "n/a",
                      "-", "-"])
        if ours:
            notes.append(f"batch_score lineage read back: row {ours['lineage_row']}; commit version "
                         f"{ours['output_version']}, userMetadata model {ours['lineage_commit'].get('model_name')} "
                         f"v{ours['lineage_commit'].get('model_version')} @{ours['lineage_commit'].get('model_alias')}.")
    meta["load_after"] = machine_load()
    print()
    print(_table(table) if table else "(no scoring rows)")
    for note in notes:
        print(f"  - {note}")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"scoring-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump({**results, "table": table, "notes": notes}, fh, indent=2, default=str)
    print(f"\nresults: {path}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if "rest" in only:
        serving = os.path.join(BENCH_DIR, "bench_serving.py")
        if os.path.exists(serving):
            print("\nREST serving (benchmarks/bench_serving.py):")
            try:
                import bench_serving

                bench_serving.run_section(skip_mlflow=args.skip_mlflow, echo=True)
            except Exception as exc:  # noqa: BLE001 - the scoring figures above stand on their own
                print(f"REST section failed: {type(exc).__name__}: {exc}")
        else:
            print("\nREST serving: benchmarks/bench_serving.py not present; section skipped")
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.exit(_child_main(sys.argv[1:]))
    sys.exit(main())
