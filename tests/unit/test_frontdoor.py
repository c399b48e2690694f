"""The front door on in-memory adapters: limits, idempotency, tenants, actions, and what a
submit leaves behind when a dependency fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import InMemoryBus, InMemoryJobStore, InMemoryMemoryStore
from cortex_core.bus_protocol import SUBJECT_JOB_CANCEL, SUBJECT_JOB_SUBMIT
from cortex_core.errors import InvalidField, JobConflict, JobNotFound, Unavailable
from cortex_core.frontdoor import (
    FrontDoor,
    SubmitJob,
    SubmitLimits,
    parse_status_filter,
    validate,
)
from cortex_core.jobs import JobSpec, PendingJob, new_job
from cortex_core.messages import (
    DEAD_LETTER_STATUSES,
    BusPacket,
    JobCancel,
    JobRequest,
    JobStatus,
)
from tests.fakes import FakeClock, SequentialIds


@dataclass
class Door:
    frontdoor: FrontDoor
    jobs: InMemoryJobStore
    memory: InMemoryMemoryStore
    bus: InMemoryBus
    clock: FakeClock
    seen: list[tuple[str, BusPacket]] = field(default_factory=list)

    def submits(self) -> list[str]:
        return [
            p.payload.job_id
            for s, p in self.seen
            if s == SUBJECT_JOB_SUBMIT and isinstance(p.payload, JobRequest)
        ]


@pytest.fixture
async def door() -> AsyncIterator[Door]:
    clock = FakeClock()
    bus = InMemoryBus(codec=ProtobufCodec(), strict=True)
    jobs = InMemoryJobStore()
    memory = InMemoryMemoryStore(clock=clock)
    fd = FrontDoor(bus=bus, memory=memory, jobs=jobs, clock=clock, ids=SequentialIds())
    d = Door(fd, jobs, memory, bus, clock)
    for subject in (SUBJECT_JOB_SUBMIT, SUBJECT_JOB_CANCEL):

        async def spy(packet: BusPacket, subject: str = subject) -> None:
            d.seen.append((subject, packet))

        await bus.subscribe(subject, spy)
    yield d
    await bus.close()


@pytest.mark.parametrize(
    ("changes", "field_name", "limit"),
    [
        ({"prompt": ""}, "prompt", None),
        ({"prompt": "x" * 11}, "prompt", 10),
        ({"topic": "sys.destroy"}, "topic", None),
        ({"topic": "job"}, "topic", None),
        ({"topic": "job.a.b.c"}, "topic", None),
        ({"topic": "job.a b"}, "topic", None),
        ({"labels": {str(i): "v" for i in range(4)}}, "labels", 3),
        ({"labels": {"": "v"}}, "labels", 5),
        ({"labels": {"k": "v" * 7}}, "labels.k", 6),
        ({"adapter_id": "a" * 9}, "adapter_id", 8),
        ({"idempotency_key": "k" * 9}, "idempotency_key", 8),
        ({"timeout_s": 0.0}, "timeout_s", 100),
        ({"timeout_s": -1.0}, "timeout_s", 100),
        ({"timeout_s": 101.0}, "timeout_s", 100),
    ],
)
def test_each_limit_names_its_field_and_limit(
    changes: dict[str, object], field_name: str, limit: int | None
) -> None:
    limits = SubmitLimits(
        max_prompt_chars=10,
        max_labels=3,
        max_label_key_chars=5,
        max_label_value_chars=6,
        max_adapter_id_chars=8,
        max_idempotency_key_chars=8,
        max_timeout_s=100,
    )
    cmd = SubmitJob(**{"prompt": "hi", "topic": "job.echo", **changes})  # type: ignore[arg-type]
    with pytest.raises(InvalidField) as info:
        validate(cmd, limits)
    assert info.value.field == field_name
    assert info.value.limit == limit
    if limit is not None:
        assert str(limit) in str(info.value)


def test_valid_commands_pass() -> None:
    validate(SubmitJob(prompt="hi", topic="job.chat.llm", timeout_s=5), SubmitLimits())
    validate(SubmitJob(prompt="hi", topic="job.log-2_x"), SubmitLimits())


def test_status_filters_parse_one_or_several_and_name_the_field_when_bad() -> None:
    assert parse_status_filter("running") is JobStatus.RUNNING
    assert parse_status_filter("FAILED, timeout,DENIED") == DEAD_LETTER_STATUSES
    assert parse_status_filter(" , ") is None
    with pytest.raises(InvalidField) as info:
        parse_status_filter("RUNNING,NOPE")
    assert info.value.field == "status"


async def test_submit_stores_context_and_pending_job_then_publishes(door: Door) -> None:
    s = await door.frontdoor.submit(SubmitJob(prompt="hi", tenant_id="a", timeout_s=3))
    await door.bus.settle()
    job = await door.frontdoor.status(s.job_id, "a")
    assert job.status is JobStatus.PENDING
    assert job.spec.tenant_id == "a"
    assert job.spec.timeout_s == 3
    assert await door.memory.get_context(s.job_id) is not None
    assert door.submits() == [s.job_id]


async def test_another_tenants_job_is_not_found_like_a_missing_one(door: Door) -> None:
    s = await door.frontdoor.submit(SubmitJob(prompt="hi", tenant_id="a"))
    for call in (
        door.frontdoor.status(s.job_id, "b"),
        door.frontdoor.result(s.job_id, "b"),
        door.frontdoor.cancel(s.job_id, "b"),
        door.frontdoor.approve(s.job_id, "b"),
        door.frontdoor.retry(s.job_id, "b"),
    ):
        with pytest.raises(JobNotFound):
            await call
    page = await door.frontdoor.list_jobs("b")
    assert page.jobs == []
    assert [j.job_id for j in (await door.frontdoor.list_jobs("a")).jobs] == [s.job_id]


async def test_one_idempotency_key_gives_one_job_per_tenant(door: Door) -> None:
    first = await door.frontdoor.submit(SubmitJob(prompt="hi", tenant_id="a", idempotency_key="k"))
    again = await door.frontdoor.submit(SubmitJob(prompt="hi", tenant_id="a", idempotency_key="k"))
    other = await door.frontdoor.submit(SubmitJob(prompt="hi", tenant_id="b", idempotency_key="k"))
    await door.bus.settle()
    assert (again.job_id, again.trace_id, again.created) == (first.job_id, first.trace_id, False)
    assert other.job_id != first.job_id
    assert other.created
    assert door.submits() == [first.job_id, other.job_id]


class BrokenBus(InMemoryBus):
    async def publish(self, subject: str, packet: BusPacket) -> None:
        raise ConnectionError("nats: no servers available")


async def test_a_failed_publish_withdraws_the_job_and_frees_its_key() -> None:
    clock = FakeClock()
    jobs = InMemoryJobStore()
    broken = FrontDoor(
        bus=BrokenBus(codec=ProtobufCodec()),
        memory=InMemoryMemoryStore(clock=clock),
        jobs=jobs,
        clock=clock,
        ids=SequentialIds(),
    )
    with pytest.raises(Unavailable, match="bus is unavailable") as info:
        await broken.submit(SubmitJob(prompt="hi", idempotency_key="k"))
    assert info.value.dependency == "bus"
    assert (await jobs.list_jobs()) == ([], None)  # nothing half-written is visible
    spec_key_free = await jobs.create_or_get(await _pending(jobs, clock, idempotency_key="k"))
    assert spec_key_free.job_id == "fresh"


async def _pending(jobs: InMemoryJobStore, clock: FakeClock, **spec: str) -> PendingJob:
    s = JobSpec(
        job_id="fresh",
        trace_id="ab" * 16,
        topic="job.echo",
        context_ptr="redis://ctx:fresh",
        created_at=clock.now(),
        **spec,
    )
    return new_job(s, clock.now())


class DownMemory(InMemoryMemoryStore):
    async def put_context(self, job_id: str, data: bytes) -> str:
        raise TimeoutError("Redis did not answer")


async def test_a_memory_fabric_that_is_down_is_unavailable_and_nothing_is_created() -> None:
    clock = FakeClock()
    jobs = InMemoryJobStore()
    fd = FrontDoor(
        bus=InMemoryBus(codec=ProtobufCodec()),
        memory=DownMemory(clock=clock),
        jobs=jobs,
        clock=clock,
        ids=SequentialIds(),
    )
    with pytest.raises(Unavailable, match="memory fabric") as info:
        await fd.submit(SubmitJob(prompt="hi"))
    assert info.value.dependency == "memory fabric"
    assert (await jobs.list_jobs()) == ([], None)


async def test_cancel_a_running_job_tells_its_worker_and_a_finished_one_conflicts(
    door: Door,
) -> None:
    s = await door.frontdoor.submit(SubmitJob(prompt="hi"))
    job = await door.jobs.get(s.job_id)
    assert isinstance(job, PendingJob)
    assert await door.jobs.transition(job.dispatch("w1", door.clock.now()))
    cancelled = await door.frontdoor.cancel(s.job_id, reason="changed my mind")
    await door.bus.settle()
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.reason == "changed my mind"
    notices = [p.payload for subj, p in door.seen if subj == SUBJECT_JOB_CANCEL]
    assert notices == [JobCancel(job_id=s.job_id, reason="changed my mind")]
    with pytest.raises(JobConflict) as info:
        await door.frontdoor.cancel(s.job_id)
    assert info.value.status == JobStatus.CANCELLED


async def test_cancel_of_a_pending_job_sends_no_notice(door: Door) -> None:
    s = await door.frontdoor.submit(SubmitJob(prompt="hi"))
    assert (await door.frontdoor.cancel(s.job_id)).status is JobStatus.CANCELLED
    await door.bus.settle()
    assert [subj for subj, _ in door.seen] == [SUBJECT_JOB_SUBMIT]


async def test_approve_and_reject_act_only_on_jobs_awaiting_approval(door: Door) -> None:
    ids = []
    for _ in range(2):
        s = await door.frontdoor.submit(SubmitJob(prompt="hi"))
        job = await door.jobs.get(s.job_id)
        assert isinstance(job, PendingJob)
        assert await door.jobs.transition(job.require_approval("big", door.clock.now()))
        ids.append(s.job_id)
    approved = await door.frontdoor.approve(ids[0])
    assert (approved.status, approved.reason) == (JobStatus.PENDING, "approved")
    rejected = await door.frontdoor.reject(ids[1], reason="no")
    assert (rejected.status, rejected.reason) == (JobStatus.DENIED, "no")
    for call in (door.frontdoor.approve(ids[0]), door.frontdoor.reject(ids[1])):
        with pytest.raises(JobConflict):
            await call


async def test_retry_makes_one_linked_new_job_from_a_dead_letter(door: Door) -> None:
    s = await door.frontdoor.submit(SubmitJob(prompt="again", labels={"a": "b"}, timeout_s=4))
    with pytest.raises(JobConflict, match="only FAILED, TIMEOUT and DENIED"):
        await door.frontdoor.retry(s.job_id)
    job = await door.jobs.get(s.job_id)
    assert isinstance(job, PendingJob)
    assert await door.jobs.transition(job.deny("policy", door.clock.now()))
    assert [j.job_id for j in (await door.frontdoor.dead_letters()).jobs] == [s.job_id]
    retry = await door.frontdoor.retry(s.job_id)
    twice = await door.frontdoor.retry(s.job_id)
    assert twice.job_id == retry.job_id
    new = await door.frontdoor.status(retry.job_id)
    assert new.spec.retry_of == s.job_id
    assert (new.spec.labels, new.spec.timeout_s) == ({"a": "b"}, 4)
    assert new.spec.prompt_bytes == len(b"again")
    assert await door.memory.get_context(retry.job_id) == await door.memory.get_context(s.job_id)
    await door.bus.settle()
    assert door.submits() == [s.job_id, retry.job_id]


async def test_list_pages_are_bounded_and_a_bad_cursor_names_the_field(door: Door) -> None:
    for _ in range(5):
        await door.frontdoor.submit(SubmitJob(prompt="hi"))
        door.clock.advance(1)
    for limit in (0, door.frontdoor.max_page + 1):
        with pytest.raises(InvalidField) as info:
            await door.frontdoor.list_jobs(limit=limit)
        assert info.value.field == "limit"
    with pytest.raises(InvalidField) as info:
        await door.frontdoor.list_jobs(cursor="garbage")
    assert info.value.field == "cursor"
    seen: list[str] = []
    cursor = None
    while True:
        page = await door.frontdoor.list_jobs(limit=2, cursor=cursor)
        seen += [j.job_id for j in page.jobs]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [f"job-{n:06d}" for n in (9, 7, 5, 3, 1)]
