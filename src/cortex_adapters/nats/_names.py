"""Names on the wire: subject prefixes, the stream and its consumers."""

from __future__ import annotations

import hashlib
import re
import secrets
from urllib.parse import urlsplit, urlunsplit

from cortex_core.bus_protocol import is_valid_topic

STREAM_BASE_NAME = "CORTEX"
"""The stream of an unprefixed deployment; a prefixed one gets ``CORTEX_<prefix>_<digest>``."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_ZERO_TRACE_ID = "0" * 32


def check_prefix(prefix: str) -> str:
    """``""`` or dot-separated tokens ending in a dot (``"t1a2b."``); ``ValueError`` otherwise."""
    if prefix and not (prefix.endswith(".") and is_valid_topic(prefix[:-1])):
        raise ValueError(
            f"invalid subject_prefix {prefix!r}: use '' or tokens ending with '.', e.g. 't1a2b.'"
        )
    return prefix


def _readable(text: str, limit: int) -> str:
    return _UNSAFE.sub("_", text)[:limit]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


def stream_name(prefix: str) -> str:
    """The JetStream stream that holds the durable subjects of one ``subject_prefix``.

    The digest keeps two prefixes apart even when their readable forms collide
    (``a.b.`` and ``a_b.``); stream subjects must never overlap.
    """
    if not prefix:
        return STREAM_BASE_NAME
    return f"{STREAM_BASE_NAME}_{_readable(prefix.rstrip('.'), 40)}_{_digest(prefix)}"


def durable_consumer_name(queue: str, subject: str) -> str:
    """The consumer every member of ``queue`` on ``subject`` shares, in every process."""
    return f"{_readable(queue, 40)}__{_readable(subject, 40)}_{_digest(queue, subject)}"


def ephemeral_consumer_name(client_name: str, subject: str) -> str:
    """A consumer of one fan-out subscription: unique, readable in ``nats consumer ls``."""
    return f"{_readable(client_name, 30)}__{_readable(subject, 40)}_{secrets.token_hex(5)}"


def redact_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
