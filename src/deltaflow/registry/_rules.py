"""The registry's rules, pure: names, stages, aliases, permission levels, webhook events.

Everything here is checked before anything is written, and every message names the bad value and
what is allowed.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

from deltaflow.errors import InvalidArgument

__all__ = [
    "STAGES", "PERMISSION_LEVELS", "ALL_USERS", "WEBHOOK_EVENTS", "check_model_name", "check_version",
    "check_stage", "check_alias", "check_level", "check_principal", "check_description", "check_tag",
    "check_comment", "check_events", "check_url", "level_at_least", "stage_level", "MAX_NAME_LENGTH",
]  # fmt: skip

STAGES = ("None", "Staging", "Production", "Archived")
_STAGE_BY_LOWER = {s.lower(): s for s in STAGES}

# Ordered from least to most; each level includes everything below it (Databricks' model ACLs).
PERMISSION_LEVELS = ("CAN_READ", "CAN_EDIT", "CAN_MANAGE_STAGING_VERSIONS", "CAN_MANAGE_PRODUCTION_VERSIONS",
                     "CAN_MANAGE")
ALL_USERS = "users"  # the principal that stands for every user

WEBHOOK_EVENTS = (
    "MODEL_VERSION_CREATED", "MODEL_VERSION_TRANSITIONED_STAGE", "MODEL_VERSION_TRANSITIONED_TO_STAGING",
    "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED",
    "TRANSITION_REQUEST_CREATED", "TRANSITION_REQUEST_TO_STAGING_CREATED",
    "TRANSITION_REQUEST_TO_PRODUCTION_CREATED", "TRANSITION_REQUEST_TO_ARCHIVED_CREATED",
    "COMMENT_CREATED", "REGISTERED_MODEL_CREATED", "MODEL_VERSION_TAG_SET",
)  # fmt: skip

MAX_NAME_LENGTH = 256
MAX_DESCRIPTION = 65_535  # Databricks' comment/description limit
_TAG_KEY_MAX, _TAG_VALUE_MAX = 250, 5000  # MLflow's registry tag limits
_NAME_FORBIDDEN = re.compile(r"[/@:%\x00-\x1f]")
_ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_VERSION_LIKE = re.compile(r"^[vV]\d+$")
_PRINCIPAL = re.compile(r"^[^\x00-\x1f,]{1,256}$")


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def check_model_name(name: Any, what: str = "registered model name") -> str:
    if not isinstance(name, str):
        raise InvalidArgument(f"{what} must be a string, got {type(name).__name__} {_show(name)}")
    if not name or name != name.strip():
        raise InvalidArgument(f"{what} {_show(name)} must be non-empty without surrounding spaces")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{what} is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if _NAME_FORBIDDEN.search(name):
        raise InvalidArgument(f"{what} {_show(name)} contains a character that is not allowed: '/', '@', ':', "
                              "'%' or a control character (they would break models:/ URIs)")
    parts = name.split(".")
    if len(parts) > 1 and (len(parts) != 3 or any(not p for p in parts)):
        raise InvalidArgument(f"{what} {_show(name)} has dots; a dotted name must be a Unity Catalog "
                              "three-level name catalog.schema.model with no empty part")
    return name


def check_version(version: Any) -> int:
    """A version number from an int or a string of digits (MLflow's REST form)."""
    if isinstance(version, bool):
        raise InvalidArgument(f"model version must be a positive integer, got {version!r}")
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version.strip())
    if not isinstance(version, int) or version < 1:
        raise InvalidArgument(f"model version must be a positive integer (or a string of digits), "
                              f"got {_show(version)}")
    return version


def check_stage(stage: Any, *, allow_none_value: bool = True) -> str:
    """The canonical stage name; matching is case-insensitive as in MLflow."""
    canonical = _STAGE_BY_LOWER.get(stage.strip().lower()) if isinstance(stage, str) else None
    if canonical is None or (canonical == "None" and not allow_none_value):
        allowed = STAGES if allow_none_value else STAGES[1:]
        raise InvalidArgument(f"stage {_show(stage)} is not one of {', '.join(allowed)} (case-insensitive)")
    return canonical


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise InvalidArgument(f"alias {_show(alias)} must be 1-255 letters, digits, '_' or '-'")
    if alias.lower() == "latest" or _VERSION_LIKE.match(alias):
        raise InvalidArgument(f"alias {_show(alias)} is reserved: 'latest' and v<number> would be ambiguous "
                              "with models:/<name>/latest and version references")
    return alias


