"""The log analyzer: each format, level and timestamp form; the signature masks; every statistic
of generated logs whose answers are known (tests/loggen.py); the limits; the handler's context
rules; and, by Hypothesis, that no text makes it raise or lose count of a line."""

from __future__ import annotations

import asyncio
import json
import string
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cortex_adapters.worker.log_analyzer as log_analyzer
from cortex_adapters.worker.log_analyzer import (
    FORMATS,
    LEVELS,
    POOL,
    TOPICS,
    AnalysisCancelled,
    InvalidLogJob,
    analyze,
    log_analyzer_handler,
    make_log_analyzer_handler,
    signature,
)
from cortex_adapters.worker.log_analyzer._report import (
    ANOMALY_WINDOW_MINUTES,
    MAX_REPORTED_MINUTES,
    MAX_SIGNATURES,
)
from cortex_adapters.worker.runtime import JobContext
from cortex_core.bus_protocol import is_valid_token, is_valid_topic
from cortex_core.messages import JobRequest
from cortex_core.pointers import context_ptr
from tests import loggen
from tests.fakes import FakeClock
from tests.loggen import NOW, START, generate, minute_key

T0 = 1_795_269_600  # 2026-11-21T14:00:00Z


def one(line: str, now: datetime | None = NOW) -> dict[str, Any]:
    """The report on a one-line log, with the line's format, level and timestamp pulled out."""
    report = analyze([line], now=now)
    assert report["lines"]["total"] == 1
    levels = [name for name, count in report["levels"].items() if count]
    errors = report["top_error_signatures"]
    return {
        "format": report["format"],
        "level": levels[0] if levels else None,
        "ts": report["first_timestamp"],
        "malformed": report["malformed_reasons"],
        "message": errors[0]["example"] if errors else None,
        "report": report,
    }


def test_the_public_api_is_pinned() -> None:
    assert sorted(log_analyzer.__all__) == [
        "AnalysisCancelled",
        "FORMATS",
        "InvalidLogJob",
        "LEVELS",
        "POOL",
        "Report",
        "TOPICS",
        "TOPIC_LOG_ANALYZE",
        "TOP_LABEL",
        "analyze",
        "log_analyzer_handler",
        "make_log_analyzer_handler",
        "read_log",
        "signature",
    ]
    assert POOL == "log"
    assert TOPICS == ("job.log.analyze",)
    assert is_valid_token(POOL)
    assert all(is_valid_topic(t) for t in TOPICS)
    assert LEVELS == ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


# --- formats -------------------------------------------------------------------------------

