"""``analyze``: one pass over the lines, then the report."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import NotRequired, TypedDict

from cortex_adapters.worker.log_analyzer._formats import FORMATS, Record, parse_line
from cortex_adapters.worker.log_analyzer._levels import ERROR_LEVELS, LEVELS, UNKNOWN
from cortex_adapters.worker.log_analyzer._signature import signature
from cortex_adapters.worker.log_analyzer._timestamps import (
    MINUTE_US,
    datetime_us,
    format_minute,
    format_us,
)

MAX_TOP = 1000
MAX_SIGNATURES = 10_000
"""Distinct error signatures tracked; an error line with a new signature past this is counted
in ``error_signatures.untracked_lines``."""
MAX_REPORTED_MINUTES = 10_080
"""``per_minute`` lists at most the last week of active minutes."""
ANOMALY_WINDOW_MINUTES = 10_080
"""Anomalies are sought minute by minute in the last week of the log at most."""
MIN_ANOMALY_MINUTES = 5
BURST_SIGMAS = 3.0
VOLUME_BURST_FLOOR = 10
ERROR_BURST_FLOOR = 5
SILENCE_MIN_MINUTES = 3
SILENCE_MIN_RATE = 5.0
MAX_ANOMALIES = 100
MAX_EXAMPLE_CHARS = 500
MAX_MALFORMED_EXAMPLES = 5
MALFORMED_EXAMPLE_CHARS = 200
_CANCEL_CHECK_EVERY = 4096


class AnalysisCancelled(Exception):
    """``should_stop`` said so: the analysis was abandoned part-way."""


class LineCounts(TypedDict):
    total: int
    parsed: int
    malformed: int
    blank: int
    untimed: int


class ErrorSignature(TypedDict):
    signature: str
    count: int
    first_timestamp: str | None
    last_timestamp: str | None
    example: str


class SignatureCounts(TypedDict):
    distinct: int
    untracked_lines: int


class Anomaly(TypedDict):
    kind: str
    minute: str
    count: int
    baseline: float
    stdev: NotRequired[float]
    threshold: NotRequired[float]
    minutes: NotRequired[int]


class AnomalyWindow(TypedDict):
    first_minute: str | None
    last_minute: str | None
    minutes: int


class MalformedExample(TypedDict):
    line: int
    reason: str
    text: str


class Truncated(TypedDict):
    per_minute: bool
    anomalies: bool


class Report(TypedDict):
    format: str | None
    formats: dict[str, int]
    lines: LineCounts
    levels: dict[str, int]
    top_error_signatures: list[ErrorSignature]
    error_signatures: SignatureCounts
    first_timestamp: str | None
    last_timestamp: str | None
    per_minute: dict[str, int]
    per_minute_errors: dict[str, int]
    anomalies: list[Anomaly]
    anomaly_window: AnomalyWindow
    malformed_reasons: dict[str, int]
    malformed_examples: list[MalformedExample]
    truncated: Truncated


class _Group:
    __slots__ = ("count", "example", "first_us", "last_us")

    def __init__(self, example: str) -> None:
        self.count = 0
        self.example = example
        self.first_us: int | None = None
        self.last_us: int | None = None


def _clean(text: str, limit: int) -> str:
    """At most ``limit`` characters that encode as UTF-8 (lone surrogates become ``?``)."""
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


def analyze(
    lines: Iterable[str],
    *,
    top: int = 10,
    now: datetime | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Report:
    """Analyse a log, one line per item (surrounding whitespace, such as a trailing newline,
    is ignored).

    ``top`` is the number of error signatures reported (0..1000). ``now`` (naive means UTC)
    dates RFC 3164 timestamps, which have no year: they are put in ``now``'s year, or the year
    before if that would be more than a day after ``now``. Without ``now`` such lines count
    as parsed but untimed. Nothing here reads the clock, so a report depends on its inputs only.

    ``should_stop`` is asked every 4,096 lines whether to give up, which raises
    ``AnalysisCancelled``: a handler that runs ``analyze`` in a thread stops it when cancelled.
    """
    if not 0 <= top <= MAX_TOP:
        raise ValueError(f"top must be between 0 and {MAX_TOP}, got {top}")
    now_us = None if now is None else datetime_us(now)
    total = blank = untimed = 0
    formats = dict.fromkeys(FORMATS, 0)
    levels = dict.fromkeys((*LEVELS, UNKNOWN), 0)
    malformed_reasons: dict[str, int] = {}
    malformed_examples: list[MalformedExample] = []
    per_minute: dict[int, int] = {}
    per_minute_errors: dict[int, int] = {}
    first_us: int | None = None
    last_us: int | None = None
    groups: dict[str, _Group] = {}
    untracked = 0

    for total, raw in enumerate(lines, start=1):  # total is the line count afterwards
        if should_stop is not None and total % _CANCEL_CHECK_EVERY == 0 and should_stop():
            raise AnalysisCancelled(f"stopped after {total - 1} lines")
        text = raw.strip()
        if not text:
            blank += 1
            continue
        found = parse_line(text, now_us)
        if not isinstance(found, Record):
            malformed_reasons[found] = malformed_reasons.get(found, 0) + 1
            if len(malformed_examples) < MAX_MALFORMED_EXAMPLES:
                malformed_examples.append(
                    {"line": total, "reason": found, "text": _clean(text, MALFORMED_EXAMPLE_CHARS)}
                )
            continue
        fmt, level, ts_us, message = found
        formats[fmt] += 1
        levels[level or UNKNOWN] += 1
        is_error = level in ERROR_LEVELS
        if ts_us is None:
            untimed += 1
        else:
            if first_us is None or ts_us < first_us:
                first_us = ts_us
            if last_us is None or ts_us > last_us:
                last_us = ts_us
            minute = ts_us // MINUTE_US
            per_minute[minute] = per_minute.get(minute, 0) + 1
            if is_error:
                per_minute_errors[minute] = per_minute_errors.get(minute, 0) + 1
        if is_error:
            key = signature(message)
            group = groups.get(key)
            if group is None:
                if len(groups) >= MAX_SIGNATURES:
                    untracked += 1
                    continue
                group = groups[key] = _Group(message)
            group.count += 1
            if ts_us is not None:
                if group.first_us is None or ts_us < group.first_us:
                    group.first_us = ts_us
                if group.last_us is None or ts_us > group.last_us:
                    group.last_us = ts_us

    malformed = sum(malformed_reasons.values())
    parsed = total - blank - malformed
    present = {name: count for name, count in formats.items() if count}
    dominant = max(present, key=present.__getitem__) if present else None  # first on a tie
    ranked = sorted(groups.items(), key=lambda item: (-item[1].count, item[0]))[:top]
    anomalies, window = _anomalies(per_minute, per_minute_errors)
    active = sorted(per_minute)
    shown = active[-MAX_REPORTED_MINUTES:]
    shown_errors = [m for m in sorted(per_minute_errors) if not shown or m >= shown[0]]
    return {
        "format": dominant,
        "formats": dict(sorted(present.items(), key=lambda item: (-item[1], item[0]))),
        "lines": {
            "total": total,
            "parsed": parsed,
            "malformed": malformed,
            "blank": blank,
            "untimed": untimed,
        },
        "levels": levels,
        "top_error_signatures": [
            {
                "signature": _clean(key, len(key)),
                "count": group.count,
                "first_timestamp": _format(group.first_us),
                "last_timestamp": _format(group.last_us),
                "example": _clean(group.example, MAX_EXAMPLE_CHARS),
            }
            for key, group in ranked
        ],
        "error_signatures": {"distinct": len(groups), "untracked_lines": untracked},
        "first_timestamp": _format(first_us),
        "last_timestamp": _format(last_us),
        "per_minute": {format_minute(m): per_minute[m] for m in shown},
        "per_minute_errors": {format_minute(m): per_minute_errors[m] for m in shown_errors},
        "anomalies": anomalies[:MAX_ANOMALIES],
        "anomaly_window": window,
        "malformed_reasons": dict(sorted(malformed_reasons.items())),
        "malformed_examples": malformed_examples,
        "truncated": {
            "per_minute": len(shown) < len(active),
            "anomalies": len(anomalies) > MAX_ANOMALIES,
        },
    }


def _format(us: int | None) -> str | None:
    return None if us is None else format_us(us)


def _bursts(kind: str, counts: list[int], start: int, floor: int) -> list[tuple[int, Anomaly]]:
    """Minutes whose count exceeds mean + 3 sigma of the window's other minutes, with sigma
    at least sqrt(mean) (Poisson noise), and reaches ``floor``. Sums of integers keep the
    leave-one-out statistics exact."""
    n = len(counts) - 1
    total = sum(counts)
    squares = sum(c * c for c in counts)
    found: list[tuple[int, Anomaly]] = []
    for offset, count in enumerate(counts):
        if count < floor:
            continue
        rest, rest_squares = total - count, squares - count * count
        mean = rest / n
        stdev = math.sqrt(max(n * rest_squares - rest * rest, 0)) / n
        threshold = mean + BURST_SIGMAS * max(stdev, math.sqrt(mean))
        if count > threshold:
            anomaly: Anomaly = {
                "kind": kind,
                "minute": format_minute(start + offset),
                "count": count,
                "baseline": round(mean, 3),
                "stdev": round(stdev, 3),
                "threshold": round(threshold, 3),
            }
            found.append((start + offset, anomaly))
    return found


def _silences(counts: list[int], start: int) -> list[tuple[int, Anomaly]]:
    """Runs of at least 3 empty minutes in a window whose other minutes average 5+ lines."""
    found: list[tuple[int, Anomaly]] = []
    total = sum(counts)
    offset = 0
    while offset < len(counts):
        if counts[offset]:
            offset += 1
            continue
        end = offset
        while end < len(counts) and not counts[end]:
            end += 1
        length, others = end - offset, len(counts) - (end - offset)
        if length >= SILENCE_MIN_MINUTES and others and total / others >= SILENCE_MIN_RATE:
            anomaly: Anomaly = {
                "kind": "silence",
                "minute": format_minute(start + offset),
                "count": 0,
                "baseline": round(total / others, 3),
                "minutes": length,
            }
            found.append((start + offset, anomaly))
        offset = end
    return found


def _anomalies(
    per_minute: dict[int, int], per_minute_errors: dict[int, int]
) -> tuple[list[Anomaly], AnomalyWindow]:
    if not per_minute:
        return [], {"first_minute": None, "last_minute": None, "minutes": 0}
    last = max(per_minute)
    cut = last - ANOMALY_WINDOW_MINUTES + 1  # the window starts at an active minute
    start = min(m for m in per_minute if m >= cut)
    span = range(start, last + 1)
    window: AnomalyWindow = {
        "first_minute": format_minute(start),
        "last_minute": format_minute(last),
        "minutes": len(span),
    }
    if len(span) < MIN_ANOMALY_MINUTES:
        return [], window
    volume = [per_minute.get(m, 0) for m in span]
    errors = [per_minute_errors.get(m, 0) for m in span]
    found = [
        *_bursts("volume_burst", volume, start, VOLUME_BURST_FLOOR),
        *_bursts("error_burst", errors, start, ERROR_BURST_FLOOR),
        *_silences(volume, start),
    ]
    found.sort(key=lambda item: (item[0], item[1]["kind"]))
    return [anomaly for _, anomaly in found], window
