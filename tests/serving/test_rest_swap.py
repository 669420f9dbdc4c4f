"""A server started on ``models:/name@alias`` follows the alias while it serves: clients hammering
two worker processes see no failed request while the alias moves, a request in flight finishes on the
model it started with, every worker ends up on the new version, and a version the server cannot run
(a Spark ML model) is refused while the served model stays in place.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from serving_support import Server

pytestmark = pytest.mark.e2e

POLL = 0.3
DELAY = 3.0  # the in-flight request's sleep: the alias moves and the swap happens inside it
FACTORS = {1: 2.0, 2: 10.0}
BODY = {"inputs": {"x": [1.0], "n": [1]}}


def _value(version: int) -> float:
    return 1.0 * FACTORS[version] + 1


@pytest.fixture(scope="module")
def server(registry):
    for version, factor in FACTORS.items():
        assert registry.register("swapped", registry.save(factor)) == version
    assert registry.register("swapped", registry.save(spark=True)) == 3
    registry.client.set_registered_model_alias("swapped", "champion", 1)
    srv = Server(registry, "models:/swapped@champion", "--workers", "2", "--poll-interval", str(POLL))
    yield srv
    srv.stop()


class Hammer:
    """Client threads posting BODY in a loop: two on keep-alive sessions, one opening a connection
    per request (so both worker processes get requests). Records (time, status, version, prediction)."""

    def __init__(self, url: str) -> None:
        self.url = url + "/invocations"
        self.stop = threading.Event()
        self.results: list[tuple[float, int, str, object]] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._loop, args=(keep,), daemon=True) for keep in (True, True, False)]
        for thread in self.threads:
            thread.start()

    def _loop(self, keep_alive: bool) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                if keep_alive:
                    response = session.post(self.url, json=BODY, timeout=30)
                else:
                    response = requests.post(self.url, json=BODY, timeout=30, headers={"Connection": "close"})
                version = response.headers.get("x-deltaflow-model-version", "")
                prediction = response.json().get("predictions") if response.status_code == 200 else response.text
                self.results.append((time.monotonic(), response.status_code, version, prediction))
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def first(self, version: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [t for t, _, v, _ in list(self.results) if v == version]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no response from version {version} within {timeout} s")

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def _fresh_versions(url: str, count: int) -> set[str]:
    """Versions answering ``count`` requests, each on a new connection (spread over the workers)."""
    seen = set()
    for _ in range(count):
        response = requests.post(url + "/invocations", json=BODY, timeout=30, headers={"Connection": "close"})
        assert response.status_code == 200, response.text
        seen.add(response.headers["x-deltaflow-model-version"])
    return seen


def test_alias_moved_while_requests_are_in_flight(server, registry):
    assert _fresh_versions(server.url, 10) == {"1"}
    slow: dict[str, object] = {}

    def slow_request() -> None:
        slow["start"] = time.monotonic()
        response = requests.post(server.url + "/invocations", json={**BODY, "params": {"delay": DELAY}}, timeout=60)
        slow.update(end=time.monotonic(), status=response.status_code, version=response.headers.get(
            "x-deltaflow-model-version"), predictions=response.json().get("predictions"))

    hammer = Hammer(server.url)
    try:
        slow_thread = threading.Thread(target=slow_request, daemon=True)
        slow_thread.start()
        time.sleep(0.5)  # the slow request is running on version 1
        registry.client.set_registered_model_alias("swapped", "champion", 2)
        first_new = hammer.first("2", timeout=30)
        slow_thread.join(60)
        time.sleep(3 * POLL)  # both workers have polled since
        settled = time.monotonic()
        time.sleep(0.5)
    finally:
        hammer.finish()

    assert not hammer.errors, hammer.errors[:5]
    assert hammer.results and all(status == 200 for _, status, _, _ in hammer.results), \
        [r for r in hammer.results if r[1] != 200][:5]
    # Each answer comes from the version its header names: the model is never mixed within a request.
    for _, _, version, prediction in hammer.results:
        assert prediction == [_value(int(version))], (version, prediction)
    per_version = {v: sum(1 for r in hammer.results if r[2] == v) for v in ("1", "2")}
    assert min(per_version.values()) >= 5, per_version  # the clients really ran across the move
    assert {v for t, _, v, _ in hammer.results if t > settled} == {"2"}
    # The in-flight request started on version 1 and finished on it, after version 2 was serving.
    assert slow["status"] == 200 and slow["version"] == "1" and slow["predictions"] == [_value(1)], slow
    assert first_new < slow["end"], "the swap did not happen while the slow request was running"
    assert _fresh_versions(server.url, 20) == {"2"}
    assert server.alive()


def test_a_version_the_server_cannot_run_is_refused_and_the_served_model_stays(server, registry):
    registry.client.set_registered_model_alias("swapped", "champion", 3)  # a Spark ML model
    deadline = time.monotonic() + 30
    while server.output().count("version 3 of models:/swapped@champion cannot be served") < 2:  # both workers
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    assert "Spark ML model" in server.output()
    assert _fresh_versions(server.url, 10) == {"2"}
    # The alias moving on to a good version is followed again.
    registry.client.set_registered_model_alias("swapped", "champion", 1)
    deadline = time.monotonic() + 30
    while _fresh_versions(server.url, 6) != {"1"}:
        assert time.monotonic() < deadline, server.output()
        time.sleep(POLL)
    assert server.alive()
