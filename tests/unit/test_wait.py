"""Waiting for a job to end: ``FrontDoor.wait`` on a ``BusJobWatch`` (the in-memory bus here;
tests/e2e/test_observability.py and the gateway tests run it on NATS), and the REST gateway's
``POST /v1/jobs?wait_s=`` on it."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.http.app import Gateway, JobView, create_app
from cortex_adapters.memory import InMemoryBus, InMemoryJobStore, InMemoryMemoryStore
from cortex_adapters.system import SystemClock
from cortex_adapters.watch import BusJobWatch
from cortex_core.access import Gatekeeper
from cortex_core.bus_protocol import SUBJECT_JOB_DONE, SUBJECT_JOB_SUBMIT
from cortex_core.errors import InvalidField, JobNotFound, ResultNotReady
from cortex_core.frontdoor import FrontDoor, SubmitJob
from cortex_core.jobs import PendingJob, RunningJob
from cortex_core.messages import BusPacket, JobRequest, JobResult, JobStatus
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
    for bad in (0.0, -1.0, 61.0, math.nan, math.inf):
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


# -- drain: a server shutting down stops waiting ----------------------------------------------


class Lookups:
    """Counts the front door's store reads of a job (``status``), to catch a spinning wait."""

    def __init__(self, frontdoor: FrontDoor) -> None:
        self.count = 0
        real = frontdoor.status

        async def counting(job_id: str, tenant_id: str = "") -> object:
            self.count += 1
            return await real(job_id, tenant_id)

        frontdoor.status = counting  # type: ignore[method-assign,assignment]


