"""The JobWatch contract: what every watch promises, on every bus it runs on.

``BusJobWatch`` is the one adapter of the port; it runs on NATS in ``cortex gateway`` and on
the in-memory bus in ``cortex up``, so it is held to the contract on every adapter of the Bus
port (the ``bus`` fixture). Waiting on a watch and draining it (the server is shutting down:
nobody should wait any longer) behave the same on each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from cortex_adapters.watch import BusJobWatch
from cortex_core.bus_protocol import SUBJECT_JOB_DONE
from cortex_core.messages import BusPacket, JobResult, JobStatus
from cortex_core.ports import Bus, JobWatch

LONG_S = 30.0
"""A wait that only a notice or a drain can cut short within a test's seconds."""


@pytest.fixture
async def watch(bus: Bus) -> AsyncIterator[BusJobWatch]:
    impl = BusJobWatch(bus)
    await impl.start()
    yield impl
    await impl.close()


def _done(job_id: str) -> BusPacket:
    notice = JobResult(job_id=job_id, status=JobStatus.COMPLETED)
    return BusPacket(trace_id="ab" * 16, sender_id="t", created_at=1.5, payload=notice)


async def _waiting(watch: JobWatch, job_id: str, started: asyncio.Event) -> bool:
    with watch.expect(job_id) as ended:
        started.set()
        return await ended.wait(LONG_S)


async def test_a_notice_wakes_the_waiters_of_that_job_only(bus: Bus, watch: BusJobWatch) -> None:
    started = [asyncio.Event(), asyncio.Event()]
    mine = asyncio.create_task(_waiting(watch, "j1", started[0]))
    other = asyncio.create_task(_waiting(watch, "j2", started[1]))
    await asyncio.gather(*(e.wait() for e in started))
    await bus.publish(SUBJECT_JOB_DONE, _done("j1"))
    assert await asyncio.wait_for(mine, 5) is True
    await asyncio.sleep(0.05)
    assert not other.done()
    assert not watch.draining
    other.cancel()


async def test_a_wait_without_a_notice_times_out(watch: BusJobWatch) -> None:
    with watch.expect("j1") as ended:
        assert await ended.wait(0.05) is False
    assert watch.waiting == 0


async def test_drain_wakes_every_waiter_at_once(watch: BusJobWatch) -> None:
    started = [asyncio.Event() for _ in range(3)]
    waiters = [
        asyncio.create_task(_waiting(watch, job_id, event))
        for job_id, event in zip(["j1", "j1", "j2"], started, strict=True)
    ]
    await asyncio.gather(*(e.wait() for e in started))
    assert watch.waiting == 2  # jobs waited on
    began = time.monotonic()
    assert watch.drain() == 3  # expectations woken
    assert watch.draining
    assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == [True, True, True]
    assert time.monotonic() - began < 1.0
    assert watch.waiting == 0
    assert watch.drain() == 0  # again: nobody left to wake


async def test_once_drained_every_wait_returns_at_once(watch: BusJobWatch) -> None:
    watch.drain()
    began = time.monotonic()
    with watch.expect("j1") as ended:
        assert await asyncio.wait_for(ended.wait(LONG_S), 5) is True
        # And again, for as long as it is asked.
        assert await asyncio.wait_for(ended.wait(LONG_S), 5) is True
    with watch.expect("j2") as ended:
        assert await asyncio.wait_for(ended.wait(LONG_S), 5) is True
    assert time.monotonic() - began < 1.0
    assert watch.waiting == 0  # nothing registered, nothing left behind
