"""One contract suite per port, parametrized over every adapter of that port.

Today the adapters are the in-memory ones; the NATS and Redis adapters join these same
parameter lists (marked for real services) rather than getting suites of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cortex_adapters.codec import BetterprotoCodec, ProtobufCodec
from cortex_adapters.memory import InMemoryBus, InMemoryJobStore, InMemoryMemoryStore
from cortex_core.ports import Bus, JobStore, MemoryStore, PacketCodec
from tests.fakes import FakeClock

MAX_VALUE_BYTES = 64 * 1024
TTL_S = 60.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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


@pytest.fixture(params=["memory", "memory+protobuf"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    impl = InMemoryBus(
        codec=ProtobufCodec() if request.param.endswith("protobuf") else None, max_deliver=3
    )
    await impl.start()
    yield impl
    await impl.close()


@pytest.fixture(params=["protobuf-upb", "betterproto2"], scope="session")
def codec(request: pytest.FixtureRequest) -> PacketCodec:
    return ProtobufCodec() if request.param == "protobuf-upb" else BetterprotoCodec()
