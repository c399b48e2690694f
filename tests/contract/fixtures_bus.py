"""Bus fixtures: every adapter of the Bus port, one parameter each.

* ``bus``: every adapter. ``nats`` is ``NatsBus`` as deployed (JetStream for the job
  subjects), ``nats-core`` is ``NatsBus(durable=False)`` (core NATS, at most once).
* ``durable_bus``: only the adapters that redeliver after a handler error (at least once).
* ``at_most_once_bus``: only the adapters that never redeliver.
* ``make_nats_bus``: a factory of started ``NatsBus`` instances sharing one subject prefix,
  for tests that need several connections (queue groups across processes, a dead member).

The NATS adapters run against ``NATS_URL`` (default ``nats://127.0.0.1:4222``, JetStream
enabled). They are never skipped: an unreachable server fails them (deselect with
``-m 'not nats'``). Each test gets its own ``subject_prefix``, hence its own stream; the
buses are closed and the stream (with its consumers) deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import nats
import nats.js.errors
import pytest

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import InMemoryBus, InMemoryMetrics
from cortex_adapters.nats import NatsBus
from cortex_core.ports import Bus

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
MAX_DELIVER = 3
FAST_NAK_S = 0.02
"""Redelivery delay after a handler error, per delivery: short, so the suite stays fast."""

MEMORY = ["memory", "memory+protobuf"]
NATS_DURABLE = pytest.param("nats", marks=pytest.mark.nats)
NATS_BATCHED = pytest.param("nats-batched", marks=pytest.mark.nats)
"""Durable, pulling up to 16 messages at once (``fetch_batch``, as the scheduler does)."""
NATS_CORE = pytest.param("nats-core", marks=pytest.mark.nats)


def unique_prefix() -> str:
    """A subject prefix of its own, so tests sharing one server never see each other."""
    return f"t{secrets.token_hex(5)}."


async def delete_stream(url: str, stream: str | None) -> None:
    """Delete a test's stream (and so its consumers); gone already is fine."""
    if stream is None:
        return
    nc = await nats.connect(url, name="contract-teardown", allow_reconnect=False)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def new_nats_bus(*, durable: bool = True, **options: Any) -> NatsBus:
    """A ``NatsBus`` with the suite's defaults (a fresh prefix unless one is given)."""
    settings: dict[str, Any] = {
        "url": NATS_URL,
        "name": f"contract-{'nats' if durable else 'nats-core'}",
        "codec": ProtobufCodec(),
        "metrics": InMemoryMetrics(),
        "subject_prefix": unique_prefix(),
        "max_deliver": MAX_DELIVER,
        "nak_delay_s": FAST_NAK_S,
        "connect_timeout_s": 2.0,
    }
    return NatsBus(durable=durable, **{**settings, **options})


@contextlib.asynccontextmanager
async def open_bus(kind: str) -> AsyncIterator[Bus]:
    """A started bus of one kind; closed (and its stream deleted) afterwards."""
    if kind in MEMORY:
        impl = InMemoryBus(
            codec=ProtobufCodec() if kind.endswith("protobuf") else None, max_deliver=MAX_DELIVER
        )
        await impl.start()
        try:
            yield impl
        finally:
            await impl.close()
        return
    batch = {"fetch_batch": 16} if kind == "nats-batched" else {}
    nats_bus = new_nats_bus(durable=kind in ("nats", "nats-batched"), **batch)
    await nats_bus.start()
    try:
        yield nats_bus
    finally:
        try:
            await nats_bus.close()
        finally:
            await delete_stream(NATS_URL, nats_bus.stream_name)


@pytest.fixture(params=[*MEMORY, NATS_DURABLE, NATS_BATCHED, NATS_CORE])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    async with open_bus(request.param) as impl:
        yield impl


@pytest.fixture(params=[*MEMORY, NATS_DURABLE, NATS_BATCHED])
async def durable_bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    async with open_bus(request.param) as impl:
        yield impl


@pytest.fixture(params=[NATS_CORE])
async def at_most_once_bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    async with open_bus(request.param) as impl:
        yield impl


class NatsBusFactory(Protocol):
    def __call__(self, **options: Any) -> Awaitable[NatsBus]: ...


@pytest.fixture
async def make_nats_bus() -> AsyncIterator[NatsBusFactory]:
    """``await make_nats_bus(**options)``: a started durable ``NatsBus`` on this test's prefix.

    Every bus it made is closed afterwards (one whose connection a test cut included), and
    the prefix's stream on the shared server deleted. A private server (``url=...``) is the
    test's own: it goes away with its store.
    """
    prefix = unique_prefix()
    made: list[tuple[NatsBus, str]] = []

    async def make(**options: Any) -> NatsBus:
        settings = {"subject_prefix": prefix, **options}
        impl = new_nats_bus(**settings)
        await impl.start()
        made.append((impl, settings.get("url", NATS_URL)))
        return impl

    yield make
    try:
        for impl, _ in made:
            await impl.close()
    finally:
        for stream in {impl.stream_name for impl, url in made if url == NATS_URL}:
            await delete_stream(NATS_URL, stream)
