"""Input validation with MLflow's rules. Pure Python; every failure is an InvalidArgument that names
the offending key or value and the rule, raised before anything is buffered or written."""

from __future__ import annotations

import math
import numbers
import posixpath
import re
from typing import Any, Iterable, Optional

from deltaflow.errors import InvalidArgument

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "MAX_EXPERIMENT_NAME_LENGTH",
    "validate_key",
    "validate_metric",
    "validate_param",
    "validate_tag",
    "validate_run_id",
    "validate_experiment_name",
    "validate_experiment_id",
    "validate_run_name",
    "validate_batch",
]

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_RUN_NAME_LENGTH = 250

# MLflow's key alphabet: alphanumerics, underscore, period, dash, space, slash and colon.
_KEY_RE = re.compile(r"^[/\w.\- :]+$")
_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_EXPERIMENT_ID_RE = re.compile(r"^[0-9A-Za-z_\-]{1,64}$")
_KEY_RULE = (
    "keys may contain only alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), "
    "colons (:) and slashes (/), at most 250 characters, and must not be a path that leaves or "
    "restarts the run's folder"
)

# Keys are re-validated thousands of times a second on the hot path; a key that passed once
# passes forever, so remember the good ones (bounded, so hostile key streams cannot grow it).
_good_keys: set[str] = set()
_GOOD_KEYS_MAX = 100_000


def _excerpt(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_key(key: Any, what: str) -> str:
    if key in _good_keys:
        return key
    if not isinstance(key, str):
        raise InvalidArgument(f"{what} key must be a string, got {type(key).__name__} {_excerpt(key)}")
    if not key:
        raise InvalidArgument(f"{what} key must not be empty; {_KEY_RULE}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(
            f"{what} key {_excerpt(key)} is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    if not _KEY_RE.match(key):
        raise InvalidArgument(f"invalid {what} key {_excerpt(key)}: {_KEY_RULE}")
    # MLflow rejects keys that are not unique as paths ('a/../b', '/a', 'a//b'): they would alias
    # other keys in artifact-style layouts.
    if posixpath.normpath(key) != key or key.startswith("/") or ".." in key.split("/"):
        raise InvalidArgument(f"invalid {what} key {_excerpt(key)}: {_KEY_RULE}")
    if len(_good_keys) < _GOOD_KEYS_MAX:
        _good_keys.add(key)
    return key


_I64_MIN, _I64_MAX = -(2**63), 2**63


def validate_metric(key: Any, value: Any, timestamp: Any, step: Any) -> tuple[str, float, int, int]:
    # The hot path (a known key, a float, int step and timestamp) costs four type checks; the
    # general path below handles numpy scalars, Decimals and bools, and explains every rejection.
    if (key in _good_keys and type(value) is float and type(step) is int and type(timestamp) is int
            and _I64_MIN <= step < _I64_MAX and _I64_MIN <= timestamp < _I64_MAX):
        return key, value, timestamp, step
    validate_key(key, "metric")
    # bool is an int subclass; MLflow accepts it, so do we (as 0.0/1.0).
    if isinstance(value, float):
        fvalue = value
    elif isinstance(value, numbers.Number) and not isinstance(value, complex):
        try:
            fvalue = float(value)  # numpy scalars, Decimal, int
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument(f"metric {key!r} value {_excerpt(value)} is not a real number") from None
    else:
        raise InvalidArgument(
            f"metric {key!r} value {_excerpt(value)} ({type(value).__name__}) must be a number; "
            "NaN and +/-inf are allowed"
        )
    if not isinstance(timestamp, numbers.Integral) or isinstance(timestamp, bool):
        raise InvalidArgument(f"metric {key!r} timestamp {_excerpt(timestamp)} must be an integer (epoch ms)")
    if not isinstance(step, numbers.Integral) or isinstance(step, bool):
        raise InvalidArgument(f"metric {key!r} step {_excerpt(step)} must be an integer")
    step, timestamp = int(step), int(timestamp)
    if not _I64_MIN <= step < _I64_MAX:
        raise InvalidArgument(f"metric {key!r} step {step} does not fit in a 64-bit integer")
    if not _I64_MIN <= timestamp < _I64_MAX:
        raise InvalidArgument(f"metric {key!r} timestamp {timestamp} does not fit in a 64-bit integer")
    return key, fvalue, timestamp, step


def _stringify(value: Any) -> str:
    # MLflow stores str(value) for params and tags.
    return value if isinstance(value, str) else str(value)


def validate_param(key: Any, value: Any) -> tuple[str, str]:
    validate_key(key, "param")
    text = _stringify(value)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidArgument(
            f"param {key!r} value is {len(text)} characters long; the limit is {MAX_PARAM_VALUE_LENGTH}"
        )
    return key, text


def validate_tag(key: Any, value: Any) -> tuple[str, str]:
    validate_key(key, "tag")
    text = _stringify(value)
    if len(text) > MAX_TAG_VALUE_LENGTH:
        raise InvalidArgument(
            f"tag {key!r} value is {len(text)} characters long; the limit is {MAX_TAG_VALUE_LENGTH}"
        )
    return key, text


def validate_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise InvalidArgument(f"run_id {_excerpt(run_id)} is not valid; run ids are 32 lowercase hex characters")
    return run_id


def validate_experiment_id(experiment_id: Any) -> str:
    if isinstance(experiment_id, int) and not isinstance(experiment_id, bool):
        experiment_id = str(experiment_id)
    if not isinstance(experiment_id, str) or not _EXPERIMENT_ID_RE.match(experiment_id):
        raise InvalidArgument(
            f"experiment_id {_excerpt(experiment_id)} is not valid; ids are 1-64 letters, digits, '_' or '-'"
        )
    return experiment_id


def validate_experiment_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(f"experiment name {_excerpt(name)} must be a non-empty string")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise InvalidArgument(
            f"experiment name is {len(name)} characters long; the limit is {MAX_EXPERIMENT_NAME_LENGTH}"
        )
    if "\x00" in name:
        raise InvalidArgument("experiment name must not contain NUL characters")
    return name


def validate_run_name(name: Any) -> Optional[str]:
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidArgument(f"run_name {_excerpt(name)} must be a string")
    if len(name) > MAX_RUN_NAME_LENGTH:
        raise InvalidArgument(f"run_name is {len(name)} characters long; the limit is {MAX_RUN_NAME_LENGTH}")
    return name


def validate_batch(
    metrics: Iterable[Any], params: Iterable[Any], tags: Iterable[Any]
) -> tuple[list[tuple[str, float, int, int]], list[tuple[str, str]], list[tuple[str, str]]]:
    """Validate a whole log_batch before any of it is buffered (all or nothing)."""
    out_metrics = [validate_metric(m.key, m.value, m.timestamp, m.step) for m in metrics]
    out_params = [validate_param(p.key, p.value) for p in params]
    seen: dict[str, str] = {}
    for key, value in out_params:
        if key in seen and seen[key] != value:
            raise InvalidArgument(
                f"param {key!r} appears twice in one batch with different values "
                f"({_excerpt(seen[key])} and {_excerpt(value)}); a param is logged once"
            )
        seen[key] = value
    out_tags = [validate_tag(t.key, t.value) for t in tags]
    return out_metrics, out_params, out_tags


def is_nan(value: float) -> bool:
    return math.isnan(value)
