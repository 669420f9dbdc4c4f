"""Registry webhooks: which hooks an event fires, signing, target policy, and delivery off the
critical path.

A registry change is committed before any webhook is tried, and delivery runs on a background
thread, so a slow or failing receiver can neither block nor undo the change. Each attempt is recorded
in the ``webhook_deliveries`` table (DELIVERED, FAILED then retried with backoff, or GAVE_UP).

**What a receiver gets.** ``X-Deltaflow-Event`` (the event name), ``X-Deltaflow-Delivery`` (one id
per delivery, the same on every retry of it), ``X-Deltaflow-Timestamp`` (Unix seconds of this
attempt) and, for a webhook with a secret, ``X-Deltaflow-Signature: v2=<hex>``: HMAC-SHA256 with
the secret over ``"v2\n<timestamp>\n<delivery id>\n<event>\n" + body``. So every value the
receiver acts on is signed. :func:`verify_signature` accepts a timestamp at most
:data:`REPLAY_WINDOW_S` old and at most :data:`FUTURE_SKEW_S` ahead; within that window a captured
delivery still verifies, so receivers de-duplicate by delivery id: :class:`DeliveryGuard` does both.

**Where deltaflow posts.** :func:`check_target` refuses loopback, link-local and cloud metadata
addresses (and unspecified/multicast/reserved ones) unless ``DELTAFLOW_WEBHOOK_ALLOW`` allows them
in the *delivering* process; it runs when a webhook is created or changed, and again, with the host
name resolved, before every attempt.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from deltaflow.errors import DeltaflowError, InvalidArgument

__all__ = ["sign", "verify_signature", "DeliveryGuard", "check_target", "deliveries_for", "Dispatcher", "Delivery",
           "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "EVENT_HEADER", "DELIVERY_HEADER", "REPLAY_WINDOW_S",
           "FUTURE_SKEW_S", "ALLOW_ENV"]

_log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Deltaflow-Signature"
TIMESTAMP_HEADER = "X-Deltaflow-Timestamp"
EVENT_HEADER = "X-Deltaflow-Event"
DELIVERY_HEADER = "X-Deltaflow-Delivery"
REPLAY_WINDOW_S = 300  # how old a delivery's timestamp may be
FUTURE_SKEW_S = 30  # how far ahead of the receiver's clock it may be
ALLOW_ENV = "DELTAFLOW_WEBHOOK_ALLOW"
_ALLOW_TOKENS = ("loopback", "link-local", "any")
_STAGE_SUFFIX = {"Staging": "STAGING", "Production": "PRODUCTION", "Archived": "ARCHIVED"}
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DELIVERY_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_EVENT = re.compile(r"[A-Z0-9_]{1,128}")
_SIGNATURE = re.compile(r"v2=[0-9a-f]{64}")


def _setting(env: str, default: float) -> float:
    try:
        return float(os.environ.get(env, default))
    except ValueError:
        return default


# -- signing ----------------------------------------------------------------------------------
def _signed(body: bytes, timestamp: int, delivery_id: str, event: str) -> bytes:
    return b"v2\n%d\n%s\n%s\n" % (timestamp, delivery_id.encode("ascii"), event.encode("ascii")) + bytes(body)


def sign(secret: str, body: bytes, timestamp: int, delivery_id: str, event: str) -> str:
    """The ``X-Deltaflow-Signature`` value of one delivery attempt."""
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    return "v2=" + hmac.new(key, _signed(body, timestamp, delivery_id, event), hashlib.sha256).hexdigest()


def _header_values(headers: Any) -> Optional[dict[str, Any]]:
    """Headers by lower-cased name; None when a name appears twice with different values."""
    out: dict[str, Any] = {}
    for name, value in headers.items():
        if not isinstance(name, str):
            return None
        low = name.lower()
        if low in out and out[low] != value:
            return None
        out[low] = value
    return out


def _verified(secret: Any, body: Any, headers: Any, tolerance_s: float,
              now: Optional[float]) -> Optional[tuple[int, str]]:
    """(timestamp, delivery id) of a valid delivery, else None. Raises nothing the caller must see."""
    if not isinstance(secret, (str, bytes)) or not secret or not isinstance(body, (bytes, bytearray, memoryview)):
        return None
    if not hasattr(headers, "items"):
        return None
    values = _header_values(headers)
    if values is None:
        return None
    found = [values.get(h.lower()) for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER, EVENT_HEADER)]
    if not all(isinstance(v, str) for v in found):
        return None
    signature, stamp, delivery_id, event = found
    for pattern, value in ((_SIGNATURE, signature), (_TIMESTAMP, stamp), (_DELIVERY_ID, delivery_id),
                           (_EVENT, event)):
        if not pattern.fullmatch(value):
            return None
    timestamp = int(stamp)
    clock = time.time() if now is None else float(now)
    if timestamp < clock - tolerance_s or timestamp > clock + FUTURE_SKEW_S:
        return None
    expected = sign(secret, bytes(body), timestamp, delivery_id, event)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        return None
    return timestamp, delivery_id


def verify_signature(secret: str, body: bytes, headers: Mapping[str, str], tolerance_s: float = REPLAY_WINDOW_S,
                     now: Optional[float] = None) -> bool:
    """True when ``headers`` carry a valid v2 signature, made with ``secret``, of ``body`` together
    with the event, delivery id and timestamp headers, and the timestamp is at most ``tolerance_s``
    seconds old and at most :data:`FUTURE_SKEW_S` ahead. Header names are matched
    case-insensitively. Constant-time comparison; any malformed input is False, never an exception.
    A delivery replayed inside the window still verifies: de-duplicate by ``X-Deltaflow-Delivery``
    (:class:`DeliveryGuard`)."""
    try:
        return _verified(secret, body, headers, tolerance_s, now) is not None
    except Exception:  # noqa: BLE001 - a verifier must answer False to anything odd
        return False


class DeliveryGuard:
    """Receiver-side check: a valid signature *and* a delivery id not seen inside the window.

    ``guard.accept(secret, body, headers)`` is True once per delivery; a replay (or a retry of a
    delivery already accepted) is False. Call ``guard.forget(delivery_id)`` when you did not process
    an accepted delivery (you answer non-2xx), so deltaflow's retry of it gets in. Ids are kept only
    as long as a delivery carrying them could still verify, so memory is bounded by the traffic of
    one window. One guard per process; share it across threads (it locks). Receivers running several
    processes need a shared store of seen ids (e.g. a unique key in their database) instead.
    """

    def __init__(self, window_s: float = REPLAY_WINDOW_S) -> None:
        self.window_s = float(window_s)
        self._seen: dict[str, float] = {}  # delivery id -> when it may be forgotten
        self._lock = threading.Lock()

    def accept(self, secret: str, body: bytes, headers: Mapping[str, str], now: Optional[float] = None) -> bool:
        try:
            verified = _verified(secret, body, headers, self.window_s, now)
        except Exception:  # noqa: BLE001
            return False
        if verified is None:
            return False
        clock = time.time() if now is None else float(now)
        with self._lock:
            for delivery_id in [d for d, until in self._seen.items() if until < clock]:
                del self._seen[delivery_id]
            if verified[1] in self._seen:
                return False
            self._seen[verified[1]] = clock + self.window_s + FUTURE_SKEW_S
        return True

    def forget(self, delivery_id: str) -> None:
        with self._lock:
            self._seen.pop(delivery_id, None)

    def __len__(self) -> int:
        return len(self._seen)


# -- target policy ----------------------------------------------------------------------------
# Cloud instance-metadata and platform endpoints (AWS/Azure/GCP 169.254.169.254 is link-local anyway).
_METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192"))


def _allowed() -> frozenset[str]:
    raw = os.environ.get(ALLOW_ENV, "")
    tokens = frozenset(t.strip().lower() for t in raw.split(",") if t.strip())
    unknown = sorted(tokens - set(_ALLOW_TOKENS))
    if unknown:
        raise InvalidArgument(f"{ALLOW_ENV}={raw!r}: {', '.join(map(repr, unknown))} is not one of "
                              f"{', '.join(_ALLOW_TOKENS)} (comma-separated)")
    return tokens


def _category(address: "ipaddress.IPv4Address | ipaddress.IPv6Address") -> Optional[str]:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if address in _METADATA:
        return "cloud metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or address.is_multicast or address.is_reserved or \
            str(address) == "255.255.255.255":
        return "unroutable"
    return None


def _addresses(host: str, port: int, resolve: bool) -> list[Any]:
    try:
        return [ipaddress.ip_address(host.split("%")[0])]
    except ValueError:
        pass
    if host.lower().rstrip(".") == "localhost" or host.lower().rstrip(".").endswith(".localhost"):
        return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    if not resolve:
        return []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []  # the attempt itself reports the unknown host
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def check_target(url: str, resolve: bool = False) -> str:
    """``url`` when deltaflow may post to it; InvalidArgument naming the address and the setting
    that would allow it otherwise. ``resolve`` looks host names up (done before every delivery)."""
    _vetted(url, resolve)
    return url


def _port(url: str) -> int:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        return parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        raise InvalidArgument(f"webhook URL {url!r} has an invalid port; give 1-65535") from None


def _vetted(url: str, resolve: bool) -> list[Any]:
    """The addresses of ``url``'s host that the policy allows (all of them, or InvalidArgument)."""
    from urllib.parse import urlparse

    from deltaflow.registry._rules import check_url

    check_url(url)
    port = _port(url)
    allowed = _allowed()
    addresses = _addresses(urlparse(url).hostname or "", port, resolve)
    if "any" in allowed:
        return addresses
    for address in addresses:
        category = _category(address)
        if category is None:
            continue
        if category == "loopback" and "loopback" in allowed and port >= 1024:
            continue
        if category in ("link-local", "cloud metadata") and "link-local" in allowed:
            continue
        why = {"loopback": f"loopback port {port} (loopback needs {ALLOW_ENV}=loopback, and then a port of 1024 "
                           "or more; privileged ports need any)",
               "link-local": f"a link-local address (needs {ALLOW_ENV}=link-local)",
               "cloud metadata": f"a cloud metadata endpoint (needs {ALLOW_ENV}=link-local)",
               "unroutable": f"an unspecified, multicast or reserved address (needs {ALLOW_ENV}=any)"}[category]
        raise InvalidArgument(f"webhook URL {url!r} targets {address} ({category}), which deltaflow does not call: "
                              f"{why}. Public and private-network addresses are allowed; {ALLOW_ENV} takes "
                              f"{', '.join(_ALLOW_TOKENS)}, comma-separated, in the process that delivers")
    return addresses