FORMAT_CASES = [
    # JSON: pino (epoch ms, numeric level), ECS, bunyan-ish, GCP, epoch seconds / µs / ns
    (
        '{"ts": 1795269601123, "level": 50, "msg": "db down", "pid": 1}',
        "json",
        "ERROR",
        "2026-11-21T14:00:01.123Z",
        "db down",
    ),
    (
        '{"@timestamp": "2026-11-21T15:00:01.5+01:00", "log.level": "CRITICAL", "message": "x"}',
        "json",
        "FATAL",
        "2026-11-21T14:00:01.500Z",
        "x",
    ),
    (
        '{"time": 1795269601, "lvl": "warning", "msg": "w"}',
        "json",
        "WARN",
        "2026-11-21T14:00:01Z",
        None,
    ),
    (
        '{"timestamp": 1795269601000001, "severity": "ERR", "message": "u"}',
        "json",
        "ERROR",
        "2026-11-21T14:00:01.000001Z",
        "u",
    ),
    (
        '{"ts": 1795269601123456789, "level": "error", "error": "ns"}',
        "json",
        "ERROR",
        "2026-11-21T14:00:01.123456Z",
        "ns",
    ),
    (
        '{"time": "1795269601.25", "level": "info", "msg": "s"}',
        "json",
        "INFO",
        "2026-11-21T14:00:01.250Z",
        None,
    ),
    (
        '{"timestamp": {"seconds": 1795269601, "nanos": 7000}, "severity": "ALERT", "message": '
        '"g"}',
        "json",
        "FATAL",
        "2026-11-21T14:00:01.000007Z",
        "g",
    ),
    ('{"log": {"level": "error"}, "message": "ecs nested"}', "json", "ERROR", None, "ecs nested"),
    (
        '{"level": 3, "msg": "syslog severity number"}',
        "json",
        "ERROR",
        None,
        "syslog severity number",
    ),
    ('{"hello": "world"}', "json", None, None, None),
    (
        '{"time": "2026-11-21T14:00:01", "level": "TRACE"}',
        "json",
        "TRACE",
        "2026-11-21T14:00:01Z",
        None,
    ),
    # logfmt
    (
        'ts=2026-11-21T14:00:01.123456Z level=error msg="disk \\"sda\\" full" caller=x.go:1',
        "logfmt",
        "ERROR",
        "2026-11-21T14:00:01.123456Z",
        'disk "sda" full',
    ),
    ("time=1795269601 lvl=dbg msg=hi", "logfmt", "DEBUG", "2026-11-21T14:00:01Z", None),
    ("level=warn msg=no-time", "logfmt", "WARN", None, None),
    # syslog
    (
        "<11>1 2026-11-21T16:00:01.000123+02:00 web-1 billing 4242 ID47 - \ufeffdisk full",
        "syslog_rfc5424",
        "ERROR",
        "2026-11-21T14:00:01.000123Z",
        "disk full",
    ),
    (
        '<8>1 - web-1 app - - [ex@32473 a="1" b="\\]"][y@1 c="2"] kernel panic',
        "syslog_rfc5424",
        "FATAL",
        None,
        "kernel panic",
    ),
    (
        "<165>1 2026-11-21T14:00:01Z h a p m -",
        "syslog_rfc5424",
        "INFO",
        "2026-11-21T14:00:01Z",
        None,
    ),
    (
        "<27>Nov 21 14:00:01 web-1 sshd[1234]: fatal: no hostkey",
        "syslog_rfc3164",
        "ERROR",
        "2026-11-21T14:00:01Z",
        "fatal: no hostkey",
    ),
    (
        "<31>Nov  2 03:04:05 host cron: job ran",
        "syslog_rfc3164",
        "DEBUG",
        "2026-11-02T03:04:05Z",
        None,
    ),
    (
        "<30>2026-11-21T14:00:01.5Z host app[1]: rsyslog precise",
        "syslog_rfc3164",
        "INFO",
        "2026-11-21T14:00:01.500Z",
        None,
    ),
    (
        "Nov 21 14:00:01 host kernel: no priority",
        "syslog_rfc3164",
        None,
        "2026-11-21T14:00:01Z",
        None,
    ),
    # application formats
    (
        "2026-11-21T14:00:01.123Z ERROR [db] deadlock detected",
        "app_iso",
        "ERROR",
        "2026-11-21T14:00:01.123Z",
        "deadlock detected",
    ),
    (
        "2026-11-21 14:00:01.123 [main] ERROR com.example.Billing - charge failed",
        "app_iso",
        "ERROR",
        "2026-11-21T14:00:01.123Z",
        "com.example.Billing - charge failed",
    ),
    (
        "2026/11/21 14:00:01 [crit] 1234#0: *5 upstream gone",
        "app_iso",
        "FATAL",
        "2026-11-21T14:00:01Z",
        "1234#0: *5 upstream gone",
    ),
    ("2026-11-21T15:00:01+0100 [WARN] low disk", "app_iso", "WARN", "2026-11-21T14:00:01Z", None),
    ("2026-11-21T14:00:01Z started without a level", "app_iso", None, "2026-11-21T14:00:01Z", None),
    (
        "2026-11-21 14:00:01,123 - cortex.db - CRITICAL - pool exhausted",
        "python_logging",
        "FATAL",
        "2026-11-21T14:00:01.123Z",
        "pool exhausted",
    ),
    (
        "[2026-11-21 14:00:01] production.ERROR: payment failed",
        "app_bracket",
        "ERROR",
        "2026-11-21T14:00:01Z",
        "payment failed",
    ),
    (
        "[2026-11-21T14:00:01Z] warning: cache cold",
        "app_bracket",
        "WARN",
        "2026-11-21T14:00:01Z",
        None,
    ),
    (
        "[Sat Nov 21 14:00:01.123456 2026] [proxy:error] [pid 42:tid 7] [client 1.2.3.4:5] "
        "AH01114: HTTP: failed",
        "apache_error",
        "ERROR",
        "2026-11-21T14:00:01.123456Z",
        "AH01114: HTTP: failed",
    ),
    (
        '203.0.113.9 - - [21/Nov/2026:15:00:01 +0100] "GET /api/x HTTP/1.1" 502 157 "-" "curl/8"',
        "access_log",
        "ERROR",
        "2026-11-21T14:00:01Z",
        "GET /api/x HTTP/1.1 502",
    ),
    (
        'edge.example.com - bob [21/Nov/2026:14:00:01 +0000] "POST /login HTTP/2.0" 401 -',
        "access_log",
        "WARN",
        "2026-11-21T14:00:01Z",
        None,
    ),
]


