"""Scheduler V2 under load, as real OS processes against real NATS and Redis: a burst spread
over capacity-limited workers, and a scheduler replica SIGKILLed in the middle of a burst."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import InMemoryMetrics
from cortex_adapters.nats import NatsBus
from cortex_adapters.redis import RedisJobStore, RedisMemoryStore
from cortex_adapters.system import SystemClock, UuidIdGenerator
from cortex_core.frontdoor import FrontDoor, SubmitJob
from cortex_core.jobs import Job
from cortex_core.messages import JobStatus
from tests.e2e.test_processes import (  # noqa: F401
    NATS_URL,
    _delete_stream,
    cortex,
    finished,
    start_worker,
)
from tests.processes import Proc, claim_private_redis_db

pytestmark = [pytest.mark.processes, pytest.mark.nats, pytest.mark.redis]

BURST_HANDLER = Path(__file__).with_name("_burst_worker.py")
PARALLEL = 2
CLAIM = "cortex-test:claimed-by"


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    """tests/e2e/test_processes.py's ``env``, plus a private Redis database: a private subject
    namespace on the shared NATS, JetStream stream deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    store, url = claim_private_redis_db()
    yield {
        "CORTEX_SUBJECT_PREFIX": prefix,
        "REDIS_URL": url,
        "NATS_URL": NATS_URL,
        "CORTEX_ACK_WAIT_S": "2",
        "CORTEX_HEARTBEAT_INTERVAL_S": "0.5",
        "CORTEX_STALE_AFTER_S": "1.5",
        "CORTEX_SWEEP_INTERVAL_S": "0.2",
        "CORTEX_NO_AUTH": "1",  # the REST API without keys (test_gateway_api.py has auth)
        "CORTEX_GRPC_ADDR": "127.0.0.1:0",  # not the shared default port
        "CORTEX_RATE_LIMIT_PER_S": "0",  # bursts of hundreds of requests: no limit (0)
    }
    asyncio.run(_delete_stream(prefix))
    store.flushdb()  # ours alone since the claim
    store.close()


def _submit(http: httpx.Client, bodies: list[dict[str, object]]) -> list[str]:
    """POST every body at once from a few threads; the job ids, in the order of ``bodies``."""

    def post(body: dict[str, object]) -> str:
        response = http.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(post, bodies))


def _statuses(http: httpx.Client, job_ids: list[str]) -> dict[str, dict[str, object]]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        states = pool.map(lambda j: http.get(f"/v1/jobs/{j}").json(), job_ids)
        return dict(zip(job_ids, states, strict=True))


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant; one that ends exactly when another starts
    does not overlap it."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:  # at equal times -1 sorts before +1
        running += delta
        peak = max(peak, running)
    return peak


def _worker_of(subject: object) -> str | None:
    """The worker a dispatch's subject (``worker.<id>.jobs``) names, or None."""
    m = re.match(r"worker\.(\S+)\.jobs", subject) if isinstance(subject, str) else None
    return m.group(1) if m else None


def _max_outstanding(scheduler: Proc) -> dict[str, int]:
    """Per worker, the most jobs the scheduler had dispatched to it and not yet seen finish,
    replaying its own log in order. Informational: dispatches beyond the worker's capacity
    wait in the worker's subject, they do not run (the handlers' intervals show that)."""
    outstanding: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    owner: dict[str, str] = {}
    for record in scheduler.events():
        job = record.get("job_id")
        if record["event"] == "job_dispatched":
            worker = _worker_of(record.get("subject"))
            if job and worker:
                owner[job] = worker
                outstanding[worker] += 1
                peak[worker] = max(peak[worker], outstanding[worker])
        elif record["event"] == "job_finished" and job and job in owner:
            outstanding[owner.pop(job)] -= 1
    return dict(peak)


