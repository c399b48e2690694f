"""Opening a Redis client for a store: from a URL, checked with PING, with no secret in errors."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

_NAMESPACE = re.compile(r"[A-Za-z0-9_.:{}-]{0,64}")
_QUERY_PASSWORD = re.compile(r"(?i)((?:^|&)password=)[^&]*")
CONNECT_TIMEOUT_S = 5.0


def check_namespace(namespace: str) -> str:
    """A key prefix for tests or tenants sharing one Redis; "" (the default) adds nothing."""
    if _NAMESPACE.fullmatch(namespace) is None:
        raise ValueError(
            f"invalid namespace {namespace!r}: at most 64 of letters, digits, '_.:{{}}-'"
        )
    return namespace


def redacted(url: str) -> str:
    """``url`` with any password (in the userinfo or a ``password=`` query option) replaced by
    ``***``, fit for errors and logs."""
    head, mark, query = url.partition("?")
    try:
        parts = urlsplit(head)
        if parts.password is not None:
            host = parts.hostname or ""
            host = f"[{host}]" if ":" in host else host
            port = f":{parts.port}" if parts.port is not None else ""
            head = urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}{port}"))
    except ValueError:
        return "<unparsable Redis URL>"
    return head + mark + _QUERY_PASSWORD.sub(r"\1***", query)


async def connect(
    url: str, *, what: str, decode_responses: bool, retry_commands: bool
) -> aioredis.Redis:
    """A client for ``url`` that has answered PING. ``what`` names the store (no spaces): it
    is the client's name on the server and the subject of errors.

    ``retry_commands``: retry a command (3 times, backing off) when the connection fails under
    it. Only for stores whose commands are idempotent: a retried compare-and-set whose first
    try landed would report a lost race. Raises ``ConnectionError`` naming ``what`` and the URL
    (password hidden) when Redis does not answer. Options in the URL's query string override
    these defaults.
    """
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.01), 3 if retry_commands else 0)
    try:
        client = aioredis.Redis.from_url(
            url,
            decode_responses=decode_responses,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=retry,
            client_name=f"cortex:{what}",
        )
    except ValueError as exc:
        raise ValueError(f"{what}: invalid Redis URL {redacted(url)!r}: {exc}") from None
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        raise ConnectionError(
            f"{what}: Redis at {redacted(url)} did not answer PING: {exc}"
        ) from exc
    return client
