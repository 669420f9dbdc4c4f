"""The registry key: row signatures on ``registry_events`` and webhook secrets encrypted at rest.

The key lives outside the tables: ``DELTAFLOW_REGISTRY_KEY`` (at least 32 characters; on Databricks
from a secret scope), else the file ``registry.key`` in the config folder (``DELTAFLOW_CONFIG_DIR``,
else ``$XDG_CONFIG_HOME/deltaflow``, else ``~/.config/deltaflow``; created by
``deltaflow models key --create``, mode 0600). Purpose keys are derived from it with HMAC-SHA256,
so one secret serves both uses and neither use's key reveals the other's.

* **Row signatures.** A writer holding the key adds ``"_sig": "v1:<key id>:<hex>"`` to the row's
  ``details``: HMAC-SHA256 over the row's columns and its other details. A registry whose first
  revision is signed is a *signed registry*: readers need the same key, and a row without a valid
  signature (a raw append by someone with table access but not the key) is skipped and reported.
* **Webhook secrets** are stored as ``"v1:<key id>:<base64>"``: a 16-byte nonce, the secret XORed
  with an HMAC-SHA256 counter-mode keystream, and an HMAC-SHA256 tag over both (encrypt-then-MAC;
  standard library only).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any, Optional

from deltaflow.errors import InvalidArgument, InvalidState

__all__ = ["KEY_ENV", "CONFIG_DIR_ENV", "RegistryKey", "load_key", "key_file", "create_key_file", "require_key",
           "SIG", "sign_row", "row_signature_problem", "encrypt_secret", "decrypt_secret"]

KEY_ENV = "DELTAFLOW_REGISTRY_KEY"
CONFIG_DIR_ENV = "DELTAFLOW_CONFIG_DIR"
MIN_KEY_CHARS = 32
SIG = "_sig"  # the details key that carries a row's signature
_ROW_FIELDS = ("revision", "event_id", "event_time", "user_id", "action", "name", "version", "from_stage",
               "to_stage", "comment")


@functools.lru_cache(maxsize=32)
def _derive(material: bytes, purpose: str) -> bytes:
    return hmac.new(material, b"deltaflow/" + purpose.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class RegistryKey:
    material: bytes
    source: str  # "DELTAFLOW_REGISTRY_KEY" or the key file's path

    def derive(self, purpose: str) -> bytes:
        return _derive(self.material, purpose)

    @property
    def key_id(self) -> str:
        """A public fingerprint (16 hex digits): says which key signed, reveals nothing of it."""
        return self.derive("key-id").hex()[:16]

    def __repr__(self) -> str:  # never show the material
        return f"RegistryKey(key_id={self.key_id!r}, source={self.source!r})"


def config_dir() -> str:
    explicit = os.environ.get(CONFIG_DIR_ENV)
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "deltaflow")


def key_file() -> str:
    return os.path.join(config_dir(), "registry.key")


def _checked(material: str, source: str) -> RegistryKey:
    material = material.strip()
    if len(material) < MIN_KEY_CHARS:
        raise InvalidArgument(f"the registry key from {source} is {len(material)} characters long; it needs at "
                              f"least {MIN_KEY_CHARS} (e.g. the 64 hex digits of `python -c \"import secrets; "
                              "print(secrets.token_hex(32))\"`)")
    return RegistryKey(material.encode(), source)


def load_key() -> Optional[RegistryKey]:
    """The process's registry key, or None when neither the variable nor the key file is set."""
    raw = os.environ.get(KEY_ENV)
    if raw:
        return _checked(raw, KEY_ENV)
    path = key_file()
    try:
        with open(path, encoding="utf-8") as fh:
            return _checked(fh.read(), path)
    except FileNotFoundError:
        return None


def create_key_file(path: Optional[str] = None) -> RegistryKey:
    """Write a new random key to the key file (0600); refuses to replace an existing one."""
    path = path or key_file()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    material = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidState(f"the registry key file {path} already exists; remove it first to replace the key "
                           "(rows signed and secrets encrypted with it then become unreadable)") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(material + "\n")
    return RegistryKey(material.encode(), path)


def require_key(what: str) -> RegistryKey:
    key = load_key()
    if key is None:
        raise InvalidState(f"{what} needs the registry key, kept outside the tables: set {KEY_ENV} (at least "
                           f"{MIN_KEY_CHARS} characters, the same in every process using this registry) or "
                           f"create {key_file()} with `deltaflow models key --create`")
    return key


# -- row signatures ---------------------------------------------------------------------------
def _row_payload(event: dict[str, Any]) -> bytes:
    details = {k: v for k, v in (event.get("details") or {}).items() if k != SIG}
    fields = [event.get(f) for f in _ROW_FIELDS]
    return json.dumps([fields, details], sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=list).encode()


def sign_row(key: RegistryKey, event: dict[str, Any]) -> str:
    digest = hmac.new(key.derive("rows"), _row_payload(event), hashlib.sha256).hexdigest()
    return f"v1:{key.key_id}:{digest}"


def signature_key_id(event: dict[str, Any]) -> Optional[str]:
    sig = (event.get("details") or {}).get(SIG)
    if not isinstance(sig, str) or sig.count(":") != 2:
        return None
    return sig.split(":")[1]


def row_signature_problem(key: Optional[RegistryKey], event: dict[str, Any]) -> Optional[str]:
    """None when the row carries a valid signature made with ``key``; else why not."""
    sig = (event.get("details") or {}).get(SIG)
    if sig is None:
        return "no signature (written without the registry key)"
    if key is None:
        return "signed, but this process has no registry key to check it"
    if not isinstance(sig, str) or sig.count(":") != 2 or not sig.startswith("v1:"):
        return "malformed signature"
    if sig.split(":")[1] != key.key_id:
        return f"signature made with another key (id {sig.split(':')[1]!r}, not {key.key_id!r})"
    if not hmac.compare_digest(sig.encode("ascii", "replace"), sign_row(key, event).encode()):
        return "bad signature (the row was altered or forged)"
    return None