@pytest.mark.parametrize(("line", "fmt", "level", "ts", "message"), FORMAT_CASES)
def test_each_format_is_detected_with_its_level_timestamp_and_message(
    line: str, fmt: str, level: str | None, ts: str | None, message: str | None
) -> None:
    got = one(line)
    assert got["malformed"] == {}
    assert (got["format"], got["level"], got["ts"]) == (fmt, level or "UNKNOWN", ts)
    if message is not None:
        assert got["message"] == message


def test_every_format_has_a_case() -> None:
    assert {case[1] for case in FORMAT_CASES} == set(FORMATS)


@pytest.mark.parametrize(
    ("spelled", "level"),
    [
        *[(w, "TRACE") for w in ("trace", "TRC", "verbose", "finest", "trace3", 10)],
        *[(w, "DEBUG") for w in ("debug", "DBG", "fine", 7, 20, "20")],
        *[(w, "INFO") for w in ("info", "Information", "notice", "informational", 6, 30)],
        *[(w, "WARN") for w in ("warn", "WARNING", "wrn", 4, 40)],
        *[(w, "ERROR") for w in ("error", "ERR", "severe", 3, 50, "50")],
        *[(w, "FATAL") for w in ("fatal", "CRITICAL", "crit", "panic", "EMERG", "alert", 0, 60)],
        *[(w, "UNKNOWN") for w in ("loud", "", 99, True, None, ["error"])],
    ],
)
def test_level_aliases_normalise(spelled: object, level: str) -> None:
    report = analyze([json.dumps({"level": spelled, "msg": "m"})])
    assert report["levels"][level] == 1


def test_syslog_severity_comes_from_the_priority() -> None:
    lines = [
        f"<{facility * 8 + sev}>Nov 21 14:00:01 h a: m" for sev in range(8) for facility in (0, 23)
    ]
    assert analyze(lines, now=NOW)["levels"] == {
        "TRACE": 0,
        "DEBUG": 2,
        "INFO": 4,
        "WARN": 2,
        "ERROR": 2,
        "FATAL": 6,
        "UNKNOWN": 0,
    }


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2027, 1, 3, 8, 0), "2026-12-31T23:59:59Z"),  # naive now means UTC
        (datetime(2026, 12, 31, tzinfo=UTC), "2026-12-31T23:59:59Z"),  # less than a day ahead
        (datetime(2026, 12, 30, 23, 59, 58, tzinfo=UTC), "2025-12-31T23:59:59Z"),  # more
        (datetime(2026, 11, 22, tzinfo=UTC), "2025-12-31T23:59:59Z"),
    ],
)
def test_rfc3164_dates_take_the_year_of_now_or_the_year_before(
    now: datetime, expected: str
) -> None:
    assert one("<13>Dec 31 23:59:59 host app: m", now=now)["ts"] == expected


def test_rfc3164_feb_29_falls_back_to_the_last_leap_year() -> None:
    assert one("<13>Feb 29 12:00:00 h a: m", now=datetime(2029, 1, 10))["ts"] == (
        "2028-02-29T12:00:00Z"
    )


def test_without_now_rfc3164_lines_are_parsed_but_untimed() -> None:
    report = analyze(["<13>Nov 21 14:00:01 host app: m", "2026-11-21T14:00:02Z INFO x"])
    assert report["lines"] == {"total": 2, "parsed": 2, "malformed": 0, "blank": 0, "untimed": 1}
    assert report["first_timestamp"] == report["last_timestamp"] == "2026-11-21T14:00:02Z"


