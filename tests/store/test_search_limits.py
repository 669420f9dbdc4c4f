"""Search cannot hang the driver: LIKE/ILIKE in time linear in the value's length on both engines,
and a time limit on every search_runs call (``DELTAFLOW_SEARCH_TIMEOUT_S``) that raises
``SearchTimeout`` and, on Spark, cancels the search's jobs."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deltaflow import DeltaflowClient
from deltaflow.errors import InvalidArgument
from deltaflow.tracking._search import like_to_regex

pytestmark = pytest.mark.spark

LONG = 5_000
VALUES = {
    "hit": "a" * (LONG - 1) + "b",
    "miss": "a" * LONG,
    "other": "b" + "a" * (LONG - 2) + "c",
    "upper": "A" * (LONG - 1) + "B",
}
# The patterns (minutes each on Spark's like) and variants with _ and ILIKE.
CASES = [
    ("LIKE", "%a%a%b", {"hit"}),
    ("LIKE", "%a" * 12 + "%b", {"hit"}),
    ("ILIKE", "%a" * 12 + "%b", {"hit", "upper"}),
    ("LIKE", "%A%A%B", {"upper"}),
    ("ILIKE", "%A%A%B", {"hit", "upper"}),
    ("LIKE", "%a_a%a_%b", {"hit"}),
    ("LIKE", "%" + "a_" * 10 + "%b", {"hit"}),
    ("LIKE", "b%a%a%c", {"other"}),
    ("LIKE", "%a%a%a%", {"hit", "miss", "other"}),
    ("LIKE", "%a" * 2_000 + "%b", {"hit"}),
]


@pytest.fixture(scope="module", params=["spark", "rust"])
def long_values(request, tmp_path_factory):
    """One run per value of VALUES, as param ``p`` and tag ``t``, on each engine."""
    if request.param == "spark":
        request.getfixturevalue("spark")
    uri = str(tmp_path_factory.mktemp("limits") / "store")
    client = DeltaflowClient(uri, engine=request.param)
    exp = client.create_experiment("long values")
    for name, value in VALUES.items():
        run_id = client.create_run(exp, run_name=name).info.run_id
        client.log_param(run_id, "p", value)
        client.set_tag(run_id, "t", value)
    client.flush()
    return client, exp, request.param


def _names(client: DeltaflowClient, exp: str, flt: str) -> set[str]:
    return {r.info.run_name for r in client.search_runs([exp], flt)}


_IDS = lambda x: x if len(str(x)) < 30 else str(x)[:26] + "..."  # noqa: E731


def _check_pattern(long_values, op: str, pattern: str, expected: set[str]) -> None:
    client, exp, engine = long_values
    before = _spark().sparkContext.getLocalProperty("spark.job.interruptOnCancel") if engine == "spark" else None
    assert _names(client, exp, f"params.p {op} '{pattern}'") == expected
    assert _names(client, exp, f"tags.t {op} '{pattern}'") == expected
    if engine == "spark":  # the search's job tag is gone and the thread's settings are as before
        sc = _spark().sparkContext
        assert not set(sc.getJobTags())
        assert sc.getLocalProperty("spark.job.interruptOnCancel") == before


@pytest.mark.parametrize("long_values", ["rust"], indirect=True)
@pytest.mark.parametrize("op,pattern,expected", CASES, ids=_IDS)
def test_pathological_like_patterns_on_5000_character_values(long_values, op, pattern, expected):
    _check_pattern(long_values, op, pattern, expected)


# On Spark, the patterns that cost minutes with Spark's own LIKE, one of each shape: the compiled
# regex is the same code for every pattern, and its agreement with a reference matcher is checked below.
@pytest.mark.parametrize("long_values", ["spark"], indirect=True)
@pytest.mark.parametrize("op,pattern,expected", [CASES[0], CASES[2], CASES[5], CASES[-1]], ids=_IDS)
def test_pathological_like_patterns_through_spark(long_values, op, pattern, expected):
    _check_pattern(long_values, op, pattern, expected)


def _spark():
    from deltaflow._spark import get_spark

    return get_spark()


# ------------------------------------------------ every compilation against the reference
PATTERN_CHARS = "ab%_\\\n.*$()AéÉ😀"
VALUE_CHARS = "ab\\%_\n.*$()AéÉ😀"


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    patterns = draw(st.lists(st.text(alphabet=PATTERN_CHARS, max_size=10), min_size=1, max_size=25))
    values = draw(st.lists(st.text(alphabet=VALUE_CHARS, max_size=10), min_size=1, max_size=25))
    # Values made from the patterns, so that matches are as common as misses.
    for pattern in patterns[:10]:
        values.append(re.sub(r"\\([%_\\])", r"\1", pattern).replace("%", draw(st.sampled_from(["", "ab", "%\n"])))
                      .replace("_", draw(st.sampled_from(VALUE_CHARS))))
    return patterns, values


@given(batches(), st.booleans())
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_spark_and_arrow_like_agree_with_the_reference(spark, batch, ci):
    """The Column each engine compiles (Spark: rlike of the linear regex, run by java.util.regex;
    Arrow: RE2) gives exactly the reference's answer for every pattern x value pair."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    from deltaflow.store import arrow_search, spark_search

    patterns, values = batch
    op = "ILIKE" if ci else "LIKE"
    expected = [[re.search(like_to_regex(p, ci), v) is not None for p in patterns] for v in values]
    frame = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, v string")
    columns = [spark_search._compare(F.col("v"), op, p).alias(f"m{j}") for j, p in enumerate(patterns)]
    rows = sorted(frame.select("i", *columns).collect())
    assert [list(row[1:]) for row in rows] == expected
    arrow_values = pa.array(values, pa.string())
    arrow = [arrow_search.compare(arrow_values, op, p).to_pylist() for p in patterns]
    assert [list(col) for col in zip(*arrow)] == expected


