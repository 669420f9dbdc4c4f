"""Input validation with MLflow's rules. Pure Python; every failure is an InvalidArgument that names
the offending key or value and the rule, raised before anything is buffered or written.

The client and the fluent API call these before they touch the store, so a malformed argument never
reaches the write buffer; the store calls them again on its own entry points.
"""

from __future__ import annotations

import math
import numbers
import posixpath
import re
from collections.abc import Mapping
from typing import Any, Iterable, Optional

from deltaflow.entities import Dataset, DatasetInput, Metric, Param, RunStatus, RunTag
from deltaflow.errors import InvalidArgument

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "MAX_EXPERIMENT_NAME_LENGTH",
    "MAX_RUN_NAME_LENGTH",
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_TAGS_PER_BATCH",
    "MAX_ENTITIES_PER_BATCH",
    "MAX_DATASETS_PER_CALL",
    "check_text",
    "validate_key",
    "validate_metric",
    "validate_param",
    "validate_tag",
    "validate_tags",
    "validate_run_id",
    "validate_experiment_name",
    "validate_experiment_id",
    "validate_run_name",
    "validate_timestamp",
    "validate_status",
    "validate_artifact_location",
    "validate_dataset",
    "validate_dataset_inputs",
    "batch_items",
    "validate_batch",
    "split_batch",
]

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_RUN_NAME_LENGTH = 250
MAX_ARTIFACT_LOCATION_LENGTH = 2048
# MLflow's per-request limits of log_batch (mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_DATASETS_PER_CALL = 1000
# MLflow's dataset and input-tag size limits.
_DATASET_LIMITS = {"name": 500, "digest": 36, "source_type": 500, "source": 65535,
                   "schema": 1048575, "profile": 16777215}
MAX_INPUT_TAG_KEY_LENGTH = 255
MAX_INPUT_TAG_VALUE_LENGTH = 500
RUN_NAME_TAG = "mlflow.runName"

# MLflow's key alphabet: alphanumerics, underscore, period, dash, space, slash and colon.
_KEY_RE = re.compile(r"[/\w.\- :]+")
_RUN_ID_RE = re.compile(r"[0-9a-f]{32}")
_EXPERIMENT_ID_RE = re.compile(r"[0-9A-Za-z_\-]{1,64}")
_KEY_RULE = (
    "keys may contain only alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), "
    "colons (:) and slashes (/), at most 250 characters, and must not be a path that leaves or "
    "restarts the run's folder ('.', '..', '/a', 'a//b', 'a/./b')"
)

# Keys are re-validated thousands of times a second on the hot path; a key that passed once
# passes forever, so remember the good ones (bounded, so hostile key streams cannot grow it).
_good_keys: set[str] = set()
_GOOD_KEYS_MAX = 100_000