@pytest.mark.parametrize(
    "line",
    [
        '{"ts": "yesterday", "msg": "x"}',
        '{"ts": true, "msg": "x"}',
        '{"ts": [1], "msg": "x"}',
        '{"time": 1e300, "msg": "x"}',
        '{"time": NaN, "msg": "x"}',
        '{"time": Infinity, "msg": "x"}',
        '{"timestamp": "2026-13-01T00:00:00Z"}',
        '{"ts": "2026-11-21T14:00:01+25:00"}',
        "ts=2026-02-29T00:00:00Z level=info",
        "2026-04-31 10:00:00 ERROR no such day",
        "2026-11-21T24:00:00Z INFO no such hour",
        "[2026-11-21 14:61:00] error: no such minute",
        '1.2.3.4 - - [21/Foo/2026:14:00:01 +0000] "GET / HTTP/1.1" 200 1',
        "<13>1 2026-11-21T99:00:00Z h a p m - x",
    ],
)
def test_an_unreadable_timestamp_makes_the_line_malformed(line: str) -> None:
    report = one(line)["report"]
    assert report["malformed_reasons"] == {"bad_timestamp": 1}
    assert report["lines"]["parsed"] == 0


def test_a_leap_second_is_read_as_the_second_before() -> None:
    assert one("2016-12-31T23:59:60Z INFO leap")["ts"] == "2016-12-31T23:59:59Z"


def test_timestamps_are_reported_at_their_precision_in_utc() -> None:
    report = analyze(
        [
            "2026-11-21T16:00:01.100+02:00 INFO a",
            "2026-11-21T14:00:03 INFO b",
            "2026-11-21T09:00:02.123456789-05:00 INFO c",
        ]
    )
    assert report["first_timestamp"] == "2026-11-21T14:00:01.100Z"
    assert report["last_timestamp"] == "2026-11-21T14:00:03Z"
    assert report["per_minute"] == {"2026-11-21T14:00:00Z": 3}


# --- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "connection to 10.0.0.12:5432 refused after 250ms",
            "connection to <IP> refused after <DUR>",
        ),
        ("request 550e8400-E29B-41d4-a716-446655440000 failed", "request <UUID> failed"),
        ("user ana.p+tag@mail.example.org locked", "user <EMAIL> locked"),
        ("segfault at 0x7ffd5a3c in libc", "segfault at <HEX> in libc"),
        ("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 bad", "commit <HEX> bad"),
        ("key 'tenant-42' not found, path \"/a b\"", "key <STR> not found, path <STR>"),
        ("can't open `cfg`: it's 'missing'", "can't open <STR>: it's <STR>"),
        ("peer fe80::1ff:fe23:4567:890a and ::1 left", "peer <IP> and <IP> left"),
        ("std::vector::at out of range", "std::vector::at out of range"),
        ("retry in 1h2m3s, 1.5s, 20µs or 3 sec", "retry in <DUR>, <DUR>, <DUR> or <NUM> sec"),
        ("expired at 2026-11-21T14:00:01.123Z", "expired at <TS>"),
        ("worker-7 v1.2.3 rejected 12345678 jobs", "worker-<NUM> v<NUM> rejected <NUM> jobs"),
        ("deadbeef and decade are words", "deadbeef and decade are words"),
        ("  lots \t of   space  ", "lots of space"),
        ("", "<EMPTY>"),
    ],
)
def test_signature_masks_variable_parts(message: str, expected: str) -> None:
    assert signature(message) == expected


def test_signature_is_bounded() -> None:
    assert signature("word " * 10_000) == ("word " * 60).rstrip()  # 300 characters, trimmed
    assert signature("1" * 5000) == "<NUM>"


# --- generated logs: every statistic exactly -----------------------------------------------


