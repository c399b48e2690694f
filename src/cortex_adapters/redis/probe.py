"""A readiness probe for Redis: PING on a small client of its own, with a short timeout."""

from __future__ import annotations

import redis.asyncio as aioredis

from cortex_adapters.redis._connection import redacted


class RedisProbe:
    """``ping()`` raises when Redis at ``url`` does not answer within ``timeout_s``."""

    name = "redis"

    def __init__(self, *, url: str, timeout_s: float = 1.0) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._client: aioredis.Redis | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self._url,
                socket_connect_timeout=self._timeout_s,
                socket_timeout=self._timeout_s,
                client_name="RedisProbe",
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        if self._client is None:
            raise RuntimeError("RedisProbe is not started")
        try:
            await self._client.ping()
        except Exception as exc:
            raise ConnectionError(f"Redis at {redacted(self._url)} does not answer: {exc}") from exc
