"""Webhook deliveries as a receiver checks them: what is signed, the replay window, malformed input,
de-duplication by delivery id, and which target addresses the library refuses to call."""

from __future__ import annotations

import time

import pytest

from deltaflow.errors import InvalidArgument
from deltaflow.registry import webhooks as W

BODY = b'{"event": "MODEL_VERSION_CREATED", "model_name": "churn"}'
SECRET = "s3cret"


def _headers(stamp: int, delivery: str = "d-1", event: str = "MODEL_VERSION_CREATED") -> dict[str, str]:
    return {W.SIGNATURE_HEADER: W.sign(SECRET, BODY, stamp, delivery, event), W.TIMESTAMP_HEADER: str(stamp),
            W.DELIVERY_HEADER: delivery, W.EVENT_HEADER: event}


def test_every_header_the_receiver_relies_on_is_signed():
    stamp = int(time.time())
    headers = _headers(stamp)
    assert W.verify_signature(SECRET, BODY, headers)
    assert W.verify_signature(SECRET, BODY, {k.lower(): v for k, v in headers.items()})  # case-insensitive
    for name, forged in [(W.EVENT_HEADER, "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"), (W.DELIVERY_HEADER, "d-2"),
                         (W.TIMESTAMP_HEADER, str(stamp + 1))]:
        assert not W.verify_signature(SECRET, BODY, dict(headers, **{name: forged})), name
    for missing in (W.EVENT_HEADER, W.DELIVERY_HEADER, W.TIMESTAMP_HEADER, W.SIGNATURE_HEADER):
        assert not W.verify_signature(SECRET, BODY, {k: v for k, v in headers.items() if k != missing}), missing
    assert not W.verify_signature(SECRET, BODY + b" ", headers)
    assert not W.verify_signature("other", BODY, headers)


def test_replay_window_and_future_skew():
    now = time.time()
    stamp = int(now)
    assert W.verify_signature(SECRET, BODY, _headers(stamp), now=now + W.REPLAY_WINDOW_S - 1)
    assert not W.verify_signature(SECRET, BODY, _headers(stamp), now=now + W.REPLAY_WINDOW_S + 1)
    assert W.verify_signature(SECRET, BODY, _headers(stamp + W.FUTURE_SKEW_S - 1), now=stamp)
    assert not W.verify_signature(SECRET, BODY, _headers(stamp + 290), now=stamp)  # 290 s in the future


@pytest.mark.parametrize("tamper", [
    {W.SIGNATURE_HEADER: "v2=\u00e9\u00e9"},  # non-ASCII signature
    {W.SIGNATURE_HEADER: "v2=zz"}, {W.SIGNATURE_HEADER: ""}, {W.SIGNATURE_HEADER: "v1=" + "0" * 64},
    {W.TIMESTAMP_HEADER: "\u0661\u0662\u0663"},  # Arabic-Indic digits: str.isdigit() is True
    {W.TIMESTAMP_HEADER: "1e9"}, {W.TIMESTAMP_HEADER: "9" * 400}, {W.TIMESTAMP_HEADER: "-5"},
    {W.DELIVERY_HEADER: "\u00e9"}, {W.EVENT_HEADER: None}, {W.SIGNATURE_HEADER: 123},
])
def test_malformed_input_is_false_never_an_exception(tamper):
    headers = dict(_headers(int(time.time())), **tamper)
    assert W.verify_signature(SECRET, BODY, headers) is False


def test_malformed_arguments_are_false():
    headers = _headers(int(time.time()))
    for secret, body, hdrs in [(None, BODY, headers), ("", BODY, headers), (SECRET, "text", headers),
                               (SECRET, BODY, None), (SECRET, BODY, ["x"]), (123, BODY, headers)]:
        assert W.verify_signature(secret, body, hdrs) is False


def test_delivery_guard_refuses_a_replay_inside_the_window():
    guard = W.DeliveryGuard()
    stamp = int(time.time())
    assert guard.accept(SECRET, BODY, _headers(stamp))
    assert not guard.accept(SECRET, BODY, _headers(stamp))  # the same delivery, replayed
    assert not guard.accept(SECRET, BODY, _headers(stamp + 3, "d-1"))  # a retry re-signed: same delivery id
    assert guard.accept(SECRET, BODY, _headers(stamp, "d-2"))
    assert not guard.accept("other", BODY, _headers(stamp, "d-3"))  # bad signatures are not remembered
    assert guard.accept(SECRET, BODY, _headers(stamp, "d-3"))
    guard.forget("d-2")  # a receiver that failed to process a delivery lets its retry in
    assert guard.accept(SECRET, BODY, _headers(stamp, "d-2"))
    later = stamp + W.REPLAY_WINDOW_S + W.FUTURE_SKEW_S + 5
    assert not guard.accept(SECRET, BODY, _headers(stamp, "d-1"), now=later)  # stale anyway
    assert len(guard) <= 3  # expired ids are dropped: memory is bounded by the window


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:1/", "http://localhost:22/",
    "http://[::1]:80/x", "http://[fe80::1]/", "http://0.0.0.0:8080/", "http://[::ffff:169.254.169.254]/",
    "http://100.100.100.200/", "http://[fd00:ec2::254]/", "http://127.0.0.1:8080/hook", "http://224.0.0.1/",
])
def test_refused_targets(url, monkeypatch):
    monkeypatch.delenv(W.ALLOW_ENV, raising=False)
    with pytest.raises(InvalidArgument) as refused:
        W.check_target(url)
    assert url in str(refused.value)
    assert W.ALLOW_ENV in str(refused.value)


def test_loopback_allowed_for_tests_only_on_unprivileged_ports(monkeypatch):
    monkeypatch.setenv(W.ALLOW_ENV, "loopback")
    assert W.check_target("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
    assert W.check_target("http://localhost:5000/") == "http://localhost:5000/"
    for url in ("http://127.0.0.1:1/", "http://localhost:22/", "http://localhost/", "http://169.254.169.254/"):
        with pytest.raises(InvalidArgument):
            W.check_target(url)
    monkeypatch.setenv(W.ALLOW_ENV, "loopback,link-local")
    assert W.check_target("http://169.254.169.254/")
    monkeypatch.setenv(W.ALLOW_ENV, "everything")
    with pytest.raises(InvalidArgument, match="loopback, link-local, any"):
        W.check_target("http://10.0.0.1/")


def test_ordinary_targets_are_accepted(monkeypatch):
    monkeypatch.delenv(W.ALLOW_ENV, raising=False)
    for url in ("https://hooks.example.com/x?token=t", "http://10.1.2.3:8080/ci", "https://192.168.0.10/"):
        assert W.check_target(url, resolve=False) == url
