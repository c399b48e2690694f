"""``MemoryStore`` on Redis: the memory fabric."""

from __future__ import annotations

import redis.asyncio as aioredis

from cortex_adapters.redis._connection import CommandBatcher, check_namespace, connect
from cortex_core.errors import PayloadTooLarge
from cortex_core.pointers import context_key, context_ptr, result_key, result_ptr


class RedisMemoryStore:
    """Contexts under ``ctx:<job_id>`` and results under ``res:<job_id>``, plain strings that
    expire ``ttl_s`` after they are written (``SET … PX``).

    Pointers are ``redis://ctx:<job_id>`` / ``redis://res:<job_id>``, as for the in-memory twin.
    Key names go through ``cortex_core.pointers``, so a crafted job id raises ``PointerError``;
    a value over ``max_value_bytes`` raises ``PayloadTooLarge`` and nothing is written.
    ``namespace`` prefixes every key (``<namespace>ctx:<job_id>``) but not the pointers: it
    separates users of one Redis (tests), it is not part of an address.

    Writes overwrite and reads are plain ``GET``s, so a command whose connection fails under it
    is retried (three times, backing off).
    """

    def __init__(
        self, *, url: str, ttl_s: float, max_value_bytes: int, namespace: str = ""
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s}")
        if max_value_bytes < 0:
            raise ValueError(f"max_value_bytes must be at least 0, not {max_value_bytes}")
        self._url = url
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._max = max_value_bytes
        self._ns = check_namespace(namespace)
        self._client: aioredis.Redis | None = None
        self._batch: CommandBatcher | None = None

    async def start(self) -> None:
        """Connect and PING; ``ConnectionError`` naming the URL if Redis does not answer."""
        if self._client is None:
            self._client = await connect(
                self._url, what="RedisMemoryStore", decode_responses=False, retry_commands=True
            )
            self._batch = CommandBatcher(self._client)

    async def close(self) -> None:
        client, self._client = self._client, None
        self._batch = None
        if client is not None:
            await client.aclose()

    @property
    def _batcher(self) -> CommandBatcher:
        """Commands go out batched with whatever else is sent in the same loop turn."""
        if self._batch is None:
            raise RuntimeError("RedisMemoryStore is not started: call start() first")
        return self._batch

    async def _put(self, key: str, what: str, data: bytes) -> None:
        if len(data) > self._max:
            raise PayloadTooLarge(what, len(data), self._max)
        await self._batcher.call("SET", self._ns + key, data, "PX", self._ttl_ms)

    async def _get(self, key: str) -> bytes | None:
        value = await self._batcher.call("GET", self._ns + key)
        if value is None or isinstance(value, bytes):
            return value
        raise TypeError(f"GET {self._ns + key} returned {type(value).__name__}, not bytes")

    async def put_context(self, job_id: str, data: bytes) -> str:
        await self._put(context_key(job_id), "context", data)
        return context_ptr(job_id)

    async def get_context(self, job_id: str) -> bytes | None:
        return await self._get(context_key(job_id))

    async def put_result(self, job_id: str, data: bytes) -> str:
        await self._put(result_key(job_id), "result", data)
        return result_ptr(job_id)

    async def get_result(self, job_id: str) -> bytes | None:
        return await self._get(result_key(job_id))
