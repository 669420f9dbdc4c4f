"""Quartz cron expressions and time zones as Databricks job schedules take them.

Databricks schedules use Quartz syntax: ``sec min hour day-of-month month day-of-week [year]``, with
``?`` in exactly one of the two day fields, ``L``/``W`` in day-of-month, ``L``/``#`` in day-of-week,
names ``JAN-DEC`` / ``SUN-SAT`` (day-of-week 1 = Sunday). Pure Python: used by job-spec validation
before any call and by the local emulator, so both refuse the same expressions with the same words.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CronError", "validate_quartz_cron", "validate_timezone"]


class CronError(ValueError):
    """A schedule's cron expression or time zone is not valid; the message names the part and why."""


_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_DAYS = {d: i + 1 for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}
# name, low, high, names
_FIELDS = (("seconds", 0, 59, {}), ("minutes", 0, 59, {}), ("hours", 0, 23, {}),
           ("day-of-month", 1, 31, {}), ("month", 1, 12, _MONTHS), ("day-of-week", 1, 7, _DAYS),
           ("year", 1970, 2099, {}))
_EXAMPLE = "e.g. '0 0 3 * * ?' (03:00 every day) or '0 30 6 ? * MON-FRI'"


def _value(token: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    upper = token.upper()
    if upper in names:
        return names[upper]
    if not token.isdigit():
        allowed = f"{low}-{high}" + (f" or {min(names, key=names.get)}-{max(names, key=names.get)}" if names else "")
        raise CronError(f"{field} value {token!r} is not a number in {allowed}")
    number = int(token)
    if not low <= number <= high:
        raise CronError(f"{field} value {number} is outside {low}-{high}")
    return number


def _item(item: str, field: str, low: int, high: int, names: dict[str, int]) -> None:
    if field == "day-of-month":
        if item in ("L", "LW"):
            return
        match = re.fullmatch(r"L-(\d+)", item)
        if match:
            if int(match.group(1)) > 30:
                raise CronError(f"day-of-month offset {item!r} must be L-0 to L-30")
            return
        if item.endswith("W") and item[:-1].isdigit():
            _value(item[:-1], field, low, high, names)
            return
    if field == "day-of-week":
        if item == "L":
            return
        if item.endswith("L") and len(item) > 1:
            _value(item[:-1], field, low, high, names)
            return
        if "#" in item:
            day, _, nth = item.partition("#")
            _value(day, field, low, high, names)
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise CronError(f"day-of-week {item!r}: the number after '#' must be 1-5")
            return
    base, slash, step = item.partition("/")
    if slash:
        if not step.isdigit() or int(step) < 1:
            raise CronError(f"{field} increment in {item!r} must be a positive whole number")
        if int(step) > high:
            raise CronError(f"{field} increment {step} in {item!r} is larger than {high}")
    if base == "*":
        return
    first, dash, last = base.partition("-")
    start = _value(first, field, low, high, names)
    if dash:
        end = _value(last, field, low, high, names)
        if end < start and field not in ("day-of-week", "month", "hours", "minutes", "seconds"):
            raise CronError(f"{field} range {base!r} runs backwards")


def validate_quartz_cron(expression: Any) -> list[str]:
    """Returns the fields of a valid Quartz expression; raises :class:`CronError` naming the bad part."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError(f"quartz_cron_expression is required, {_EXAMPLE}")
    fields = expression.split()
    if len(fields) not in (6, 7):
        raise CronError(f"quartz_cron_expression {expression!r} has {len(fields)} fields; Quartz needs 6 or 7 "
                        f"(seconds minutes hours day-of-month month day-of-week [year]), {_EXAMPLE}")
    try:
        for text, (field, low, high, names) in zip(fields, _FIELDS):
            if text == "?":
                if field not in ("day-of-month", "day-of-week"):
                    raise CronError(f"'?' is allowed only in day-of-month or day-of-week, not in {field}")
                continue
            for item in text.split(","):
                if not item:
                    raise CronError(f"{field} {text!r} has an empty list item")
                _item(item, field, low, high, names)
        if (fields[3] == "?") == (fields[5] == "?"):
            raise CronError("exactly one of day-of-month and day-of-week must be '?' "
                            f"(got {fields[3]!r} and {fields[5]!r})")
    except CronError as exc:
        raise CronError(f"quartz_cron_expression {expression!r}: {exc}; {_EXAMPLE}") from None
    return fields


def validate_timezone(timezone_id: Any) -> str:
    """A Java time zone id as Databricks takes it (``UTC``, ``Europe/Amsterdam``, ...)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    if not isinstance(timezone_id, str) or not timezone_id:
        raise CronError("timezone_id is required, e.g. 'UTC' or 'Europe/Amsterdam'")
    if timezone_id in ("UTC", "GMT"):
        return timezone_id
    try:
        ZoneInfo(timezone_id)
    except (ZoneInfoNotFoundError, ValueError):
        near = sorted(z for z in available_timezones() if z.lower().endswith(timezone_id.lower().split("/")[-1]))
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise CronError(f"timezone_id {timezone_id!r} is not a known time zone id{hint}; use an IANA/Java id "
                        "such as 'UTC' or 'Europe/Amsterdam'") from None
    return timezone_id
