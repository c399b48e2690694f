"""Opening a Redis client for a store: from a URL, checked with PING, with no secret in errors."""

from __future__ import annotations

import asyncio
import re
from typing import Any
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


class CommandBatcher:
    """Sends the commands that concurrent callers issue in one turn of the event loop as one
    pipeline: one write and one read for all of them, instead of one of each per command.

    Under load (a scheduler with dozens of handlers in flight) this turns dozens of small
    socket writes and reads into one; a command issued alone goes out on its own, one loop
    turn later. Every command keeps its own reply and its own error. Not a transaction:
    commands of one batch may interleave with other clients', as separate commands would.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._queue: list[tuple[tuple[object, ...], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, *command: object) -> Any:
        """``command`` (``"HGETALL", key``, say), sent with whatever else is issued now."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((command, future))
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[object, ...], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                command, future = batch[0]
                replies: list[Any] = [await self._client.execute_command(*command)]  # type: ignore[no-untyped-call]
            else:
                pipe = self._client.pipeline(transaction=False)
                for command, _ in batch:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every caller hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RedisError(exc))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
