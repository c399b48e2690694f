"""Benchmark: one ``JobStore`` state write (a job's transition), against baselines measured in
the same run.

Run with ``nox -s bench``. Each row is the median per-call latency over interleaved rounds, one
call at a time, from one asyncio process on uvloop (as the apps run) to the shared Redis
(``REDIS_URL``, a private database that is emptied afterwards):

* ``redis GET`` (baseline): one ``GET`` of a missing key on the same connection pool: a round
  trip to Redis and nothing else.
* ``redis SET`` of the record's size: one write of the same bytes, without the compare-and-set
  or the indexes.
* ``transition``: ``RedisJobStore.transition`` of a PENDING job to RUNNING, the scheduler's
  dispatch write: one Lua script that compares the version, writes the record and moves the
  job between its status indexes.
* ``create`` and ``get``: the front door's write of a new job, and the read every handler does.
* ``in-memory transition``: the same on ``InMemoryJobStore`` (the embedded mode), no network.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

from cortex_adapters.memory import InMemoryJobStore  # noqa: E402
from cortex_adapters.redis import RedisJobStore  # noqa: E402
from cortex_core.jobs import Job, JobSpec, PendingJob, new_job  # noqa: E402
from cortex_core.ports import JobStore  # noqa: E402
from tests.processes import claim_private_redis_db  # noqa: E402


def _job() -> PendingJob:
    job_id = uuid.uuid4().hex
    now = time.time()
    spec = JobSpec(
        job_id=job_id,
        trace_id=uuid.uuid4().hex,
        topic="job.echo",
        context_ptr=f"redis://ctx:{job_id}",
        created_at=now,
        tenant_id="bench",
        labels={"env": "bench"},
    )
    return new_job(spec, now)


async def _median_us(call: Callable[[int], Awaitable[object]], n: int) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def _rows(
    store: RedisJobStore,
    memory_store: InMemoryJobStore,
    raw: aioredis.Redis,
    record: bytes,
    pending: list[Job],
    fresh: list[PendingJob],
    pending_mem: list[Job],
) -> dict[str, Callable[[int], Awaitable[object]]]:
    """What each row does with call number ``i`` (each job is written once)."""

    def dispatch(job: Job) -> Job:
        assert isinstance(job, PendingJob)
        return job.dispatch("w1", time.time())

    return {
        "redis GET (baseline)": lambda i: raw.get(f"bench:missing:{i}"),
        "redis SET, record-sized": lambda i: raw.set(f"bench:set:{i}", record),
        "transition PENDING→RUNNING": lambda i: store.transition(dispatch(pending[i])),
        "create": lambda i: store.create(fresh[i]),
        "get": lambda i: store.get(pending[i].job_id),
        "in-memory transition": lambda i: memory_store.transition(dispatch(pending_mem[i])),
    }


async def run(n: int, rounds: int, redis_url: str) -> dict[str, float]:
    store = RedisJobStore(url=redis_url)
    memory_store = InMemoryJobStore()
    raw = aioredis.Redis.from_url(redis_url)
    await store.start()
    try:

        async def prepared(s: JobStore, count: int) -> list[Job]:
            jobs: list[Job] = []
            for _ in range(count):
                job = _job()
                assert await s.create(job)
                jobs.append(job)
            return jobs

        record = b"x" * 600  # about a job record's size
        for i in range(100):  # warm the connection pool and the scripts' cache first
            await raw.get(f"bench:missing:{i}")
            await store.get(f"warm{i}")
        results: dict[str, list[float]] = {}
        for _ in range(rounds):
            pending = await prepared(store, n)
            pending_mem = await prepared(memory_store, n)
            fresh = [_job() for _ in range(n)]
            rows = _rows(store, memory_store, raw, record, pending, fresh, pending_mem)
            for name, call in rows.items():
                results.setdefault(name, []).append(await _median_us(call, n))
        return {name: statistics.median(v) for name, v in results.items()}
    finally:
        await store.close()
        await raw.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--out", type=Path, default=Path("bench/results/store.json"))
    args = parser.parse_args()
    n, rounds = (300, 3) if args.quick else (2_000, 5)
    client, url = claim_private_redis_db()
    try:
        try:
            import uvloop
        except ImportError:
            rows = asyncio.run(run(n, rounds, url))
        else:
            rows = uvloop.run(run(n, rounds, url))
    finally:
        client.flushdb()
        client.close()
    base = rows["redis GET (baseline)"]
    print(f"JobStore writes, {n} calls x {rounds} rounds, one at a time; median µs per call")
    print(f"{'operation':<30}{'µs':>10}{'÷ redis GET':>14}")
    for name, us in rows.items():
        print(f"{name:<30}{us:>10.1f}{us / base:>14.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "job_store",
                "python": platform.python_version(),
                "calls_per_round": n,
                "rounds": rounds,
                "us_per_call": rows,
                "ratios_vs_redis_get": {k: v / base for k, v in rows.items()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
