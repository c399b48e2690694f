from __future__ import annotations

import asyncio

from cortex_core.jobs import JobSpec, PendingJob, new_job
from cortex_core.messages import JobStatus
from cortex_core.ports import JobStore


def job(job_id: str = "j1") -> PendingJob:
    spec = JobSpec(
        job_id=job_id,
        trace_id="ab" * 16,
        topic="job.echo",
        context_ptr=f"redis://ctx:{job_id}",
        created_at=100.0,
        labels={"env": "dev"},
    )
    return new_job(spec, 100.0)


async def test_create_get_and_no_overwrite(job_store: JobStore) -> None:
    first = job()
    assert await job_store.create(first)
    assert await job_store.get("j1") == first
    assert not await job_store.create(first.waiting("no_workers", 101.0))
    assert await job_store.get("j1") == first
    assert await job_store.get("missing") is None


async def test_transition_is_compare_and_set(job_store: JobStore) -> None:
    pending = job()
    await job_store.create(pending)
    running = pending.dispatch("w1", 101.0)
    assert await job_store.transition(running)
    assert not await job_store.transition(
        pending.deny("stale view", 102.0)
    )  # based on v1, store has v2
    done = running.complete("redis://res:j1", 103.0)
    assert await job_store.transition(done)
    assert not await job_store.transition(running.fail("late", 104.0))
    stored = await job_store.get("j1")
    assert stored == done
    assert stored is not None
    assert stored.status is JobStatus.COMPLETED


async def test_exactly_one_of_many_concurrent_transitions_wins(job_store: JobStore) -> None:
    pending = job()
    await job_store.create(pending)
    contenders = [pending.dispatch(f"w{i}", 101.0) for i in range(50)]
    contenders += [pending.deny(f"d{i}", 101.0) for i in range(50)]
    wins = await asyncio.gather(*(job_store.transition(c) for c in contenders))
    assert sum(wins) == 1
    winner = contenders[wins.index(True)]
    assert await job_store.get("j1") == winner


async def test_transition_of_an_unknown_job_fails(job_store: JobStore) -> None:
    assert not await job_store.transition(job("ghost").dispatch("w1", 1.0))
    assert await job_store.get("ghost") is None
