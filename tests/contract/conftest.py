"""One contract suite per port, parametrized over every adapter of that port.

Fixtures live in one module per port family (``fixtures_stores``, ``fixtures_bus``). A
networked adapter joins the same parameter list as its in-memory twin, marked ``redis`` or
``nats``; it never gets a suite of its own, and the suites never branch on the adapter.
"""

from __future__ import annotations

import pytest

from cortex_adapters.codec import BetterprotoCodec, ProtobufCodec
from cortex_core.ports import PacketCodec
from tests.contract.fixtures_bus import bus
from tests.contract.fixtures_stores import job_store, memory_store
from tests.fakes import FakeClock

__all__ = ["bus", "job_store", "memory_store"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["protobuf-upb", "betterproto2"], scope="session")
def codec(request: pytest.FixtureRequest) -> PacketCodec:
    return ProtobufCodec() if request.param == "protobuf-upb" else BetterprotoCodec()