def _times(values: list[str | None]) -> list[datetime]:
    return [datetime.fromisoformat(v) for v in values if v is not None]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_generated_log_is_measured_exactly(seed: int) -> None:
    log = generate(
        seed, minutes=60, burst_minute=37, burst_lines=120, malformed_per_reason=3, blank_lines=5
    )
    report = analyze(log.lines, now=NOW)

    assert report["lines"] == {
        "total": len(log.lines),
        "parsed": log.parsed,
        "malformed": sum(log.malformed.values()),
        "blank": log.blank,
        "untimed": 0,
    }
    assert report["formats"] == dict(log.formats)
    assert report["format"] == "json" == log.formats.most_common(1)[0][0]
    assert report["levels"] == {**dict.fromkeys(LEVELS, 0), **log.levels, "UNKNOWN": 0}
    assert report["malformed_reasons"] == dict(log.malformed)
    assert report["first_timestamp"] is not None
    assert _times([report["first_timestamp"], report["last_timestamp"]]) == [
        min(log.times),
        max(log.times),
    ]
    assert report["per_minute"] == dict(sorted(log.per_minute.items()))
    assert report["per_minute_errors"] == dict(sorted(log.per_minute_errors.items()))

    signatures = {s["signature"]: s for s in report["top_error_signatures"]}
    assert {k: s["count"] for k, s in signatures.items()} == dict(log.signatures)
    assert report["top_error_signatures"][0]["signature"] == loggen.BURST_KIND.signature
    counts = [s["count"] for s in report["top_error_signatures"]]
    assert counts == sorted(counts, reverse=True)
    for key, times in log.signature_times.items():
        got = signatures[key]
        assert _times([got["first_timestamp"], got["last_timestamp"]]) == [min(times), max(times)]
        assert signature(got["example"]) == key
    assert report["error_signatures"] == {"distinct": len(log.signatures), "untracked_lines": 0}

    burst = minute_key(START + timedelta(minutes=37))
    assert [(a["kind"], a["minute"]) for a in report["anomalies"]] == [
        ("error_burst", burst),
        ("volume_burst", burst),
    ]
    volume = report["anomalies"][1]
    assert volume["count"] == log.per_minute[burst]
    assert volume["baseline"] == pytest.approx(
        (sum(log.per_minute.values()) - log.per_minute[burst]) / 59, abs=1e-3
    )
    assert volume["count"] > volume["threshold"] > volume["baseline"]
    assert report["anomaly_window"] == {
        "first_minute": minute_key(START),
        "last_minute": minute_key(START + timedelta(minutes=59)),
        "minutes": 60,
    }
    expected_examples = [
        {"line": number, "reason": next(iter(reasons)), "text": line.strip()}
        for number, line in enumerate(log.lines, start=1)
        if line.strip() and (reasons := one(line)["malformed"])
    ]
    assert report["malformed_examples"] == expected_examples[:5]
    assert report["truncated"] == {"per_minute": False, "anomalies": False}


async def test_a_generated_log_reads_the_same_from_the_handler() -> None:
    log = generate(4, minutes=20, malformed_per_reason=2, blank_lines=3)
    out = await make_log_analyzer_handler(FakeClock(NOW.timestamp()))(job(log.text()))
    assert json.loads(out) == json.loads(json.dumps(analyze(log.lines, now=NOW)))


def test_a_flat_log_has_no_anomaly() -> None:
    log = generate(5, minutes=240, per_minute=(30, 50), errors_per_minute=(0, 4))
    report = analyze(log.lines, now=NOW)
    assert report["anomalies"] == []
    assert report["anomaly_window"]["minutes"] == 240


def test_an_error_burst_without_a_volume_burst() -> None:
    lines = [
        f"2026-11-21T14:{m:02d}:{s:02d}Z {'ERROR' if m == 10 and s < 8 else 'INFO'} event {s}"
        for m in range(30)
        for s in range(20)
    ]
    report = analyze(lines)
    assert [(a["kind"], a["minute"], a["count"]) for a in report["anomalies"]] == [
        ("error_burst", "2026-11-21T14:10:00Z", 8)
    ]
    assert report["anomalies"][0]["baseline"] == 0


def test_a_small_spike_below_the_floor_is_not_a_burst() -> None:
    lines = [f"2026-11-21T14:{m:02d}:00Z INFO tick" for m in range(30)]
    lines += ["2026-11-21T14:10:30Z INFO extra"] * 8 + ["2026-11-21T14:11:30Z ERROR e"] * 4
    assert analyze(lines)["anomalies"] == []  # 9 lines < 10, 4 errors < 5


