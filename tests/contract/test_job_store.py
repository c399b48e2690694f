from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Iterable

import pytest

from cortex_core.jobs import Job, JobSpec, PendingJob, new_job
from cortex_core.messages import DEAD_LETTER_STATUSES, JobStatus, Priority
from cortex_core.ports import JobStore, StatusFilter
from tests.contract.fixtures_stores import JobStoreUnderTest


def job(
    job_id: str = "j1",
    created_at: float = 100.0,
    *,
    tenant_id: str = "",
    topic: str = "job.echo",
    idempotency_key: str = "",
) -> PendingJob:
    spec = JobSpec(
        job_id=job_id,
        trace_id="ab" * 16,
        topic=topic,
        context_ptr=f"redis://ctx:{job_id}",
        created_at=created_at,
        tenant_id=tenant_id,
        labels={"env": "dev"},
        idempotency_key=idempotency_key,
    )
    return new_job(spec, created_at)


async def all_pages(
    jobs: JobStore,
    *,
    limit: int,
    status: StatusFilter = None,
    tenant_id: str | None = None,
    topic: str | None = None,
) -> list[list[Job]]:
    """Every page of a listing, following the cursors to the end (a page may be short, even
    empty, before the end: only a None cursor ends a listing)."""
    pages: list[list[Job]] = []
    cursor: str | None = None
    while True:
        page, cursor = await jobs.list_jobs(
            status=status, tenant_id=tenant_id, topic=topic, limit=limit, cursor=cursor
        )
        assert len(page) <= limit
        pages.append(page)
        if cursor is None:
            return pages
        assert len(pages) < 5000, "the cursors never end"


def assert_full(pages: list[list[Job]], limit: int) -> None:
    """With no topic filter and nothing changing, every page but the last is full and the
    last is empty only if it is the first: a short page would mean that an index holds a
    job it should not (one that moved on or was withdrawn)."""
    assert all(len(p) == limit for p in pages[:-1]), [len(p) for p in pages]
    assert pages[-1] or len(pages) == 1, [len(p) for p in pages]


