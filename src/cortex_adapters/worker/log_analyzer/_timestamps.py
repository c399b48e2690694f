"""Timestamps as integer microseconds since the Unix epoch (UTC), and back to ISO 8601.

Integers keep every timestamp exact (a float of epoch seconds cannot hold microseconds
exactly) and make the minute of a line one integer division.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
DAY_US = 86_400 * SECOND_US
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = (date.min.toordinal() - _EPOCH_ORDINAL) * DAY_US
MAX_US = (date.max.toordinal() - _EPOCH_ORDINAL + 1) * DAY_US - 1

MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}

_ISO_BODY = (
    r"([0-9]{4})[-/]([0-9]{2})[-/]([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]{1,9}))?"
    r"(?: ?(Z|UTC|[+-][0-9]{2}(?::?[0-9]{2})?)(?![A-Za-z0-9_:]))?"
)
ISO_PREFIX = re.compile(_ISO_BODY, re.ASCII)
"""An ISO 8601 date-time at the start of a line: ``2026-11-21T14:00:01.123Z``,
``2026-11-21 14:00:01,123``, ``2026/11/21 14:00:01 +0100``; no zone means UTC."""
_ISO_FULL = re.compile(_ISO_BODY, re.ASCII)
_EPOCH_TEXT = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,9})?", re.ASCII)


def epoch_us(
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int,
    second: int,
    micro: int = 0,
    offset_s: int = 0,
) -> int:
    """Microseconds since the epoch; raises ValueError for a date or time that does not exist.

    A leap second (``:60``) is read as ``:59``.
    """
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second <= 60):
        raise ValueError("time of day out of range")
    days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
    seconds = days * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offset_s
    return seconds * SECOND_US + micro


def _fraction_us(digits: str | None) -> int:
    return int((digits + "00000")[:6]) if digits else 0


def _offset_s(zone: str | None) -> int:
    if zone is None or zone in ("Z", "UTC"):
        return 0
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad UTC offset {zone!r}")
    offset = hours * 3600 + minutes * 60
    return -offset if zone[0] == "-" else offset


def iso_match_us(m: re.Match[str]) -> int:
    """The instant an ``ISO_PREFIX`` match names; raises ValueError if it does not exist."""
    return epoch_us(
        int(m[1]),
        int(m[2]),
        int(m[3]),
        int(m[4]),
        int(m[5]),
        int(m[6]),
        _fraction_us(m[7]),
        _offset_s(m[8]),
    )


def epoch_number_us(value: float) -> int:
    """An epoch number whose unit is read from its magnitude: below 1e11 seconds (until the
    year 5138), below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds."""
    magnitude = abs(value)
    if isinstance(value, int):
        if magnitude < 10**11:
            us = value * SECOND_US
        elif magnitude < 10**14:
            us = value * 1000
        elif magnitude < 10**17:
            us = value
        else:
            us = value // 1000
    else:
        if not math.isfinite(value):
            raise ValueError("epoch time is not a finite number")
        if magnitude < 1e11:
            us = round(value * 1e6)
        elif magnitude < 1e14:
            us = round(value * 1e3)
        elif magnitude < 1e17:
            us = round(value)
        else:
            us = round(value / 1e3)
    if not MIN_US <= us <= MAX_US:
        raise ValueError("epoch time out of range")
    return us


def value_us(value: object) -> int | None:
    """A timestamp field of a structured line: an ISO 8601 string, an epoch number (or its
    text), or ``{"seconds", "nanos"}``. None for a null field; ValueError if unreadable."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, int | float):
        return epoch_number_us(value)
    if isinstance(value, str):
        text = value.strip()
        m = _ISO_FULL.fullmatch(text)
        if m is not None:
            return iso_match_us(m)
        if _EPOCH_TEXT.fullmatch(text):
            return epoch_number_us(float(text) if "." in text else int(text))
        raise ValueError(f"unreadable timestamp {value[:40]!r}")
    if isinstance(value, dict) and isinstance(value.get("seconds"), int | str):
        seconds, nanos = int(value["seconds"]), int(value.get("nanos") or 0)
        us = seconds * SECOND_US + nanos // 1000
        if not MIN_US <= us <= MAX_US:
            raise ValueError("epoch time out of range")
        return us
    raise ValueError(f"a {type(value).__name__} is not a timestamp")


def yearless_us(
    month: int, day: int, hour: int, minute: int, second: int, micro: int, now_us: int | None
) -> int | None:
    """A timestamp without a year (RFC 3164), placed in ``now``'s year, or the year before when
    that would put it more than a day after ``now``. None when there is no ``now``."""
    if now_us is None:
        return None
    year = to_datetime(now_us).year
    try:
        us = epoch_us(year, month, day, hour, minute, second, micro)
    except ValueError:  # 29 February in a year without one: try the previous year
        us = now_us + DAY_US + 1
    if us > now_us + DAY_US:
        us = epoch_us(year - 1, month, day, hour, minute, second, micro)
    return us


def datetime_us(moment: datetime) -> int:
    """A datetime (naive means UTC) as microseconds since the epoch."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def to_datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def format_us(us: int) -> str:
    """ISO 8601 in UTC with a ``Z``: seconds, milliseconds or microseconds, as needed."""
    spec = (
        "seconds" if us % SECOND_US == 0 else "milliseconds" if us % 1000 == 0 else "microseconds"
    )
    return to_datetime(us).replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def format_minute(minute: int) -> str:
    """The minute ``minute`` (minutes since the epoch) as ``2026-11-21T14:00:00Z``."""
    return format_us(minute * MINUTE_US)
