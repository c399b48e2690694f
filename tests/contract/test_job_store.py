from __future__ import annotations

import asyncio
import dataclasses

import pytest

from cortex_core.jobs import Job, JobSpec, PendingJob, new_job
from cortex_core.messages import JobStatus, Priority
from cortex_core.ports import JobStore
from tests.contract.fixtures_stores import JobStoreUnderTest


def job(job_id: str = "j1", created_at: float = 100.0) -> PendingJob:
    spec = JobSpec(
        job_id=job_id,
        trace_id="ab" * 16,
        topic="job.echo",
        context_ptr=f"redis://ctx:{job_id}",
        created_at=created_at,
        labels={"env": "dev"},
    )
    return new_job(spec, created_at)


async def all_pages(
    jobs: JobStore, *, limit: int, status: JobStatus | None = None
) -> list[list[Job]]:
    """Every page of a listing, following the cursors to the end."""
    pages: list[list[Job]] = []
    cursor: str | None = None
    while True:
        page, cursor = await jobs.list_jobs(status=status, limit=limit, cursor=cursor)
        pages.append(page)
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursors never end"


async def test_create_get_and_no_overwrite(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    first = job()
    assert await jobs.create(first)
    assert await jobs.get("j1") == first
    assert not await jobs.create(first.waiting("no_workers", 101.0))
    assert await jobs.get("j1") == first
    assert await jobs.get("missing") is None


async def test_get_of_a_missing_job_is_none(job_store: JobStoreUnderTest) -> None:
    assert await job_store.store.get("never-created") is None


async def test_transition_is_compare_and_set(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    pending = job()
    await jobs.create(pending)
    running = pending.dispatch("w1", 101.0)
    assert await jobs.transition(running)
    assert not await jobs.transition(pending.deny("stale view", 102.0))  # v1; the store has v2
    done = running.complete("redis://res:j1", 103.0)
    assert await jobs.transition(done)
    assert not await jobs.transition(running.fail("late", 104.0))
    stored = await jobs.get("j1")
    assert stored == done
    assert stored is not None
    assert stored.status is JobStatus.COMPLETED


async def test_exactly_one_of_many_concurrent_transitions_wins(
    job_store: JobStoreUnderTest,
) -> None:
    jobs = job_store.store
    pending = job()
    await jobs.create(pending)
    contenders = [pending.dispatch(f"w{i}", 101.0) for i in range(50)]
    contenders += [pending.deny(f"d{i}", 101.0) for i in range(50)]
    wins = await asyncio.gather(*(jobs.transition(c) for c in contenders))
    assert sum(wins) == 1
    winner = contenders[wins.index(True)]
    assert await jobs.get("j1") == winner


async def test_two_stores_on_the_same_jobs_never_both_win(job_store: JobStoreUnderTest) -> None:
    """Two scheduler replicas, each with its own store (its own connection), race 100
    transitions from the same version: exactly one lands, and both stores see it."""
    one, two = job_store.store, await job_store.replica()
    pending = job()
    assert await one.create(pending)
    assert not await two.create(pending)
    contenders = [pending.dispatch(f"w{i}", 101.0) for i in range(50)]
    contenders += [pending.deny(f"d{i}", 101.0) for i in range(50)]
    wins = await asyncio.gather(
        *((one if i % 2 else two).transition(c) for i, c in enumerate(contenders))
    )
    assert sum(wins) == 1
    winner = contenders[wins.index(True)]
    assert await one.get("j1") == winner
    assert await two.get("j1") == winner
    assert await two.list_jobs(status=winner.status) == ([winner], None)
    assert await one.list_jobs(status=JobStatus.PENDING) == ([], None)


async def test_transition_of_an_unknown_job_fails(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    assert not await jobs.transition(job("ghost").dispatch("w1", 1.0))
    assert await jobs.get("ghost") is None
    assert await jobs.list_jobs() == ([], None)


async def test_every_field_round_trips_exactly(job_store: JobStoreUnderTest) -> None:
    """None stays None (not ""), "" stays "", labels stay a mapping of strings, and floats
    come back bit for bit."""
    jobs = job_store.store
    spec = JobSpec(
        job_id="rich_ID-1",
        trace_id="0123456789abcdef" * 2,
        topic="job.chat.completion",
        context_ptr="redis://ctx:rich_ID-1",
        created_at=1_763_726_400.123456789,
        priority=Priority.BATCH,
        adapter_id="lora-7",
        tenant_id="acme",
        labels={"env": "prod", "note": 'quotes " and \\ and é ☃', "": "", "k:v": "{}"},
        deadline=0.1 + 0.2,
        prompt_bytes=2**40 + 7,
    )
    # Every field of the spec is set to something other than its default here, so a field
    # added to JobSpec that a store forgets to keep cannot slip through this test.
    defaults = JobSpec(job_id="", trace_id="", topic="", context_ptr="", created_at=0.0)
    assert all(
        getattr(spec, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(JobSpec)
    )
    pending = new_job(spec, 1_763_726_400.987654321)
    assert (pending.worker_id, pending.result_ptr, pending.reason) == (None, None, None)
    waiting = pending.waiting("", 1e-300)  # "" is a reason, not None
    running = waiting.dispatch("worker-a", 1_763_726_401.5)
    done = running.complete(None, 2.0**53 + 1.0)
    assert await jobs.create(pending)
    assert await jobs.get(spec.job_id) == pending
    for later in (waiting, running, done):
        assert await jobs.transition(later)
        stored = await jobs.get(spec.job_id)
        assert stored == later
        assert stored is not None
        assert type(stored) is type(later)
    assert done.reason is None  # complete() clears the wait reason; the store must too

    plain = new_job(
        JobSpec(job_id="plain", trace_id="1" * 32, topic="t", context_ptr="", created_at=-0.5), 0.0
    )
    failed = plain.fail("no_pool_for_topic", 0.25)
    assert await jobs.create(plain)
    assert await jobs.get("plain") == plain
    assert await jobs.transition(failed)
    assert await jobs.get("plain") == failed


async def test_list_is_newest_first_in_pages(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    created = [
        job("a", 100.0),
        job("b", 300.0),
        job("c", 200.0),
        job("d", 200.0),  # same created_at as c: the job id breaks the tie
        job("e", 200.5),
        job("f", -1.0),
        job("g", 1_763_726_400.25),
    ]
    for j in created:
        assert await jobs.create(j)
    newest_first = sorted(created, key=lambda j: (j.spec.created_at, j.job_id), reverse=True)
    assert [j.job_id for j in newest_first] == ["g", "b", "e", "d", "c", "a", "f"]

    pages = await all_pages(jobs, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [j for p in pages for j in p] == newest_first
    assert await jobs.list_jobs(limit=len(created)) == (newest_first, None)  # no empty last page
    assert await jobs.list_jobs() == (newest_first, None)  # default limit
    assert await all_pages(jobs, limit=1) == [[j] for j in newest_first]


async def test_list_order_is_exact_for_awkward_values(job_store: JobStoreUnderTest) -> None:
    """Negative, tiny, huge and nearly equal times (-0.0 ties with 0.0), and ids that differ
    only in case, punctuation or length, list in exactly the order of ``(created_at, job_id)``."""
    jobs = job_store.store
    times = [-1e300, -1.5, -5e-324, -0.0, 0.0, 5e-324, 1.0, 1.0000000000000002, 2.0**53, 1e300]
    created = [job(f"t{i}", t) for i, t in enumerate(times)]
    created += [job("t66", 1.0)]  # ties with t6
    ties = ["a", "a-b", "a_b", "aB", "A", "a0", "Z", "_", "-", "a" * 128]
    created += [job(job_id, 7.0) for job_id in ties]
    for j in created:
        assert await jobs.create(j)
    expected = sorted(created, key=lambda j: (j.spec.created_at, j.job_id), reverse=True)
    assert [j for page in await all_pages(jobs, limit=4) for j in page] == expected


async def test_a_cursor_holds_its_place(job_store: JobStoreUnderTest) -> None:
    """A cursor marks a position, not an offset: new jobs don't shift the pages after it."""
    jobs = job_store.store
    for i in range(4):
        await jobs.create(job(f"j{i}", 10.0 * i))
    first, cursor = await jobs.list_jobs(limit=2)
    assert [j.job_id for j in first] == ["j3", "j2"]
    assert cursor is not None
    await jobs.create(job("newest", 99.0))  # before the cursor: not on later pages
    await jobs.create(job("j1b", 15.0))  # after it: on the next page, in order
    rest, end = await jobs.list_jobs(limit=5, cursor=cursor)
    assert [j.job_id for j in rest] == ["j1b", "j1", "j0"]
    assert end is None


async def test_list_filters_by_status_and_follows_transitions(
    job_store: JobStoreUnderTest,
) -> None:
    jobs = job_store.store
    a, b, c = job("a", 1.0), job("b", 2.0), job("c", 3.0)
    for j in (a, b, c):
        await jobs.create(j)
    assert await jobs.list_jobs(status=JobStatus.PENDING) == ([c, b, a], None)
    assert await jobs.list_jobs(status=JobStatus.RUNNING) == ([], None)

    running = b.dispatch("w1", 4.0)
    assert await jobs.transition(running)
    assert await jobs.list_jobs(status=JobStatus.PENDING) == ([c, a], None)
    assert await jobs.list_jobs(status=JobStatus.RUNNING) == ([running], None)

    waiting = a.waiting("no_workers", 5.0)  # PENDING → PENDING: same index, new fields
    assert await jobs.transition(waiting)
    assert await jobs.list_jobs(status=JobStatus.PENDING) == ([c, waiting], None)

    done = running.complete("redis://res:b", 6.0)
    cancelled = c.cancel("user", 7.0)
    assert await jobs.transition(done)
    assert await jobs.transition(cancelled)
    assert not await jobs.transition(c.deny("stale", 8.0))  # a lost race moves no index
    assert await jobs.list_jobs(status=JobStatus.RUNNING) == ([], None)
    assert await jobs.list_jobs(status=JobStatus.COMPLETED) == ([done], None)
    assert await jobs.list_jobs(status=JobStatus.CANCELLED) == ([cancelled], None)
    assert await jobs.list_jobs(status=JobStatus.DENIED) == ([], None)
    assert await jobs.list_jobs(status=JobStatus.PENDING) == ([waiting], None)
    assert await jobs.list_jobs() == ([cancelled, done, waiting], None)

    pages = await all_pages(jobs, limit=1, status=JobStatus.PENDING)
    assert pages == [[waiting]]


async def test_status_filter_pages(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    pending = [job(f"p{i}", float(i)) for i in range(5)]
    for j in pending:
        await jobs.create(j)
    for j in pending[::2]:
        assert await jobs.transition(j.dispatch("w", 10.0))
    pages = await all_pages(jobs, limit=1, status=JobStatus.PENDING)
    assert pages == [[pending[3]], [pending[1]]]
    running = await all_pages(jobs, limit=2, status=JobStatus.RUNNING)
    assert [[j.job_id for j in p] for p in running] == [["p4", "p2"], ["p0"]]


@pytest.mark.parametrize("limit", [0, -1])
async def test_list_rejects_a_bad_limit(job_store: JobStoreUnderTest, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await job_store.store.list_jobs(limit=limit)


@pytest.mark.parametrize("cursor", ["", "nonsense", "12:"])
async def test_list_rejects_a_cursor_it_did_not_issue(
    job_store: JobStoreUnderTest, cursor: str
) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await job_store.store.list_jobs(cursor=cursor)
