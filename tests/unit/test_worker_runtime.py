"""The worker runtime on in-memory adapters: results, failures, bad pointers, the slot cap."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import InMemoryBus, InMemoryMemoryStore, InMemoryMetrics
from cortex_adapters.worker import JobContext, Worker, WorkerConfig, echo_handler
from cortex_adapters.worker.runtime import JobError
from cortex_core.bus_protocol import (
    SUBJECT_HEARTBEAT_ALL,
    SUBJECT_JOB_CANCEL,
    SUBJECT_JOB_RESULT,
    worker_subject,
)
from cortex_core.messages import (
    BusPacket,
    Heartbeat,
    JobCancel,
    JobRequest,
    JobResult,
    JobStatus,
    Payload,
)
from cortex_core.pointers import context_ptr
from tests.fakes import FakeClock


@dataclass
class Rig:
    bus: InMemoryBus
    memory: InMemoryMemoryStore
    metrics: InMemoryMetrics
    results: list[JobResult]
    heartbeats: list[Heartbeat]

    async def send(self, payload: Payload, subject: str = worker_subject("w1")) -> None:
        await self.bus.publish(
            subject, BusPacket(trace_id="ab" * 16, sender_id="t", created_at=0.0, payload=payload)
        )

    async def job(self, job_id: str, prompt: str = "hi", **labels: str) -> None:
        await self.memory.put_context(job_id, json.dumps({"prompt": prompt}).encode())
        await self.send(
            JobRequest(
                job_id=job_id, topic="job.echo", context_ptr=context_ptr(job_id), labels=labels
            )
        )

    async def request(
        self, job_id: str, *, attempt: int = 1, timeout_s: float | None = None, **labels: str
    ) -> None:
        """Dispatch attempt ``attempt`` of ``job_id`` (its context stored once)."""
        if await self.memory.get_context(job_id) is None:
            await self.memory.put_context(job_id, b'{"prompt":"hi"}')
        await self.send(
            JobRequest(
                job_id=job_id,
                topic="job.echo",
                context_ptr=context_ptr(job_id),
                labels=labels,
                attempt=attempt,
                timeout_s=timeout_s,
            )
        )

    async def until(self, n: int) -> list[JobResult]:
        async with asyncio.timeout(5):
            while len(self.results) < n:
                await asyncio.sleep(0.005)
        return self.results


async def rig_with(
    handler: object, parallel: int = 2, memory: InMemoryMemoryStore | None = None, **config: object
) -> tuple[Rig, Worker]:
    clock = FakeClock()
    bus = InMemoryBus(codec=ProtobufCodec(), strict=True)
    rig = Rig(bus, memory or InMemoryMemoryStore(clock=clock), InMemoryMetrics(), [], [])

    async def on_result(p: BusPacket) -> None:
        assert isinstance(p.payload, JobResult)
        rig.results.append(p.payload)

    async def on_heartbeat(p: BusPacket) -> None:
        assert isinstance(p.payload, Heartbeat)
        rig.heartbeats.append(p.payload)

    await bus.subscribe(SUBJECT_JOB_RESULT, on_result)
    await bus.subscribe(SUBJECT_HEARTBEAT_ALL, on_heartbeat)
    worker = Worker(
        config=WorkerConfig(
            worker_id="w1",
            pool="echo",
            topics=("job.echo",),
            max_parallel_jobs=parallel,
            heartbeat_interval_s=60,
            **config,  # type: ignore[arg-type]
        ),
        handler=handler,  # type: ignore[arg-type]
        bus=bus,
        memory=rig.memory,
        clock=clock,
        metrics=rig.metrics,
    )
    await worker.start()
    return rig, worker


@pytest.fixture
async def echo() -> AsyncIterator[Rig]:
    rig, worker = await rig_with(echo_handler)
    yield rig
    await worker.close()
    await rig.bus.close()


async def test_echo_writes_its_result_and_reports_completed(echo: Rig) -> None:
    await echo.job("j1", "hello")
    (result,) = await echo.until(1)
    assert (result.status, result.result_ptr, result.worker_id) == (
        JobStatus.COMPLETED,
        "redis://res:j1",
        "w1",
    )
    stored = await echo.memory.get_result("j1")
    assert stored is not None
    assert json.loads(stored)["echo"] == "hello"
    hb = echo.heartbeats[0]
    assert (hb.worker_id, hb.pool, hb.max_parallel_jobs) == ("w1", "echo", 2)


async def test_a_crafted_pointer_is_refused(echo: Rig) -> None:
    await echo.memory.put_context("victim", b'{"prompt":"secret"}')
    await echo.send(JobRequest(job_id="j1", topic="job.echo", context_ptr=context_ptr("victim")))
    (result,) = await echo.until(1)
    assert (result.status, result.error_code) == (JobStatus.FAILED, "bad_context_ptr")
    assert await echo.memory.get_result("j1") is None


async def test_a_missing_context_fails_the_job(echo: Rig) -> None:
    await echo.send(JobRequest(job_id="j1", topic="job.echo", context_ptr=context_ptr("j1")))
    (result,) = await echo.until(1)
    assert (result.status, result.error_code) == (JobStatus.FAILED, "context_missing")


async def test_a_wrong_payload_is_dropped_and_counted(echo: Rig) -> None:
    await echo.send(JobCancel(job_id="j1"))
    await echo.job("j2")
    await echo.until(1)
    assert echo.metrics.value("packets_dropped", reason="unexpected_payload") == 1


async def test_a_handler_exception_fails_the_job_and_the_worker_carries_on() -> None:
    async def handler(job: JobContext) -> bytes:
        if job.request.job_id == "bad":
            raise ValueError("cannot echo this")
        return b"{}"

    rig, worker = await rig_with(handler)
    await rig.job("bad")
    await rig.job("good")
    results = {r.job_id: r for r in await rig.until(2)}
    assert (results["bad"].status, results["bad"].error_code, results["bad"].error_message) == (
        JobStatus.FAILED,
        "ValueError",
        "cannot echo this",
    )
    assert results["good"].status is JobStatus.COMPLETED
    await worker.close()
    await rig.bus.close()


async def test_never_more_than_max_parallel_jobs_at_once() -> None:
    running, peak = 0, 0

    async def handler(job: JobContext) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return b"{}"

    rig, worker = await rig_with(handler, parallel=3)
    for i in range(12):  # half on the worker's own subject, half through the pool's queue group
        await rig.job(f"j{i}")
        await rig.memory.put_context(f"q{i}", b'{"prompt":"q"}')
        await rig.send(
            JobRequest(job_id=f"q{i}", topic="job.echo", context_ptr=context_ptr(f"q{i}")),
            "job.echo",
        )
    results = await rig.until(24)
    assert {r.status for r in results} == {JobStatus.COMPLETED}
    assert peak == 3
    await worker.close()
    await rig.bus.close()


async def test_a_cancel_stops_the_running_handler_and_reports_cancelled() -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def handler(job: JobContext) -> bytes:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()
        return b"{}"

    rig, worker = await rig_with(handler)
    await rig.job("j1")
    await asyncio.wait_for(started.wait(), 5)
    await rig.send(JobCancel(job_id="j1", reason="user asked"), SUBJECT_JOB_CANCEL)
    (result,) = await rig.until(1)
    assert (result.status, result.error_message) == (JobStatus.CANCELLED, "user asked")
    assert stopped.is_set()
    assert worker.active_jobs == 0
    await worker.close()
    await rig.bus.close()


async def test_a_cancel_that_arrives_first_is_remembered(echo: Rig) -> None:
    await echo.send(JobCancel(job_id="j1", reason="early"), SUBJECT_JOB_CANCEL)
    await echo.bus.settle()
    await echo.job("j1")
    (result,) = await echo.until(1)
    assert (result.status, result.error_message) == (JobStatus.CANCELLED, "early")
    assert await echo.memory.get_result("j1") is None


async def test_a_job_past_its_time_ends_timeout() -> None:
    async def slow(job: JobContext) -> bytes:
        await asyncio.sleep(30)
        return b"{}"

    rig, worker = await rig_with(slow, job_timeout_s=0.05)
    await rig.job("j1")
    (result,) = await rig.until(1)
    assert (result.status, result.error_code) == (JobStatus.TIMEOUT, "timeout")
    assert worker.active_jobs == 0
    await worker.close()
    await rig.bus.close()


async def test_the_job_deadline_is_honoured(echo: Rig) -> None:
    # FakeClock says "now" is 1_763_726_400: a deadline before that has passed already.
    await echo.memory.put_context("late", b'{"prompt":"x"}')
    await echo.send(
        JobRequest(
            job_id="late",
            topic="job.echo",
            context_ptr=context_ptr("late"),
            deadline=1_763_726_399.0,
        )
    )
    (result,) = await echo.until(1)
    assert (result.status, result.error_code) == (JobStatus.TIMEOUT, "timeout")


async def test_an_exception_with_an_error_code_keeps_it() -> None:
    class QuotaExceeded(JobError):
        error_code = "quota_exceeded"

    async def handler(job: JobContext) -> bytes:
        raise QuotaExceeded("tenant a is over its quota")

    rig, worker = await rig_with(handler)
    await rig.job("j1")
    (result,) = await rig.until(1)
    assert (result.status, result.error_code, result.error_message) == (
        JobStatus.FAILED,
        "quota_exceeded",
        "tenant a is over its quota",
    )
    await worker.close()
    await rig.bus.close()


async def test_heartbeats_carry_live_load() -> None:
    release = asyncio.Event()

    async def busy(job: JobContext) -> bytes:
        deadline = asyncio.get_running_loop().time() + 0.05
        while asyncio.get_running_loop().time() < deadline:
            pass  # burn CPU so the measured load is visibly above zero
        await release.wait()
        return b"{}"

    rig, worker = await rig_with(busy, parallel=3)
    await rig.job("j1")
    await rig.job("j2")
    async with asyncio.timeout(5):
        while worker.active_jobs < 2:
            await asyncio.sleep(0.005)
    seen = len(rig.heartbeats)
    await worker.heartbeat()
    async with asyncio.timeout(5):  # not settle(): the two jobs are deliberately still running
        while len(rig.heartbeats) == seen:
            await asyncio.sleep(0.005)
    hb = rig.heartbeats[-1]
    assert (hb.worker_id, hb.pool, hb.max_parallel_jobs, hb.active_jobs) == ("w1", "echo", 3, 2)
    assert hb.cpu_load > 0.0
    release.set()
    await rig.until(2)
    await worker.heartbeat()
    await rig.bus.settle()  # nothing is running now
    assert rig.heartbeats[-1].active_jobs == 0
    await worker.close()
    await rig.bus.close()


async def test_a_handler_with_a_lifecycle_is_started_and_closed() -> None:
    class Client:
        def __init__(self) -> None:
            self.events: list[str] = []

        async def start(self) -> None:
            self.events.append("start")

        async def close(self) -> None:
            self.events.append("close")

        async def __call__(self, job: JobContext) -> bytes:
            self.events.append("job")
            return b"{}"

    client = Client()
    rig, worker = await rig_with(client)
    await rig.job("j1")
    await rig.until(1)
    await worker.close()
    assert client.events == ["start", "job", "close"]
    await rig.bus.close()


async def test_a_handler_raising_cancelled_error_fails_its_job_not_the_worker() -> None:
    async def rogue(job: JobContext) -> bytes:
        if job.request.job_id == "rogue":
            raise asyncio.CancelledError
        return b"{}"

    rig, worker = await rig_with(rogue, parallel=1)
    await rig.job("rogue")
    await rig.job("next")
    results = {r.job_id: r for r in await rig.until(2)}
    assert (results["rogue"].status, results["rogue"].error_code) == (
        JobStatus.FAILED,
        "CancelledError",
    )
    assert results["next"].status is JobStatus.COMPLETED  # the subscription lives on
    await worker.close()
    await rig.bus.close()


async def test_a_cancel_during_the_context_fetch_is_not_lost() -> None:
    gate, fetching = asyncio.Event(), asyncio.Event()

    class SlowStore(InMemoryMemoryStore):
        async def get_context(self, job_id: str) -> bytes | None:
            fetching.set()
            await gate.wait()
            return await super().get_context(job_id)

    slow = SlowStore(clock=FakeClock())
    rig, worker = await rig_with(echo_handler, memory=slow)
    await slow.put_context("j1", b'{"prompt":"x"}')
    await rig.send(JobRequest(job_id="j1", topic="job.echo", context_ptr=context_ptr("j1")))
    await asyncio.wait_for(fetching.wait(), 5)
    await rig.send(JobCancel(job_id="j1", reason="changed my mind"), SUBJECT_JOB_CANCEL)
    await asyncio.sleep(0.01)
    gate.set()
    (result,) = await rig.until(1)
    assert (result.status, result.error_message) == (JobStatus.CANCELLED, "changed my mind")
    await worker.close()
    await rig.bus.close()


async def test_a_timed_out_handler_stops_before_its_slot_is_reused() -> None:
    running, peak = 0, 0

    async def stubborn(job: JobContext) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.1)  # takes its time to wind down
            raise
        finally:
            running -= 1
        return b"{}"

    rig, worker = await rig_with(stubborn, parallel=1, job_timeout_s=0.05)
    for i in range(3):
        await rig.job(f"j{i}")
    results = await rig.until(3)
    assert {r.status for r in results} == {JobStatus.TIMEOUT}
    assert peak == 1
    await worker.close()
    await rig.bus.close()


async def test_a_closing_worker_announces_it_has_no_capacity(echo: Rig) -> None:
    assert echo.heartbeats[-1].max_parallel_jobs == 2
    # echo's fixture closes the worker; close a second worker here and watch its last word.
    rig, worker = await rig_with(echo_handler)
    await worker.close()
    await rig.bus.settle()
    assert rig.heartbeats[-1].max_parallel_jobs == 0
    await rig.bus.close()


# -- per-attempt time limits, attempts on results, per-attempt cancels ----------------------


async def _slow(job: JobContext) -> bytes:
    await asyncio.sleep(30)
    return b"{}"


async def test_a_request_timeout_shorter_than_the_run_ends_timeout_with_its_attempt() -> None:
    rig, worker = await rig_with(_slow, job_timeout_s=30.0)
    started = time.monotonic()
    await rig.request("j1", attempt=3, timeout_s=0.05)
    (result,) = await rig.until(1)
    assert (result.status, result.error_code, result.attempt) == (JobStatus.TIMEOUT, "timeout", 3)
    assert "(0.050 s)" in result.error_message
    assert time.monotonic() - started < 5  # the request's 0.05 s, not the worker's 30 s
    assert worker.active_jobs == 0
    await worker.close()
    await rig.bus.close()


async def test_the_worker_limit_wins_over_a_longer_request_timeout() -> None:
    rig, worker = await rig_with(_slow, job_timeout_s=0.05)
    await rig.request("j1", attempt=2, timeout_s=30.0)
    (result,) = await rig.until(1)
    assert (result.status, result.error_code, result.attempt) == (JobStatus.TIMEOUT, "timeout", 2)
    assert "(0.050 s)" in result.error_message
    await worker.close()
    await rig.bus.close()


async def test_a_zero_request_timeout_is_a_limit_not_its_absence() -> None:
    ran: list[str] = []

    async def handler(job: JobContext) -> bytes:
        ran.append(job.request.job_id)
        return b"{}"

    rig, worker = await rig_with(handler)
    await rig.request("zero", timeout_s=0.0)  # on the wire: present, and zero
    await rig.request("unset", timeout_s=None)  # absent: no limit of its own
    results = {r.job_id: r for r in await rig.until(2)}
    assert (results["zero"].status, results["zero"].error_code) == (JobStatus.TIMEOUT, "timeout")
    assert results["unset"].status is JobStatus.COMPLETED
    assert ran == ["unset"]
    await worker.close()
    await rig.bus.close()


async def test_every_result_names_the_attempt_it_answers() -> None:
    async def handler(job: JobContext) -> bytes:
        if job.request.job_id == "bad":
            raise ValueError("no")
        return b"{}"

    rig, worker = await rig_with(handler)
    await rig.request("ok", attempt=2)
    await rig.request("bad", attempt=4)
    await rig.send(  # no context stored: fails before the handler runs
        JobRequest(job_id="lost", topic="job.echo", context_ptr=context_ptr("lost"), attempt=5)
    )
    await rig.send(JobCancel(job_id="early", reason="no", attempt=6), SUBJECT_JOB_CANCEL)
    await rig.bus.settle()
    await rig.request("early", attempt=6)
    results = {r.job_id: (r.status, r.attempt) for r in await rig.until(4)}
    assert results == {
        "ok": (JobStatus.COMPLETED, 2),
        "bad": (JobStatus.FAILED, 4),
        "lost": (JobStatus.FAILED, 5),
        "early": (JobStatus.CANCELLED, 6),
    }
    await worker.close()
    await rig.bus.close()


class Blocking:
    """A handler whose runs block until released, noting which were interrupted."""

    def __init__(self) -> None:
        self.started: dict[tuple[str, int], asyncio.Event] = {}
        self.release: dict[tuple[str, int], asyncio.Event] = {}
        self.interrupted: set[tuple[str, int]] = set()

    @staticmethod
    def _event(events: dict[tuple[str, int], asyncio.Event], key: tuple[str, int]) -> asyncio.Event:
        return events.setdefault(key, asyncio.Event())

    async def wait_started(self, job_id: str, attempt: int) -> None:
        await asyncio.wait_for(self._event(self.started, (job_id, attempt)).wait(), 5)

    def finish(self, job_id: str, attempt: int) -> None:
        self._event(self.release, (job_id, attempt)).set()

    async def __call__(self, job: JobContext) -> bytes:
        key = (job.request.job_id, job.request.attempt)
        self._event(self.started, key).set()
        try:
            await asyncio.wait_for(self._event(self.release, key).wait(), 10)
        except asyncio.CancelledError:
            self.interrupted.add(key)
            raise
        return b"{}"


async def _cancel_handled(rig: Rig, blocking: Blocking, probe: str = "probe") -> None:
    """Wait until every cancel sent so far has been handled: the cancel subscription handles
    its packets one at a time, in order, so once a cancel sent after them has stopped
    ``probe`` (running), they have all been seen."""
    await rig.send(JobCancel(job_id=probe, reason="probe"), SUBJECT_JOB_CANCEL)
    async with asyncio.timeout(5):
        while not any(r.job_id == probe for r in rig.results):
            await asyncio.sleep(0.005)
    assert (probe, 1) in blocking.interrupted


async def test_a_cancel_of_an_earlier_attempt_leaves_the_running_one_alone() -> None:
    blocking = Blocking()
    rig, worker = await rig_with(blocking, parallel=2)
    await rig.request("j1", attempt=2)
    await rig.request("probe")
    await blocking.wait_started("j1", 2)
    await blocking.wait_started("probe", 1)
    await rig.send(JobCancel(job_id="j1", reason="overran", attempt=1), SUBJECT_JOB_CANCEL)
    await _cancel_handled(rig, blocking)
    assert ("j1", 2) not in blocking.interrupted
    blocking.finish("j1", 2)
    results = {r.job_id: r for r in await rig.until(2)}
    assert (results["j1"].status, results["j1"].attempt) == (JobStatus.COMPLETED, 2)
    await worker.close()
    await rig.bus.close()


@pytest.mark.parametrize("attempt", [2, 0])
async def test_a_cancel_of_the_running_attempt_or_of_any_stops_it(attempt: int) -> None:
    blocking = Blocking()
    rig, worker = await rig_with(blocking)
    await rig.request("j1", attempt=2)
    await blocking.wait_started("j1", 2)
    await rig.send(JobCancel(job_id="j1", reason="stop", attempt=attempt), SUBJECT_JOB_CANCEL)
    (result,) = await rig.until(1)
    assert (result.status, result.error_message, result.attempt) == (
        JobStatus.CANCELLED,
        "stop",
        2,
    )
    assert ("j1", 2) in blocking.interrupted
    await worker.close()
    await rig.bus.close()


async def test_a_remembered_cancel_of_attempt_1_does_not_stop_attempt_2(echo: Rig) -> None:
    await echo.send(JobCancel(job_id="j1", reason="overran", attempt=1), SUBJECT_JOB_CANCEL)
    await echo.bus.settle()
    await echo.request("j1", attempt=2)
    (result,) = await echo.until(1)
    assert (result.status, result.attempt) == (JobStatus.COMPLETED, 2)
    # Still remembered for attempt 1, should its packet turn up late.
    await echo.request("j1", attempt=1)
    _, late = await echo.until(2)
    assert (late.status, late.error_message, late.attempt) == (JobStatus.CANCELLED, "overran", 1)


async def test_a_cancel_of_attempt_1_sent_during_attempt_2_stops_a_late_attempt_1() -> None:
    blocking = Blocking()
    rig, worker = await rig_with(blocking, parallel=2)
    await rig.request("j1", attempt=2)
    await rig.request("probe")
    await blocking.wait_started("j1", 2)
    await blocking.wait_started("probe", 1)
    await rig.send(JobCancel(job_id="j1", reason="overran", attempt=1), SUBJECT_JOB_CANCEL)
    await _cancel_handled(rig, blocking)
    await rig.request("j1", attempt=1)  # attempt 1's packet, late (redelivered, say)
    async with asyncio.timeout(5):
        while len(rig.results) < 2:
            await asyncio.sleep(0.005)
    late = rig.results[1]
    assert (late.job_id, late.status, late.attempt) == ("j1", JobStatus.CANCELLED, 1)
    blocking.finish("j1", 2)
    assert (await rig.until(3))[2].status is JobStatus.COMPLETED
    await worker.close()
    await rig.bus.close()


async def test_two_attempts_of_one_job_on_one_worker_are_cancelled_apart() -> None:
    """The scheduler gave up on attempt 1 (its handler still runs) and sent attempt 2 to the
    same worker: a cancel reaches the attempt it names, and attempt 2 stays cancellable after
    attempt 1 has ended."""
    blocking = Blocking()
    rig, worker = await rig_with(blocking, parallel=2)
    await rig.request("j1", attempt=1)
    await blocking.wait_started("j1", 1)
    await rig.request("j1", attempt=2)
    await blocking.wait_started("j1", 2)
    await rig.send(JobCancel(job_id="j1", reason="overran", attempt=1), SUBJECT_JOB_CANCEL)
    (first,) = await rig.until(1)
    assert (first.status, first.attempt) == (JobStatus.CANCELLED, 1)
    assert ("j1", 2) not in blocking.interrupted
    await rig.send(JobCancel(job_id="j1", reason="client"), SUBJECT_JOB_CANCEL)
    _, second = await rig.until(2)
    assert (second.status, second.error_message, second.attempt) == (
        JobStatus.CANCELLED,
        "client",
        2,
    )
    await worker.close()
    await rig.bus.close()
