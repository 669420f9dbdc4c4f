"""``deltaflow models serve`` speaks MLflow's scoring protocol: every payload format, params, the
health and version endpoints, 400/415 for malformed bodies (the server stays up), 413 before the body
is read. One server process for the module, serving ``models:/scaled/1`` (x * 2 + n + offset).
"""

from __future__ import annotations

import io
import json
import socket
import time

import pytest

from serving_support import Server, ThreadServer, expected

pytestmark = pytest.mark.e2e

FACTOR = 2.0
X, N = [1.0, 2.5, -3.0], [1, 2, 3]
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(registry):
    registry.register("scaled", registry.save(FACTOR))
    srv = Server(registry, "models:/scaled/1", "--max-body-size", "64K")
    yield srv
    srv.stop()


def requests_session():
    import requests

    return requests.Session()


def _csv() -> bytes:
    return ("x,n\n" + "".join(f"{x},{n}\n" for x, n in zip(X, N))).encode()


def _parquet() -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"x": X, "n": N}).to_parquet(buffer)
    return buffer.getvalue()


RECORDS = [{"x": x, "n": n} for x, n in zip(X, N)]
PAYLOADS = {
    "dataframe_split": ({"dataframe_split": {"columns": ["x", "n"], "data": [[x, n] for x, n in zip(X, N)]}},
                        "application/json"),
    "dataframe_split with index": ({"dataframe_split": {"index": [7, 8, 9], "columns": ["n", "x"],
                                                        "data": [[n, x] for x, n in zip(X, N)]}}, "application/json"),
    "dataframe_records": ({"dataframe_records": RECORDS}, "application/json"),
    "instances (records)": ({"instances": RECORDS}, "application/json"),
    "inputs (columns)": ({"inputs": {"x": X, "n": N}}, "application/json"),
    "inputs (records)": ({"inputs": RECORDS}, "application/json"),
    "csv": (_csv(), "text/csv"),
    "csv with charset": (_csv(), "text/csv; charset=utf-8"),
    "parquet": (_parquet(), "application/vnd.apache.parquet"),
}


@pytest.mark.parametrize("fmt", list(PAYLOADS))
def test_every_payload_format(server, fmt):
    body, content_type = PAYLOADS[fmt]
    response = server.invoke(body, content_type)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-deltaflow-model-version"] == "1"
    assert response.json() == {"predictions": expected(FACTOR, X, N)}


def test_json_integers_are_cast_to_the_signatures_double(server):
    response = server.invoke({"dataframe_split": {"columns": ["x", "n"], "data": [[3, 1]]}})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [7.0]}


def test_inputs_of_scalars_are_one_row(server):
    response = server.invoke({"inputs": {"x": 1.5, "n": 2}})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [5.0]}


