"""Waiting for a job to end: ``FrontDoor.wait`` on a ``BusJobWatch`` (the in-memory bus here;
tests/e2e/test_observability.py and the gateway tests run it on NATS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import InMemoryBus, InMemoryJobStore, InMemoryMemoryStore
from cortex_adapters.system import SystemClock
from cortex_adapters.watch import BusJobWatch
from cortex_core.bus_protocol import SUBJECT_JOB_DONE
from cortex_core.errors import InvalidField, JobNotFound
from cortex_core.frontdoor import FrontDoor, SubmitJob
from cortex_core.jobs import RunningJob
from cortex_core.messages import BusPacket, JobResult, JobStatus
from cortex_core.watch import announce_done
from tests.fakes import SequentialIds

RECHECK_S = 30.0
"""Long: a waiter answered within seconds was woken by the notice, not by a recheck."""


@dataclass
class Setup:
    frontdoor: FrontDoor
    jobs: InMemoryJobStore
    memory: InMemoryMemoryStore
    bus: InMemoryBus
    watch: BusJobWatch
    clock: SystemClock


@pytest.fixture
async def s() -> AsyncIterator[Setup]:
    clock = SystemClock()
    bus = InMemoryBus(codec=ProtobufCodec(), strict=True)
    jobs = InMemoryJobStore()
    watch = BusJobWatch(bus)
    await watch.start()
    memory = InMemoryMemoryStore(clock=clock)
    fd = FrontDoor(
        bus=bus,
        memory=memory,
        jobs=jobs,
        clock=clock,
        ids=SequentialIds(),
        watch=watch,
        recheck_s=RECHECK_S,
    )
    yield Setup(fd, jobs, memory, bus, watch, clock)
    await watch.close()
    await bus.close()


async def _finish(s: Setup, job_id: str, *, announce: bool = True) -> None:
    """Complete ``job_id`` in the store as a scheduler would (and announce it, or not)."""
    job = await s.jobs.get(job_id)
    assert job is not None
    assert not job.is_terminal
    running = job.dispatch("w1", s.clock.now())  # type: ignore[union-attr]
    assert await s.jobs.transition(running)
    assert isinstance(running, RunningJob)
    done = running.complete("redis://res:" + job_id, s.clock.now())
    assert await s.jobs.transition(done)
    if announce:
        await announce_done(s.bus, done, "scheduler")


async def test_wait_answers_as_soon_as_the_job_is_announced_ended(s: Setup) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    waiter = asyncio.create_task(s.frontdoor.wait(submitted.job_id, timeout_s=10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    assert s.watch.waiting == 1
    await _finish(s, submitted.job_id)
    job = await asyncio.wait_for(waiter, 5)  # well before the 30 s recheck: the notice woke it
    assert job.status is JobStatus.COMPLETED
    assert s.watch.waiting == 0  # nothing left behind


async def test_a_lost_notice_only_delays_the_answer_to_the_next_recheck(s: Setup) -> None:
    frontdoor = s.frontdoor
    frontdoor._recheck_s = 0.1  # this test is about the recheck
    submitted = await frontdoor.submit(SubmitJob(prompt="hi"))
    waiter = asyncio.create_task(frontdoor.wait(submitted.job_id, timeout_s=10))
    await asyncio.sleep(0.05)
    await _finish(s, submitted.job_id, announce=False)
    job = await asyncio.wait_for(waiter, 5)  # no notice: a recheck found it
    assert job.status is JobStatus.COMPLETED


async def test_wait_returns_the_job_as_it_is_when_the_time_is_up(s: Setup) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    job = await s.frontdoor.wait(submitted.job_id, timeout_s=0.3)
    assert job.status is JobStatus.PENDING
    assert s.watch.waiting == 0


async def test_a_notice_for_a_job_still_running_does_not_spin_the_waiter(s: Setup) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    job = await s.jobs.get(submitted.job_id)
    assert job is not None
    lookups = 0
    real_status = s.frontdoor.status

    async def counting(job_id: str, tenant_id: str = "") -> object:
        nonlocal lookups
        lookups += 1
        return await real_status(job_id, tenant_id)

    s.frontdoor.status = counting  # type: ignore[method-assign,assignment]
    waiter = asyncio.create_task(s.frontdoor.wait(submitted.job_id, timeout_s=0.5))
    await asyncio.sleep(0.02)
    # A stray notice (the job has not ended in the store): one more look, then back to waiting.
    notice = JobResult(job_id=submitted.job_id, status=JobStatus.COMPLETED)
    packet = BusPacket(trace_id="", sender_id="x", created_at=0.0, payload=notice)
    await s.bus.publish(SUBJECT_JOB_DONE, packet)
    result = await waiter
    assert result.status is JobStatus.PENDING
    # The first look, one after the notice, one when the time is up: no spinning in between.
    assert lookups == 3


async def test_wait_rejects_a_bad_timeout_and_an_unknown_job(s: Setup) -> None:
    for bad in (0.0, -1.0, 61.0):
        with pytest.raises(InvalidField) as err:
            await s.frontdoor.wait("a" * 32, timeout_s=bad)
        assert err.value.field == "wait_s"
    with pytest.raises(JobNotFound):
        await s.frontdoor.wait("f" * 32, timeout_s=1)


async def test_another_tenants_job_is_not_found_when_waiting(s: Setup) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi", tenant_id="a"))
    with pytest.raises(JobNotFound):
        await s.frontdoor.wait(submitted.job_id, "b", timeout_s=1)


async def test_cancel_through_the_front_door_wakes_the_waiter(s: Setup) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    waiter = asyncio.create_task(s.frontdoor.wait(submitted.job_id, timeout_s=10))
    await asyncio.sleep(0.02)
    await s.frontdoor.cancel(submitted.job_id)
    job = await asyncio.wait_for(waiter, 5)
    assert job.status is JobStatus.CANCELLED


async def test_the_scheduler_announces_every_terminal_state() -> None:
    from tests.unit.test_scheduler import make_harness

    h = await make_harness()
    notices: list[tuple[str, JobStatus]] = []

    async def spy(packet: BusPacket) -> None:
        assert isinstance(packet.payload, JobResult)
        notices.append((packet.payload.job_id, packet.payload.status))

    await h.bus.subscribe(SUBJECT_JOB_DONE, spy)
    try:
        await h.heartbeat("w1")
        await h.submit("j1")
        await h.submit("j2", topic="job.unrouted")
        await h.result("j1", JobStatus.FAILED, error_message="boom")
        await h.bus.settle()
        assert sorted(notices) == [("j1", JobStatus.FAILED), ("j2", JobStatus.FAILED)]
    finally:
        await h.scheduler.close()
        await h.bus.close()


async def test_result_with_wait_s_answers_once_the_result_is_there(s: Setup) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    waiter = asyncio.create_task(s.frontdoor.result(submitted.job_id, wait_s=10))
    await asyncio.sleep(0.02)
    assert not waiter.done()
    await s.memory.put_result(submitted.job_id, b'{"echo": "hi"}')
    await _finish(s, submitted.job_id)
    job, data = await asyncio.wait_for(waiter, 5)
    assert job.status is JobStatus.COMPLETED
    assert data == b'{"echo": "hi"}'