# ----------------------------------------------------------------------- the time limit
def test_a_search_past_its_time_limit_raises_search_timeout(long_values, monkeypatch):
    from deltaflow.errors import DeltaflowError, SearchTimeout

    client, exp, engine = long_values
    monkeypatch.setenv("DELTAFLOW_SEARCH_TIMEOUT_S", "0.000001")
    with pytest.raises(SearchTimeout) as info:
        client.search_runs([exp], "params.p LIKE '%a%a%b' AND tags.t LIKE '%b'")
    error = info.value
    assert isinstance(error, TimeoutError) and isinstance(error, DeltaflowError)
    assert error.error_code == "DEADLINE_EXCEEDED"
    assert "limit is 1e-06 s" in str(error) and "DELTAFLOW_SEARCH_TIMEOUT_S" in str(error), str(error)
    monkeypatch.setenv("DELTAFLOW_SEARCH_TIMEOUT_S", "0")  # 0: no limit
    assert _names(client, exp, "params.p LIKE '%a%a%b' AND tags.t LIKE '%b'") == {"hit"}
    monkeypatch.delenv("DELTAFLOW_SEARCH_TIMEOUT_S")  # the default limit
    assert _names(client, exp, "params.p LIKE '%b'") == {"hit"}
    if engine == "spark":
        sc = _spark().sparkContext
        assert not set(sc.getJobTags())
        assert _no_active_jobs(sc)


def _no_active_jobs(sc) -> bool:
    # Job ends reach the status tracker through the listener bus, asynchronously.
    for _ in range(600):
        if not sc.statusTracker().getActiveJobsIds():
            return True
        time.sleep(0.1)
    return False


def test_spark_cancels_the_jobs_of_a_search_at_its_limit(spark):
    """A job that would run for hours is cancelled at the limit; the caller's job group stays."""
    from deltaflow.errors import SearchTimeout
    from deltaflow.store.arrow_search import SearchDeadline
    from deltaflow.store.spark_search import run_bounded

    sc = spark.sparkContext
    sc.setJobGroup("outer-group", "the caller's work")
    try:
        endless = spark.range(0, 10**14, 1, 2).selectExpr("sum(id % 7) AS s")
        with pytest.raises(SearchTimeout, match="limit is 1 s") as info:
            run_bounded(spark, SearchDeadline(1.0), endless.collect)
        assert "cancelled" in str(info.value.__cause__).lower()
        assert sc.getLocalProperty("spark.jobGroup.id") == "outer-group"
        assert not set(sc.getJobTags())
        assert _no_active_jobs(sc)
        assert run_bounded(spark, SearchDeadline(600.0), spark.range(5).count) == 5  # a job within its limit
    finally:
        for key in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel"):
            sc.setLocalProperty(key, None)


@pytest.mark.parametrize("raw", ["-1", "abc", "nan", "inf"])
def test_a_bad_time_limit_is_an_invalid_argument(raw, monkeypatch):
    from deltaflow.store.arrow_search import SearchDeadline

    monkeypatch.setenv("DELTAFLOW_SEARCH_TIMEOUT_S", raw)
    with pytest.raises(InvalidArgument, match="DELTAFLOW_SEARCH_TIMEOUT_S"):
        SearchDeadline()
