"""LIKE on long values: search_runs time per engine, side by side, as the value grows.

For each value length, one experiment holds four runs whose param ``p`` is a long value: ``a...ab``
(matches every pattern below but ``b%a%a%c``), ``a...a``, ``b a...a c`` and ``A...AB``. Each
pattern is searched on each engine (``client.search_runs``, one warm-up, then the median of
``--repeats``), and the result is checked against ``like_match``. A time that grows in proportion
to the length (not its square or cube) is the point; the Spark figures include Spark's fixed
per-query cost (~1 s on a 2-core machine).

A second table isolates the predicate: each engine's compiled LIKE alone over ``--rows`` values
of each length (Spark: a cached DataFrame's filtered count; rust: the pyarrow kernel; Python:
``like_match``, which the in-memory searches use), in microseconds per value — there, linear means
the figure doubles when the length doubles.

``--old-like`` then prints a last table: for the issue's two patterns, Spark's own ``like``/``ilike`` (what deltaflow used
before) on the same values through a DataFrame, cut off at ``--old-limit`` seconds by the job
cancellation that bounds searches. The driver gets control back at the cut-off, but a task inside
``java.util.regex`` does not notice the interrupt: it keeps a core busy until its row is done or the
process exits, which is why that table comes last.

    .venv/bin/python benchmarks/bench_search_like.py
    .venv/bin/python benchmarks/bench_search_like.py --lengths 1000,6000 --engines rust
    .venv/bin/python benchmarks/bench_search_like.py --old-like --old-limit 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from deltaflow import DeltaflowClient  # noqa: E402
from deltaflow.tracking._search import like_match  # noqa: E402

PATTERNS = [
    ("LIKE", "%a%a%b"),
    ("LIKE", "%a" * 12 + "%b"),
    ("ILIKE", "%A%A%B"),
    ("LIKE", "%a_a%a_%b"),
    ("LIKE", "b%a%a%c"),
    ("LIKE", "%a" * 500 + "%b"),
]


def values(length: int) -> dict[str, str]:
    return {"hit": "a" * (length - 1) + "b", "miss": "a" * length,
            "other": "b" + "a" * (length - 2) + "c", "upper": "A" * (length - 1) + "B"}


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up
    samples, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def load(engine: str, root: str, lengths: list[int]) -> tuple[DeltaflowClient, dict[int, str]]:
    client = DeltaflowClient(os.path.join(root, engine), engine=engine)
    experiments = {}
    for length in lengths:
        exp = client.create_experiment(f"len-{length}")
        for name, value in values(length).items():
            run_id = client.create_run(exp, run_name=name).info.run_id
            client.log_param(run_id, "p", value)
        experiments[length] = exp
    client.flush()
    return client, experiments


def kernel_table(engines: list[str], lengths: list[int], rows: int, repeats: int) -> None:
    """Microseconds per value of each engine's compiled predicate alone."""
    import pyarrow as pa

    from deltaflow.store import arrow_search

    print(f"\npredicate alone, microseconds per value ({rows} values per length)")
    columns = [*engines, "python"]
    print(" | ".join(["pattern", "length", *columns]))
    print(" | ".join("---" for _ in range(2 + len(columns))))
    frames: dict[int, Any] = {}
    for op, pattern in PATTERNS:
        for length in lengths:
            data = [list(values(length).values())[i % 4] for i in range(rows)]
            expected = sum(like_match(pattern, v, op == "ILIKE") for v in data)
            cells = []
            for engine in columns:
                if engine == "spark":
                    from pyspark.sql import functions as F

                    from deltaflow._spark import get_spark
                    from deltaflow.store.spark_search import _compare

                    if length not in frames:
                        frames[length] = get_spark().createDataFrame([(v,) for v in data], "v string").cache()
                        frames[length].count()
                    run = frames[length].where(_compare(F.col("v"), op, pattern)).count
                elif engine == "rust":
                    array = pa.array(data, pa.string())

                    def run(array: Any = array) -> int:
                        return sum(arrow_search.compare(array, op, pattern).to_pylist())
                else:
                    def run() -> int:
                        return sum(like_match(pattern, v, op == "ILIKE") for v in data)
                seconds, count = timed(run, repeats)
                cells.append(f"{seconds / rows * 1e6:.1f}" + ("" if count == expected else " (WRONG)"))
            label = f"{op} '{pattern if len(pattern) <= 24 else pattern[:20] + '...'}' ({len(pattern)} chars)"
            print(" | ".join([label, str(length), *cells]), flush=True)


