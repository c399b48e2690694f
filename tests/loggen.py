"""Generated logs whose statistics are known: the oracle for the log analyzer's tests.

``generate`` draws events (a time, a level, a message) with a seeded ``random.Random``, renders
each in one of several formats with that format's own spelling of levels and times, mixes in
malformed and blank lines, and records what an analysis must find: line counts per format,
level and malformed reason, the signature of every error message, the timeline per minute.

Error messages come from ``ERROR_KINDS``: each kind varies its numbers, ids, addresses,
quoted values and durations from line to line, and states the one signature they must share.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

START = datetime(2026, 11, 21, 14, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
"""The ``now`` that dates RFC 3164 lines (which carry no year) into 2026."""

TRACE, DEBUG, INFO, WARN, ERROR, FATAL = "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"
LEVELS = (TRACE, DEBUG, INFO, WARN, ERROR, FATAL)
_US = timedelta(microseconds=1)


def _hex_id(rng: random.Random, length: int) -> str:
    """Hex digits with at least one letter and one digit (as real ids almost always have)."""
    while True:
        text = f"{rng.getrandbits(4 * length):0{length}x}"
        if any(c.isdigit() for c in text) and any(c.isalpha() for c in text):
            return text


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


@dataclass(frozen=True)
class ErrorKind:
    signature: str
    level: str
    render: Callable[[random.Random], str]


ERROR_KINDS = (
    ErrorKind(
        "connection to <IP> refused after <DUR>",
        ERROR,
        lambda r: (
            f"connection to {_ip(r)}:{r.randrange(1024, 65536)} refused after "
            f"{r.randrange(1, 5000)}ms"
        ),
    ),
    ErrorKind(
        "user <EMAIL> not found (request <UUID>)",
        ERROR,
        lambda r: (
            f"user {r.choice(['ana', 'bo', 'chen'])}.{r.randrange(1000)}@example.com "
            f"not found (request {uuid.UUID(int=r.getrandbits(128), version=4)})"
        ),
    ),
    ErrorKind(
        "segfault at <HEX> in worker <NUM>",
        ERROR,
        lambda r: f"segfault at 0x{r.getrandbits(48):x} in worker {r.randrange(64)}",
    ),
    ErrorKind(
        "query <STR> timed out after <DUR>",
        ERROR,
        lambda r: (
            f"query 'SELECT * FROM orders WHERE id = {r.randrange(10**6)}' timed out "
            f"after {r.uniform(1, 30):.1f}s"
        ),
    ),
    ErrorKind(
        "payment <HEX> declined: code <NUM> from <IP>",
        ERROR,
        lambda r: (
            f"payment {_hex_id(r, 16)} declined: code {r.choice([51, 54, 61])} "
            f"from fd00::{r.randrange(1, 0xFFFF):x}"
        ),
    ),
    ErrorKind(
        "out of memory: killed process <NUM> (java) total-vm:<NUM>kB",
        FATAL,
        lambda r: (
            f"out of memory: killed process {r.randrange(100, 99999)} (java) "
            f"total-vm:{r.randrange(10**6, 10**8)}kB"
        ),
    ),
)
BURST_KIND = ERROR_KINDS[0]

_OTHER_MESSAGES = {
    TRACE: ("entering {fn} with {n} args", "span {hex} finished"),
    DEBUG: ("cache lookup key=order:{n} hit={hit}", "pool stats idle={n} busy={n}"),
    INFO: ("GET /api/orders/{n} 200 in {n}ms", "user {n} logged in", "job {hex} done"),
    WARN: ("slow query took {n}ms", "retrying request {hex} (attempt {n})"),
}


def _other_message(rng: random.Random, level: str) -> str:
    template = rng.choice(_OTHER_MESSAGES[level])
    return template.format(
        fn=rng.choice(["load", "save", "route"]),
        n=rng.randrange(10_000),
        hex=_hex_id(rng, 12),
        hit=rng.choice(["true", "false"]),
    )


# --- formats: each renders (time, level, message) its own way ------------------------------


def _ms(at: datetime) -> datetime:
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _s(at: datetime) -> datetime:
    return at.replace(microsecond=0)


def _epoch_ms(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


_PINO = {TRACE: 10, DEBUG: 20, INFO: 30, WARN: 40, ERROR: 50, FATAL: 60}


def _json(rng: random.Random, at: datetime, level: str, message: str) -> tuple[str, datetime]:
    at = _ms(at)
    style = rng.randrange(3)
    doc: dict[str, object]
    if style == 0:  # pino-like: epoch millis, numeric level
        doc = {"ts": _epoch_ms(at), "level": _PINO[level], "msg": message, "pid": 4242}
    elif style == 1:  # ECS: @timestamp, log.level
        iso = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        doc = {"@timestamp": iso, "log.level": level.lower(), "message": message}
    else:  # epoch seconds as a float, spelled level
        spelled = {WARN: "warning", FATAL: "critical"}.get(level, level.lower())
        doc = {"time": round(_epoch_ms(at) / 1000, 3), "severity": spelled, "msg": message}
    return json.dumps(doc), at


def _logfmt(rng: random.Random, at: datetime, level: str, message: str) -> tuple[str, datetime]:
    spelled = {WARN: "warn", ERROR: rng.choice(["error", "err"]), FATAL: "panic"}
    iso = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    escaped = message.replace("\\", "\\\\").replace('"', '\\"')
    line = (
        f'ts={iso} level={spelled.get(level, level.lower())} msg="{escaped}" '
        f"caller=server.go:{rng.randrange(1, 400)}"
    )
    return line, at


_COMPONENTS = ("db", "api", "scheduler", "cache")


def _app_iso(rng: random.Random, at: datetime, level: str, message: str) -> tuple[str, datetime]:
    at = _ms(at)
    spelled = {WARN: rng.choice(["WARN", "WARNING"]), FATAL: "FATAL"}.get(level, level)
    iso = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{iso} {spelled} [{rng.choice(_COMPONENTS)}] {message}", at


_PYTHON_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARN: "WARNING", ERROR: "ERROR", FATAL: "CRITICAL"}


def _python(rng: random.Random, at: datetime, level: str, message: str) -> tuple[str, datetime]:
    at = _ms(at)
    stamp = at.strftime("%Y-%m-%d %H:%M:%S") + f",{at.microsecond // 1000:03d}"
    name = rng.choice(["cortex.db", "cortex.api.v1", "root"])
    return f"{stamp} - {name} - {_PYTHON_NAMES[level]} - {message}", at


_SEVERITY = {FATAL: (0, 1, 2), ERROR: (3,), WARN: (4,), INFO: (5, 6), DEBUG: (7,)}
_PLUS_TWO = timezone(timedelta(hours=2))
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _pri(rng: random.Random, level: str) -> int:
    return rng.randrange(24) * 8 + rng.choice(_SEVERITY[level])


def _rfc5424(rng: random.Random, at: datetime, level: str, message: str) -> tuple[str, datetime]:
    local = at.astimezone(_PLUS_TWO).isoformat(timespec="microseconds")
    sd = rng.choice(["-", f'[req@32473 id="{rng.randrange(10**6)}" path="/x\\]y"]'])
    pid = rng.randrange(1, 65536)
    return (
        f"<{_pri(rng, level)}>1 {local} web-{rng.randrange(3)} billing {pid} - {sd} {message}",
        at,
    )


def _rfc3164(rng: random.Random, at: datetime, level: str, message: str) -> tuple[str, datetime]:
    at = _s(at)
    stamp = f"{_MONTHS[at.month - 1]} {at.day:2d} {at:%H:%M:%S}"  # %b depends on the locale
    tag = f"billing[{rng.randrange(1, 65536)}]"
    return f"<{_pri(rng, level)}>{stamp} web-{rng.randrange(3)} {tag}: {message}", at


def _bracket(rng: random.Random, at: datetime, level: str, message: str) -> tuple[str, datetime]:
    at = _s(at)
    spelled = {WARN: "WARNING", FATAL: "CRITICAL"}.get(level, level)
    return f"[{at:%Y-%m-%d %H:%M:%S}] production.{spelled}: {message}", at


Renderer = Callable[[random.Random, datetime, str, str], tuple[str, datetime]]


@dataclass(frozen=True)
class Format:
    name: str
    render: Renderer
    levels: frozenset[str]


_ALL = frozenset(LEVELS)
_NO_TRACE = _ALL - {TRACE}
FORMATS = {
    f.name: f
    for f in (
        Format("json", _json, _ALL),
        Format("logfmt", _logfmt, _ALL),
        Format("app_iso", _app_iso, _ALL),
        Format("python_logging", _python, _NO_TRACE),
        Format("syslog_rfc5424", _rfc5424, _NO_TRACE),
        Format("syslog_rfc3164", _rfc3164, _NO_TRACE),
        Format("app_bracket", _bracket, _ALL),
    )
}


def render(name: str, at: datetime, level: str, message: str, seed: int = 0) -> str:
    """One line of format ``name`` (at ``at``, truncated to the format's precision)."""
    return FORMATS[name].render(random.Random(seed), at, level, message)[0]


# --- malformed lines -----------------------------------------------------------------------


def _garbage(rng: random.Random) -> str:
    raw = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 60)))
    text = raw.decode("latin-1").replace("\n", " ").replace("\r", " ")
    return "\x00\x7f" + text  # starts like no format; NUL is not whitespace


