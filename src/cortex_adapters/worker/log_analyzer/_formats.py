"""Line formats: each parser reads one line into a ``Record``, or says why it cannot.

The first non-blank character picks the candidates, so a line costs one or two regex matches:

* ``{`` JSON; ``<`` syslog (RFC 5424, or RFC 3164 with its ``<PRI>``); ``[`` a bracketed
  timestamp (``[2026-11-21 14:00:01] production.ERROR: …``) or an Apache error log line;
* a digit: an ISO 8601 timestamp followed by a Python-logging line (``- name - LEVEL - msg``)
  or by an optional level (``ERROR``, ``[error]``, ``ERROR:``), else an access log line;
* anything else: RFC 3164 without ``<PRI>`` (``Nov 21 14:00:01 host app[1]: msg``), logfmt,
  an access log line whose client is a host name.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from cortex_adapters.worker.log_analyzer._levels import (
    SYSLOG_SEVERITY,
    level_from_status,
    level_from_value,
    level_from_word,
)
from cortex_adapters.worker.log_analyzer._timestamps import (
    ISO_PREFIX,
    MONTHS,
    epoch_us,
    iso_match_us,
    value_us,
    yearless_us,
)

JSON = "json"
LOGFMT = "logfmt"
SYSLOG_RFC3164 = "syslog_rfc3164"
SYSLOG_RFC5424 = "syslog_rfc5424"
APP_ISO = "app_iso"
PYTHON_LOGGING = "python_logging"
APP_BRACKET = "app_bracket"
APACHE_ERROR = "apache_error"
ACCESS_LOG = "access_log"
FORMATS = (
    JSON,
    LOGFMT,
    SYSLOG_RFC3164,
    SYSLOG_RFC5424,
    APP_ISO,
    PYTHON_LOGGING,
    APP_BRACKET,
    APACHE_ERROR,
    ACCESS_LOG,
)
"""Every format name, in the order that breaks a tie for the dominant format."""

# Why a line is malformed.
UNRECOGNISED = "unrecognised"
BAD_JSON = "bad_json"
BAD_TIMESTAMP = "bad_timestamp"
BAD_PRIORITY = "bad_priority"


class Record(NamedTuple):
    format: str
    level: str | None
    ts_us: int | None
    message: str


LEVEL_KEYS = ("level", "lvl", "severity", "loglevel", "log_level", "levelname", "log.level")
MESSAGE_KEYS = ("msg", "message", "@message", "event", "error", "err")
TIME_KEYS = ("ts", "time", "timestamp", "@timestamp")


def _structured(fmt: str, fields: dict[str, object]) -> Record | str:
    level = None
    for key in LEVEL_KEYS:
        value = fields.get(key)
        if value is not None:
            level = level_from_value(value)
            break
    else:
        nested = fields.get("log")  # ECS: {"log": {"level": "error"}}
        if isinstance(nested, dict):
            level = level_from_value(nested.get("level"))
    ts_us = None
    for key in TIME_KEYS:
        if key in fields:
            try:
                ts_us = value_us(fields[key])
            except (ValueError, OverflowError):
                return BAD_TIMESTAMP
            break
    message = ""
    for key in MESSAGE_KEYS:
        value = fields.get(key)
        if isinstance(value, str):
            message = value
            break
        if isinstance(value, int | float):
            message = str(value)
            break
    return Record(fmt, level, ts_us, message)


def _json(line: str) -> Record | str:
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError):
        return BAD_JSON
    if not isinstance(doc, dict):
        return BAD_JSON
    return _structured(JSON, doc)


_LOGFMT_KEY = r"[A-Za-z_@][\w.@/-]*"
_LOGFMT_VALUE = r'"(?:[^"\\]|\\.)*"|[^\s"]*'
_LOGFMT_LINE = re.compile(
    rf"{_LOGFMT_KEY}=(?:{_LOGFMT_VALUE})(?:\s+{_LOGFMT_KEY}=(?:{_LOGFMT_VALUE}))+", re.ASCII
)
_LOGFMT_PAIR = re.compile(rf"({_LOGFMT_KEY})=({_LOGFMT_VALUE})", re.ASCII)
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _unescape(m: re.Match[str]) -> str:
    return _ESCAPES.get(m[1], m[1])


def _logfmt(line: str) -> Record | str | None:
    """``key=value key="quoted value" …``: two pairs at least, and nothing else on the line."""
    if _LOGFMT_LINE.fullmatch(line) is None:
        return None
    fields: dict[str, object] = {}
    for key, raw in _LOGFMT_PAIR.findall(line):
        if raw.startswith('"'):
            raw = raw[1:-1]
            if "\\" in raw:
                raw = _ESCAPE.sub(_unescape, raw)
        fields.setdefault(key, raw)
    return _structured(LOGFMT, fields)


_PRI = re.compile(r"<([0-9]{1,3})>", re.ASCII)
_RFC5424 = re.compile(
    r"([1-9][0-9]{0,2}) (\S+) \S+ \S+ \S+ \S+ "
    r'(-|(?:\[(?:[^\]"\\]|\\.|"(?:[^"\\]|\\.)*")*\])+)(?: (.*))?',
    re.ASCII | re.DOTALL,
)
_RFC3164 = re.compile(
    r"([A-Z][a-z]{2}) ( [1-9]|[1-3][0-9]|0[1-9]|[1-9]) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))? (\S+) (.*)",
    re.ASCII | re.DOTALL,
)
_ISO_HOST = re.compile(r" (\S+) (.*)", re.DOTALL)
_TAG = re.compile(r"[^\s\[\]:]+(?:\[[0-9]+\])?: ", re.ASCII)


def _without_tag(rest: str) -> str:
    tag = _TAG.match(rest)
    return rest[tag.end() :] if tag else rest


def _rfc3164(text: str, level: str | None, now_us: int | None) -> Record | str | None:
    m = _RFC3164.fullmatch(text)
    if m is not None:
        month = MONTHS.get(m[1].lower())
        if month is None:
            return None
        micro = int((m[6] + "00000")[:6]) if m[6] else 0
        try:
            ts_us = yearless_us(month, int(m[2]), int(m[3]), int(m[4]), int(m[5]), micro, now_us)
        except ValueError:
            return BAD_TIMESTAMP
        return Record(SYSLOG_RFC3164, level, ts_us, _without_tag(m[8]))
    iso = ISO_PREFIX.match(text)  # rsyslog's high-precision form: ISO timestamp, host, tag
    if iso is not None and (rest := _ISO_HOST.fullmatch(text, iso.end())) is not None:
        try:
            ts_us = iso_match_us(iso)
        except ValueError:
            return BAD_TIMESTAMP
        return Record(SYSLOG_RFC3164, level, ts_us, _without_tag(rest[2]))
    return None


def _syslog(line: str, now_us: int | None) -> Record | str:
    pri = _PRI.match(line)
    if pri is None:
        return UNRECOGNISED
    value = int(pri[1])
    if value > 191:
        return BAD_PRIORITY
    level = SYSLOG_SEVERITY[value % 8]
    m = _RFC5424.fullmatch(line, pri.end())
    if m is not None:
        ts_us = None
        if m[2] != "-":
            iso = ISO_PREFIX.fullmatch(m[2])
            if iso is None:
                return BAD_TIMESTAMP
            try:
                ts_us = iso_match_us(iso)
            except ValueError:
                return BAD_TIMESTAMP
        return Record(SYSLOG_RFC5424, level, ts_us, (m[4] or "").removeprefix("\ufeff"))
    found = _rfc3164(line[pri.end() :], level, now_us)
    return UNRECOGNISED if found is None else found


# "ERROR msg", "[ERROR] msg", "ERROR: msg", "<error> msg", and a level after one bracketed
# token such as a thread name: "[main] ERROR c.f.Bar - msg". A bracketed token right after the
# level is a component: "ERROR [db] msg". Thread and component are not part of the message.
_LEVEL_TOKEN = re.compile(r"[\[<]?([A-Za-z]{3,13}[0-9]?)[\]>]?:?(?:\s+|$)", re.ASCII)
_BRACKETED = re.compile(r"\[[^\]]{0,120}\](?:\s+|$)")


def _split_level(rest: str) -> tuple[str | None, str]:
    """The level that starts ``rest`` (or follows one bracketed token), and the message."""
    m = _LEVEL_TOKEN.match(rest)
    if m is None or (level := level_from_word(m[1])) is None:
        head = _BRACKETED.match(rest)
        if head is None:
            return None, rest
        m = _LEVEL_TOKEN.match(rest, head.end())
        if m is None or (level := level_from_word(m[1])) is None:
            return None, rest
    component = _BRACKETED.match(rest, m.end())
    return level, rest[component.end() if component else m.end() :]


_PYTHON = re.compile(r" - (\S.*?) - ([A-Za-z]+) - (.*)", re.DOTALL)


def _timestamped(line: str) -> Record | str | None:
    """An ISO timestamp first: Python logging, or an application line with an optional level."""
    m = ISO_PREFIX.match(line)
    if m is None:
        return None
    rest = line[m.end() :]
    if rest and not rest[0].isspace():
        return None
    try:
        ts_us = iso_match_us(m)
    except ValueError:
        return BAD_TIMESTAMP
    py = _PYTHON.fullmatch(rest)
    if py is not None and (level := level_from_word(py[2])) is not None:
        return Record(PYTHON_LOGGING, level, ts_us, py[3])
    level, message = _split_level(rest.lstrip())
    return Record(APP_ISO, level, ts_us, message)


_BRACKET_TS = re.compile(r"\[([^\]]{10,40})\]\s+")
_CHANNEL_LEVEL = re.compile(r"(?:[\w-]+\.)+([A-Za-z]+):\s?", re.ASCII)
_APACHE = re.compile(
    r"\[(?:[A-Z][a-z]{2} )?([A-Z][a-z]{2}) +([0-9]{1,2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,6}))? ([0-9]{4})\] \[(?:[^\]:]*:)?([A-Za-z]+[0-9]?)\]\s?(.*)",
    re.ASCII | re.DOTALL,
)
_APACHE_NOISE = re.compile(r"(?:\[(?:pid|client|remote) [^\]]*\]\s*)+")


def _bracketed(line: str) -> Record | str:
    m = _BRACKET_TS.match(line)
    if m is not None and (iso := ISO_PREFIX.fullmatch(m[1])) is not None:
        try:
            ts_us = iso_match_us(iso)
        except ValueError:
            return BAD_TIMESTAMP
        rest = line[m.end() :]
        channel = _CHANNEL_LEVEL.match(rest)  # Monolog: "production.ERROR: msg"
        if channel is not None and (level := level_from_word(channel[1])) is not None:
            return Record(APP_BRACKET, level, ts_us, rest[channel.end() :])
        level, message = _split_level(rest)
        return Record(APP_BRACKET, level, ts_us, message)
    a = _APACHE.fullmatch(line)
    if a is not None and (month := MONTHS.get(a[1].lower())) is not None:
        try:
            ts_us = epoch_us(
                int(a[7]),
                month,
                int(a[2]),
                int(a[3]),
                int(a[4]),
                int(a[5]),
                int((a[6] + "00000")[:6]) if a[6] else 0,
            )
        except ValueError:
            return BAD_TIMESTAMP
        message = a[9]
        noise = _APACHE_NOISE.match(message)
        return Record(
            APACHE_ERROR, level_from_word(a[8]), ts_us, message[noise.end() :] if noise else message
        )
    return UNRECOGNISED


_ACCESS = re.compile(
    r"\S+ \S+ \S+ \[([0-9]{2})/([A-Za-z]{3})/([0-9]{4}):([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,6}))? ([+-][0-9]{4})\] "
    r'"((?:[^"\\]|\\.)*)" ([1-5][0-9]{2}) (?:[0-9]+|-)(?:\s.*)?',
    re.ASCII | re.DOTALL,
)


def _access(line: str) -> Record | str | None:
    """Common / combined log format (nginx, Apache): the request and status are the message."""
    m = _ACCESS.fullmatch(line)
    if m is None:
        return None
    month = MONTHS.get(m[2].lower())
    if month is None:
        return BAD_TIMESTAMP
    zone = m[8]
    offset = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (-1 if zone[0] == "-" else 1)
    try:
        ts_us = epoch_us(
            int(m[3]),
            month,
            int(m[1]),
            int(m[4]),
            int(m[5]),
            int(m[6]),
            int((m[7] + "00000")[:6]) if m[7] else 0,
            offset,
        )
    except ValueError:
        return BAD_TIMESTAMP
    status = int(m[10])
    return Record(ACCESS_LOG, level_from_status(status), ts_us, f"{m[9]} {status}")


def parse_line(line: str, now_us: int | None) -> Record | str:
    """``line`` (stripped, not empty) as a ``Record``, or the reason it is malformed."""
    first = line[0]
    if first == "{":
        return _json(line)
    if first == "<":
        return _syslog(line, now_us)
    if first == "[":
        return _bracketed(line)
    found: Record | str | None
    if "0" <= first <= "9":
        found = _timestamped(line)
        if found is None:
            found = _access(line)
        return UNRECOGNISED if found is None else found
    found = _rfc3164(line, None, now_us)
    if found is None:
        found = _logfmt(line)
    if found is None:
        found = _access(line)
    return UNRECOGNISED if found is None else found
