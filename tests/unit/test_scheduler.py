"""The scheduler service on in-memory adapters, with a fake clock: assertions on state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import (
    InMemoryBus,
    InMemoryJobStore,
    InMemoryMetrics,
    InMemoryWorkerRegistry,
    InProcessSafetyChecker,
)
from cortex_adapters.system import AsyncioConcurrency
from cortex_core.bus_protocol import (
    SUBJECT_JOB_CANCEL,
    SUBJECT_JOB_RESULT,
    SUBJECT_JOB_SUBMIT,
    heartbeat_subject,
)
from cortex_core.jobs import ApprovalRequiredJob, JobSpec, RunningJob, new_job
from cortex_core.messages import (
    BusPacket,
    Heartbeat,
    JobCancel,
    JobRequest,
    JobResult,
    JobStatus,
    Payload,
)
from cortex_core.pointers import context_ptr, result_ptr
from cortex_core.policy import Decision, Policy, Rule, SafetyDecision, SafetyRequest
from cortex_core.ports import Concurrency, SafetyChecker
from cortex_core.routing import RoutingTable
from cortex_core.scheduler import DispatchMode, Scheduler, SchedulerConfig
from tests.fakes import FakeClock

ROUTING = RoutingTable.from_pools({"echo": ("job.echo",), "chat-llm": ("job.chat.llm",)})


@dataclass
class Harness:
    bus: InMemoryBus
    jobs: InMemoryJobStore
    metrics: InMemoryMetrics
    clock: FakeClock
    scheduler: Scheduler
    dispatched: list[tuple[str, BusPacket]] = field(default_factory=list)

    async def send(self, subject: str, payload: Payload) -> None:
        await self.bus.publish(
            subject,
            BusPacket(
                trace_id="ab" * 16, sender_id="test", created_at=self.clock.now(), payload=payload
            ),
        )
        await self.bus.settle()

    async def heartbeat(
        self, worker_id: str, *, pool: str = "echo", active: int = 0, max_jobs: int = 2
    ) -> None:
        await self.send(
            heartbeat_subject(worker_id),
            Heartbeat(
                worker_id=worker_id, pool=pool, max_parallel_jobs=max_jobs, active_jobs=active
            ),
        )

    async def submit(self, job_id: str, topic: str = "job.echo") -> None:
        await self.send(
            SUBJECT_JOB_SUBMIT,
            JobRequest(job_id=job_id, topic=topic, context_ptr=context_ptr(job_id)),
        )

    async def result(
        self,
        job_id: str,
        status: JobStatus = JobStatus.COMPLETED,
        attempt: int = 0,
        *,
        error_message: str = "",
        error_code: str = "",
        result_ptr: str = "",
    ) -> None:
        await self.send(
            SUBJECT_JOB_RESULT,
            JobResult(
                job_id=job_id,
                status=status,
                worker_id="w1",
                attempt=attempt,
                error_message=error_message,
                error_code=error_code,
                result_ptr=result_ptr,
            ),
        )

    async def status(self, job_id: str) -> JobStatus | None:
        job = await self.jobs.get(job_id)
        return None if job is None else job.status


async def make_harness(
    mode: DispatchMode = DispatchMode.WORKER,
    policy: Policy | None = None,
    jobs: InMemoryJobStore | None = None,
    bus: InMemoryBus | None = None,
    safety: SafetyChecker | None = None,
    concurrency: Concurrency | None = None,
) -> Harness:
    clock = FakeClock()
    bus = bus or InMemoryBus(codec=ProtobufCodec(), strict=True)
    jobs = jobs or InMemoryJobStore()
    metrics = InMemoryMetrics()
    scheduler = Scheduler(
        bus=bus,
        jobs=jobs,
        safety=safety or InProcessSafetyChecker(policy),
        registry=InMemoryWorkerRegistry(clock=clock),
        routing=ROUTING,
        metrics=metrics,
        clock=clock,
        config=SchedulerConfig(dispatch_mode=mode),
        concurrency=concurrency,
    )
    h = Harness(bus, jobs, metrics, clock, scheduler)

    async def spy(packet: BusPacket) -> None:
        assert isinstance(packet.payload, JobRequest)
        h.dispatched.append((packet.payload.job_id, packet))

    await scheduler.start()
    for subject in ("worker.*.jobs", "job.>"):
        await bus.subscribe(subject, spy)
    return h


def j1_spec(h: Harness, **fields: float) -> JobSpec:
    """Job j1 on job.echo, created now, with ``fields`` (deadline, timeout_s) set."""
    return JobSpec(
        job_id="j1",
        trace_id="ab" * 16,
        topic="job.echo",
        context_ptr=context_ptr("j1"),
        created_at=h.clock.now(),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await make_harness()
    yield harness
    await harness.scheduler.close()
    await harness.bus.close()  # strict: re-raises any handler error


async def test_allowed_job_is_dispatched_to_the_least_loaded_worker(h: Harness) -> None:
    await h.heartbeat("w-busy", active=1)
    await h.heartbeat("w-idle", active=0)
    await h.submit("j1")
    job = await h.jobs.get("j1")
    assert job is not None
    assert job.status is JobStatus.RUNNING
    assert job.worker_id == "w-idle"
    assert job.attempts == 1
    assert [jid for jid, _ in h.dispatched] == ["j1"]
    packet = h.dispatched[0][1]
    assert isinstance(packet.payload, JobRequest)
    assert packet.payload.attempt == 1
    assert packet.trace_id == "ab" * 16
    assert h.metrics.value("jobs_received", topic="job.echo") == 1
    assert h.metrics.value("jobs_dispatched", topic="job.echo") == 1


async def test_denied_job_ends_denied_and_never_reaches_a_worker(h: Harness) -> None:
    await h.heartbeat("w1")
    await h.submit("j1", topic="sys.destroy")
    job = await h.jobs.get("j1")
    assert job is not None
    assert job.status is JobStatus.DENIED
    assert job.reason == "topic sys.destroy is forbidden"
    assert h.dispatched == []
    assert h.metrics.value("safety_denied", topic="sys.destroy") == 1


async def test_unroutable_topic_fails_at_once(h: Harness) -> None:
    await h.submit("j1", topic="job.nowhere")
    job = await h.jobs.get("j1")
    assert job is not None
    assert (job.status, job.reason) == (JobStatus.FAILED, "no_pool_for_topic")


async def test_job_waits_for_a_worker_and_goes_when_one_appears(h: Harness) -> None:
    await h.submit("j1")
    await h.submit("j2")
    job = await h.jobs.get("j1")
    assert job is not None
    assert (job.status, job.reason) == (JobStatus.PENDING, "no_workers")
    assert h.scheduler.waiting("echo") == ("j1", "j2")
    await h.heartbeat("w1", max_jobs=1, active=1)  # alive but full
    assert (await h.jobs.get("j1")).reason == "pool_at_capacity"  # type: ignore[union-attr]
    await h.submit("j3")
    assert h.scheduler.waiting("echo") == ("j1", "j2", "j3")
    await h.heartbeat("w1", max_jobs=4, active=0)
    assert [jid for jid, _ in h.dispatched] == ["j1", "j2", "j3"]  # in arrival order
    assert h.scheduler.waiting("echo") == ()


async def test_stale_workers_are_not_candidates(h: Harness) -> None:
    await h.heartbeat("w1")
    h.clock.advance(16)
    await h.submit("j1")
    assert await h.status("j1") is JobStatus.PENDING
    assert h.dispatched == []


async def test_result_completes_the_job_and_duplicates_change_nothing(h: Harness) -> None:
    await h.heartbeat("w1")
    await h.submit("j1")
    await h.result("j1", result_ptr=result_ptr("j1"))
    done = await h.jobs.get("j1")
    assert done is not None
    assert (done.status, done.result_ptr) == (JobStatus.COMPLETED, result_ptr("j1"))
    await h.result("j1", JobStatus.FAILED, error_code="late")
    await h.submit("j1")  # a redelivered submit
    assert await h.jobs.get("j1") == done
    assert [jid for jid, _ in h.dispatched] == ["j1"]
    assert h.metrics.value("jobs_completed", topic="job.echo", status="COMPLETED") == 1


async def test_failed_result_records_the_error(h: Harness) -> None:
    await h.heartbeat("w1")
    await h.submit("j1")
    await h.result("j1", JobStatus.FAILED, error_code="ValueError", error_message="bad input")
    job = await h.jobs.get("j1")
    assert job is not None
    assert (job.status, job.reason) == (JobStatus.FAILED, "ValueError: bad input")


async def test_bad_results_are_dropped_and_counted(h: Harness) -> None:
    await h.result("nobody")
    await h.heartbeat("w1")
    await h.submit("j1")
    await h.result("j1", JobStatus.PENDING)
    assert h.metrics.value("packets_dropped", reason="unknown_job") == 1
    assert h.metrics.value("packets_dropped", reason="invalid_result_status") == 1
    assert await h.status("j1") is JobStatus.RUNNING


async def test_pool_mode_publishes_on_the_topic() -> None:
    h = await make_harness(DispatchMode.POOL)
    await h.heartbeat("w1")
    await h.submit("j1")
    assert h.dispatched[0][0] == "j1"
    assert await h.status("j1") is JobStatus.RUNNING
    await h.bus.close()


async def test_two_schedulers_never_both_dispatch_a_job() -> None:
    jobs, bus = InMemoryJobStore(), InMemoryBus(strict=True)
    a = await make_harness(jobs=jobs, bus=bus)
    b = await make_harness(jobs=jobs, bus=bus)
    await a.heartbeat("w1", max_jobs=100)
    for i in range(20):
        spec = JobSpec(
            job_id=f"j{i}",
            trace_id="ab" * 16,
            topic="job.echo",
            context_ptr=context_ptr(f"j{i}"),
            created_at=0.0,
        )
        await jobs.create(new_job(spec, 0.0))
        # The same submit reaches both replicas (a redelivery after a crash looks like this).
        await a.scheduler.on_submit(
            BusPacket(
                trace_id="ab" * 16,
                sender_id="t",
                created_at=0.0,
                payload=spec.to_request(attempt=0),
            )
        )
        await b.scheduler.on_submit(
            BusPacket(
                trace_id="ab" * 16,
                sender_id="t",
                created_at=0.0,
                payload=spec.to_request(attempt=0),
            )
        )
    await bus.settle()
    ids = sorted(jid for jid, _ in a.dispatched)
    assert ids == sorted(f"j{i}" for i in range(20))  # each exactly once
    await bus.close()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.sampled_from(
            # TIMEOUT is left out: without a deadline it retries the job (tested below).
            [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]
        ),
        min_size=1,
        max_size=6,
    )
)
async def test_the_first_result_decides_and_later_ones_are_absorbed(
    results: list[JobStatus],
) -> None:
    h = await make_harness()
    await h.heartbeat("w1")
    await h.submit("j1")
    for status in results:
        await h.result("j1", status)
    assert await h.status("j1") is results[0]
    assert h.metrics.total("jobs_completed") == 1
    await h.bus.close()


async def test_a_job_that_needs_approval_waits_then_goes_once_approved() -> None:
    policy = Policy(
        rules=(
            Rule(
                id="ask", decision=Decision.REQUIRE_APPROVAL, reason="big prompt", topic="job.echo"
            ),
        )
    )
    h = await make_harness(policy=policy)
    await h.heartbeat("w1")
    await h.submit("j1")
    job = await h.jobs.get("j1")
    assert isinstance(job, ApprovalRequiredJob)
    assert job.reason == "big prompt"
    assert h.dispatched == []
    assert await h.jobs.transition(job.approve(h.clock.now()))
    # The front door only records the approval; the next sweep routes the job, without asking
    # the policy again (it would ask for approval once more).
    await h.scheduler.sweep()
    await h.bus.settle()
    running = await h.jobs.get("j1")
    assert running is not None
    assert running.status is JobStatus.RUNNING
    assert [jid for jid, _ in h.dispatched] == ["j1"]
    await h.bus.close()


async def test_dispatches_between_heartbeats_count_against_capacity() -> None:
    h = await make_harness()
    await h.heartbeat("w1", max_jobs=2, active=0)  # one heartbeat: two free slots
    for i in range(5):
        await h.submit(f"j{i}")
    assert [jid for jid, _ in h.dispatched] == ["j0", "j1"]  # not all five onto w1
    assert h.scheduler.waiting("echo") == ("j2", "j3", "j4")
    assert (await h.jobs.get("j2")).reason == "pool_at_capacity"  # type: ignore[union-attr]
    await h.result("j0")  # a slot frees up: the next job goes now, not at the next heartbeat
    assert [jid for jid, _ in h.dispatched] == ["j0", "j1", "j2"]
    await h.bus.close()


async def test_a_restarted_scheduler_takes_up_the_jobs_that_were_waiting() -> None:
    jobs = InMemoryJobStore()
    first = await make_harness(jobs=jobs)
    for i in range(3):
        await first.submit(f"j{i}")  # no workers: all three wait
    await first.scheduler.close()
    await first.bus.close()

    second = await make_harness(jobs=jobs)  # a new process: empty memory, same job store
    assert second.scheduler.waiting("echo") == ("j0", "j1", "j2")
    await second.heartbeat("w1", max_jobs=8)
    assert [jid for jid, _ in second.dispatched] == ["j0", "j1", "j2"]
    await second.bus.close()


async def test_a_job_whose_worker_goes_silent_is_retried_elsewhere_after_a_backoff() -> None:
    h = await make_harness()
    await h.heartbeat("w1")
    await h.submit("j1")
    assert (await h.jobs.get("j1")).worker_id == "w1"  # type: ignore[union-attr]
    h.clock.advance(16)  # w1 is silent past stale_after_s (15 s)
    await h.heartbeat("w2")
    await h.scheduler.sweep()
    requeued = await h.jobs.get("j1")
    assert requeued is not None
    assert (requeued.status, requeued.reason, requeued.attempts) == (JobStatus.PENDING, "retry", 1)
    await h.scheduler.sweep()  # the backoff (1 s for the second attempt) hasn't passed
    await h.bus.settle()
    assert [jid for jid, _ in h.dispatched] == ["j1"]
    h.clock.advance(1.0)
    await h.scheduler.sweep()
    await h.bus.settle()
    assert [jid for jid, _ in h.dispatched] == ["j1", "j1"]
    again = await h.jobs.get("j1")
    assert again is not None
    assert (again.status, again.worker_id, again.attempts) == (JobStatus.RUNNING, "w2", 2)
    second = h.dispatched[-1][1].payload
    assert isinstance(second, JobRequest)
    assert second.attempt == 2
    await h.bus.close()


async def test_a_live_worker_keeps_its_jobs(h: Harness) -> None:
    await h.heartbeat("w1")
    await h.submit("j1")
    h.clock.advance(10)
    await h.heartbeat("w1")
    await h.scheduler.sweep()
    assert await h.status("j1") is JobStatus.RUNNING


async def test_after_max_attempts_the_job_fails_with_a_reason() -> None:
    h = await make_harness()
    for attempt in range(1, 4):
        h.clock.advance(60)  # past any backoff
        await h.heartbeat(f"w{attempt}")
        if attempt == 1:
            await h.submit("j1")
        else:
            await h.scheduler.sweep()  # dispatches the retry to the only fresh worker
        assert (await h.jobs.get("j1")).attempts == attempt  # type: ignore[union-attr]
        h.clock.advance(16)  # ...which then goes silent
        await h.scheduler.sweep()
    failed = await h.jobs.get("j1")
    assert failed is not None
    assert failed.status is JobStatus.FAILED
    assert failed.reason == "worker_lost: worker w3 went silent; gave up after 3 attempts"
    assert h.metrics.value("jobs_completed", topic="job.echo", status="FAILED") == 1
    await h.bus.close()


async def test_the_backoff_grows_exponentially_to_a_cap() -> None:
    cfg = SchedulerConfig(retry_backoff_s=0.5, retry_backoff_max_s=3.0)
    assert [cfg.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_a_passed_deadline_ends_running_and_waiting_jobs_timeout(h: Harness) -> None:
    now = h.clock.now()
    await h.heartbeat("w1", max_jobs=1)
    for job_id in ("running", "waiting"):
        await h.send(
            SUBJECT_JOB_SUBMIT,
            JobRequest(
                job_id=job_id, topic="job.echo", context_ptr=context_ptr(job_id), deadline=now + 5
            ),
        )
    assert (await h.status("running"), await h.status("waiting")) == (
        JobStatus.RUNNING,
        JobStatus.PENDING,
    )
    h.clock.advance(5)
    await h.scheduler.sweep()
    for job_id in ("running", "waiting"):
        job = await h.jobs.get(job_id)
        assert job is not None
        assert (job.status, job.reason) == (JobStatus.TIMEOUT, "deadline_passed")


async def test_a_restarted_scheduler_does_not_requeue_jobs_of_workers_it_has_not_heard_yet() -> (
    None
):
    jobs = InMemoryJobStore()
    first = await make_harness(jobs=jobs)
    await first.heartbeat("w1")
    await first.submit("j1")
    await first.scheduler.close()
    await first.bus.close()

    second = await make_harness(jobs=jobs)  # empty registry: it has heard from no worker yet
    second.clock.t = first.clock.t + 1
    await second.scheduler.sweep()
    assert await second.status("j1") is JobStatus.RUNNING  # not requeued on an empty registry
    await second.heartbeat("w1")
    second.clock.advance(10)
    await second.heartbeat("w1")
    await second.scheduler.sweep()
    assert await second.status("j1") is JobStatus.RUNNING  # w1 is alive and well
    second.clock.advance(16)  # now w1 really went silent, and the grace is long over
    await second.scheduler.sweep()
    assert await second.status("j1") is JobStatus.PENDING
    await second.bus.close()


async def test_a_replica_adopts_jobs_another_parked_before_it_died() -> None:
    jobs, bus = InMemoryJobStore(), InMemoryBus(strict=True)
    doomed = await make_harness(jobs=jobs, bus=bus)
    survivor = await make_harness(jobs=jobs, bus=bus)
    await doomed.scheduler.on_submit(
        BusPacket(
            trace_id="ab" * 16,
            sender_id="t",
            created_at=0.0,
            payload=JobRequest(job_id="j1", topic="job.echo", context_ptr=context_ptr("j1")),
        )
    )
    assert doomed.scheduler.waiting("echo") == ("j1",)
    assert survivor.scheduler.waiting("echo") == ()
    await doomed.scheduler.close()  # it dies holding j1 in its memory
    await survivor.scheduler.sweep()
    assert survivor.scheduler.waiting("echo") == ("j1",)
    await survivor.heartbeat("w1")
    assert await survivor.status("j1") is JobStatus.RUNNING
    await bus.close()


async def test_a_redelivered_submit_republishes_a_dispatch_that_never_went_out(h: Harness) -> None:
    await h.heartbeat("w1")
    # A replica committed RUNNING and died before publishing the dispatch:
    spec = JobSpec(
        job_id="lost",
        trace_id="ab" * 16,
        topic="job.echo",
        context_ptr=context_ptr("lost"),
        created_at=h.clock.now(),
    )
    pending = new_job(spec, h.clock.now())
    await h.jobs.create(pending)
    await h.jobs.transition(pending.dispatch("w1", h.clock.now()))
    await h.send(SUBJECT_JOB_SUBMIT, spec.to_request(attempt=0))  # the submit comes back
    assert [jid for jid, _ in h.dispatched] == ["lost"]
    # ...and for a job whose dispatch did go out, the re-published one is de-duplicated. A
    # redelivery is not a new publish, so it goes straight to on_submit here.
    await h.submit("j2")
    await h.scheduler.on_submit(
        BusPacket(
            trace_id="ab" * 16,
            sender_id="t",
            created_at=0.0,
            payload=JobRequest(job_id="j2", topic="job.echo", context_ptr=context_ptr("j2")),
        )
    )
    await h.bus.settle()
    assert [jid for jid, _ in h.dispatched] == ["lost", "j2"]


async def test_a_worker_timeout_without_a_deadline_retries_then_fails(h: Harness) -> None:
    await h.heartbeat("w1", max_jobs=4)
    await h.submit("j1")
    for attempt in (1, 2, 3):
        job = await h.jobs.get("j1")
        assert job is not None
        assert job.status is JobStatus.RUNNING
        assert job.attempts == attempt
        await h.result("j1", JobStatus.TIMEOUT, attempt, error_message="the job ran past its time")
        if attempt < 3:
            assert await h.status("j1") is JobStatus.PENDING
            h.clock.advance(2.0**attempt)  # past the backoff
            await h.heartbeat("w1", max_jobs=4)
            await h.scheduler.sweep()
    job = await h.jobs.get("j1")
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert job.reason == "overran: the job ran past its time; gave up after 3 attempts"
    assert [jid for jid, _ in h.dispatched] == ["j1"] * 3


async def test_a_worker_timeout_after_the_deadline_ends_the_job_timeout() -> None:
    h = await make_harness()
    await h.heartbeat("w1")
    spec = j1_spec(h, deadline=h.clock.now() + 5)
    await h.jobs.create(new_job(spec, h.clock.now()))
    await h.send(SUBJECT_JOB_SUBMIT, spec.to_request(attempt=0))
    h.clock.advance(6)
    await h.result("j1", JobStatus.TIMEOUT, error_message="deadline")
    assert await h.status("j1") is JobStatus.TIMEOUT
    await h.bus.close()


async def test_an_attempt_that_overruns_its_timeout_is_cancelled_and_retried() -> None:
    h = await make_harness()
    cancels: list[BusPacket] = []

    async def spy(packet: BusPacket) -> None:
        cancels.append(packet)

    await h.bus.subscribe(SUBJECT_JOB_CANCEL, spy)
    await h.heartbeat("w1", max_jobs=4)
    spec = j1_spec(h, timeout_s=10)
    await h.jobs.create(new_job(spec, h.clock.now()))
    await h.send(SUBJECT_JOB_SUBMIT, spec.to_request(attempt=0))
    assert h.dispatched[0][1].payload == spec.to_request(attempt=1)  # the worker gets timeout_s
    h.clock.advance(14)  # past 10 s, but within the 5 s grace: the worker may still report
    await h.heartbeat("w1", max_jobs=4)
    await h.scheduler.sweep()
    assert await h.status("j1") is JobStatus.RUNNING
    h.clock.advance(2)
    await h.heartbeat("w1", max_jobs=4)
    await h.scheduler.sweep()
    await h.bus.settle()
    job = await h.jobs.get("j1")
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert job.reason == "retry"
    assert [c.payload for c in cancels] == [
        JobCancel(job_id="j1", reason="ran past its timeout of 10 s", attempt=1)
    ]
    h.clock.advance(1)
    await h.heartbeat("w1", max_jobs=4)
    await h.scheduler.sweep()
    await h.bus.settle()
    assert [p.payload.attempt for _, p in h.dispatched if isinstance(p.payload, JobRequest)] == [
        1,
        2,
    ]
    await h.bus.close()


async def test_an_orphaned_pending_job_is_taken_up_by_the_sweep() -> None:
    """A job the front door recorded but whose submit never reached a scheduler."""
    h = await make_harness()
    await h.heartbeat("w1")
    spec = j1_spec(h)
    await h.jobs.create(new_job(spec, h.clock.now()))
    h.clock.advance(30)
    await h.heartbeat("w1")
    await h.scheduler.sweep()
    assert await h.status("j1") is JobStatus.PENDING  # not orphaned yet: the submit may come
    h.clock.advance(31)
    await h.heartbeat("w1")
    await h.scheduler.sweep()
    assert await h.status("j1") is JobStatus.RUNNING
    assert h.metrics.total("jobs_received") == 1
    await h.bus.close()


async def test_a_late_failure_of_an_attempt_given_up_on_changes_nothing(h: Harness) -> None:
    await h.heartbeat("w1", max_jobs=4)
    await h.submit("j1")
    await h.result("j1", JobStatus.TIMEOUT, 1)
    h.clock.advance(1)
    await h.heartbeat("w1", max_jobs=4)
    await h.scheduler.sweep()  # attempt 2 runs now
    await h.result("j1", JobStatus.FAILED, 1, error_message="late")
    job = await h.jobs.get("j1")
    assert job is not None
    assert job.status is JobStatus.RUNNING
    assert job.attempts == 2
    await h.result("j1", JobStatus.COMPLETED, 2)
    assert await h.status("j1") is JobStatus.COMPLETED


async def test_a_dispatch_lost_with_its_scheduler_is_published_again_by_the_sweep() -> None:
    """A replica committed RUNNING and died before publishing: a later sweep re-publishes once
    (the bus's de-duplication drops it when the first one did go out)."""
    h = await make_harness()
    await h.heartbeat("w1")
    spec = j1_spec(h)
    pending = new_job(spec, h.clock.now())
    await h.jobs.create(pending)
    assert await h.jobs.transition(pending.dispatch("w1", h.clock.now()))  # never published
    h.clock.advance(2)
    await h.heartbeat("w1")
    await h.scheduler.sweep()
    await h.bus.settle()
    assert h.dispatched == []
    for _ in range(4):  # 5 s and later: published in the first two sweeps past it only
        h.clock.advance(1.2)
        await h.heartbeat("w1")
        await h.scheduler.sweep()
        await h.bus.settle()
    assert [jid for jid, _ in h.dispatched] == ["j1"]  # the second one was de-duplicated
    assert h.dispatched[0][0] == "j1"
    request = h.dispatched[0][1].payload
    assert isinstance(request, JobRequest)
    assert request.attempt == 1
    await h.bus.close()


async def test_a_job_cancelled_while_running_frees_its_slot_when_the_worker_stops(
    h: Harness,
) -> None:
    await h.heartbeat("w1", max_jobs=1)
    await h.submit("j1")
    await h.submit("j2")
    assert await h.status("j2") is JobStatus.PENDING  # the only slot is taken
    running = await h.jobs.get("j1")
    assert isinstance(running, RunningJob)
    assert await h.jobs.transition(running.cancel("by client", h.clock.now()))  # the front door
    await h.result("j1", JobStatus.CANCELLED, 1)  # the worker stopped it
    assert await h.status("j2") is JobStatus.RUNNING  # no heartbeat needed


class CountingJobStore(InMemoryJobStore):
    """Counts the reads of single jobs, to see which results needed one."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []

    async def get(self, job_id: str):  # type: ignore[no-untyped-def]
        self.gets.append(job_id)
        return await super().get(job_id)


async def counting_harness(**config: object) -> tuple[Harness, CountingJobStore]:
    store = CountingJobStore()
    h = await make_harness(jobs=store)
    if config:
        h.scheduler._config = SchedulerConfig(**config)  # type: ignore[arg-type]
    return h, store


async def test_a_result_for_a_job_dispatched_here_is_settled_without_reading_it() -> None:
    h, store = await counting_harness()
    await h.heartbeat("w1")
    await h.submit("j1")
    store.gets.clear()
    await h.result("j1", attempt=1, result_ptr=result_ptr("j1"))
    done = await h.jobs.get("j1")
    assert done is not None
    assert (done.status, done.result_ptr, done.version) == (
        JobStatus.COMPLETED,
        result_ptr("j1"),
        3,  # created, dispatched, completed: one write each
    )
    assert store.gets == ["j1"]  # only this test's own read above
    assert h.metrics.value("jobs_completed", topic="job.echo", status="COMPLETED") == 1
    # A late report (attempt 0: the bus drops a repeat of the same attempt's) finds nothing
    # remembered: it reads the job, which has ended, and is absorbed.
    store.gets.clear()
    await h.result("j1", JobStatus.FAILED, 0, error_code="late")
    assert store.gets == ["j1"]
    assert await h.jobs.get("j1") == done


async def test_a_remembered_job_that_moved_since_its_dispatch_is_read_and_decided_again() -> None:
    h, store = await counting_harness()
    await h.heartbeat("w1")
    await h.submit("j1")
    running = await h.jobs.get("j1")
    assert isinstance(running, RunningJob)
    # Another replica's sweep gave up on the attempt and put the job back (a write since ours).
    assert await h.jobs.transition(running.requeue("worker_lost", h.clock.now()))
    store.gets.clear()
    await h.result("j1", JobStatus.FAILED, 1, error_code="late")
    assert store.gets == ["j1"]  # the remembered copy lost its compare-and-set: read
    job = await h.jobs.get("j1")
    assert job is not None
    assert (job.status, job.reason, job.worker_id) == (JobStatus.PENDING, "worker_lost", None)
    assert h.metrics.value("jobs_completed", topic="job.echo", status="FAILED") == 0


async def test_remember_dispatched_bounds_what_is_remembered() -> None:
    h, store = await counting_harness(remember_dispatched=2)
    await h.heartbeat("w1", max_jobs=3)
    for job_id in ("j1", "j2", "j3"):
        await h.submit(job_id)
    store.gets.clear()
    for job_id in ("j1", "j2", "j3"):
        await h.result(job_id, attempt=1)
    assert store.gets == ["j1"]  # the oldest was forgotten; the other two settled from memory
    assert [await h.status(j) for j in ("j1", "j2", "j3")] == [JobStatus.COMPLETED] * 3


async def test_with_remember_dispatched_0_every_result_reads_the_job() -> None:
    h, store = await counting_harness(remember_dispatched=0)
    await h.heartbeat("w1")
    await h.submit("j1")
    store.gets.clear()
    await h.result("j1", attempt=1)
    assert store.gets == ["j1"]
    assert await h.status("j1") is JobStatus.COMPLETED


async def test_a_timeout_result_of_a_remembered_job_reads_it_first() -> None:
    h, store = await counting_harness()
    await h.heartbeat("w1")
    await h.submit("j1")
    store.gets.clear()
    await h.result("j1", JobStatus.TIMEOUT, 1, error_message="ran 5 s")
    assert store.gets == ["j1"]
    job = await h.jobs.get("j1")
    assert job is not None
    assert (job.status, job.reason) == (JobStatus.PENDING, "retry")


class CountingChecker:
    """The in-process checker, recording what it was asked; ``gate`` (if set) holds each
    check until it is set."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self._inner = InProcessSafetyChecker(None)
        self.asked: list[SafetyRequest] = []
        self.started = asyncio.Event()
        self.gate = gate

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self, request: SafetyRequest) -> SafetyDecision:
        self.asked.append(request)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return await self._inner.check(request)