def test_a_silence_is_flagged() -> None:
    lines = [
        f"2026-11-21T14:{m:02d}:{s:02d}Z INFO tick"
        for m in range(40)
        if not 20 <= m < 24
        for s in range(0, 60, 6)
    ]
    report = analyze(lines)
    assert report["anomalies"] == [
        {
            "kind": "silence",
            "minute": "2026-11-21T14:20:00Z",
            "count": 0,
            "baseline": 10.0,
            "minutes": 4,
        }
    ]


def test_a_quiet_log_with_gaps_has_no_silence() -> None:
    lines = [f"2026-11-21T14:{m:02d}:00Z INFO rare" for m in range(0, 60, 7)]
    assert analyze(lines)["anomalies"] == []


def test_too_short_a_timeline_has_no_anomaly() -> None:
    lines = ["2026-11-21T14:00:00Z INFO a"] * 5 + ["2026-11-21T14:03:00Z ERROR b"] * 500
    report = analyze(lines)
    assert report["anomalies"] == []
    assert report["anomaly_window"]["minutes"] == 4


# --- mixed input, limits, edge cases -------------------------------------------------------


def test_mixed_input_picks_the_dominant_format() -> None:
    lines = [
        loggen.render(name, START + timedelta(seconds=i), "INFO", f"m{i}", seed=i)
        for i, name in enumerate(
            ["logfmt"] * 3 + ["json"] * 2 + ["app_iso"] * 4 + ["python_logging"]
        )
    ]
    report = analyze(lines, now=NOW)
    assert report["format"] == "app_iso"
    assert report["formats"] == {"app_iso": 4, "logfmt": 3, "json": 2, "python_logging": 1}


def test_a_tie_goes_to_the_first_format_in_formats_order() -> None:
    report = analyze(["level=info msg=a", '{"msg": "b"}'])
    assert report["format"] == "json"


def test_an_empty_or_unreadable_log() -> None:
    empty = analyze([])
    assert empty["format"] is None
    assert empty["lines"] == {"total": 0, "parsed": 0, "malformed": 0, "blank": 0, "untimed": 0}
    assert empty["first_timestamp"] is None
    assert empty["anomaly_window"] == {"first_minute": None, "last_minute": None, "minutes": 0}
    junk = analyze(["\x00\x01\x02", "", "  ", "{", "<500>x", "just words"])
    assert junk["format"] is None
    assert junk["lines"] == {"total": 6, "parsed": 0, "malformed": 4, "blank": 2, "untimed": 0}
    assert junk["malformed_reasons"] == {"bad_json": 1, "bad_priority": 1, "unrecognised": 2}
    assert junk["malformed_examples"][0] == {
        "line": 1,
        "reason": "unrecognised",
        "text": "\x00\x01\x02",
    }


def test_lines_keep_their_newlines_optional() -> None:
    assert analyze(["2026-11-21T14:00:00Z ERROR a\r\n", "\n"])["lines"]["blank"] == 1


@pytest.mark.parametrize("top", [0, 1, 3])
def test_top_limits_the_signatures(top: int) -> None:
    lines = [f"2026-11-21T14:00:00Z ERROR failure {w}" for w in "abcde" for _ in range(3)]
    report = analyze(lines, top=top)
    assert len(report["top_error_signatures"]) == top
    assert report["error_signatures"]["distinct"] == 5
    assert [s["signature"] for s in report["top_error_signatures"]] == [
        f"failure {w}" for w in "abc"
    ][:top]


@pytest.mark.parametrize("top", [-1, 1001])
def test_top_out_of_range_is_refused(top: int) -> None:
    with pytest.raises(ValueError, match="top must be between 0 and 1000"):
        analyze([], top=top)


def _word(n: int) -> str:
    letters = string.ascii_lowercase[6:]  # g..z: never read as hex
    word = ""
    while True:
        n, digit = divmod(n, len(letters))
        word += letters[digit]
        if not n:
            return word


def test_the_signature_table_is_capped_and_the_rest_counted() -> None:
    lines = [
        f"2026-11-21T14:00:00Z ERROR failure in stage {_word(i)}" for i in range(MAX_SIGNATURES + 5)
    ]
    lines.append(lines[0])
    report = analyze(lines, top=1)
    assert report["error_signatures"] == {"distinct": MAX_SIGNATURES, "untracked_lines": 5}
    assert report["levels"]["ERROR"] == MAX_SIGNATURES + 6
    assert report["top_error_signatures"][0]["count"] == 2