def _truncated_json(rng: random.Random) -> str:
    line = json.dumps({"ts": 1795273200000, "level": "error", "msg": "cut short " * 3})
    return line[: rng.randrange(2, len(line) - 1)]


Maker = Callable[[random.Random], str]
MALFORMED: dict[str, tuple[Maker, ...]] = {
    "unrecognised": (_garbage, lambda r: "something went wrong, see above"),
    "bad_json": (_truncated_json, lambda r: "{'single': 'quotes are not JSON'}"),
    "bad_timestamp": (
        lambda r: json.dumps({"ts": "yesterday-ish", "level": "info", "msg": "x"}),
        lambda r: f"2026-02-{r.randrange(30, 32)}T10:00:00Z ERROR [db] no such day",
    ),
    "bad_priority": (lambda r: f"<{r.randrange(192, 999)}>Nov 21 14:00:00 host app: hi",),
}
BLANKS = ("", "   ", "\t", " \t ")


# --- the generator -------------------------------------------------------------------------


def minute_key(at: datetime) -> str:
    return at.replace(second=0, microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class GeneratedLog:
    lines: list[str] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)
    signatures: Counter[str] = field(default_factory=Counter)
    signature_times: dict[str, list[datetime]] = field(default_factory=dict)
    malformed: Counter[str] = field(default_factory=Counter)
    blank: int = 0
    per_minute: Counter[str] = field(default_factory=Counter)
    per_minute_errors: Counter[str] = field(default_factory=Counter)
    times: list[datetime] = field(default_factory=list)

    @property
    def parsed(self) -> int:
        return sum(self.formats.values())

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def generate(
    seed: int,
    *,
    minutes: int = 60,
    per_minute: tuple[int, int] = (36, 44),
    errors_per_minute: tuple[int, int] = (1, 3),
    formats: Sequence[tuple[str, int]] = (
        ("json", 5),
        ("logfmt", 2),
        ("app_iso", 2),
        ("python_logging", 1),
        ("syslog_rfc5424", 1),
        ("syslog_rfc3164", 1),
        ("app_bracket", 1),
    ),
    burst_minute: int | None = None,
    burst_lines: int = 0,
    malformed_per_reason: int = 0,
    blank_lines: int = 0,
    start: datetime = START,
) -> GeneratedLog:
    """A log of ``minutes`` minutes from ``start``: each minute has a count of lines drawn from
    ``per_minute`` (inclusive), of which ``errors_per_minute`` are ERROR/FATAL, the rest
    TRACE/DEBUG/INFO/WARN. ``burst_minute`` gets ``burst_lines`` more, all ``BURST_KIND``
    errors. Formats are drawn by weight among those that can express the level; a level none
    of them can express (TRACE in syslog) is rendered as DEBUG."""
    rng = random.Random(seed)
    events: list[tuple[datetime, str, str, str | None]] = []  # time, level, message, signature
    for minute in range(minutes):
        base = start + timedelta(minutes=minute)
        n = rng.randint(*per_minute)
        n_errors = min(rng.randint(*errors_per_minute), n)
        for i in range(n + (burst_lines if minute == burst_minute else 0)):
            at = base + rng.randrange(60_000_000) * _US
            if i >= n:
                events.append((at, ERROR, BURST_KIND.render(rng), BURST_KIND.signature))
            elif i < n_errors:
                kind = rng.choice(ERROR_KINDS)
                events.append((at, kind.level, kind.render(rng), kind.signature))
            else:
                level = rng.choices((TRACE, DEBUG, INFO, WARN), weights=(1, 4, 12, 3))[0]
                events.append((at, level, _other_message(rng, level), None))
    events.sort(key=lambda event: event[0])

    log = GeneratedLog()
    names = [name for name, _ in formats]
    weights = [weight for _, weight in formats]
    for at, level, message, sig in events:
        usable = [(n, w) for n, w in zip(names, weights, strict=True) if level in FORMATS[n].levels]
        if not usable:  # e.g. TRACE when only syslog is asked for: it becomes DEBUG
            level = DEBUG
            usable = [(n, w) for n, w in zip(names, weights, strict=True)]
        name = rng.choices([n for n, _ in usable], weights=[w for _, w in usable])[0]
        line, shown = FORMATS[name].render(rng, at, level, message)
        log.lines.append(line)
        log.formats[name] += 1
        log.levels[level] += 1
        log.times.append(shown)
        log.per_minute[minute_key(shown)] += 1
        if sig is not None:
            log.signatures[sig] += 1
            log.signature_times.setdefault(sig, []).append(shown)
            log.per_minute_errors[minute_key(shown)] += 1

    extras: list[str] = []
    for reason, makers in MALFORMED.items():
        for i in range(malformed_per_reason):
            extras.append(makers[i % len(makers)](rng))
            log.malformed[reason] += 1
    for i in range(blank_lines):
        extras.append(BLANKS[i % len(BLANKS)])
        log.blank += 1
    for extra in extras:
        log.lines.insert(rng.randrange(len(log.lines) + 1), extra)
    return log
