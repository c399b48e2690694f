"""Bus fixtures: every adapter of the Bus port, one parameter each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import InMemoryBus
from cortex_core.ports import Bus


@pytest.fixture(params=["memory", "memory+protobuf"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    impl = InMemoryBus(
        codec=ProtobufCodec() if request.param.endswith("protobuf") else None, max_deliver=3
    )
    await impl.start()
    yield impl
    await impl.close()
