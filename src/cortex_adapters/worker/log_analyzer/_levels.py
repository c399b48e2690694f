"""Log levels, normalised to six names."""

from __future__ import annotations

TRACE, DEBUG, INFO, WARN, ERROR, FATAL = "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"
UNKNOWN = "UNKNOWN"
LEVELS = (TRACE, DEBUG, INFO, WARN, ERROR, FATAL)
"""Least to most severe; a report's ``levels`` has these keys and ``UNKNOWN``."""
ERROR_LEVELS = frozenset({ERROR, FATAL})

ALIASES: dict[str, str] = {
    "trace": TRACE,
    "trc": TRACE,
    "verbose": TRACE,
    "finest": TRACE,
    "finer": TRACE,
    "debug": DEBUG,
    "dbg": DEBUG,
    "fine": DEBUG,
    "info": INFO,
    "inf": INFO,
    "information": INFO,
    "informational": INFO,
    "notice": INFO,
    "warn": WARN,
    "warning": WARN,
    "wrn": WARN,
    "error": ERROR,
    "err": ERROR,
    "severe": ERROR,
    "fatal": FATAL,
    "ftl": FATAL,
    "critical": FATAL,
    "crit": FATAL,
    "panic": FATAL,
    "dpanic": FATAL,
    "emerg": FATAL,
    "emergency": FATAL,
    "alert": FATAL,
}
"""Lower-case spellings. Single letters (glog's ``I``/``E``) are left out: in text formats
they would turn ``I started`` into an INFO line."""

SYSLOG_SEVERITY = (FATAL, FATAL, FATAL, ERROR, WARN, INFO, INFO, DEBUG)
"""RFC 5424 severity 0..7: emerg, alert, crit, err, warning, notice, info, debug."""

_PINO = {10: TRACE, 20: DEBUG, 30: INFO, 40: WARN, 50: ERROR, 60: FATAL}


def level_from_word(word: str) -> str | None:
    """A level word (any case), or None. Apache's ``trace1``..``trace8`` are TRACE."""
    lower = word.lower()
    found = ALIASES.get(lower)
    if found is None and lower.startswith("trace") and lower[5:].isdigit():
        return TRACE
    return found


def level_from_value(value: object) -> str | None:
    """A structured line's level field: a word, a pino/bunyan number (10..60) or a syslog
    severity (0..7), as a number or as text. None when it is none of these."""
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) < 4:
            return level_from_value(int(text))
        return level_from_word(text)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(SYSLOG_SEVERITY):
            return SYSLOG_SEVERITY[value]
        return _PINO.get(value)
    return None


def level_from_status(status: int) -> str:
    """An access log line's level: 5xx ERROR, 4xx WARN, anything else INFO."""
    return ERROR if status >= 500 else WARN if status >= 400 else INFO
