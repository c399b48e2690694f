"""``CommandBatcher`` on the real Redis: what concurrent callers send in one event-loop turn
goes out as one pipeline, and every caller still gets its own reply or its own error; and
``RedisJobStore`` on top of it survives a Redis that lost its scripts."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from cortex_adapters.redis import RedisJobStore
from cortex_adapters.redis._connection import CommandBatcher
from cortex_core.jobs import JobSpec, PendingJob, RunningJob, new_job
from cortex_core.messages import JobStatus
from tests.contract.fixtures_stores import REDIS_URL, _delete_namespace, _namespace

pytestmark = pytest.mark.redis


class CountingRedis(aioredis.Redis):
    """Counts the pipelines and single commands that reach the connection."""

    pipelines = 0
    singles = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        CountingRedis.pipelines += 1
        return super().pipeline(*args, **kwargs)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        CountingRedis.singles += 1
        return await super().execute_command(*args, **options)


@pytest.fixture
async def client() -> AsyncIterator[CountingRedis]:
    c = CountingRedis.from_url(REDIS_URL, decode_responses=True)
    CountingRedis.pipelines = CountingRedis.singles = 0
    yield c
    await c.aclose()


async def test_concurrent_commands_share_one_pipeline_and_keep_their_replies(
    client: CountingRedis,
) -> None:
    ns = _namespace()
    batcher = CommandBatcher(client)
    try:
        await asyncio.gather(*(client.set(f"{ns}k{i}", str(i)) for i in range(50)))
        CountingRedis.pipelines = CountingRedis.singles = 0
        replies = await asyncio.gather(*(batcher.call("GET", f"{ns}k{i}") for i in range(50)))
        assert replies == [str(i) for i in range(50)]
        assert (CountingRedis.pipelines, CountingRedis.singles) == (1, 0)
        # A command issued alone goes out alone.
        assert await batcher.call("GET", f"{ns}k7") == "7"
        assert (CountingRedis.pipelines, CountingRedis.singles) == (1, 1)
    finally:
        await _delete_namespace(ns)


async def test_an_error_reaches_only_the_caller_whose_command_failed(
    client: CountingRedis,
) -> None:
    ns = _namespace()
    batcher = CommandBatcher(client)
    try:
        await client.set(f"{ns}s", "a string")
        wrong, right, hash_reply = await asyncio.gather(
            batcher.call("HGETALL", f"{ns}s"),  # WRONGTYPE
            batcher.call("GET", f"{ns}s"),
            batcher.call("HGETALL", f"{ns}missing"),
            return_exceptions=True,
        )
        assert isinstance(wrong, ResponseError)
        assert "WRONGTYPE" in str(wrong)
        assert right == "a string"
        assert hash_reply == {}  # HGETALL's reply is parsed as for a plain call
    finally:
        await _delete_namespace(ns)


async def test_a_cancelled_caller_does_not_disturb_the_others(client: CountingRedis) -> None:
    batcher = CommandBatcher(client)
    gone = asyncio.create_task(batcher.call("PING"))
    kept = asyncio.create_task(batcher.call("ECHO", "still here"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == "still here"
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_a_redis_that_lost_its_scripts_gets_them_again() -> None:
    ns = _namespace()
    store = RedisJobStore(url=REDIS_URL, namespace=ns)
    await store.start()
    try:
        now = time.time()
        job_id = uuid.uuid4().hex
        spec = JobSpec(
            job_id=job_id,
            trace_id=uuid.uuid4().hex,
            topic="job.echo",
            context_ptr=f"redis://ctx:{job_id}",
            created_at=now,
        )
        pending = new_job(spec, now)
        flusher = aioredis.Redis.from_url(REDIS_URL)
        try:
            await flusher.script_flush()  # as after a Redis restart without persistence
            assert await store.create(pending)
            await flusher.script_flush()
            assert isinstance(pending, PendingJob)
            assert await store.transition(pending.dispatch("w1", now + 1))
        finally:
            await flusher.aclose()
        stored = await store.get(job_id)
        assert isinstance(stored, RunningJob)
        assert stored.status is JobStatus.RUNNING
    finally:
        await store.close()
        await _delete_namespace(ns)