def _via_proxy(url: str) -> bool:
    import urllib.request
    from urllib.parse import urlparse

    parsed = urlparse(url)
    return parsed.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parsed.hostname or "")


def _post_pinned(url: str, body: bytes, headers: dict[str, str], timeout: float, addresses: list[Any]) -> tuple[int, str]:
    """POST to the very addresses the policy checked (no second DNS lookup that could answer
    differently), keeping the host name for the Host header, TLS SNI and certificate checks.
    Returns (status, reason); network failures raise."""
    import http.client
    import ssl
    from urllib.parse import urlparse

    parsed = urlparse(url)
    port = _port(url)
    target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    failure: Optional[OSError] = None
    for address in addresses or [None]:
        if parsed.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parsed.hostname, port, timeout=timeout, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parsed.hostname, port, timeout=timeout)
        if address is not None:
            ip = str(address)
            conn._create_connection = (  # type: ignore[attr-defined]
                lambda _where, *args, _ip=ip, **kwargs: socket.create_connection((_ip, port), *args, **kwargs))
        try:
            try:
                conn.connect()
            except OSError as exc:  # this address does not answer: try the host's next one
                failure = exc
                continue
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.reason
        finally:
            conn.close()
    assert failure is not None
    raise failure


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
    secret: Optional[str]  # a plaintext secret (only from rows written before secrets were encrypted)
    event: str
    revision: int
    body: bytes
    delivery_id: str = ""
    secret_enc: Optional[str] = None  # the secret as stored: encrypted with the registry key

    def signing_secret(self) -> Optional[str]:
        """The secret to sign with (decrypted with this process's registry key); InvalidState when
        this process cannot recover it: such a delivery is never sent unsigned."""
        if self.secret_enc is None:
            return self.secret
        from deltaflow.registry import _integrity

        return _integrity.decrypt_secret(_integrity.load_key(), self.secret_enc)


