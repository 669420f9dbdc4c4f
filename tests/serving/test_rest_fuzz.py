"""Arbitrary JSON bodies through the request path the server runs (``rest_app.score``): every answer is
200 or a 400 error body with a code and a message; nothing raises and nothing is a 500."""

from __future__ import annotations

import json

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from deltaflow.serving.rest_app import score  # noqa: E402
from deltaflow.serving.rest_models import load_served  # noqa: E402

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=5))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(["x", "n", "data", "columns",
                                                                                        "index", "y"]), inner,
                                                                       max_size=4)), max_leaves=12)
NUMBERS = st.one_of(st.integers(-10, 10), st.floats(-1e6, 1e6), SCALARS)
ROWS = st.lists(st.tuples(NUMBERS, NUMBERS).map(list), max_size=4)
SHAPED = st.one_of(  # the right fields, values of any kind: reaches the signature check and the model
    ROWS.map(lambda rows: {"dataframe_split": {"columns": ["x", "n"], "data": rows}}),
    ROWS.map(lambda rows: {"dataframe_records": [{"x": x, "n": n} for x, n in rows]}),
    ROWS.map(lambda rows: {"inputs": {"x": [r[0] for r in rows], "n": [r[1] for r in rows]}}),
    st.tuples(ROWS, st.dictionaries(st.sampled_from(["offset", "fail", "other"]), NUMBERS, max_size=2)).map(
        lambda rp: {"instances": [{"x": x, "n": n} for x, n in rp[0]], "params": rp[1]}),
)
BODIES = st.dictionaries(st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "params",
                                          "other"]), VALUES, max_size=3)


@pytest.fixture(scope="module")
def served(registry):
    return load_served(registry.save(2.0))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(SHAPED, BODIES, VALUES))
def test_any_json_body_gets_an_answer(served, body):
    status, payload = score(served, json.dumps(body).encode(), "application/json")
    answer = json.loads(payload)
    if status == 200:
        assert "predictions" in answer
    else:
        assert status == 400, (status, answer)
        assert answer["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE") and answer["message"]