def test_a_long_timeline_is_cut_to_its_last_week() -> None:
    minutes = MAX_REPORTED_MINUTES + 20
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [
        f"{(start + timedelta(minutes=m)).isoformat().replace('+00:00', 'Z')} INFO tick"
        for m in range(minutes)
    ]
    report = analyze(lines)
    assert len(report["per_minute"]) == MAX_REPORTED_MINUTES
    assert next(iter(report["per_minute"])) == minute_key(start + timedelta(minutes=20))
    assert report["truncated"]["per_minute"] is True
    assert report["anomaly_window"]["minutes"] == ANOMALY_WINDOW_MINUTES
    assert report["first_timestamp"] == "2026-01-01T00:00:00Z"
    assert report["anomalies"] == []


def test_a_stray_old_line_does_not_open_a_long_silence() -> None:
    lines = ["2026-01-01T00:00:00Z INFO stray"] + [
        f"2026-11-21T14:{m:02d}:{s:02d}Z INFO tick" for m in range(30) for s in range(0, 60, 5)
    ]
    report = analyze(lines)
    assert report["anomalies"] == []
    assert report["anomaly_window"]["first_minute"] == "2026-11-21T14:00:00Z"


def test_text_that_is_not_utf8_safe_is_reported_safely() -> None:
    report = analyze(["2026-11-21T14:00:00Z ERROR bad \udc80 byte", "\udcff garbage"])
    assert report["top_error_signatures"][0]["example"] == "bad ? byte"
    assert report["malformed_examples"][0]["text"] == "? garbage"
    json.dumps(report, ensure_ascii=False).encode()


def test_should_stop_abandons_the_analysis_between_batches() -> None:
    consumed = 0

    def lines() -> Any:
        nonlocal consumed
        while True:
            consumed += 1
            yield "level=info msg=x"

    asked = Counter[str]()

    def stop() -> bool:
        asked["n"] += 1
        return asked["n"] == 2

    with pytest.raises(AnalysisCancelled, match="after 8191 lines"):
        analyze(lines(), should_stop=stop)
    assert consumed == 8192


# --- the handler ---------------------------------------------------------------------------


def job(prompt: str | None = None, *, context: Any = None, **labels: str) -> JobContext:
    if context is None:
        context = {
            "prompt": prompt,
            "topic": TOPICS[0],
            "adapter_id": "",
            "priority": "interactive",
            "labels": labels,
        }
    raw = context if isinstance(context, bytes) else json.dumps(context).encode()
    request = JobRequest(job_id="j1", topic=TOPICS[0], context_ptr=context_ptr("j1"), labels=labels)
    return JobContext(request, raw, trace_id="ab" * 16, worker_id="log-1")


LOG = (
    "2026-11-21T14:00:01Z INFO [api] started\r\n"
    "2026-11-21T14:00:02Z ERROR [db] connection to 10.0.0.1:5432 refused\n"
    "\n"
    "{not json\n"
    "2026-11-21T14:00:03Z ERROR [db] connection to 10.0.0.2:5432 refused\n"
)


async def test_the_handler_analyses_the_prompt() -> None:
    report = json.loads(await log_analyzer_handler(job(LOG)))
    assert report["lines"] == {"total": 5, "parsed": 3, "malformed": 1, "blank": 1, "untimed": 0}
    assert report["top_error_signatures"] == [
        {
            "signature": "connection to <IP> refused",
            "count": 2,
            "first_timestamp": "2026-11-21T14:00:02Z",
            "last_timestamp": "2026-11-21T14:00:03Z",
            "example": "connection to 10.0.0.1:5432 refused",
        }
    ]


async def test_the_handler_analyses_a_lines_list() -> None:
    lines = LOG.splitlines()
    out = await log_analyzer_handler(job(context={"lines": lines, "prompt": ""}))
    assert json.loads(out) == json.loads(json.dumps(analyze(lines)))