def check_level(level: Any) -> str:
    if not isinstance(level, str) or level.upper() not in PERMISSION_LEVELS:
        raise InvalidArgument(f"permission level {_show(level)} is not one of {', '.join(PERMISSION_LEVELS)}")
    return level.upper()


def check_principal(principal: Any, *, allow_all_users: bool = True) -> str:
    """A grantee: a user name, or (where a grant is meant) ``users`` for every user. The other
    reserved names (``admins``, ...) are never principals: registry admins are recorded with
    ``add_registry_admin``, not granted."""
    from deltaflow.config import RESERVED_PRINCIPALS

    if not isinstance(principal, str) or not _PRINCIPAL.match(principal) or principal != principal.strip():
        raise InvalidArgument(f"principal {_show(principal)} must be a user name (or {ALL_USERS!r} for everyone), "
                              "1-256 characters without commas or control characters")
    if principal.lower() in RESERVED_PRINCIPALS and not (allow_all_users and principal == ALL_USERS):
        allowed = f"a user name, or {ALL_USERS!r} for every user" if allow_all_users else "a user name"
        raise InvalidArgument(f"principal {principal!r} is reserved ({', '.join(sorted(RESERVED_PRINCIPALS))} "
                              f"name groups); give {allowed}")
    return principal


def check_description(text: Any, what: str = "description") -> Optional[str]:
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > MAX_DESCRIPTION:
        raise InvalidArgument(f"{what} is {len(text)} characters long; the limit is {MAX_DESCRIPTION}")
    return text


def check_comment(text: Any) -> str:
    checked = check_description(text, "comment")
    if not checked or not checked.strip():
        raise InvalidArgument("a comment must be non-empty text")
    return checked


def check_tag(key: Any, value: Any = "") -> tuple[str, str]:
    if not isinstance(key, str) or not key or len(key) > _TAG_KEY_MAX or key != key.strip():
        raise InvalidArgument(f"tag key {_show(key)} must be a non-empty string of at most {_TAG_KEY_MAX} "
                              "characters without surrounding spaces")
    if value is None or isinstance(value, (dict, list, tuple, set)):
        raise InvalidArgument(f"tag {key!r} value must be a string or number, got {type(value).__name__}")
    value = str(value)
    if len(value) > _TAG_VALUE_MAX:
        raise InvalidArgument(f"tag {key!r} value is {len(value)} characters long; the limit is {_TAG_VALUE_MAX}")
    return key, value


def check_events(events: Any) -> tuple[str, ...]:
    if isinstance(events, str) or not isinstance(events, Iterable):
        raise InvalidArgument(f"events must be a list of event names, got {_show(events)}")
    out = []
    for event in events:
        if event not in WEBHOOK_EVENTS:
            raise InvalidArgument(f"webhook event {_show(event)} is not one of {', '.join(WEBHOOK_EVENTS)}")
        if event not in out:
            out.append(event)
    if not out:
        raise InvalidArgument(f"a webhook needs at least one event: {', '.join(WEBHOOK_EVENTS)}")
    return tuple(out)


def check_url(url: Any) -> str:
    from urllib.parse import urlparse

    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidArgument(f"webhook URL {_show(url)} must be an http:// or https:// URL with a host")
    return url


def level_at_least(level: Optional[str], required: str) -> bool:
    return level is not None and PERMISSION_LEVELS.index(level) >= PERMISSION_LEVELS.index(required)


def stage_level(from_stage: str, to_stage: str) -> str:
    """The permission a transition needs: moving into or out of Production needs the production level;
    any other move (between None, Staging, Archived) the staging level."""
    if "Production" in (from_stage, to_stage):
        return "CAN_MANAGE_PRODUCTION_VERSIONS"
    return "CAN_MANAGE_STAGING_VERSIONS"