class WaitForCheck(InMemoryJobStore):
    """A job store whose reads wait until the Safety Kernel has been asked."""

    def __init__(self) -> None:
        super().__init__()
        self.checker: CountingChecker | None = None

    async def get(self, job_id: str):  # type: ignore[no-untyped-def]
        if self.checker is not None:
            await self.checker.started.wait()
        return await super().get(job_id)


async def test_a_new_job_is_checked_once_while_it_is_read() -> None:
    store, checker = WaitForCheck(), CountingChecker()
    store.checker = checker
    h = await make_harness(jobs=store, safety=checker, concurrency=AsyncioConcurrency())
    await h.heartbeat("w1")
    async with asyncio.timeout(5):  # one after the other, the read would wait for ever
        await h.submit("j1")
    assert [r.job_id for r in checker.asked] == ["j1"]
    assert await h.status("j1") is JobStatus.RUNNING
    assert h.metrics.value("jobs_received", topic="job.echo") == 1


async def test_a_submit_unlike_its_stored_job_is_decided_on_the_stored_job() -> None:
    checker = CountingChecker()
    h = await make_harness(safety=checker, concurrency=AsyncioConcurrency())
    await h.heartbeat("w1")
    assert await h.jobs.create(new_job(j1_spec(h), h.clock.now()))  # job.echo, as stored
    # A packet that says otherwise of j1 (sys.destroy, which the policy denies).
    await h.send(
        SUBJECT_JOB_SUBMIT,
        JobRequest(job_id="j1", topic="sys.destroy", context_ptr=context_ptr("j1")),
    )
    assert [r.topic for r in checker.asked] == ["sys.destroy", "job.echo"]
    assert await h.status("j1") is JobStatus.RUNNING  # the stored job was allowed
    assert [jid for jid, _ in h.dispatched] == ["j1"]


async def test_a_redelivered_submit_of_an_ended_job_is_asked_about_and_changes_nothing() -> None:
    checker = CountingChecker()
    h = await make_harness(safety=checker, concurrency=AsyncioConcurrency())
    await h.heartbeat("w1")
    await h.submit("j1")
    await h.result("j1", attempt=1)
    done = await h.jobs.get("j1")
    # JetStream's redelivery (the bus here drops a repeat of the same submit): straight in.
    await h.scheduler.on_submit(
        BusPacket(
            trace_id="ab" * 16,
            sender_id="test",
            created_at=h.clock.now(),
            payload=JobRequest(job_id="j1", topic="job.echo", context_ptr=context_ptr("j1")),
        )
    )
    assert await h.jobs.get("j1") == done
    assert len(checker.asked) == 2  # the redelivery's check went out with the read: wasted
    assert h.metrics.value("jobs_received", topic="job.echo") == 1