async def test_the_handler_reads_the_top_label_and_dates_syslog_with_its_clock() -> None:
    handler = make_log_analyzer_handler(FakeClock(datetime(2027, 1, 2, tzinfo=UTC).timestamp()))
    lines = [f"<11>Dec 31 23:59:{s:02d} h app: failure {w}" for s, w in enumerate("ghijk")]
    report = json.loads(await handler(job("\n".join(lines), **{"log.top": "2"})))
    assert len(report["top_error_signatures"]) == 2
    assert report["first_timestamp"] == "2026-12-31T23:59:00Z"


async def test_an_empty_prompt_is_an_empty_report() -> None:
    report = json.loads(await log_analyzer_handler(job("")))
    assert report["lines"]["total"] == 0


@pytest.mark.parametrize(
    ("context", "labels", "message"),
    [
        (b"not json", {}, "the context is not a JSON document"),
        (b"\xff\xfe\x00garbage", {}, "the context is not a JSON document"),
        (b"[1, 2]", {}, "the context must be a JSON object, not list"),
        ({"topic": "job.log.analyze"}, {}, "the context has no log: send it as 'prompt'"),
        ({"prompt": None, "lines": None}, {}, "the context has no log"),
        ({"prompt": 5}, {}, "'prompt' must be a string, not int"),
        ({"lines": "one\ntwo"}, {}, "'lines' must be a list of strings, not str"),
        ({"lines": ["a", 3]}, {}, "item 1 is int"),
        ({"lines": ["a", None]}, {}, "item 1 is null"),
        ({"prompt": "x", "lines": ["y"]}, {}, "both 'prompt' and 'lines'"),
        ({"prompt": "x"}, {"log.top": "ten"}, "label log.top must be an integer from 0 to 1000"),
        ({"prompt": "x"}, {"log.top": "1001"}, "label log.top"),
    ],
)
async def test_an_invalid_job_raises_a_value_error_naming_the_problem(
    context: Any, labels: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        await log_analyzer_handler(job(context=context, **labels))
    assert isinstance(raised.value, InvalidLogJob)
    assert raised.value.error_code == "log_invalid_job"


def test_cancelling_the_handler_stops_its_thread() -> None:
    """asyncio.run waits for the default executor's threads: it returns quickly only if the
    cancelled analysis stopped (uncancelled, this log takes several seconds)."""
    big = job("level=info msg=hi\n" * 1_000_000)

    async def main() -> None:
        task = asyncio.create_task(log_analyzer_handler(big))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.perf_counter()
    asyncio.run(main())
    assert time.perf_counter() - started < 3.0


# --- properties ----------------------------------------------------------------------------

_REAL_LINES = [case[0] for case in FORMAT_CASES]


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    """A real line of some format, cut, spliced and sprinkled with arbitrary text."""
    line = draw(st.sampled_from(_REAL_LINES))
    cut = draw(st.integers(0, len(line)))
    insert = draw(st.text(max_size=12))
    where = draw(st.integers(0, cut))
    return line[:where] + insert + line[where:cut]


def _check_invariants(lines: list[str], report: Any) -> None:
    counts = report["lines"]
    assert counts["total"] == len(lines)
    assert counts["parsed"] + counts["malformed"] + counts["blank"] == counts["total"]
    assert sum(report["levels"].values()) == counts["parsed"]
    assert sum(report["formats"].values()) == counts["parsed"]
    assert sum(report["malformed_reasons"].values()) == counts["malformed"]
    assert counts["untimed"] <= counts["parsed"]
    assert sum(report["per_minute"].values()) == counts["parsed"] - counts["untimed"]
    json.loads(json.dumps(report, ensure_ascii=False).encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), max_size=20))
def test_arbitrary_text_never_raises_and_every_line_is_counted(lines: list[str]) -> None:
    _check_invariants(lines, analyze(lines, now=NOW))


@settings(max_examples=300, deadline=None)
@given(st.lists(mutated_lines(), max_size=20))
def test_damaged_real_lines_never_raise_and_every_line_is_counted(lines: list[str]) -> None:
    _check_invariants(lines, analyze(lines, now=NOW))


@given(st.text(max_size=200))
def test_a_signature_is_stable_and_bounded(message: str) -> None:
    sig = signature(message)
    assert 0 < len(sig) <= 300
    assert signature(sig) == sig  # masking is idempotent: a signature is its own signature