def newest_first(jobs: Iterable[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: (j.spec.created_at, j.job_id), reverse=True)


async def in_batches(calls: Iterable[Awaitable[object]], size: int = 100) -> None:
    """Await ``calls`` ``size`` at a time (not all at once: each may take a connection)."""
    pending = list(calls)
    for i in range(0, len(pending), size):
        await asyncio.gather(*pending[i : i + size])


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
    contenders: list[Job] = [pending.dispatch(f"w{i}", 101.0) for i in range(50)]
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
    contenders: list[Job] = [pending.dispatch(f"w{i}", 101.0) for i in range(50)]
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
        timeout_s=0.1 + 0.7,
        idempotency_key='order:42 é "☃" \\ {}',
        retry_of="old_job-7",
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


# -- idempotency keys: create_or_get ---------------------------------------------------


async def test_create_or_get_gives_back_the_job_a_key_already_names(
    job_store: JobStoreUnderTest,
) -> None:
    jobs = job_store.store
    first = job("first", 1.0, tenant_id="acme", idempotency_key="order-42")
    assert await jobs.create_or_get(first) == first
    again = job("again", 2.0, tenant_id="acme", idempotency_key="order-42")
    assert await jobs.create_or_get(again) == first
    assert await jobs.get("again") is None
    assert await jobs.list_jobs() == ([first], None)
    assert await jobs.list_jobs(tenant_id="acme") == ([first], None)
    # Even a job whose id is taken gets the earlier job: the key is looked at first.
    assert await jobs.create_or_get(first) == first


async def test_create_or_get_keys_are_per_tenant(job_store: JobStoreUnderTest) -> None:
    """The same key in two tenants names two jobs, and keys or tenants holding ':' never
    collide (a store that joins them with ':' would mix up ``a``/``b:c`` and ``a:b``/``c``)."""
    jobs = job_store.store
    pairs = [
        ("acme", "k"),
        ("beta", "k"),
        ("", "k"),
        ("a", "b:c"),
        ("a:b", "c"),
        ("", "a:b:c"),
        ("a", "x" * 128),
        ("a", "é ☃ \\n\n\t\x00 🙂"),
        ("a", "K"),
    ]
    saved = [
        job(f"s{i}", float(i), tenant_id=t, idempotency_key=k) for i, (t, k) in enumerate(pairs)
    ]
    for j in saved:
        assert await jobs.create_or_get(j) == j
    for i, (t, k) in enumerate(pairs):
        assert (
            await jobs.create_or_get(job(f"d{i}", 99.0, tenant_id=t, idempotency_key=k)) == saved[i]
        )
    assert [j for p in await all_pages(jobs, limit=4) for j in p] == newest_first(saved)
    assert await jobs.list_jobs(tenant_id="a:b") == ([saved[4]], None)
    assert await jobs.list_jobs(tenant_id="a") == (
        newest_first([saved[i] for i in (3, 6, 7, 8)]),
        None,
    )


async def test_create_or_get_without_a_key_is_create(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    one, two = job("one", 1.0, tenant_id="acme"), job("two", 2.0, tenant_id="acme")
    assert await jobs.create_or_get(one) == one
    assert await jobs.create_or_get(two) == two  # "" is no key: it names nothing
    assert await jobs.list_jobs(tenant_id="acme") == ([two, one], None)
    with pytest.raises(ValueError, match="taken"):
        await jobs.create_or_get(one.waiting("no_workers", 3.0))
    assert await jobs.get("one") == one


async def test_create_or_get_of_a_taken_id_claims_no_key(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    plain = job("taken", 1.0, tenant_id="acme")
    assert await jobs.create(plain)
    with pytest.raises(ValueError, match="taken"):
        await jobs.create_or_get(job("taken", 5.0, tenant_id="acme", idempotency_key="k"))
    assert await jobs.get("taken") == plain
    fresh = job("fresh", 2.0, tenant_id="acme", idempotency_key="k")
    assert await jobs.create_or_get(fresh) == fresh  # the failed call left the key free


async def test_concurrent_create_or_get_with_one_key_saves_exactly_one(
    job_store: JobStoreUnderTest,
) -> None:
    """Two replicas submit the same request (same tenant and key, each its own job id) 40
    times at once: one job is saved, and every call gets that job back."""
    one, two = job_store.store, await job_store.replica()
    contenders = [job(f"c{i}", 10.0 + i, tenant_id="acme", idempotency_key="k") for i in range(40)]
    stored = await asyncio.gather(
        *((one if i % 2 else two).create_or_get(c) for i, c in enumerate(contenders))
    )
    winners = [c for c in contenders if c in stored]
    assert len(winners) == 1
    assert stored == [winners[0]] * len(contenders)
    assert await one.list_jobs() == ([winners[0]], None)
    assert await two.list_jobs(tenant_id="acme", status=JobStatus.PENDING) == ([winners[0]], None)
    for c in contenders:
        assert await two.get(c.job_id) == (c if c is winners[0] else None)


# -- withdraw --------------------------------------------------------------------------


async def test_withdraw_deletes_a_fresh_job_and_frees_its_key(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    keep = job("keep", 1.0, tenant_id="acme")
    undo = job("undo", 2.0, tenant_id="acme", idempotency_key="k")
    assert await jobs.create(keep)
    assert await jobs.create_or_get(undo) == undo
    assert await jobs.withdraw(undo)
    assert await jobs.get("undo") is None
    for status in (None, JobStatus.PENDING, frozenset({JobStatus.PENDING, JobStatus.RUNNING})):
        for limit in (1, 50):  # limit 1: no index may still hold the withdrawn job
            assert await jobs.list_jobs(status=status, limit=limit) == ([keep], None)
            assert await jobs.list_jobs(status=status, tenant_id="acme", limit=limit) == (
                [keep],
                None,
            )
    assert not await jobs.withdraw(undo)  # not there any more
    retried = job("retried", 3.0, tenant_id="acme", idempotency_key="k")
    assert await jobs.create_or_get(retried) == retried
    assert await jobs.list_jobs() == ([retried, keep], None)
    assert not await jobs.withdraw(job("never", 4.0))


async def test_a_withdrawn_id_can_never_be_created_again(job_store: JobStoreUnderTest) -> None:
    """A submit reported failed may still reach the bus (a reconnect buffer); the scheduler
    then tries to adopt it with ``create``, which must refuse."""
    jobs = job_store.store
    undo = job("undo", 2.0, idempotency_key="k")
    assert await jobs.create_or_get(undo) == undo
    assert await jobs.withdraw(undo)
    assert not await jobs.create(job("undo", 2.0))
    with pytest.raises(ValueError, match="taken"):
        await jobs.create_or_get(job("undo", 2.0, idempotency_key="k2"))
    assert await jobs.get("undo") is None
    assert not await jobs.transition(undo.dispatch("w1", 3.0))
    assert await jobs.list_jobs() == ([], None)


async def test_withdraw_fails_once_the_job_has_moved_on(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    for i in range(3):
        pending = job(f"m{i}", float(i), tenant_id="acme", idempotency_key=f"k{i}")
        assert await jobs.create_or_get(pending) == pending
        moves: list[Job] = [
            pending.waiting("no_workers", 5.0),  # still PENDING, but a later version
            pending.dispatch("w1", 5.0),
            pending.cancel("user", 5.0),
        ]
        moved = moves[i]
        assert await jobs.transition(moved)
        assert not await jobs.withdraw(pending)
        assert await jobs.get(pending.job_id) == moved
        assert await jobs.list_jobs(status=moved.status, tenant_id="acme") == ([moved], None)
        other = job(f"o{i}", 9.0, tenant_id="acme", idempotency_key=f"k{i}")
        assert await jobs.create_or_get(other) == moved  # the key still names the job
        assert await jobs.get(other.job_id) is None


async def test_withdraw_keeps_a_key_that_names_another_job(job_store: JobStoreUnderTest) -> None:
    """A job created (plainly) with a key that an earlier job claimed does not take the key
    along when it is withdrawn."""
    jobs = job_store.store
    owner = job("owner", 1.0, tenant_id="acme", idempotency_key="k")
    plain = job("plain", 2.0, tenant_id="acme", idempotency_key="k")
    assert await jobs.create_or_get(owner) == owner
    assert await jobs.create(plain)
    assert await jobs.withdraw(plain)
    assert (
        await jobs.create_or_get(job("third", 3.0, tenant_id="acme", idempotency_key="k")) == owner
    )
    assert await jobs.list_jobs(tenant_id="acme") == ([owner], None)


async def test_withdraw_and_a_transition_never_both_win(job_store: JobStoreUnderTest) -> None:
    """The undo of a submit races the scheduler dispatching the job (on another replica):
    exactly one of them wins, and the indexes follow the winner."""
    one, two = job_store.store, await job_store.replica()
    survivors: list[Job] = []
    for i in range(20):
        pending = job(f"r{i:02d}", float(i), tenant_id="acme", idempotency_key=f"k{i}")
        assert await one.create_or_get(pending) == pending
        running = pending.dispatch("w1", 50.0)
        if i % 2:
            withdrawn, moved = await asyncio.gather(one.withdraw(pending), two.transition(running))
        else:
            moved, withdrawn = await asyncio.gather(two.transition(running), one.withdraw(pending))
        assert withdrawn != moved
        assert await two.get(pending.job_id) == (running if moved else None)
        if moved:
            survivors.insert(0, running)
    for store in (one, two):
        assert [
            j for p in await all_pages(store, limit=3, tenant_id="acme") for j in p
        ] == survivors
        running_pages = await all_pages(store, limit=3, status=JobStatus.RUNNING)
        assert [j for p in running_pages for j in p] == survivors
        assert_full(running_pages, 3)
        tenant_pages = await all_pages(store, limit=2, tenant_id="acme", status=JobStatus.RUNNING)
        assert [j for p in tenant_pages for j in p] == survivors
        assert_full(tenant_pages, 2)
        assert await store.list_jobs(status=JobStatus.PENDING) == ([], None)
        assert await store.list_jobs(tenant_id="acme", status=JobStatus.PENDING) == ([], None)


# -- listing by tenant, status set and topic -------------------------------------------

TENANTS = ["", "acme", "beta"]
TOPICS = ["job.echo", "job.chat.completion", "job.log"]


def moves(p: PendingJob, t: float, kind: int) -> list[Job]:
    """The transitions of one of 11 paths from PENDING, each to a different end."""
    match kind:
        case 0:
            return []
        case 1:
            return [p.waiting("no_workers", t)]
        case 2:
            return [p.dispatch("w1", t)]
        case 3:
            r = p.dispatch("w1", t)
            return [r, r.complete(None, t + 1)]
        case 4:
            r = p.dispatch("w1", t)
            return [r, r.fail("boom", t + 1)]
        case 5:
            return [p.fail("no_pool_for_topic", t)]
        case 6:
            return [p.deny("policy", t)]
        case 7:
            return [p.time_out("deadline", t)]
        case 8:
            return [p.cancel("user", t)]
        case 9:
            return [p.require_approval("review", t)]
        case _:
            a = p.require_approval("review", t)
            return [a, a.reject("no", t + 1)]


async def make_corpus(jobs: JobStore, n: int, seed: int) -> list[Job]:
    """``n`` jobs in every tenant, topic and status (with many ties in ``created_at``), each
    brought to its status through the store; the jobs as they now are."""
    rng = random.Random(seed)

    async def one(i: int) -> Job:
        created_at = float(rng.randrange(12)) - 3.0
        pending = job(
            f"c{rng.randrange(1000):03d}-{i}",
            created_at,
            tenant_id=rng.choice(TENANTS),
            topic=rng.choice(TOPICS),
        )
        assert await jobs.create(pending)
        current: Job = pending
        for later in moves(pending, created_at + 1, rng.randrange(11)):
            assert await jobs.transition(later)
            current = later
        return current

    result: list[Job] = []
    for i in range(n):
        result.append(await one(i))
    return result


def matching(
    jobs: Iterable[Job], status: StatusFilter, tenant_id: str | None, topic: str | None
) -> list[Job]:
    statuses = {status} if isinstance(status, JobStatus) else status
    return newest_first(
        j
        for j in jobs
        if (statuses is None or j.status in statuses)
        and (tenant_id is None or j.spec.tenant_id == tenant_id)
        and (topic is None or j.spec.topic == topic)
    )


STATUS_FILTERS: list[StatusFilter] = [
    None,
    JobStatus.PENDING,
    JobStatus.DENIED,
    DEAD_LETTER_STATUSES,
    frozenset({JobStatus.RUNNING, JobStatus.APPROVAL_REQUIRED, JobStatus.PENDING}),
    frozenset(JobStatus),
    frozenset(),
]


async def test_list_filters_match_a_brute_force_filter(job_store: JobStoreUnderTest) -> None:
    """Every combination of status (one, a set, all, none), tenant (including the no-auth
    tenant "" and one with no jobs) and topic, paged through with its cursors, lists exactly
    the jobs that match, newest first."""
    jobs = job_store.store
    corpus = await make_corpus(jobs, 80, seed=20251121)
    assert {j.status for j in corpus} == set(JobStatus)
    assert {j.spec.tenant_id for j in corpus} == set(TENANTS)
    for status in STATUS_FILTERS:
        for tenant_id in [None, *TENANTS, "nobody"]:
            for topic in [None, "job.echo", "job.none"]:
                expected = matching(corpus, status, tenant_id, topic)
                for limit in (7, 100):
                    pages = await all_pages(
                        jobs, limit=limit, status=status, tenant_id=tenant_id, topic=topic
                    )
                    got = [j for p in pages for j in p]
                    assert got == expected, (status, tenant_id, topic, limit)
                    if topic is None:
                        assert_full(pages, limit)
    dead = matching(corpus, DEAD_LETTER_STATUSES, "acme", "job.echo")
    assert dead, "the corpus should have dead letters of acme on job.echo"
    pages = await all_pages(
        jobs, limit=1, status=DEAD_LETTER_STATUSES, tenant_id="acme", topic="job.echo"
    )
    assert [j for p in pages for j in p] == dead


async def test_list_follows_transitions_in_the_tenant_indexes(
    job_store: JobStoreUnderTest,
) -> None:
    jobs = job_store.store
    a, b = job("a", 1.0, tenant_id="acme"), job("b", 2.0, tenant_id="beta")
    for j in (a, b):
        assert await jobs.create(j)
    running = a.dispatch("w1", 3.0)
    assert await jobs.transition(running)
    assert await jobs.list_jobs(tenant_id="acme", status=JobStatus.PENDING) == ([], None)
    assert await jobs.list_jobs(tenant_id="acme", status=JobStatus.RUNNING) == ([running], None)
    assert await jobs.list_jobs(tenant_id="beta", status=JobStatus.RUNNING) == ([], None)
    failed = running.fail("boom", 4.0)
    denied = b.deny("policy", 5.0)
    assert await jobs.transition(failed)
    assert await jobs.transition(denied)
    assert not await jobs.transition(b.cancel("stale", 6.0))  # a lost race moves no index
    assert await jobs.list_jobs(tenant_id="acme", status=DEAD_LETTER_STATUSES) == ([failed], None)
    assert await jobs.list_jobs(status=DEAD_LETTER_STATUSES) == ([denied, failed], None)
    assert await jobs.list_jobs(tenant_id="beta") == ([denied], None)
    assert await jobs.list_jobs(tenant_id="acme", status=JobStatus.RUNNING) == ([], None)
    assert await jobs.list_jobs(tenant_id="") == ([], None)


async def test_a_cursor_holds_its_place_in_a_status_set(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    dead: list[Job] = []
    for i, end in enumerate(["fail", "deny", "time_out", "fail", "deny", "time_out"]):
        pending = job(f"d{i}", 10.0 * i, tenant_id="acme")
        assert await jobs.create(pending)
        later: Job = getattr(pending, end)("why", 100.0)
        assert await jobs.transition(later)
        dead.append(later)
    first, cursor = await jobs.list_jobs(status=DEAD_LETTER_STATUSES, tenant_id="acme", limit=2)
    assert first == [dead[5], dead[4]]
    assert cursor is not None
    newer = job("newer", 99.0, tenant_id="acme")  # before the cursor: not on later pages
    older = job("older", 25.0, tenant_id="acme")  # after it: on the next page, in order
    for j in (newer, older):
        assert await jobs.create(j)
        assert await jobs.transition(j.deny("policy", 101.0))
    rest = [j for p in await all_pages_from(jobs, cursor) for j in p]
    assert [j.job_id for j in rest] == ["d3", "older", "d2", "d1", "d0"]


async def all_pages_from(jobs: JobStore, cursor: str | None) -> list[list[Job]]:
    pages: list[list[Job]] = []
    while cursor is not None:
        page, cursor = await jobs.list_jobs(
            status=DEAD_LETTER_STATUSES, tenant_id="acme", limit=2, cursor=cursor
        )
        pages.append(page)
    return pages


async def test_a_rare_topic_is_found_past_many_others(job_store: JobStoreUnderTest) -> None:
    """A store may bound the work of one call on a topic filter (short pages with a cursor),
    but following the cursors finds every match, once each, in order."""
    jobs = job_store.store
    common = [job(f"n{i:04d}", 1000.0 + i, tenant_id="acme") for i in range(1100)]
    rare = [
        job("rare-new", 5000.0, tenant_id="acme", topic="job.rare"),
        job("rare-mid", 1500.5, tenant_id="acme", topic="job.rare"),
        job("rare-other", 1.5, tenant_id="beta", topic="job.rare"),
        job("rare-old", 1.0, tenant_id="acme", topic="job.rare"),
    ]
    await in_batches(jobs.create(j) for j in [*common, *rare])
    for limit in (1, 2, 3, 50):
        pages = await all_pages(jobs, limit=limit, tenant_id="acme", topic="job.rare")
        assert [j for p in pages for j in p] == [rare[0], rare[1], rare[3]]
        pages = await all_pages(jobs, limit=limit, status=JobStatus.PENDING, topic="job.rare")
        assert [j for p in pages for j in p] == rare
    page, _ = await jobs.list_jobs(topic="job.echo", limit=3)
    assert page == newest_first(common)[:3]


async def test_list_with_an_empty_status_set_is_empty(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    assert await jobs.create(job("a"))
    assert await jobs.list_jobs(status=frozenset()) == ([], None)
    assert await jobs.list_jobs(status=frozenset(JobStatus)) == ([job("a")], None)


# -- the new spec fields ---------------------------------------------------------------


async def test_new_spec_fields_round_trip(job_store: JobStoreUnderTest) -> None:
    jobs = job_store.store
    specs = [
        JobSpec(job_id="none", trace_id="1" * 32, topic="t", context_ptr="", created_at=1.0),
        JobSpec(
            job_id="some",
            trace_id="2" * 32,
            topic="t",
            context_ptr="",
            created_at=2.0,
            tenant_id="acme",
            timeout_s=1e-9,
            idempotency_key="x" * 128,
            retry_of="none",
        ),
        JobSpec(
            job_id="tiny",
            trace_id="3" * 32,
            topic="t",
            context_ptr="",
            created_at=3.0,
            timeout_s=0.0,
            idempotency_key=' :é"\\\n',
            retry_of="r",
        ),
    ]
    created = [new_job(s, s.created_at) for s in specs]
    for j in created:
        assert await jobs.create_or_get(j) == j
        stored = await jobs.get(j.job_id)
        assert stored == j
        assert stored is not None
        assert stored.spec.timeout_s == j.spec.timeout_s
    assert await jobs.list_jobs() == (newest_first(created), None)
    assert (await jobs.get("none")).spec.timeout_s is None  # type: ignore[union-attr]