def _delivery_id(event: dict[str, Any], webhook_id: str, name: str) -> str:
    """Stable for one event, hook and event name (any process computes the same id)."""
    seed = f"{event.get('event_id') or event['revision']}:{webhook_id}:{name}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


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
            delivery_id = _delivery_id(event, webhook.webhook_id, name)
            payload = {
                "event": name, "webhook_id": webhook.webhook_id, "event_timestamp": event["event_time"],
                "revision": event["revision"], "model_name": event["name"], "user_id": event["user_id"],
                "delivery_id": delivery_id,
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
            out.append(Delivery(webhook.webhook_id, webhook.url, hook.secret, name, event["revision"], body,
                                delivery_id, hook.secret_enc))
    return out


class Dispatcher:
    """Delivers on one daemon thread, retrying with exponential backoff; records every attempt.

    Knobs (environment): ``DELTAFLOW_WEBHOOK_ATTEMPTS`` (4), ``DELTAFLOW_WEBHOOK_BACKOFF_S`` (0.5,
    doubled per retry), ``DELTAFLOW_WEBHOOK_TIMEOUT_S`` (5 per request), ``DELTAFLOW_WEBHOOK_EXIT_WAIT_S``
    (10: how long interpreter exit waits for pending deliveries).
    """

    def __init__(self, record: Callable[[dict[str, Any]], None], opener: Optional[Callable[..., Any]] = None) -> None:
        self._record = record
        self._open = opener  # None: post to the checked addresses (urllib when a proxy is configured)
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
        headers = {"Content-Type": "application/json", "User-Agent": "deltaflow-webhooks",
                   EVENT_HEADER: delivery.event, DELIVERY_HEADER: delivery.delivery_id, TIMESTAMP_HEADER: str(stamp)}
        http_status: Optional[int] = None
        error: Optional[str] = None
        final = False  # a refused target or an unrecoverable secret: retrying cannot help
        timeout = _setting("DELTAFLOW_WEBHOOK_TIMEOUT_S", 5.0)
        try:
            addresses = _vetted(delivery.url, resolve=True)
            secret = delivery.signing_secret()
        except DeltaflowError as exc:
            error, final = f"{type(exc).__name__}: {exc}", True
        else:
            if secret:
                headers[SIGNATURE_HEADER] = sign(secret, delivery.body, stamp, delivery.delivery_id, delivery.event)
            try:
                if self._open is None and not _via_proxy(delivery.url):
                    http_status, reason = _post_pinned(delivery.url, delivery.body, headers, timeout, addresses)
                    if not 200 <= http_status < 300:
                        error = f"HTTP {http_status} {reason}"
                else:
                    request = urllib.request.Request(delivery.url, data=delivery.body, headers=headers, method="POST")
                    with (self._open or urllib.request.urlopen)(request, timeout=timeout) as response:
                        http_status = response.status
            except urllib.error.HTTPError as exc:
                http_status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
            except Exception as exc:  # noqa: BLE001 - any network failure is a failed attempt
                error = f"{type(exc).__name__}: {exc}"
        ok = http_status is not None and 200 <= http_status < 300
        retry = not ok and not final and attempt < attempts
        status = "DELIVERED" if ok else ("FAILED" if retry else "GAVE_UP")
        try:
            self._record({"delivery_id": delivery.delivery_id, "webhook_id": delivery.webhook_id,
                          "event": delivery.event, "revision": delivery.revision, "attempt": attempt, "status": status,
                          "http_status": http_status, "error": error, "event_time": int(time.time() * 1000)})
        except Exception:  # noqa: BLE001 - losing a record must not stop deliveries
            _log.warning("deltaflow: could not record webhook delivery %s", delivery.delivery_id, exc_info=True)
        if not retry:
            if not ok:
                _log.warning("deltaflow: webhook %s gave up on %s after %d attempts: %s", delivery.webhook_id,
                             delivery.event, attempt, error)
            return None
        return time.monotonic() + _setting("DELTAFLOW_WEBHOOK_BACKOFF_S", 0.5) * 2 ** (attempt - 1)
