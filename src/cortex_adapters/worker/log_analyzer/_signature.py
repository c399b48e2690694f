"""Error signatures: a message with its variable parts masked, so that lines differing only in
numbers, ids, addresses, quoted values or durations group together."""

from __future__ import annotations

import re

MAX_MESSAGE_CHARS = 1000
"""Only a message's first 1,000 characters make its signature (bounds the work per line)."""
MAX_SIGNATURE_CHARS = 300
EMPTY = "<EMPTY>"

_H = r"[0-9A-Fa-f]{1,4}"
# One pass, leftmost match first; at one position the first alternative that matches wins,
# so the specific shapes (a UUID, an IP) come before the general ones (a hex id, a number).
_MASKS = re.compile(
    rf"""
    (?P<TS>[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}
        (?:[.,][0-9]+)?(?:Z|[+-][0-9]{{2}}:?[0-9]{{2}})?)
  | (?P<UUID>\b[0-9A-Fa-f]{{8}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{4}}
        -[0-9A-Fa-f]{{12}}\b)
  | (?P<EMAIL>(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)
  | (?P<STR>"(?:[^"\\]|\\.)*"|(?<!\w)'[^'\n]*'(?!\w)|`[^`\n]*`)
  | (?P<IP>\b[0-9]{{1,3}}(?:\.[0-9]{{1,3}}){{3}}(?::[0-9]{{1,5}})?\b
        |(?<![\w:.])(?:(?:{_H}:){{7}}{_H}|{_H}(?::{_H})*::(?:{_H}(?::{_H})*)?|::{_H}(?::{_H})*)
        (?![\w:.]))
  | (?P<HEX>\b0[xX][0-9A-Fa-f]+\b
        |\b(?=[0-9A-Fa-f]*[A-Fa-f])(?=[0-9A-Fa-f]*[0-9])[0-9A-Fa-f]{{8,}}\b)
  | (?P<DUR>\b(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|secs?|m|mins?|h|hrs?))+\b)
  | (?P<NUM>[0-9]+(?:\.[0-9]+)*)
    """,
    re.VERBOSE | re.ASCII,
)
_TOKENS = {name: f"<{name}>" for name in ("TS", "UUID", "EMAIL", "STR", "IP", "HEX", "DUR", "NUM")}
_SPACE = re.compile(r"\s+")


def _token(m: re.Match[str]) -> str:
    return _TOKENS[m.lastgroup or "NUM"]


def signature(message: str) -> str:
    """``message`` with timestamps, UUIDs, emails, quoted strings, IPs (v4 with an optional
    port, v6), hex values (``0x..`` and ids of 8+ hex digits with a letter and a digit),
    durations (``250ms``, ``1h2m3s``) and numbers replaced by ``<TS>``, ``<UUID>``,
    ``<EMAIL>``, ``<STR>``, ``<IP>``, ``<HEX>``, ``<DUR>`` and ``<NUM>``; runs of whitespace
    become one space. Digits inside words are numbers too: ``worker-7`` is ``worker-<NUM>``.
    """
    masked = _MASKS.sub(_token, message[:MAX_MESSAGE_CHARS])
    masked = _SPACE.sub(" ", masked).strip()[:MAX_SIGNATURE_CHARS].rstrip()
    return masked or EMPTY
