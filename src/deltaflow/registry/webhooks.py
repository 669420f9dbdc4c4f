"""Registry webhooks: which hooks an event fires, HMAC signing, and delivery off the critical path.

A registry change is committed before any webhook is tried, and delivery runs on a background
thread, so a slow or failing receiver can neither block nor undo the change. Each attempt is recorded
in the ``webhook_deliveries`` table (DELIVERED, FAILED then retried with backoff, or GAVE_UP).

Receivers verify a delivery with :func:`verify_signature`: the body is signed with HMAC-SHA256 over
``"<timestamp>.<body>"`` using the webhook's secret, sent as ``X-Deltaflow-Signature: v1=<hex>`` with
``X-Deltaflow-Timestamp`` (Unix seconds), so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

__all__ = ["sign", "verify_signature", "deliveries_for", "Dispatcher", "Delivery", "SIGNATURE_HEADER",
           "TIMESTAMP_HEADER", "EVENT_HEADER", "DELIVERY_HEADER"]

_log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Deltaflow-Signature"
TIMESTAMP_HEADER = "X-Deltaflow-Timestamp"
EVENT_HEADER = "X-Deltaflow-Event"
DELIVERY_HEADER = "X-Deltaflow-Delivery"
_STAGE_SUFFIX = {"Staging": "STAGING", "Production": "PRODUCTION", "Archived": "ARCHIVED"}


def _setting(env: str, default: float) -> float:
    try:
        return float(os.environ.get(env, default))
    except ValueError:
        return default


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify_signature(secret: str, body: bytes, headers: Mapping[str, str], tolerance_s: float = 300.0,
                     now: Optional[float] = None) -> bool:
    """True when ``headers`` carry a valid signature of ``body`` made with ``secret`` within the
    last ``tolerance_s`` seconds. Header names are matched case-insensitively."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get(SIGNATURE_HEADER.lower())
    stamp = lowered.get(TIMESTAMP_HEADER.lower())
    if not signature or not stamp or not stamp.isdigit():
        return False
    if abs((now if now is not None else time.time()) - int(stamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, int(stamp)), signature)


def _event_names(event: dict[str, Any]) -> list[str]:
    action, to_stage = event["action"], event.get("to_stage")
    if action == "CREATE_REGISTERED_MODEL":
        return ["REGISTERED_MODEL_CREATED"]
    if action == "CREATE_MODEL_VERSION":
        return ["MODEL_VERSION_CREATED"]
    if action in ("TRANSITION_STAGE", "APPROVE_TRANSITION_REQUEST"):
        names = ["MODEL_VERSION_TRANSITIONED_STAGE"]
        if to_stage in _STAGE_SUFFIX:
            names.append(f"MODEL_VERSION_TRANSITIONED_TO_{_STAGE_SUFFIX[to_stage]}")
        return names
    if action == "CREATE_TRANSITION_REQUEST":
        names = ["TRANSITION_REQUEST_CREATED"]
        if to_stage in _STAGE_SUFFIX:
            names.append(f"TRANSITION_REQUEST_TO_{_STAGE_SUFFIX[to_stage]}_CREATED")
        return names
    if action == "CREATE_COMMENT":
        return ["COMMENT_CREATED"]
    if action == "SET_MODEL_VERSION_TAG":
        return ["MODEL_VERSION_TAG_SET"]
    return []


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    url: str
    secret: Optional[str]
    event: str
    revision: int
    body: bytes


def deliveries_for(event: dict[str, Any], state: Any) -> list[Delivery]:
    """The deliveries one committed registry event fires, given the registry state after it."""
    names = _event_names(event)
    if not names:
        return []
    out = []
    for hook in state.webhooks.values():
        webhook = hook.webhook
        if webhook.status != "ACTIVE" or webhook.model_name not in (None, event["name"]):
            continue
        for name in names:
            if name not in webhook.events:
                continue
            details = event.get("details") or {}
            payload = {
                "event": name, "webhook_id": webhook.webhook_id, "event_timestamp": event["event_time"],
                "revision": event["revision"], "model_name": event["name"], "user_id": event["user_id"],
            }
            if event.get("version") is not None:
                payload["version"] = str(event["version"])
            for key in ("from_stage", "to_stage"):
                if event.get(key) is not None:
                    payload[key] = event[key]
            if event.get("comment") is not None:
                payload["text"] = event["comment"]
            if "key" in details:
                payload["tag"] = {"key": details["key"], "value": details.get("value")}
            body = json.dumps(payload, sort_keys=True).encode()
            out.append(Delivery(webhook.webhook_id, webhook.url, hook.secret, name, event["revision"], body))
    return out