def _excerpt(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_key(key: Any, what: str) -> str:
    if type(key) is str and key in _good_keys:
        return key
    if not isinstance(key, str):
        raise InvalidArgument(f"{what} key must be a string, got {type(key).__name__} {_excerpt(key)}")
    key = str.__str__(key)  # a plain str, whatever subclass came in
    if not key:
        raise InvalidArgument(f"{what} key must not be empty; {_KEY_RULE}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(
            f"{what} key {_excerpt(key)} is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    if not _KEY_RE.fullmatch(key):
        raise InvalidArgument(f"invalid {what} key {_excerpt(key)}: {_KEY_RULE}")
    # MLflow rejects keys that are not unique as paths ('.', 'a/../b', '/a', 'a//b', '..x'): they
    # would alias other keys in artifact-style layouts.
    norm = posixpath.normpath(key)
    if norm != key or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise InvalidArgument(f"invalid {what} key {_excerpt(key)}: {_KEY_RULE}")
    if len(_good_keys) < _GOOD_KEYS_MAX:
        _good_keys.add(key)
    return key


_I64_MIN, _I64_MAX = -(2**63), 2**63


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_timestamp(value: Any, what: str) -> int:
    """Epoch milliseconds: an integer (numpy integers included) from 0 to 2**63-1."""
    if type(value) is int and 0 <= value < _I64_MAX:
        return value
    if not _is_int(value):
        raise InvalidArgument(
            f"{what} {_excerpt(value)} ({type(value).__name__}) must be an integer count of "
            "milliseconds since the epoch"
        )
    value = int(value)
    if not 0 <= value < _I64_MAX:
        raise InvalidArgument(
            f"{what} {_excerpt(value)} is out of range; it must be milliseconds since the epoch, "
            "from 0 to 2**63-1"
        )
    return value


def validate_metric(key: Any, value: Any, timestamp: Any, step: Any) -> tuple[str, float, int, int]:
    # The hot path (a known key, a float, int step and timestamp) costs a few type checks; the
    # general path below handles numpy scalars, Decimals and bools, and explains every rejection.
    if (type(key) is str and key in _good_keys and type(value) is float and type(step) is int
            and type(timestamp) is int and _I64_MIN <= step < _I64_MAX and 0 <= timestamp < _I64_MAX):
        return key, value, timestamp, step
    key = validate_key(key, "metric")
    # bool is an int subclass; MLflow accepts it, so do we (as 0.0/1.0).
    if isinstance(value, float):
        fvalue = float(value)
    elif isinstance(value, numbers.Number) and not isinstance(value, complex):
        try:
            fvalue = float(value)  # numpy scalars, Decimal, int, Fraction
        except (TypeError, ValueError, OverflowError, ArithmeticError):
            raise InvalidArgument(
                f"metric {key!r} value {_excerpt(value)} is not representable as a 64-bit float"
            ) from None
        if math.isinf(fvalue) and not value == fvalue:  # Decimal('1e999') rounds to inf
            raise InvalidArgument(
                f"metric {key!r} value {_excerpt(value)} is out of the range of a 64-bit float "
                "(about +/-1.8e308); NaN and +/-inf themselves are allowed"
            )
    else:
        raise InvalidArgument(
            f"metric {key!r} value {_excerpt(value)} ({type(value).__name__}) must be a number; "
            "NaN and +/-inf are allowed"
        )
    timestamp = validate_timestamp(timestamp, f"metric {key!r} timestamp")
    if not _is_int(step):
        raise InvalidArgument(
            f"metric {key!r} step {_excerpt(step)} must be an integer, not {type(step).__name__}"
        )
    step = int(step)
    if not _I64_MIN <= step < _I64_MAX:
        raise InvalidArgument(f"metric {key!r} step {step} does not fit in a 64-bit integer")
    return key, fvalue, timestamp, step


def check_text(text: str, what: str) -> str:
    """``text`` if it can be stored: UTF-8 encodable (no lone surrogates such as '\\ud800')."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(
                f"{what} {_excerpt(text)} is not valid Unicode text (a lone surrogate at position "
                f"{exc.start}); only text that encodes as UTF-8 can be stored"
            ) from None
    return text


def _stringify(value: Any, what: str) -> str:
    # MLflow stores str(value) for params and tags.
    if isinstance(value, str):
        return check_text(str.__str__(value), f"{what} value")
    try:
        text = str(value)
    except Exception as exc:  # noqa: BLE001 - the caller's object, the caller's error
        raise InvalidArgument(f"{what} value of type {type(value).__name__} cannot be turned into a "
                              f"string ({type(exc).__name__}: {exc})") from None
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} value of type {type(value).__name__} did not turn into a string")
    return check_text(text, f"{what} value")


def validate_param(key: Any, value: Any) -> tuple[str, str]:
    key = validate_key(key, "param")
    text = _stringify(value, f"param {key!r}")
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidArgument(
            f"param {key!r} value is {len(text)} characters long; the limit is {MAX_PARAM_VALUE_LENGTH}"
        )
    return key, text


def validate_tag(key: Any, value: Any) -> tuple[str, str]:
    key = validate_key(key, "tag")
    text = _stringify(value, f"tag {key!r}")
    if len(text) > MAX_TAG_VALUE_LENGTH:
        raise InvalidArgument(
            f"tag {key!r} value is {len(text)} characters long; the limit is {MAX_TAG_VALUE_LENGTH}"
        )
    if key == RUN_NAME_TAG and len(text) > MAX_RUN_NAME_LENGTH:
        raise InvalidArgument(
            f"tag {RUN_NAME_TAG!r} is the run name: its value is {len(text)} characters long; "
            f"the limit is {MAX_RUN_NAME_LENGTH}"
        )
    return key, text


def validate_tags(tags: Any, what: str = "tags") -> list[tuple[str, str]]:
    """A dict of tags (None for none) as validated (key, value) pairs."""
    if tags is None:
        return []
    if not isinstance(tags, Mapping):
        raise InvalidArgument(
            f"{what} must be a dict of tag key to value, got {type(tags).__name__} {_excerpt(tags)}"
        )
    return [validate_tag(k, v) for k, v in tags.items()]


def validate_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise InvalidArgument(f"run_id {_excerpt(run_id)} is not valid; run ids are 32 lowercase hex characters")
    return run_id


def validate_experiment_id(experiment_id: Any) -> str:
    if isinstance(experiment_id, int) and not isinstance(experiment_id, bool):
        experiment_id = str(experiment_id)
    if not isinstance(experiment_id, str) or not _EXPERIMENT_ID_RE.fullmatch(experiment_id):
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
    return check_text(name, "experiment name")


def validate_run_name(name: Any) -> Optional[str]:
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidArgument(f"run_name {_excerpt(name)} ({type(name).__name__}) must be a string")
    if len(name) > MAX_RUN_NAME_LENGTH:
        raise InvalidArgument(f"run_name is {len(name)} characters long; the limit is {MAX_RUN_NAME_LENGTH}")
    return check_text(name, "run_name")


def validate_status(status: Any) -> str:
    if not isinstance(status, str) or status not in RunStatus.ALL:
        raise InvalidArgument(f"run status {_excerpt(status)} is not valid; use one of {', '.join(RunStatus.ALL)}")
    return status


def validate_artifact_location(location: Any) -> Optional[str]:
    """An experiment's artifact location: a path or URI, or None/"" for the store's default."""
    if location is None or location == "":
        return None
    if not isinstance(location, str) or not location.strip():
        raise InvalidArgument(
            f"artifact_location {_excerpt(location)} ({type(location).__name__}) must be a non-empty "
            "path or URI string"
        )
    if location.split(":", 1)[0].lower() in ("runs", "models"):
        raise InvalidArgument(
            f"artifact_location {_excerpt(location)} is a runs:/ or models:/ reference; it must be a "
            "storage path or URI (a folder, dbfs:/, s3://, /Volumes/...)"
        )
    if "\x00" in location or "\n" in location:
        raise InvalidArgument(f"artifact_location {_excerpt(location)} must not contain NUL or newline characters")
    if len(location) > MAX_ARTIFACT_LOCATION_LENGTH:
        raise InvalidArgument(
            f"artifact_location is {len(location)} characters long; the limit is {MAX_ARTIFACT_LOCATION_LENGTH}"
        )
    return check_text(location, "artifact_location")


def validate_dataset(ds: Any) -> Dataset:
    if not isinstance(ds, Dataset):
        raise InvalidArgument(f"dataset {_excerpt(ds)} ({type(ds).__name__}) must be a deltaflow Dataset")
    for name in ("name", "digest", "source_type", "source", "schema", "profile"):
        value = getattr(ds, name)
        optional = name in ("schema", "profile")
        if value is None and optional:
            continue
        if not isinstance(value, str) or not value:
            allowed = "None or a non-empty string" if optional else "a non-empty string"
            raise InvalidArgument(f"dataset {name} {_excerpt(value)} ({type(value).__name__}) must be {allowed}")
        if len(value) > _DATASET_LIMITS[name]:
            raise InvalidArgument(
                f"dataset {name} is {len(value)} characters long; the limit is {_DATASET_LIMITS[name]}"
            )
        check_text(value, f"dataset {name}")
    version = getattr(ds, "version", None)
    if version is not None and (not _is_int(version) or not 0 <= int(version) < _I64_MAX):
        raise InvalidArgument(f"dataset version {_excerpt(version)} must be None or a non-negative integer")
    return ds


def validate_dataset_inputs(datasets: Any) -> list[DatasetInput]:
    """log_inputs' argument: a list of DatasetInput (None for none), every field checked."""
    if datasets is None:
        return []
    if isinstance(datasets, (str, bytes, Mapping, Dataset, DatasetInput)) or not isinstance(datasets, Iterable):
        raise InvalidArgument(
            f"datasets must be a list of DatasetInput, got {type(datasets).__name__} {_excerpt(datasets)}"
        )
    items = list(datasets)
    if len(items) > MAX_DATASETS_PER_CALL:
        raise InvalidArgument(f"{len(items)} datasets in one call; the limit is {MAX_DATASETS_PER_CALL}")
    for i, item in enumerate(items):
        if not isinstance(item, DatasetInput):
            raise InvalidArgument(
                f"datasets[{i}] {_excerpt(item)} ({type(item).__name__}) must be a DatasetInput"
            )
        validate_dataset(item.dataset)
        if not isinstance(item.tags, (list, tuple)):
            raise InvalidArgument(f"datasets[{i}].tags must be a list of InputTag, got {type(item.tags).__name__}")
        for tag in item.tags:
            key, value = getattr(tag, "key", None), getattr(tag, "value", None)
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise InvalidArgument(
                    f"datasets[{i}] input tag {_excerpt(tag)} must have a non-empty string key and a string value"
                )
            if len(key) > MAX_INPUT_TAG_KEY_LENGTH or len(value) > MAX_INPUT_TAG_VALUE_LENGTH:
                raise InvalidArgument(
                    f"datasets[{i}] input tag {key[:60]!r} is too long; keys are limited to "
                    f"{MAX_INPUT_TAG_KEY_LENGTH} characters and values to {MAX_INPUT_TAG_VALUE_LENGTH}"
                )
            check_text(key, f"datasets[{i}] input tag key")
            check_text(value, f"datasets[{i}] input tag value")
    return items


_ENTITY_FIELDS = {"Metric": ("key", "value", "timestamp", "step"), "Param": ("key", "value"),
                  "RunTag": ("key", "value")}
_ENTITY_CLASSES = {"Metric": Metric, "Param": Param, "RunTag": RunTag}


def batch_items(items: Any, what: str, kind: str) -> list[Any]:
    """A log_batch argument as a list of entities: a list (or other iterable) of ``kind``
    objects (deltaflow's or MLflow's), each with the fields validation reads."""
    if isinstance(items, (list, tuple)):
        out = list(items)
    elif items is None or isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        hint = f"; for a dict use log_{what}()" if isinstance(items, Mapping) else ""
        raise InvalidArgument(
            f"{what} must be a list of {kind} objects, got {type(items).__name__} {_excerpt(items)}{hint}"
        )
    else:
        out = list(items)
    cls, fields = _ENTITY_CLASSES[kind], _ENTITY_FIELDS[kind]
    for i, item in enumerate(out):
        if type(item) is cls:
            continue
        if type(item).__name__ != kind or not all(hasattr(item, f) for f in fields):
            raise InvalidArgument(
                f"{what}[{i}] {_excerpt(item)} ({type(item).__name__}) must be a {kind} "
                f"with fields {', '.join(fields)}"
            )
    return out


def validate_batch(
    metrics: Iterable[Any], params: Iterable[Any], tags: Iterable[Any], *, limits: bool = True
) -> tuple[list[tuple[str, float, int, int]], list[tuple[str, str]], list[tuple[str, str]]]:
    """Validate a whole log_batch before any of it is buffered (all or nothing). ``limits``: MLflow's
    per-request sizes (1,000 metrics, 100 params, 100 tags, 1,000 entities in all)."""
    metrics = batch_items(metrics, "metrics", "Metric")
    params = batch_items(params, "params", "Param")
    tags = batch_items(tags, "tags", "RunTag")
    if limits:
        for what, count, limit in (("metrics", len(metrics), MAX_METRICS_PER_BATCH),
                                   ("params", len(params), MAX_PARAMS_TAGS_PER_BATCH),
                                   ("tags", len(tags), MAX_PARAMS_TAGS_PER_BATCH),
                                   ("metrics, params and tags", len(metrics) + len(params) + len(tags),
                                    MAX_ENTITIES_PER_BATCH)):
            if count > limit:
                raise InvalidArgument(
                    f"one log_batch request may hold at most {limit} {what}; got {count}. "
                    "Split it into several requests (DeltaflowClient.log_batch does this for you)"
                )
    out_metrics = [validate_metric(m.key, m.value, m.timestamp, m.step) for m in metrics]
    out_params = [validate_param(p.key, p.value) for p in params]
    seen: dict[str, str] = {}
    for key, value in out_params:
        if key in seen:  # MLflow refuses any repeated key in one batch, same value or not
            raise InvalidArgument(
                f"param {key!r} appears twice in one batch ({_excerpt(seen[key])} and "
                f"{_excerpt(value)}); a batch may hold one value per param key"
            )
        seen[key] = value
    out_tags = [validate_tag(t.key, t.value) for t in tags]
    return out_metrics, out_params, out_tags


def split_batch(metrics: list[Any], params: list[Any], tags: list[Any]) -> list[tuple[list, list, list]]:
    """Split a batch into requests within MLflow's limits, the way MlflowClient.log_batch does:
    params and tags 100 at a time, metrics filling each request up to 1,000 entities."""
    step = MAX_PARAMS_TAGS_PER_BATCH
    chunks: list[tuple[list, list, list]] = []
    rest = metrics
    i = 0
    while i < max(len(params), len(tags)) or rest or not chunks:
        p, t = params[i:i + step], tags[i:i + step]
        room = min(MAX_ENTITIES_PER_BATCH - len(p) - len(t), MAX_METRICS_PER_BATCH)
        chunks.append((rest[:room], p, t))
        rest = rest[room:]
        i += step
    return chunks


def is_nan(value: float) -> bool:
    return math.isnan(value)
