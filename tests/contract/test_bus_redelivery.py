"""What a handler error does, by delivery guarantee.

This is the one behaviour of the Bus contract that differs by guarantee, so it is split out
of ``test_bus.py``: an at-least-once adapter (in memory, NATS with JetStream) delivers the
packet again, and drops it only after ``max_deliver`` deliveries; an at-most-once adapter
(core NATS, ``NatsBus(durable=False)``) cannot deliver anything twice, so it logs and counts
the failure and moves on. Each test runs over only the adapters that promise it.
"""

from __future__ import annotations

import asyncio

from cortex_core.messages import BusPacket
from cortex_core.ports import Bus
from tests.contract.fixtures_bus import MAX_DELIVER, at_most_once_bus, durable_bus
from tests.contract.test_bus import packet, wait_for

__all__ = ["at_most_once_bus", "durable_bus"]


async def test_a_failed_handler_gets_the_packet_again(durable_bus: Bus) -> None:
    attempts: list[str] = []

    async def flaky(p: BusPacket) -> None:
        attempts.append("try")
        if len(attempts) < 2:
            raise RuntimeError("transient")

    await durable_bus.subscribe("job.echo", flaky, queue="workers-echo")
    await durable_bus.publish("job.echo", packet(1))
    await wait_for(lambda: len(attempts) == 2)


async def test_a_handler_that_always_fails_gets_max_deliver_tries(durable_bus: Bus) -> None:
    attempts: list[str] = []
    after: list[str] = []

    async def broken(p: BusPacket) -> None:
        attempts.append("try")
        raise RuntimeError("permanent")

    async def fine(p: BusPacket) -> None:
        after.append("ok")

    await durable_bus.subscribe("job.echo", broken, queue="workers-echo")
    await durable_bus.subscribe("sys.job.cancel", fine)
    await durable_bus.publish("job.echo", packet(1))
    await wait_for(lambda: len(attempts) == MAX_DELIVER)
    await asyncio.sleep(0.1)
    assert len(attempts) == MAX_DELIVER  # then dropped, not delivered again
    await durable_bus.publish("sys.job.cancel", packet(2))  # and the bus carries on
    await wait_for(lambda: after == ["ok"])


async def test_a_failed_handler_is_not_retried_at_most_once(at_most_once_bus: Bus) -> None:
    attempts: list[str] = []
    after: list[str] = []

    async def handler(p: BusPacket) -> None:
        attempts.append("try")
        if len(attempts) == 1:
            raise RuntimeError("lost")
        after.append("ok")

    await at_most_once_bus.subscribe("job.echo", handler, queue="workers-echo")
    await at_most_once_bus.publish("job.echo", packet(1))
    await at_most_once_bus.publish("job.echo", packet(2))
    await wait_for(lambda: after == ["ok"])
    assert len(attempts) == 2  # the first packet was not delivered again