class Dispatcher:
    """Delivers on one daemon thread, retrying with exponential backoff; records every attempt.

    Knobs (environment): ``DELTAFLOW_WEBHOOK_ATTEMPTS`` (4), ``DELTAFLOW_WEBHOOK_BACKOFF_S`` (0.5,
    doubled per retry), ``DELTAFLOW_WEBHOOK_TIMEOUT_S`` (5 per request), ``DELTAFLOW_WEBHOOK_EXIT_WAIT_S``
    (10: how long interpreter exit waits for pending deliveries).
    """

    def __init__(self, record: Callable[[dict[str, Any]], None], opener: Optional[Callable[..., Any]] = None) -> None:
        import urllib.request

        self._record = record
        self._open = opener or urllib.request.urlopen
        self._queue: "queue.Queue[tuple[float, Delivery, int]]" = queue.Queue()
        self._pending = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="deltaflow-webhooks", daemon=True)
        self._thread.start()
        atexit.register(self.wait, _setting("DELTAFLOW_WEBHOOK_EXIT_WAIT_S", 10.0))

    def submit(self, deliveries: list[Delivery]) -> None:
        with self._cond:
            self._pending += len(deliveries)
        for delivery in deliveries:
            self._queue.put((time.monotonic(), delivery, 1))

    def wait(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        delayed: list[tuple[float, Delivery, int]] = []
        while True:
            timeout = max(0.0, min(d[0] for d in delayed) - time.monotonic()) if delayed else None
            try:
                delayed.append(self._queue.get(timeout=timeout))
            except queue.Empty:
                pass
            now = time.monotonic()
            due = [d for d in delayed if d[0] <= now]
            delayed = [d for d in delayed if d[0] > now]
            for _, delivery, attempt in due:
                retry_at = self._attempt(delivery, attempt)
                if retry_at is not None:
                    delayed.append((retry_at, delivery, attempt + 1))
                else:
                    with self._cond:
                        self._pending -= 1
                        self._cond.notify_all()

    def _attempt(self, delivery: Delivery, attempt: int) -> Optional[float]:
        import urllib.error
        import urllib.request

        attempts = int(_setting("DELTAFLOW_WEBHOOK_ATTEMPTS", 4))
        stamp = int(time.time())
        delivery_id = uuid.uuid4().hex
        headers = {"Content-Type": "application/json", "User-Agent": "deltaflow-webhooks",
                   EVENT_HEADER: delivery.event, DELIVERY_HEADER: delivery_id, TIMESTAMP_HEADER: str(stamp)}
        if delivery.secret:
            headers[SIGNATURE_HEADER] = sign(delivery.secret, delivery.body, stamp)
        request = urllib.request.Request(delivery.url, data=delivery.body, headers=headers, method="POST")
        http_status: Optional[int] = None
        error: Optional[str] = None
        try:
            with self._open(request, timeout=_setting("DELTAFLOW_WEBHOOK_TIMEOUT_S", 5.0)) as response:
                http_status = response.status
        except urllib.error.HTTPError as exc:
            http_status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
        except Exception as exc:  # noqa: BLE001 - any network failure is a failed attempt
            error = f"{type(exc).__name__}: {exc}"
        ok = http_status is not None and 200 <= http_status < 300
        retry = not ok and attempt < attempts
        status = "DELIVERED" if ok else ("FAILED" if retry else "GAVE_UP")
        try:
            self._record({"delivery_id": delivery_id, "webhook_id": delivery.webhook_id, "event": delivery.event,
                          "revision": delivery.revision, "attempt": attempt, "status": status,
                          "http_status": http_status, "error": error, "event_time": int(time.time() * 1000)})
        except Exception:  # noqa: BLE001 - losing a record must not stop deliveries
            _log.warning("deltaflow: could not record webhook delivery %s", delivery_id, exc_info=True)
        if not retry:
            if not ok:
                _log.warning("deltaflow: webhook %s gave up on %s after %d attempts: %s", delivery.webhook_id,
                             delivery.event, attempt, error)
            return None
        return time.monotonic() + _setting("DELTAFLOW_WEBHOOK_BACKOFF_S", 0.5) * 2 ** (attempt - 1)
