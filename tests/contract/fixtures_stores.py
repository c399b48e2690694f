"""MemoryStore and JobStore fixtures: every adapter of those ports, one parameter each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cortex_adapters.memory import InMemoryJobStore, InMemoryMemoryStore
from cortex_core.ports import JobStore, MemoryStore
from tests.fakes import FakeClock

MAX_VALUE_BYTES = 64 * 1024
TTL_S = 60.0


@pytest.fixture(params=["memory"])
async def memory_store(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[MemoryStore]:
    store = InMemoryMemoryStore(clock=clock, ttl_s=TTL_S, max_value_bytes=MAX_VALUE_BYTES)
    await store.start()
    yield store
    await store.close()


@pytest.fixture(params=["memory"])
async def job_store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    store = InMemoryJobStore()
    await store.start()
    yield store
    await store.close()
