"""search_runs on Spark: every comparator, order_by, pagination, output formats, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deltaflow as mlflow
from deltaflow import DeltaflowClient, Metric, Param, RunTag
from deltaflow.entities import Dataset, DatasetInput, InputTag
from deltaflow.errors import InvalidArgument

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module", params=["spark", "rust"])
def searched(request, tmp_path_factory):
    """Six runs with known metrics/params/tags/datasets in one experiment (built once per engine).

    Filters and orderings are checked against expected runs on the rust engine here; both engines are
    required to agree on the same kinds of filter in test_cross_engine.py. Pagination, random text and
    the property test of Spark execution run on Spark."""
    if request.param == "spark":
        request.getfixturevalue("spark")
    uri = str(tmp_path_factory.mktemp("search") / "store")
    client = DeltaflowClient(uri, engine=request.param)
    exp = client.create_experiment("search")
    ids = []
    for i in range(6):
        run = client.create_run(exp, start_time=1_000 + i, run_name=f"run-{i}",
                                 tags={"group": "even" if i % 2 == 0 else "odd",
                                       "mlflow.user": "alice" if i < 2 else "bob"})
        rid = run.info.run_id
        metrics = [Metric("acc", i / 10, 0, 0), Metric("loss", 1.0 - i / 10, 0, 0)]
        if i < 4:
            metrics.append(Metric("only_some", float(i), 0, 0))
        params = [Param("lr", f"0.0{i}"), Param("model", "Tree" if i < 3 else "forest")]
        tags = [RunTag("phase", "search-test")]
        if i == 5:
            tags.append(RunTag("special tag", "yes"))
        client.log_batch(rid, metrics=metrics, params=params, tags=tags)
        if i in (1, 2):
            ds = Dataset(name=f"table{i}", digest=f"d{i}", source_type="delta_path", source="/x")
            client.log_inputs(rid, [DatasetInput(ds, [InputTag("mlflow.data.context", "training")])])
        client.set_terminated(rid, "FINISHED" if i != 4 else "FAILED", end_time=2_000 + i)
        ids.append(rid)
    client.flush()
    return client, exp, ids


def _names(client, exp, filter_string="", order_by=None, **kw):
    return [r.info.run_name for r in client.search_runs([exp], filter_string, order_by=order_by, **kw)]


@pytest.mark.parametrize("searched", ["rust"], indirect=True)
@pytest.mark.parametrize(
    "flt, expected",
    [
        ("metrics.acc > 0.3", {"run-4", "run-5"}),
        ("metrics.acc >= 0.3", {"run-3", "run-4", "run-5"}),
        ("metrics.acc < 0.1", {"run-0"}),
        ("metrics.acc <= 0.1", {"run-0", "run-1"}),
        ("metrics.acc = 0.2", {"run-2"}),
        ("metrics.acc != 0.2", {"run-0", "run-1", "run-3", "run-4", "run-5"}),
        ("metrics.only_some >= 0", {"run-0", "run-1", "run-2", "run-3"}),  # runs lacking the metric never match
        ("params.model = 'Tree'", {"run-0", "run-1", "run-2"}),
        ("params.model != 'Tree'", {"run-3", "run-4", "run-5"}),
        ("params.model LIKE 'T%'", {"run-0", "run-1", "run-2"}),
        ("params.model LIKE 't%'", set()),
        ("params.model ILIKE 't%'", {"run-0", "run-1", "run-2"}),
        ("params.missing IS NULL", {f"run-{i}" for i in range(6)}),
        ("params.lr IS NOT NULL", {f"run-{i}" for i in range(6)}),
        ("tags.group = 'odd'", {"run-1", "run-3", "run-5"}),
        ("tags.`special tag` = 'yes'", {"run-5"}),
        ('tags."special tag" IS NOT NULL', {"run-5"}),
        ("tags.`special tag` IS NULL", {"run-0", "run-1", "run-2", "run-3", "run-4"}),
        ("attributes.status = 'FAILED'", {"run-4"}),
        ("attributes.status != 'FINISHED'", {"run-4"}),
        ("attributes.run_name LIKE 'run-1%'", {"run-1"}),
        ("attributes.run_name ILIKE 'RUN-2'", {"run-2"}),
        ("attributes.user_id = 'alice'", {"run-0", "run-1"}),
        ("attributes.start_time > 1003", {"run-4", "run-5"}),
        ("attributes.end_time <= 2000", {"run-0"}),
        ("datasets.name = 'table1'", {"run-1"}),
        ("datasets.digest IN ('d1', 'd2')", {"run-1", "run-2"}),
        ("datasets.context = 'training'", {"run-1", "run-2"}),
        ("datasets.name NOT IN ('table1')", {"run-2"}),
        ("metrics.acc > 0.1 AND params.model = 'Tree' AND tags.group = 'even'", {"run-2"}),
    ],
)
def test_every_comparator(searched, flt, expected):
    client, exp, _ = searched
    assert set(_names(client, exp, flt)) == expected


@pytest.mark.parametrize("searched", ["rust"], indirect=True)
def test_run_id_in_and_not_in(searched):
    client, exp, ids = searched
    assert set(_names(client, exp, f"attributes.run_id IN ('{ids[0]}', '{ids[3]}')")) == {"run-0", "run-3"}
    assert len(_names(client, exp, f"attributes.run_id NOT IN ('{ids[0]}')")) == 5


@pytest.mark.parametrize("searched", ["rust"], indirect=True)
def test_order_by(searched):
    client, exp, _ = searched
    assert _names(client, exp) == [f"run-{i}" for i in reversed(range(6))]  # default: start_time DESC
    assert _names(client, exp, order_by=["metrics.acc DESC"]) == [f"run-{i}" for i in reversed(range(6))]
    assert _names(client, exp, order_by=["metrics.loss"]) == [f"run-{i}" for i in reversed(range(6))]
    # runs lacking the key come last, in either direction
    assert _names(client, exp, order_by=["metrics.only_some DESC"])[-2:] == ["run-5", "run-4"]
    assert _names(client, exp, order_by=["metrics.only_some ASC"])[:4] == ["run-0", "run-1", "run-2", "run-3"]
    assert _names(client, exp, order_by=["params.lr ASC"]) == [f"run-{i}" for i in range(6)]
    assert _names(client, exp, order_by=["attributes.start_time ASC"]) == [f"run-{i}" for i in range(6)]
    assert _names(client, exp, order_by=["tags.group ASC", "metrics.acc DESC"]) == [
        "run-4", "run-2", "run-0", "run-5", "run-3", "run-1"]


def test_pagination(searched):
    client, exp, _ = searched
    seen, token = [], None
    while True:
        page = client.search_runs([exp], order_by=["metrics.acc ASC"], max_results=4, page_token=token)
        seen += [r.info.run_name for r in page]
        token = page.token
        if token is None:
            break
    assert seen == [f"run-{i}" for i in range(6)]
    with pytest.raises(InvalidArgument, match="page_token"):
        client.search_runs([exp], page_token="garbage!")
    with pytest.raises(InvalidArgument, match="max_results"):
        client.search_runs([exp], max_results=0)


@pytest.mark.parametrize("searched", ["rust"], indirect=True)
def test_pandas_output_has_mlflow_columns(searched):
    client, exp, _ = searched
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        df = mlflow.search_runs([exp], order_by=["metrics.acc ASC"])
    finally:
        mlflow.set_tracking_uri(None)
    assert list(df.columns[:6]) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert {"metrics.acc", "metrics.loss", "metrics.only_some", "params.lr", "params.model", "tags.group",
            "tags.special tag", "tags.mlflow.runName"} <= set(df.columns)
    assert str(df["start_time"].dtype).startswith("datetime64") and df["start_time"].dt.tz is not None
    assert list(df["metrics.acc"]) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert df["metrics.only_some"].isna().sum() == 2
    assert list(df["params.model"]) == ["Tree"] * 3 + ["forest"] * 3


@pytest.mark.parametrize("searched", ["rust"], indirect=True)
def test_spark_output(searched):
    client, exp, _ = searched
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        sdf = mlflow.search_runs([exp], "params.model = 'forest'", order_by=["metrics.acc DESC"],
                                 output_format="spark")
        pdf = mlflow.search_runs([exp], "params.model = 'forest'", order_by=["metrics.acc DESC"])
    finally:
        mlflow.set_tracking_uri(None)
    rows = sdf.collect()
    assert [r["run_id"] for r in rows] == list(pdf["run_id"])
    assert [r["metrics.acc"] for r in rows] == pytest.approx([0.5, 0.4, 0.3])
    assert {"run_id", "status", "start_time", "params.lr", "tags.group"} <= set(sdf.columns)


@pytest.mark.parametrize("searched", ["rust"], indirect=True)
def test_sql_view(searched, spark):
    from deltaflow.sql import register_views

    client, exp, _ = searched
    names = register_views(client.tracking_uri, prefix="srch")
    assert "srch_runs" in names and "srch_run_events" in names
    assert len(names) == len(set(names))  # the raw runs view no longer shares the folded view's name
    assert spark.table("srch_run_events").count() > spark.table("srch_runs").count()
    rows = spark.sql("SELECT run_name, metrics['acc'] AS acc, params['model'] AS model FROM srch_runs "
                     "WHERE status = 'FAILED'").collect()
    assert [(r.run_name, r.acc, r.model) for r in rows] == [("run-4", 0.4, "forest")]


@pytest.mark.parametrize("searched", ["rust"], indirect=True)
@pytest.mark.parametrize(
    "hostile",
    [
        "params.a = 'x' OR 1=1",
        "params.a = 'x'; DROP TABLE runs",
        "params.a = 'unbalanced",
        'tags."open = 1',
        "unknown.a = 1",
        "metrics.a > 'str'",
        "params.a = " + "'x'" * 5000,
        "\x00\x01\x02",
        "metrics.a > 1 AND",
        "(metrics.a > 1)",
        "a" * 20_000,
    ],
)
def test_hostile_filters_raise_invalid_argument(searched, hostile):
    client, exp, _ = searched
    with pytest.raises(InvalidArgument):
        client.search_runs([exp], hostile)


_key = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_ .-'\"%", min_size=1, max_size=8)
_str = st.text(min_size=0, max_size=12)


def _quote(s: str) -> str:
    # A backslash escapes inside quoted text (\\' is a quote), so a literal one is written twice.
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


@st.composite
def _valid_filters(draw):
    kind = draw(st.sampled_from(["metric", "param", "tag", "attr"]))
    key = "`" + draw(_key).replace("`", "") + "`"
    if kind == "metric":
        op = draw(st.sampled_from(["=", "!=", ">", ">=", "<", "<="]))
        return f"metrics.{key} {op} {draw(st.floats(allow_nan=False, allow_infinity=False, width=32))}"
    if kind in ("param", "tag"):
        op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE"]))
        return f"{kind}s.{key} {op} {_quote(draw(_str))}"
    op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE"]))
    return f"attributes.run_name {op} {_quote(draw(_str))}"


@pytest.mark.parametrize("searched", ["spark"], indirect=True)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flt=_valid_filters())
def test_any_parsed_filter_runs_on_spark_without_raw_errors(searched, flt):
    """Whatever the parser accepts, Spark executes: user text stays literal (quotes, %, backslashes)."""
    client, exp, _ = searched
    result = client.search_runs([exp], flt)
    assert isinstance(result, list) and all(r.info.experiment_id == exp for r in result)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace"))))
def test_random_text_is_invalid_argument_or_a_result(searched, raw):
    from deltaflow.tracking._search import parse_run_filter

    try:
        parse_run_filter(raw)
    except InvalidArgument:
        return  # rejected before touching Spark
    client, exp, _ = searched
    assert isinstance(client.search_runs([exp], raw), list)
