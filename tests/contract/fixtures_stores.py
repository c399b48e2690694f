"""MemoryStore and JobStore fixtures: every adapter of those ports, one parameter each.

Each fixture yields a small harness around the store, so that the suites can say what they
mean without knowing the adapter:

* ``MemoryStoreUnderTest.almost_expire()`` / ``expire()``: the in-memory store advances its
  fake clock; Redis expires in real time, so its store gets a short TTL and ``expire()``
  sleeps past it (``almost_expire()`` is then "right after the write").
* ``JobStoreUnderTest.replica()``: a second store on the same data, as a second scheduler
  replica would have. For Redis it has its own client; in memory there is only one store.

The Redis adapters run against ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). They are
never skipped: an unreachable Redis fails them (deselect with ``-m 'not redis'``). Each test
gets its own key namespace, and its keys are deleted afterwards (never FLUSHDB: the server
is shared).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis

from cortex_adapters.memory import InMemoryJobStore, InMemoryMemoryStore
from cortex_adapters.redis import RedisJobStore, RedisMemoryStore
from cortex_core.ports import JobStore, MemoryStore
from tests.fakes import FakeClock

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MAX_VALUE_BYTES = 64 * 1024
TTL_S = 60.0
REDIS_TTL_S = 0.5
"""Real seconds: long enough to read a value right after writing it, short enough to wait."""

ADAPTERS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


class MemoryStoreUnderTest:
    """A started ``MemoryStore`` (``.store``) and a way to let its TTL run out."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def almost_expire(self) -> None:
        """Let time pass until just before a value written now would expire (by default no
        time at all: "just before" is right after the write)."""

    async def expire(self) -> None:
        """Let time pass until a value written before ``almost_expire()`` has expired."""
        raise NotImplementedError


class _FakeClockExpiry(MemoryStoreUnderTest):
    def __init__(self, store: MemoryStore, clock: FakeClock) -> None:
        super().__init__(store)
        self._clock = clock

    async def almost_expire(self) -> None:
        self._clock.advance(TTL_S - 1)

    async def expire(self) -> None:
        self._clock.advance(2)


class _RealTimeExpiry(MemoryStoreUnderTest):
    async def expire(self) -> None:
        await asyncio.sleep(REDIS_TTL_S + 0.2)


@dataclass
class JobStoreUnderTest:
    """A started ``JobStore`` (``.store``) and a way to get a second one on the same data."""

    store: JobStore
    _make_replica: Callable[[], JobStore]
    _replicas: list[JobStore] = field(default_factory=list)

    async def replica(self) -> JobStore:
        """Another started store on the same jobs: its own client for a networked adapter,
        the same object for the in-memory one (nothing else can share its jobs)."""
        other = self._make_replica()
        if other is not self.store:
            await other.start()
            self._replicas.append(other)
        return other

    async def close(self) -> None:
        for store in (*self._replicas, self.store):
            await store.close()


def _namespace() -> str:
    return f"cortex-test:{uuid.uuid4().hex}:"


async def _delete_namespace(namespace: str) -> None:
    """Delete every key under ``namespace`` (this test's keys only; the server is shared)."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=ADAPTERS)
async def memory_store(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[MemoryStoreUnderTest]:
    harness: MemoryStoreUnderTest
    namespace = ""
    if request.param == "memory":
        store: MemoryStore = InMemoryMemoryStore(
            clock=clock, ttl_s=TTL_S, max_value_bytes=MAX_VALUE_BYTES
        )
        harness = _FakeClockExpiry(store, clock)
    else:
        namespace = _namespace()
        store = RedisMemoryStore(
            url=REDIS_URL, ttl_s=REDIS_TTL_S, max_value_bytes=MAX_VALUE_BYTES, namespace=namespace
        )
        harness = _RealTimeExpiry(store)
    await store.start()
    try:
        yield harness
    finally:
        await store.close()
        if namespace:
            await _delete_namespace(namespace)


@pytest.fixture(params=ADAPTERS)
async def job_store(request: pytest.FixtureRequest) -> AsyncIterator[JobStoreUnderTest]:
    namespace = ""
    if request.param == "memory":
        store: JobStore = InMemoryJobStore()
        harness = JobStoreUnderTest(store, lambda: store)
    else:
        namespace = _namespace()
        store = RedisJobStore(url=REDIS_URL, namespace=namespace)
        harness = JobStoreUnderTest(
            store, lambda: RedisJobStore(url=REDIS_URL, namespace=namespace)
        )
    await store.start()
    try:
        yield harness
    finally:
        await harness.close()
        if namespace:
            await _delete_namespace(namespace)