def test_params_reach_the_model_and_are_type_checked(server):
    ok = server.invoke({"dataframe_records": RECORDS, "params": {"offset": 100}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["predictions"] == expected(FACTOR, X, N, offset=100.0)
    bad = server.invoke({"dataframe_records": RECORDS, "params": {"offset": "lots"}})
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "offset" in bad.json()["message"] and "'lots'" in bad.json()["message"]


def test_ping_health_version(server):
    from deltaflow import __version__

    for path in ("/ping", "/health"):
        response = server.http.get(server.url + path, timeout=10)
        assert response.status_code == 200 and response.text == "\n"
    version = server.http.get(server.url + "/version", timeout=10)
    assert version.status_code == 200 and version.text == __version__


# body, content type, status, error_code, words the message must hold
BAD = {
    "not json": (b"{\"inputs\": ", "application/json", 400, "BAD_REQUEST", "not valid JSON"),
    "not utf-8": (b"{\"inputs\": \"\xff\"}", "application/json", 400, "BAD_REQUEST", "UTF-8"),
    "a list": ([1, 2], "application/json", 400, "BAD_REQUEST", "got a JSON array"),
    "no format": ({"data": [[1, 2]]}, "application/json", 400, "BAD_REQUEST", "exactly one of"),
    "two formats": ({"inputs": {"x": X, "n": N}, "instances": RECORDS}, "application/json", 400, "BAD_REQUEST",
                    "exactly one of"),
    "unknown field": ({"inputs": {"x": X, "n": N}, "param": {"offset": 1}}, "application/json", 400,
                      "BAD_REQUEST", "'param'"),
    "split not an object": ({"dataframe_split": [[1.0, 1]]}, "application/json", 400, "BAD_REQUEST",
                            "'dataframe_split' must be an object"),
    "split without data": ({"dataframe_split": {"columns": ["x", "n"]}}, "application/json", 400, "BAD_REQUEST",
                           "no 'data' key"),
    "split repeated column": ({"dataframe_split": {"columns": ["x", "x", "n"], "data": [[1.0, 2.0, 1]]}},
                              "application/json", 400, "BAD_REQUEST", "['x'] more than once"),
    "split ragged row": ({"dataframe_split": {"columns": ["x", "n"], "data": [[1.0, 1], [2.0]]}},
                         "application/json", 400, "BAD_REQUEST", "row 1"),
    "records not a list": ({"dataframe_records": {"x": 1.0, "n": 1}}, "application/json", 400, "BAD_REQUEST",
                           "'dataframe_records' must be an array"),
    "record not an object": ({"dataframe_records": [3, 4]}, "application/json", 400, "BAD_REQUEST", "record 0"),
    "instances keys differ": ({"instances": [{"x": 1.0, "n": 1}, {"x": 2.0}]}, "application/json", 400,
                              "BAD_REQUEST", "record 1"),
    "inputs lengths differ": ({"inputs": {"x": [1.0, 2.0], "n": [1]}}, "application/json", 400, "BAD_REQUEST",
                              "different lengths"),
    "inputs a string": ({"inputs": "x=1"}, "application/json", 400, "BAD_REQUEST", "array or an object"),
    "params not an object": ({"inputs": {"x": X, "n": N}, "params": [1]}, "application/json", 400,
                             "BAD_REQUEST", "'params' must be a JSON object"),
    "missing column": ({"dataframe_records": [{"x": 1.0}]}, "application/json", 400, "INVALID_PARAMETER_VALUE",
                       "'n'"),
    "wrong column type": ({"dataframe_records": [{"x": "one", "n": 1}]}, "application/json", 400,
                          "INVALID_PARAMETER_VALUE", "'x'"),
    "empty csv": (b"", "text/csv", 400, "BAD_REQUEST", "CSV"),
    "csv missing column": (b"x\n1.0\n", "text/csv", 400, "INVALID_PARAMETER_VALUE", "'n'"),
    "not parquet": (b"PAR1 but not really", "application/vnd.apache.parquet", 400, "BAD_REQUEST", "Parquet"),
    "the model raises": ({"inputs": {"x": X, "n": N}, "params": {"fail": True}}, "application/json", 400,
                         "BAD_REQUEST", "the model failed on purpose"),
    "no content type": (b"{}", "", 415, "BAD_REQUEST", "no Content-Type"),
    "text/plain": (b"x,n\n1,1\n", "text/plain", 415, "BAD_REQUEST", "'text/plain'"),
    "latin-1": (b"{}", "application/json; charset=latin-1", 415, "BAD_REQUEST", "latin-1"),
    "unknown parameter": (b"{}", "application/json; format=pandas-split", 415, "BAD_REQUEST", "format"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_payloads_get_a_clear_error_and_the_server_stays_up(server, case):
    body, content_type, status, code, words = BAD[case]
    response = server.invoke(body, content_type)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error_code"] == code
    assert words in payload["message"], payload["message"]
    assert server.alive()
    assert server.invoke({"inputs": {"x": [1.0], "n": [1]}}).json() == {"predictions": [3.0]}


def test_ping_answers_while_a_prediction_runs(server):
    import threading

    done = threading.Event()

    def slow() -> None:
        server.invoke({"inputs": {"x": [1.0], "n": [1]}, "params": {"delay": 1.2}}, session=requests_session())
        done.set()

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    time.sleep(0.2)
    assert server.http.get(server.url + "/ping", timeout=10).status_code == 200
    assert server.invoke({"inputs": {"x": [1.0], "n": [1]}}).json() == {"predictions": [3.0]}
    assert not done.is_set()  # both answered while the slow prediction was still running
    thread.join(30)
    assert done.is_set()


def test_a_prediction_over_the_timeout_gets_504(registry):
    srv = ThreadServer("models:/scaled/1", registry.uri, timeout_s=0.5)
    try:
        slow = srv.invoke({"inputs": {"x": [1.0], "n": [1]}, "params": {"delay": 1.5}})
        assert slow.status_code == 504
        assert slow.json()["error_code"] == "DEADLINE_EXCEEDED" and "0.5 s" in slow.json()["message"]
        assert srv.invoke({"inputs": {"x": [1.0], "n": [1]}}).json() == {"predictions": [3.0]}
    finally:
        srv.stop()


def test_method_and_path_errors(server):
    assert server.http.get(server.url + "/invocations", timeout=10).status_code == 405
    assert server.http.post(server.url + "/predict", data=b"{}", timeout=10).status_code == 404


def _raw(server, head: bytes, body: bytes = b"") -> tuple[int, bytes, str]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    status = int(header.split()[1])
    return status, payload, header.decode().lower()


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_413_is_answered_from_the_declared_length_before_the_body_is_sent(server):
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000000\r\n\r\n")
    status, payload, header = _raw(server, head)  # not one byte of the body is ever sent
    assert status == 413
    assert "connection: close" in header
    error = json.loads(payload)
    assert error["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "5000000000" in error["message"] and str(LIMIT) in error["message"]
    assert server.alive()


def test_413_for_a_chunked_body_cut_off_at_the_limit(server):
    chunk = b"x" * (LIMIT + 1)  # one chunk, its terminator never sent: the server stops reading here
    head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(chunk):x}\r\n".encode())
    status, payload, _ = _raw(server, head, chunk)
    assert status == 413
    assert f"more than {LIMIT} bytes" in json.loads(payload)["message"]
    under = {"dataframe_split": {"columns": ["x", "n"], "data": [[1.0, 1]] * 2000}}  # ~20 KB: accepted
    assert len(json.dumps(under)) < LIMIT
    assert server.invoke(under).json()["predictions"] == [3.0] * 2000
    assert server.alive()


def test_no_jvm_in_the_server_process(server):
    psutil = pytest.importorskip("psutil")
    process = psutil.Process(server.proc.pid)
    names = [p.name() for p in [process, *process.children(recursive=True)]]
    assert not any("java" in n for n in names), names
    with open(f"/proc/{server.proc.pid}/maps") as maps:
        assert "libjvm" not in maps.read()


def test_tensor_model_instances_and_inputs(registry):
    """A model with a tensor signature (in a server on a thread of this process)."""
    registry.register("sums", registry.save(None))
    srv = ThreadServer("models:/sums/1", registry.uri)
    try:
        rows = [[1, 2, 3], [4.5, 5, 6]]
        for body in ({"instances": rows}, {"inputs": rows}):
            response = srv.invoke(body)
            assert response.status_code == 200, response.text
            assert response.json() == {"predictions": [6.0, 15.5]}
        wrong = srv.invoke({"inputs": [[1, 2], [3, 4]]})
        assert wrong.status_code == 400 and "shape" in wrong.json()["message"]
        text = srv.invoke({"inputs": [["a", "b", "c"]]})
        assert text.status_code == 400 and "float64" in text.json()["message"]
    finally:
        srv.stop()


def test_connections_get_tcp_nodelay_on_a_socket_bound_as_for_several_workers(server, registry):
    """With --workers N uvicorn binds the listener with protocol number 0, so asyncio leaves Nagle on for
    its connections; the server's HTTP protocol class turns TCP_NODELAY on for every connection."""
    import threading

    import requests
    import uvicorn

    from deltaflow.serving import rest_app

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, as uvicorn binds it
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    app = rest_app.app_for(rest_app.ServeSettings("models:/scaled/1", registry.uri))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", http=rest_app.NoDelayHTTPProtocol))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        with requests.Session() as http:  # keep-alive: the connection stays open for the check
            response = http.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": {"x": [1.0], "n": [1]}})
            assert response.json() == {"predictions": [3.0]}
            connections = list(server.server_state.connections)
            assert connections
            for connection in connections:
                sock = connection.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        server.should_exit = True
        thread.join(15)
        listener.close()