# -- webhook secrets --------------------------------------------------------------------------
def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (hmac.new(key, nonce + i.to_bytes(4, "big"), hashlib.sha256).digest() for i in range(length // 32 + 1))
    return b"".join(blocks)[:length]


def encrypt_secret(key: RegistryKey, secret: str) -> str:
    plain = secret.encode()
    nonce = secrets.token_bytes(16)
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(key.derive("webhook-secret-enc"), nonce, len(plain))))
    tag = hmac.new(key.derive("webhook-secret-mac"), nonce + cipher, hashlib.sha256).digest()
    return f"v1:{key.key_id}:" + base64.b64encode(nonce + cipher + tag).decode()


def decrypt_secret(key: Optional[RegistryKey], blob: str) -> str:
    """The plaintext secret; InvalidState naming the reason when this process cannot recover it."""
    parts = blob.split(":") if isinstance(blob, str) else []
    if len(parts) != 3 or parts[0] != "v1":
        raise InvalidState("the stored webhook secret is malformed; set a new one with update_registry_webhook")
    if key is None:
        raise InvalidState(f"the webhook secret is encrypted with registry key {parts[1]!r} and this process has "
                           f"no registry key ({KEY_ENV} or {key_file()})")
    if parts[1] != key.key_id:
        raise InvalidState(f"the webhook secret is encrypted with registry key {parts[1]!r}; this process holds "
                           f"key {key.key_id!r} (from {key.source})")
    raw = base64.b64decode(parts[2])
    nonce, cipher, tag = raw[:16], raw[16:-32], raw[-32:]
    expected = hmac.new(key.derive("webhook-secret-mac"), nonce + cipher, hashlib.sha256).digest()
    if len(raw) < 48 or not hmac.compare_digest(tag, expected):
        raise InvalidState("the stored webhook secret failed its integrity check; set a new one")
    stream = _keystream(key.derive("webhook-secret-enc"), nonce, len(cipher))
    return bytes(a ^ b for a, b in zip(cipher, stream)).decode()


# -- folding a signed log ---------------------------------------------------------------------
def _decode(row: dict[str, Any]) -> dict[str, Any]:
    event = dict(row)
    event["details"] = json.loads(row["details"]) if row.get("details") else {}
    if "archived" in event["details"]:
        event["details"]["archived"] = [tuple(pair) for pair in event["details"]["archived"]]
    return event


def key_mismatch(where: str, signer_ids: set[str], key: Optional[RegistryKey]) -> Exception:
    from deltaflow.errors import PermissionDenied

    held = "no registry key" if key is None else f"registry key {key.key_id!r} (from {key.source})"
    return PermissionDenied(
        f"the registry log of {where} is signed with registry key {', '.join(sorted(map(repr, signer_ids)))}; "
        f"this process has {held}. Set {KEY_ENV} (or the key file {key_file()}) to the registry's key; "
        "without it neither its rows nor its webhook secrets can be checked")


def fold_rows(state: Any, rows: list[dict[str, Any]], key: Optional[RegistryKey], where: str,
              applied: Optional[list[dict[str, Any]]] = None) -> None:
    """Fold raw log rows newer than ``state.revision`` into ``state``, one row per revision.

    Revision 1 decides the mode: signed with this process's key -> a signed registry, where a
    revision's row is its validly signed row with the smallest event id, and a revision with none is
    skipped and its rows reported in ``state.rejected``; unsigned -> an unsigned registry (made by a
    process without a key), where, as before signing existed, the smallest event id wins, until a
    validly signed SEAL_REGISTRY row makes the rest of the log signed. A registry signed with another
    key (or read without one) raises PermissionDenied.
    """
    from deltaflow.registry.state import Rejected

    if state.key_id is not None and (key is None or key.key_id != state.key_id):
        raise key_mismatch(where, {state.key_id}, key)
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        if row["revision"] > state.revision:
            groups.setdefault(row["revision"], []).append(row)
    revision = state.revision + 1
    while revision in groups:
        candidates = sorted((_decode(r) for r in groups[revision]), key=lambda e: e["event_id"])
        problems = [(e, row_signature_problem(key, e)) for e in candidates]
        valid = [e for e, problem in problems if problem is None]
        if revision == 1:
            signers = {i for i in (signature_key_id(e) for e in candidates) if i is not None}
            if signers and (key is None or key.key_id not in signers):
                raise key_mismatch(where, signers, key)
            if valid or (signers and all(SIG in e["details"] for e in candidates)):
                state.key_id = key.key_id if key is not None else None
        sealed_by = None
        if state.key_id is None:  # an unsigned registry: signatures, if any, are not required
            chosen, bad = candidates[0], []
            if chosen["action"] == "SEAL_REGISTRY":  # from here on the registry is signed
                sealed_by = signature_key_id(chosen)
                if sealed_by is not None and (key is None or key.key_id != sealed_by):
                    raise key_mismatch(where, {sealed_by}, key)
                if row_signature_problem(key, chosen) is not None:
                    sealed_by = None  # an unsigned or bad "seal" seals nothing
        else:
            chosen = valid[0] if valid else None
            bad = [Rejected(e["revision"], e["event_id"], e["user_id"], e["action"], str(problem))
                   for e, problem in problems if problem is not None]
        if chosen is None:
            state.skip(revision, bad)
        else:
            state.apply(chosen)
            state.rejected.extend(bad)
            if sealed_by is not None:
                state.key_id = sealed_by
            if applied is not None:
                applied.append(chosen)
        revision += 1