async def test_drain_answers_a_wait_in_progress_with_the_job_as_it_is(s: Setup) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    lookups = Lookups(s.frontdoor)
    waiter = asyncio.create_task(s.frontdoor.wait(submitted.job_id, timeout_s=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    assert lookups.count == 1
    assert not s.frontdoor.draining
    began = time.monotonic()
    assert s.frontdoor.drain() == 1  # one waiter woken
    job = await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - began < 1.0  # not the 30 s wait, nor the 30 s recheck
    assert job.status is JobStatus.PENDING  # as it is now; the job itself goes on
    assert lookups.count == 2  # one more look at the store, then the answer: no spinning
    assert s.watch.draining
    assert s.watch.waiting == 0


async def test_a_wait_after_the_drain_answers_at_once(s: Setup) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    s.frontdoor.drain()
    lookups = Lookups(s.frontdoor)
    began = time.monotonic()
    job = await asyncio.wait_for(s.frontdoor.wait(submitted.job_id, timeout_s=30), 5)
    assert time.monotonic() - began < 1.0
    assert job.status is JobStatus.PENDING
    assert lookups.count == 1
    with pytest.raises(ResultNotReady) as err:  # result?wait_s: not ended, at once
        await asyncio.wait_for(s.frontdoor.result(submitted.job_id, wait_s=30), 5)
    assert err.value.status is JobStatus.PENDING
    assert s.watch.waiting == 0
    # An unknown job is still unknown, a bad wait_s still refused.
    with pytest.raises(JobNotFound):
        await s.frontdoor.wait("f" * 32, timeout_s=30)
    with pytest.raises(InvalidField):
        await s.frontdoor.wait(submitted.job_id, timeout_s=61)


async def test_a_drained_watch_stops_the_wait_without_spinning(s: Setup) -> None:
    """Drained at the port (not through the front door): the wait still stops looping."""
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    s.frontdoor._recheck_s = 0.001  # were it to loop, it would look thousands of times
    lookups = Lookups(s.frontdoor)
    waiter = asyncio.create_task(s.frontdoor.wait(submitted.job_id, timeout_s=1))
    await asyncio.sleep(0.05)
    s.watch.drain()
    job = await asyncio.wait_for(waiter, 5)
    assert job.status is JobStatus.PENDING
    assert s.frontdoor.draining
    count = lookups.count
    await asyncio.wait_for(s.frontdoor.wait(submitted.job_id, timeout_s=1), 5)
    assert lookups.count == count + 1


async def test_a_job_ended_before_the_drain_is_answered_ended(s: Setup) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    await _finish(s, submitted.job_id, announce=False)  # no notice: only the store knows
    s.frontdoor.drain()
    job = await s.frontdoor.wait(submitted.job_id, timeout_s=30)
    assert job.status is JobStatus.COMPLETED


async def test_drain_is_logged_once_with_the_waiters_it_woke(
    s: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    submitted = await s.frontdoor.submit(SubmitJob(prompt="hi"))
    waiters = [
        asyncio.create_task(s.frontdoor.wait(submitted.job_id, timeout_s=30)) for _ in range(2)
    ]
    await asyncio.sleep(0.05)
    with caplog.at_level(logging.INFO, logger="cortex.frontdoor"):
        assert s.frontdoor.drain() == 2
        assert s.frontdoor.drain() == 0  # again: nothing more, and not logged again
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    drained = [r for r in caplog.records if r.getMessage() == "draining_waiters"]
    assert len(drained) == 1
    assert (drained[0].component, drained[0].waiters) == ("gateway", 2)  # type: ignore[attr-defined]


async def test_drain_without_a_watch_still_drains(s: Setup) -> None:
    frontdoor = FrontDoor(
        bus=s.bus, memory=s.memory, jobs=s.jobs, clock=s.clock, ids=SequentialIds()
    )
    assert not frontdoor.draining
    assert frontdoor.drain() == 0
    assert frontdoor.draining  # an event stream still ends


# -- POST /v1/jobs?wait_s=: one request from submit to result --------------------------------

ECHO, HELD, FORBIDDEN = "job.echo", "job.held", "job.forbidden"
LOST, NOT_JSON = "job.lost", "job.notjson"
FORBIDDEN_REASON = "topic job.forbidden is forbidden"
JOB_VIEW_FIELDS = set(JobView.__struct_fields__)


@pytest.fixture
async def http(s: Setup) -> AsyncIterator[httpx.AsyncClient]:
    """The REST gateway on ``s``'s front door, auth off, with a stand-in scheduler and worker
    on ``sys.job.submit``: an echo job completes (its result ``{"echo": <prompt>}``), a
    forbidden one is DENIED, a lost one completes without its result in the memory fabric, a
    not-JSON one stores bytes that are not JSON, and a held one stays PENDING."""

    async def run(packet: BusPacket) -> None:
        request = packet.payload
        assert isinstance(request, JobRequest)
        if request.topic == HELD:
            return
        await asyncio.sleep(0.05)  # the submit has answered; the handler waits by now
        job = await s.jobs.get(request.job_id)
        assert isinstance(job, PendingJob)
        if request.topic == FORBIDDEN:
            denied = job.deny(FORBIDDEN_REASON, s.clock.now())
            assert await s.jobs.transition(denied)
            await announce_done(s.bus, denied, "scheduler")
        else:
            context = await s.memory.get_context(request.job_id)
            assert context is not None
            if request.topic == ECHO:
                prompt = json.loads(context)["prompt"]
                await s.memory.put_result(request.job_id, json.dumps({"echo": prompt}).encode())
            elif request.topic == NOT_JSON:
                await s.memory.put_result(request.job_id, b"{not json")
            await _finish(s, request.job_id)

    await s.bus.subscribe(SUBJECT_JOB_SUBMIT, run, max_in_flight=16)
    gateway = Gateway(
        frontdoor=s.frontdoor,
        gatekeeper=Gatekeeper(keys=None, clock=s.clock),
        clock=s.clock,
    )
    # On this event loop, as the front door's bus and watch (a litestar AsyncTestClient would
    # run the app on a loop of its own).
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


async def _all_jobs(s: Setup) -> list[str]:
    jobs, _ = await s.jobs.list_jobs(limit=200)
    return [j.job_id for j in jobs]


@pytest.mark.parametrize("bad", ["0", "-1", "61", "nan", "inf", "-inf", "soon", ""])
async def test_submit_with_a_bad_wait_s_is_400_and_submits_nothing(
    s: Setup, http: httpx.AsyncClient, bad: str
) -> None:
    r = await http.post("/v1/jobs", params={"wait_s": bad}, json={"prompt": "hi"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["field"] == "wait_s"
    await s.bus.settle()
    assert await _all_jobs(s) == []
    assert await s.memory.get_context(SequentialIds().job_id()) is None  # no context stored


async def test_submit_with_wait_s_answers_200_with_the_job_and_its_result(
    s: Setup, http: httpx.AsyncClient
) -> None:
    started = s.clock.now()
    r = await http.post(
        "/v1/jobs", params={"wait_s": 10}, json={"prompt": "all the way", "labels": {"k": "v"}}
    )
    assert r.status_code == 200, r.text
    assert s.clock.now() - started < 5  # woken by the notice, not by the 30 s recheck
    assert r.headers["content-type"].startswith("application/json")
    assert "Idempotent-Replayed" not in r.headers
    body = r.json()
    assert set(body) == JOB_VIEW_FIELDS | {"result"}
    assert body["status"] == "COMPLETED"
    assert body["result"] == {"echo": "all the way"}
    job_id = body["job_id"]
    assert body["result_ptr"] == f"redis://res:{job_id}"
    assert (body["worker_id"], body["labels"], body["topic"]) == ("w1", {"k": "v"}, ECHO)
    # Every field as GET /v1/jobs/{id} shows it, and the result as GET .../result stores it.
    status = await http.get(f"/v1/jobs/{job_id}")
    assert {k: v for k, v in body.items() if k != "result"} == status.json()
    stored = await s.memory.get_result(job_id)
    assert stored == b'{"echo": "all the way"}'
    assert r.content.endswith(b',"result":' + stored + b"}")  # embedded as stored, byte for byte


async def test_submit_with_wait_s_is_202_when_the_job_has_not_ended_in_time(
    s: Setup, http: httpx.AsyncClient
) -> None:
    r = await http.post("/v1/jobs", params={"wait_s": 0.3}, json={"prompt": "hi", "topic": HELD})
    assert r.status_code == 202, r.text
    assert set(r.json()) == {"job_id", "trace_id"}
    job = await s.jobs.get(r.json()["job_id"])
    assert job is not None
    assert job.status is JobStatus.PENDING
    assert job.spec.trace_id == r.json()["trace_id"]
    assert s.watch.waiting == 0


async def test_submit_without_wait_s_answers_202_at_once(s: Setup, http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/jobs", json={"prompt": "hi"})
    assert r.status_code == 202, r.text
    assert set(r.json()) == {"job_id", "trace_id"}
    assert s.watch.waiting == 0  # it did not wait
    job = await s.frontdoor.wait(r.json()["job_id"], timeout_s=10)
    assert job.status is JobStatus.COMPLETED  # the job itself runs as before


@pytest.mark.parametrize(
    ("topic", "status", "reason"),
    [
        (FORBIDDEN, "DENIED", FORBIDDEN_REASON),  # ended without a result
        (LOST, "COMPLETED", None),  # its result has expired from the memory fabric
        (NOT_JSON, "COMPLETED", None),  # its result is not JSON: not embedded
    ],
)
async def test_submit_with_wait_s_of_a_job_ended_without_a_usable_result_has_result_null(
    http: httpx.AsyncClient, topic: str, status: str, reason: str | None
) -> None:
    r = await http.post("/v1/jobs", params={"wait_s": 10}, json={"prompt": "hi", "topic": topic})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == JOB_VIEW_FIELDS | {"result"}
    assert (body["status"], body["reason"], body["result"]) == (status, reason, None)


async def test_submit_with_wait_s_replayed_by_its_idempotency_key_keeps_the_header(
    http: httpx.AsyncClient,
) -> None:
    body = {"prompt": "once", "idempotency_key": "order-17"}
    first = await http.post("/v1/jobs", params={"wait_s": 10}, json=body)
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await http.post("/v1/jobs", params={"wait_s": 10}, json=body)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.json()["result"] == {"echo": "once"}
    plain = await http.post("/v1/jobs", json=body)  # and without wait_s, as before
    assert plain.status_code == 202
    assert plain.headers["Idempotent-Replayed"] == "true"
    assert plain.json()["job_id"] == first.json()["job_id"]


async def test_submit_with_wait_s_is_202_not_503_when_the_store_fails_after_the_submit(
    s: Setup, http: httpx.AsyncClient
) -> None:
    async def down(job_id: str) -> None:
        raise ConnectionError("redis is down")

    s.jobs.get = down  # type: ignore[method-assign,assignment]  # submit itself never reads
    r = await http.post("/v1/jobs", params={"wait_s": 10}, json={"prompt": "hi", "topic": HELD})
    # A 503 would tell the client that nothing was submitted; the job is there.
    assert r.status_code == 202, r.text
    assert await _all_jobs(s) == [r.json()["job_id"]]


async def test_the_schema_documents_both_answers_of_submit(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/schema/openapi.json")).json()
    submit = schema["paths"]["/v1/jobs"]["post"]
    ref = "#/components/schemas/"
    responses = submit["responses"]
    assert responses["202"]["content"]["application/json"]["schema"]["$ref"] == (
        ref + "SubmitJobAccepted"
    )
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"] == (
        ref + "SubmitJobEnded"
    )
    ended = schema["components"]["schemas"]["SubmitJobEnded"]
    assert set(ended["properties"]) == JOB_VIEW_FIELDS | {"result"}
    assert "type" not in ended["properties"]["result"]  # any JSON value, null included
    assert "oneOf" not in ended["properties"]["result"]
    assert [p["name"] for p in submit["parameters"]] == ["wait_s"]


# -- the routes on drain: the answers they give when wait_s runs out -------------------------


async def test_every_long_poll_in_progress_answers_on_drain(
    s: Setup, http: httpx.AsyncClient
) -> None:
    held = await http.post("/v1/jobs", json={"prompt": "hi", "topic": HELD})
    job_id = held.json()["job_id"]
    polls = {
        "status": asyncio.create_task(http.get(f"/v1/jobs/{job_id}", params={"wait_s": 60})),
        "result": asyncio.create_task(http.get(f"/v1/jobs/{job_id}/result", params={"wait_s": 60})),
        "submit": asyncio.create_task(
            http.post("/v1/jobs", params={"wait_s": 60}, json={"prompt": "hi", "topic": HELD})
        ),
        "events": asyncio.create_task(http.get(f"/v1/jobs/{job_id}/events")),
    }
    async with asyncio.timeout(5):
        while s.watch.waiting < 2 or len(await _all_jobs(s)) < 2:  # both jobs waited on
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the event stream has sent the job's state, and polls again
    assert not any(p.done() for p in polls.values())
    began = time.monotonic()
    assert s.frontdoor.drain() == 3
    replies = await asyncio.wait_for(asyncio.gather(*polls.values()), 5)
    answers = dict(zip(polls, replies, strict=True))
    assert time.monotonic() - began < 1.0
    status = answers["status"]
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "PENDING"
    result = answers["result"]
    assert result.status_code == 409, result.text
    assert result.json()["status"] == "PENDING"
    submit = answers["submit"]
    assert submit.status_code == 202, submit.text
    assert set(submit.json()) == {"job_id", "trace_id"}
    events = answers["events"]
    assert events.status_code == 200
    assert events.text.count("event: status") == 1  # the job's state, then the stream ended
    assert '"status":"PENDING"' in events.text
    # Nothing is lost: both jobs are there, still PENDING, for a scheduler to run.
    for submitted in (job_id, submit.json()["job_id"]):
        job = await s.jobs.get(submitted)
        assert job is not None
        assert job.status is JobStatus.PENDING


async def test_long_polls_after_the_drain_answer_at_once(s: Setup, http: httpx.AsyncClient) -> None:
    s.frontdoor.drain()
    began = time.monotonic()
    submit = await http.post(
        "/v1/jobs", params={"wait_s": 60}, json={"prompt": "hi", "topic": HELD}
    )
    assert submit.status_code == 202, submit.text
    job_id = submit.json()["job_id"]
    status = await http.get(f"/v1/jobs/{job_id}", params={"wait_s": 60})
    assert (status.status_code, status.json()["status"]) == (200, "PENDING")
    result = await http.get(f"/v1/jobs/{job_id}/result", params={"wait_s": 60})
    assert result.status_code == 409, result.text
    events = await http.get(f"/v1/jobs/{job_id}/events")
    assert events.text.count("event: status") == 1
    assert time.monotonic() - began < 2.0