def old_like_seconds(length: int, op: str, pattern: str, limit: float) -> str:
    """Spark's like/ilike on the same four values, cut off at ``limit`` seconds."""
    from pyspark.sql import functions as F

    from deltaflow._spark import get_spark
    from deltaflow.errors import SearchTimeout
    from deltaflow.store.arrow_search import SearchDeadline
    from deltaflow.store.spark_search import run_bounded

    spark = get_spark()
    frame = spark.createDataFrame([(v,) for v in values(length).values()], "v string")
    column = F.col("v").like(pattern) if op == "LIKE" else F.col("v").ilike(pattern)
    start = time.perf_counter()
    try:
        run_bounded(spark, SearchDeadline(limit), frame.where(column).collect)
    except SearchTimeout:
        return f"> {limit:g}"
    return f"{time.perf_counter() - start:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1000,2000,4000,6000", help="value lengths (params allow 6000)")
    parser.add_argument("--engines", default="spark,rust")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000, help="values per length in the predicate table")
    parser.add_argument("--no-search", action="store_true", help="only the predicate table(s)")
    parser.add_argument("--old-like", action="store_true", help="also time Spark's own like/ilike")
    parser.add_argument("--old-limit", type=float, default=30.0, help="cut-off for --old-like, seconds")
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    engines = [e for e in args.engines.split(",") if e]
    os.environ.setdefault("DELTAFLOW_WAREHOUSE_DIR", tempfile.mkdtemp(prefix="deltaflow-bench-wh-"))
    root = tempfile.mkdtemp(prefix="deltaflow-bench-like-")
    stores = {} if args.no_search else {engine: load(engine, root, lengths) for engine in engines}

    header = ["pattern", "length", *[f"{e} s" for e in engines], "matches"]
    if stores:
        print("search_runs, seconds (median)")
        print(" | ".join(header))
        print(" | ".join("---" for _ in header))
    wrong = 0
    for op, pattern in PATTERNS if stores else []:
        label = f"{op} '{pattern if len(pattern) <= 24 else pattern[:20] + '...'}' ({len(pattern)} chars)"
        for length in lengths:
            expected = sorted(n for n, v in values(length).items() if like_match(pattern, v, op == "ILIKE"))
            cells = []
            for engine in engines:
                client, experiments = stores[engine]
                flt = f"params.p {op} '{pattern}'"
                seconds, runs = timed(lambda: client.search_runs([experiments[length]], flt), args.repeats)
                got = sorted(r.info.run_name for r in runs)
                ok = got == expected
                wrong += not ok
                cells.append(f"{seconds:.3f}" + ("" if ok else f" (WRONG: {got})"))
            print(" | ".join([label, str(length), *cells, ",".join(expected) or "-"]), flush=True)
    kernel_table(engines, lengths, args.rows, args.repeats)
    if args.old_like:
        print("\npattern | length | Spark's like (before) s")
        print("--- | --- | ---")
        for op, pattern in PATTERNS[:2]:  # the two patterns
            label = f"{op} '{pattern if len(pattern) <= 24 else pattern[:20] + '...'}' ({len(pattern)} chars)"
            for length in lengths:
                print(f"{label} | {length} | {old_like_seconds(length, op, pattern, args.old_limit)}", flush=True)
    if wrong:
        print(f"{wrong} wrong results", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