def _stuck(open_: dict[str, dict[str, object]], schedulers: dict[str, Proc], redis_url: str) -> str:
    """The unfinished jobs, grouped by (status, reason, worker, attempts, the last scheduler
    event that named the job), with a few of their ids."""
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    groups: dict[tuple[object, ...], list[str]] = {}
    for job_id, state in open_.items():
        last = "none"
        for name, p in schedulers.items():
            for record in p.events(job_id=job_id):
                last = f"{record['event']} by the {name} scheduler"
        worker, attempts = store.hmget(f"job:{job_id}", ["worker_id", "attempts"])
        key = (state["status"], state["reason"], worker, attempts, last)
        groups.setdefault(key, []).append(job_id)
    store.close()
    return "; ".join(
        f"{len(jobs)} x (status, reason, worker, attempts, last event) = {key}, e.g. {jobs[:2]}"
        for key, jobs in groups.items()
    )


def test_a_burst_spreads_evenly_and_no_worker_exceeds_its_parallelism(
    cortex: tuple[str, list[Proc]],  # noqa: F811
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    base, procs = cortex
    workers: dict[str, Path] = {}
    for n in range(3):
        worker_id = f"burst{n}-{uuid.uuid4().hex[:6]}"
        workers[worker_id] = tmp_path / f"{worker_id}.jsonl"
        procs.append(
            Proc(
                "worker",
                "run",
                "--worker-id",
                worker_id,
                "--max-parallel-jobs",
                str(PARALLEL),
                "--pool",
                "echo",
                "--topic",
                "job.echo",
                "--handler",
                f"{BURST_HANDLER}:handle",
                env={**env, "CORTEX_TEST_INTERVALS": str(workers[worker_id])},
            )
        )
    for p, worker_id in zip(procs[3:], workers, strict=True):
        p.wait_for(f"cortex worker {worker_id} ready")
    time.sleep(1.0)  # two heartbeats: the scheduler knows all three before the burst

    bodies: list[dict[str, object]] = [
        {"prompt": f"b{i}", "labels": {"echo.delay_ms": "20"}} for i in range(200)
    ]
    with httpx.Client(base_url=base, timeout=10) as http:
        started = time.monotonic()
        ids = _submit(http, bodies)
        submitted = time.monotonic() - started
        states = finished(http, ids, timeout=30)
        elapsed = time.monotonic() - started
        assert {s["status"] for s in states.values()} == {"COMPLETED"}, states
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(
                pool.map(lambda j: json.loads(http.get(f"/v1/jobs/{j}/result").content), ids)
            )
    for i, result in enumerate(results):
        assert result["echo"] == f"b{i}", (ids[i], result)

    # Spread: the worker that ran each job, as its result says.
    counts = Counter(str(r["worker_id"]) for r in results)
    spread = {w: counts.get(w, 0) for w in workers}
    ratio = max(spread.values()) / max(min(spread.values()), 1)

    # Concurrency, measured rather than configured: each job's handler wrote down when it
    # entered and left (tests/e2e/_burst_worker.py), with the worker process's monotonic
    # clock. The most intervals of one worker open at one instant is how many jobs it really
    # ran at once. A heartbeat's active_jobs, the scheduler's reservations, or the worker's
    # max_parallel_jobs would only restate the accounting under test.
    runs: dict[str, list[dict[str, Any]]] = {}
    for worker_id, path in workers.items():
        runs[worker_id] = [json.loads(line) for line in path.read_text().splitlines()]
    overlap = {
        w: _max_overlap([(float(r["start"]), float(r["end"])) for r in rs])
        for w, rs in runs.items()
    }
    outstanding = _max_outstanding(procs[2])
    report = (
        f"200 jobs: submitted in {submitted:.2f}s, all COMPLETED after {elapsed:.2f}s; "
        f"jobs per worker {spread} (max/min {ratio:.2f}); "
        f"max jobs running at once per worker {overlap} (limit {PARALLEL}); "
        f"scheduler's max dispatched-but-unfinished per worker {outstanding}"
    )
    print(f"\n{report}")

    # Each job ran exactly once, on the worker its result names.
    ran = Counter(str(r["job_id"]) for rs in runs.values() for r in rs)
    twice = {j: n for j, n in ran.items() if n != 1}
    assert ran.keys() == set(ids), report
    assert not twice, f"ran more than once: {twice}; {report}"
    for worker_id, rs in runs.items():
        assert {str(r["worker_id"]) for r in rs} <= {worker_id}, report
        assert len(rs) == spread[worker_id], report
    assert max(overlap.values()) <= PARALLEL, report
    assert max(overlap.values()) == PARALLEL, f"the burst never filled a worker: {report}"
    assert min(spread.values()) >= 0.2 * len(ids), report


def test_a_scheduler_killed_mid_burst_loses_and_duplicates_no_job(
    cortex: tuple[str, list[Proc]],  # noqa: F811
    env: dict[str, str],
) -> None:
    """Whatever the killed replica held must end up with the survivor: submits and results it
    had not acked (JetStream redelivers them after ack_wait), and the jobs it had parked
    waiting for a free slot (their submits were acked long ago)."""
    base, procs = cortex
    doomed = procs[2]
    survivor = Proc("scheduler", env=env)  # same env: same queue group, store and stream
    procs.append(survivor)
    survivor.wait_for("cortex scheduler ready")
    for n in range(3):
        procs.append(start_worker(env, f"echo{n}-{uuid.uuid4().hex[:6]}", parallel=PARALLEL))
    time.sleep(1.0)  # both schedulers have heard every worker's heartbeat

    bodies: list[dict[str, object]] = [
        {"prompt": f"k{i}", "labels": {"echo.delay_ms": "100"}} for i in range(100)
    ]
    with httpx.Client(base_url=base, timeout=10) as http:
        ids = _submit(http, bodies)
        # Kill it mid-burst, once some jobs are done and while it holds some of the rest:
        # which replica gets which submit is the queue group's choice, so wait until the
        # doomed one has parked jobs of its own (logged job_waiting, still PENDING).
        deadline = time.monotonic() + 20
        while True:
            states = _statuses(http, ids)
            done = sum(s["status"] == "COMPLETED" for s in states.values())
            parked = {str(r["job_id"]) for r in doomed.events("job_waiting")}
            held = [j for j in parked if states.get(j, {}).get("status") == "PENDING"]
            if done >= 20 and held:
                break
            assert time.monotonic() < deadline, (
                f"{done} completed, the doomed scheduler holds {len(held)} parked jobs; "
                f"{Counter(str(s['status']) for s in states.values())}"
            )
            time.sleep(0.02)
        doomed.kill()  # SIGKILL: no drain, its unacked messages wait out the 2 s ack_wait
        in_flight = Counter(str(s["status"]) for s in states.values() if s["status"] != "COMPLETED")
        print(
            f"\nkilled one scheduler at {done}/100 COMPLETED, others {dict(in_flight)}, "
            f"{len(held)} of them parked in the killed one's waiting queue"
        )

        deadline = time.monotonic() + 25
        while True:
            states = _statuses(http, ids)
            open_ = {j: s for j, s in states.items() if s["status"] in ("PENDING", "RUNNING")}
            if not open_ or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        schedulers = {"killed": doomed, "survivor": survivor}
        assert not open_, (
            f"{len(open_)} of {len(ids)} jobs still unfinished 25 s after one scheduler was "
            f"killed at {done} COMPLETED: {_stuck(open_, schedulers, env['REDIS_URL'])}"
        )
        not_completed = {
            j: (s["status"], s["reason"]) for j, s in states.items() if s["status"] != "COMPLETED"
        }
        assert not not_completed, f"{len(not_completed)} of {len(ids)}: {not_completed}"
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(
                pool.map(lambda j: json.loads(http.get(f"/v1/jobs/{j}/result").content), ids)
            )
    for i, result in enumerate(results):
        assert result["echo"] == f"k{i}", (ids[i], result)

    # Exactly once: across both schedulers, one committed completion per job. (A SIGKILL
    # between a commit and its log line would hide one; that window is microseconds wide.)
    finishes = [r for p in (doomed, survivor) for r in p.events("job_finished")]
    counts = {j: sum(r["job_id"] == j for r in finishes) for j in ids}
    by_doomed = len(doomed.events("job_finished"))
    print(
        f"job_finished lines: {by_doomed} by the killed scheduler, "
        f"{len(finishes) - by_doomed} by the survivor"
    )
    assert {j: n for j, n in counts.items() if n != 1} == {}


# -- attempts that overrun their time ------------------------------------------------------


@pytest.fixture
def backend(env: dict[str, str]) -> Iterator[Proc]:
    """A Safety Kernel and a scheduler that gives a job 2 attempts; no gateway: the tests
    submit through ``FrontDoor`` on the bus and read jobs from the job store."""
    env["CORTEX_MAX_ATTEMPTS"] = "2"
    kernel = Proc("safety-kernel", "--address", "127.0.0.1:0", env=env)
    procs = [kernel]
    try:
        env["SAFETY_KERNEL_ADDR"] = kernel.wait_for(r"safety-kernel ready on (\S+)").group(1)
        procs.append(Proc("scheduler", env=env))
        procs[1].wait_for("cortex scheduler ready")
        yield procs[1]
    finally:
        for p in reversed(procs):
            if p.popen.poll() is None:
                p.terminate()


@contextlib.asynccontextmanager
async def _front_door(env: dict[str, str]) -> AsyncIterator[tuple[FrontDoor, RedisJobStore]]:
    """The gateway's front door in this process, on the processes' subject prefix and Redis
    database, and the job store it writes."""
    bus = NatsBus(
        url=NATS_URL,
        name="test-front-door",
        codec=ProtobufCodec(),
        metrics=InMemoryMetrics(),
        subject_prefix=env["CORTEX_SUBJECT_PREFIX"],
        ack_wait_s=float(env["CORTEX_ACK_WAIT_S"]),
    )
    memory = RedisMemoryStore(url=env["REDIS_URL"], ttl_s=3600.0, max_value_bytes=1 << 20)
    jobs = RedisJobStore(url=env["REDIS_URL"])
    started: list[NatsBus | RedisMemoryStore | RedisJobStore] = []
    try:
        for component in (bus, memory, jobs):
            await component.start()
            started.append(component)
        door = FrontDoor(
            bus=bus,
            memory=memory,
            jobs=jobs,
            clock=SystemClock(),
            ids=UuidIdGenerator(),
            sender_id="test-front-door",
        )
        yield door, jobs
    finally:
        for component in reversed(started):
            await component.close()


async def _ended(jobs: RedisJobStore, job_id: str, within_s: float = 20.0) -> Job:
    deadline = time.monotonic() + within_s
    while True:
        job = await jobs.get(job_id)
        if job is not None and job.is_terminal:
            return job
        assert time.monotonic() < deadline, f"{job_id} unfinished after {within_s}s: {job}"
        await asyncio.sleep(0.05)


def _dispatches(scheduler: Proc, job_id: str) -> list[str]:
    """The workers the scheduler dispatched ``job_id`` to, in order, from its log."""
    return [
        worker
        for record in scheduler.events("job_dispatched", job_id=job_id)
        if (worker := _worker_of(record.get("subject"))) is not None
    ]


def _timeouts(worker: Proc, job_id: str) -> int:
    return len(worker.events("job_done", job_id=job_id, status="TIMEOUT"))


async def test_a_job_that_overruns_its_timeout_every_time_fails_after_max_attempts(
    backend: Proc, env: dict[str, str]
) -> None:
    """timeout_s is per attempt: each dispatch carries it, the worker stops the attempt at it
    and reports TIMEOUT, and the scheduler retries (no deadline has passed) until
    max_attempts (2 here), then fails the job."""
    worker_id = f"echo-{uuid.uuid4().hex[:6]}"
    worker = await asyncio.to_thread(start_worker, env, worker_id)
    try:
        async with _front_door(env) as (door, jobs):
            submit = SubmitJob(prompt="too slow", labels={"echo.delay_ms": "3000"}, timeout_s=0.3)
            job_id = (await door.submit(submit)).job_id
            stored = await jobs.get(job_id)
            # The scheduler reads the job back from the store: without it, no time limit.
            assert stored is not None
            assert stored.spec.timeout_s == 0.3, stored
            job = await _ended(jobs, job_id)
        assert (job.status, job.attempts) == (JobStatus.FAILED, 2), job
        assert job.reason == (
            "overran: the job ran past its time (0.300 s); gave up after 2 attempts"
        ), job
        assert _dispatches(backend, job_id) == [worker_id, worker_id]
        await asyncio.to_thread(worker.wait_for_event, "job_done", job_id=job_id, status="TIMEOUT")
        assert _timeouts(worker, job_id) == 2, worker.output
    finally:
        await asyncio.to_thread(worker.terminate)
    assert "Traceback" not in backend.output + worker.output


async def test_a_job_that_overruns_the_worker_limit_every_time_fails_after_max_attempts(
    backend: Proc, env: dict[str, str]
) -> None:
    """The same, with the worker's own limit (CORTEX_JOB_TIMEOUT_S) and no timeout_s on the
    job: a worker's TIMEOUT before the deadline is an overrun either way."""
    worker_id = f"echo-{uuid.uuid4().hex[:6]}"
    worker = await asyncio.to_thread(
        start_worker, {**env, "CORTEX_JOB_TIMEOUT_S": "0.3"}, worker_id
    )
    try:
        async with _front_door(env) as (door, jobs):
            submit = SubmitJob(prompt="too slow", labels={"echo.delay_ms": "3000"})
            job_id = (await door.submit(submit)).job_id
            job = await _ended(jobs, job_id)
        assert (job.status, job.attempts) == (JobStatus.FAILED, 2), job
        assert job.reason == (
            "overran: the job ran past its time (0.300 s); gave up after 2 attempts"
        ), job
        assert _dispatches(backend, job_id) == [worker_id, worker_id]
        assert _timeouts(worker, job_id) == 2, worker.output
    finally:
        await asyncio.to_thread(worker.terminate)
    assert "Traceback" not in backend.output + worker.output


async def test_an_attempt_that_overruns_is_retried_and_the_retry_completes(
    backend: Proc, env: dict[str, str]
) -> None:
    """Attempt 1 overruns on a worker with a 0.3 s limit. That worker then leaves (SIGTERM:
    its last heartbeat says it has no capacity) well within the 1 s backoff before attempt
    2, so attempt 2 can only go to the worker that starts next, with no limit, where the
    1 s job completes."""
    limited_id, patient_id = f"echo-a{uuid.uuid4().hex[:6]}", f"echo-b{uuid.uuid4().hex[:6]}"
    limited = await asyncio.to_thread(
        start_worker, {**env, "CORTEX_JOB_TIMEOUT_S": "0.3"}, limited_id
    )
    patient: Proc | None = None
    try:
        async with _front_door(env) as (door, jobs):
            submit = SubmitJob(prompt="second time lucky", labels={"echo.delay_ms": "1000"})
            job_id = (await door.submit(submit)).job_id
            requeued = await asyncio.to_thread(
                backend.wait_for_event, "job_requeued", 20.0, job_id=job_id
            )
            assert "overran" in str(requeued.get("cause")), requeued
            assert await asyncio.to_thread(limited.terminate) in (0, -15), limited.output
            patient = await asyncio.to_thread(start_worker, env, patient_id)
            job = await _ended(jobs, job_id)
            assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2), job
            _, data = await door.result(job_id)
        assert json.loads(data) == {
            "echo": "second time lucky",
            "topic": "job.echo",
            "worker_id": patient_id,
        }
        assert _dispatches(backend, job_id) == [limited_id, patient_id]
        assert _timeouts(limited, job_id) == 1, limited.output
    finally:
        for worker in (limited, patient):
            if worker is not None and worker.popen.poll() is None:
                await asyncio.to_thread(worker.terminate)
    assert "Traceback" not in backend.output + limited.output
