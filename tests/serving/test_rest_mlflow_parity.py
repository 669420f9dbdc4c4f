"""Same request, same answer as MLflow 3.17's scoring server: status, body and error code, for one model
(ours served over HTTP from a thread of this process; MLflow's ``invocations`` called directly on the
same model folder loaded by ``mlflow.pyfunc``)."""

from __future__ import annotations

import json

import pytest

from serving_support import ThreadServer

pytestmark = pytest.mark.e2e

X, N = [1.5, -2.0], [4, 5]
RECORDS = [{"x": x, "n": n} for x, n in zip(X, N)]
GOOD = {
    "dataframe_split": ({"dataframe_split": {"columns": ["x", "n"], "data": [[x, n] for x, n in zip(X, N)]}},
                        "application/json"),
    "dataframe_records": ({"dataframe_records": RECORDS}, "application/json"),
    "instances": ({"instances": RECORDS}, "application/json"),
    "inputs": ({"inputs": {"x": X, "n": N}}, "application/json"),
    "params": ({"inputs": {"x": X, "n": N}, "params": {"offset": 2.5}}, "application/json"),
    "csv": ("x,n\n1.5,4\n-2.0,5\n", "text/csv"),
}
BAD = {
    "not json": ("{", "application/json"),
    "no format field": ({"rows": RECORDS}, "application/json"),
    "missing column": ({"dataframe_records": [{"x": 1.0}]}, "application/json"),
}


@pytest.fixture(scope="module")
def both(registry):
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    from mlflow.pyfunc import scoring_server

    registry.register("parity", registry.save(3.0))
    path = registry.client.get_model_version("parity", 1).storage_location
    model = mlflow_pyfunc.load_model(path)
    ours = ThreadServer("models:/parity/1", registry.uri)

    def theirs(body, content_type):
        data = body if isinstance(body, str) else json.dumps(body)
        try:
            result = scoring_server.invocations(data, content_type, model, model.metadata.get_input_schema())
            return result.status, json.loads(result.response)
        except scoring_server.MlflowException as exc:
            return exc.get_http_status_code(), json.loads(exc.serialize_as_json())

    yield ours, theirs
    ours.stop()


@pytest.mark.parametrize("case", list(GOOD))
def test_same_predictions_as_mlflow(both, case):
    ours, theirs = both
    body, content_type = GOOD[case]
    data = body if isinstance(body, str) else json.dumps(body)
    response = ours.http.post(ours.url + "/invocations", data=data, headers={"Content-Type": content_type}, timeout=30)
    status, payload = theirs(body, content_type)
    assert (response.status_code, response.json()) == (status, payload)
    assert status == 200 and len(payload["predictions"]) == 2


@pytest.mark.parametrize("case", list(BAD))
def test_same_error_status_and_code_as_mlflow(both, case):
    ours, theirs = both
    body, content_type = BAD[case]
    data = body if isinstance(body, str) else json.dumps(body)
    response = ours.http.post(ours.url + "/invocations", data=data, headers={"Content-Type": content_type}, timeout=30)
    status, payload = theirs(body, content_type)
    assert response.status_code == status == 400
    assert response.json()["error_code"] == payload["error_code"]
    assert response.json()["message"]
