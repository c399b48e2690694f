"""What only a durable NATS bus can show: more than one process, a dead member, a broker
restart, de-duplication, long handlers, and bad bytes on a stored subject.

The in-memory bus cannot die, restart or share a queue group across processes, so these run
against the real ``NatsBus`` only (ADR 0003: "tested only against the real service"). Each
``NatsBus`` here is a separate connection, as a separate process would have.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cortex_adapters.memory import InMemoryMetrics
from cortex_adapters.nats import BusConnectError, NatsBus
from cortex_core.bus_protocol import DURABLE_SUBJECTS
from cortex_core.messages import BusPacket, JobRequest, JobResult, JobStatus
from tests.contract.fixtures_bus import NatsBusFactory, make_nats_bus, new_nats_bus
from tests.contract.test_bus import packet, wait_for
from tests.nats_server import NatsServer, free_port

pytestmark = pytest.mark.nats

__all__ = ["make_nats_bus"]


def submit(job_id: str) -> BusPacket:
    return BusPacket(
        trace_id="cd" * 16,
        sender_id="gateway-test",
        created_at=1.5,
        payload=JobRequest(
            job_id=job_id, topic="job.echo", context_ptr=f"redis://ctx:{job_id}", attempt=0
        ),
    )


def result(job_id: str) -> BusPacket:
    return BusPacket(
        trace_id="ef" * 16,
        sender_id="w1",
        created_at=1.5,
        payload=JobResult(job_id=job_id, status=JobStatus.COMPLETED, worker_id="w1"),
    )


def job_id_of(p: BusPacket) -> str:
    return p.payload.job_id  # type: ignore[union-attr]


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path)
    await server.start()
    yield server
    await server.stop()


async def test_a_queue_group_splits_the_work_across_connections(
    make_nats_bus: NatsBusFactory,
) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}
    for member in seen:
        member_bus = await make_nats_bus()

        async def handler(p: BusPacket, member: str = member) -> None:
            seen[member].append(job_id_of(p))
            await asyncio.sleep(0.005)  # a little work, so both members get a share

        await member_bus.subscribe("job.echo", handler, queue="workers-echo")
    publisher = await make_nats_bus()
    for i in range(20):
        await publisher.publish("job.echo", packet(i))
    await wait_for(lambda: len(seen["a"]) + len(seen["b"]) == 20)
    assert sorted(seen["a"] + seen["b"]) == sorted(f"j{i}" for i in range(20))  # each once
    assert seen["a"]
    assert seen["b"]


async def test_a_member_that_dies_mid_message_leaves_it_to_another(
    make_nats_bus: NatsBusFactory,
) -> None:
    release = asyncio.Event()
    got: dict[str, list[str]] = {"doomed": [], "survivor": []}

    async def stuck(p: BusPacket) -> None:
        got["doomed"].append(job_id_of(p))
        await release.wait()

    async def survivor(p: BusPacket) -> None:
        got["survivor"].append(job_id_of(p))

    doomed = await make_nats_bus(ack_wait_s=0.5)
    await doomed.subscribe("job.echo", stuck, queue="workers-echo")
    await doomed.publish("job.echo", packet(7))
    await wait_for(lambda: got["doomed"] == ["j7"])
    other = await make_nats_bus(ack_wait_s=0.5)
    await other.subscribe("job.echo", survivor, queue="workers-echo")
    await doomed.connection.close()  # the process is gone: no ack, no in-progress, no drain
    await wait_for(lambda: got["survivor"] == ["j7"])
    release.set()  # let the dead member's handler return, so its bus can close


async def test_a_repeated_submit_is_delivered_once(make_nats_bus: NatsBusFactory) -> None:
    got: list[str] = []

    async def scheduler(p: BusPacket) -> None:
        got.append(job_id_of(p))

    b = await make_nats_bus()
    await b.subscribe("sys.job.submit", scheduler, queue="cortex-scheduler")
    await b.publish("sys.job.submit", submit("dup-1"))
    await b.publish("sys.job.submit", submit("dup-1"))  # same dedup_id: the stream drops it
    await b.publish("sys.job.submit", submit("after-1"))
    await wait_for(lambda: "after-1" in got)
    assert got == ["dup-1", "after-1"]


async def test_a_handler_longer_than_ack_wait_is_not_redelivered(
    make_nats_bus: NatsBusFactory,
) -> None:
    runs: Counter[str] = Counter()

    async def slow(p: BusPacket) -> None:
        runs[job_id_of(p)] += 1
        await asyncio.sleep(1.2)  # over twice ack_wait: alive only thanks to in-progress acks

    b = await make_nats_bus(ack_wait_s=0.5)
    # Two slots: while the slow handler runs the bus keeps a pull request open, so a
    # redelivery (if the ack deadline passed) would reach this very subscription.
    sub = await b.subscribe("job.echo", slow, queue="workers-echo", max_in_flight=2)
    await b.publish("job.echo", packet(1))
    await wait_for(lambda: runs["j1"] == 1)
    await asyncio.sleep(1.5)
    assert runs == {"j1": 1}
    stream = b.stream_name
    assert stream is not None
    info = await b.connection.jetstream().consumer_info(stream, sub.consumers[0])
    assert info.num_redelivered == 0
    assert info.num_ack_pending == 0


async def test_undecodable_bytes_are_termed_counted_and_skipped(
    make_nats_bus: NatsBusFactory,
) -> None:
    metrics = InMemoryMetrics()
    got: list[str] = []

    async def worker(p: BusPacket) -> None:
        got.append(job_id_of(p))

    b = await make_nats_bus(metrics=metrics, ack_wait_s=0.5)
    sub = await b.subscribe("job.echo", worker, queue="workers-echo")
    js = b.connection.jetstream()
    await js.publish(f"{b.subject_prefix}job.echo", b"\xff\x00 not a packet")
    await b.publish("job.echo", packet(2))
    await wait_for(lambda: got == ["j2"])
    assert metrics.value("packets_dropped", reason="undecodable") == 1
    stream = b.stream_name
    assert stream is not None
    info = await js.consumer_info(stream, sub.consumers[0])
    assert info.num_ack_pending == 0  # termed, not left to time out
    assert info.num_redelivered == 0
    assert info.delivered.stream_seq == 2


async def test_a_broker_restart_loses_nothing_stored(
    nats_server: NatsServer, make_nats_bus: NatsBusFactory
) -> None:
    fast = {"url": nats_server.url, "reconnect_wait_s": 0.05, "reconnect_wait_max_s": 0.2}
    pub_metrics, sub_metrics = InMemoryMetrics(), InMemoryMetrics()
    publisher = await make_nats_bus(metrics=pub_metrics, **fast)
    subscriber = await make_nats_bus(metrics=sub_metrics, **fast)
    jobs: list[str] = []
    results: list[str] = []

    async def on_job(p: BusPacket) -> None:
        jobs.append(job_id_of(p))

    async def on_result(p: BusPacket) -> None:
        results.append(job_id_of(p))

    # A scheduler that stays subscribed through the restart, and a worker pool that is
    # stopped while jobs are published (its durable consumer stays on the server).
    await subscriber.subscribe("sys.job.result", on_result, queue="cortex-scheduler")
    stopped = await subscriber.subscribe("job.echo", on_job, queue="workers-echo")
    await stopped.unsubscribe()
    for i in range(5):
        await publisher.publish("job.echo", packet(i))
    await publisher.publish("sys.job.result", result("r-before"))
    await wait_for(lambda: results == ["r-before"])

    await nats_server.stop()
    # A publish during the outage waits for the broker (up to publish_timeout_s) instead of
    # failing: a retry is safe, because the stream de-duplicates by Nats-Msg-Id.
    during = asyncio.create_task(publisher.publish("job.echo", packet(5)))
    await asyncio.sleep(0.2)
    assert not during.done()
    await nats_server.start()
    await during
    await wait_for(
        lambda: (
            pub_metrics.value("bus_events", event="reconnected") == 1
            and sub_metrics.value("bus_events", event="reconnected") == 1
        ),
        limit_s=10,
    )
    for i in range(6, 8):
        await publisher.publish("job.echo", packet(i))
    await publisher.publish("sys.job.result", result("r-after"))
    await subscriber.subscribe("job.echo", on_job, queue="workers-echo")

    await wait_for(lambda: len(jobs) == 8 and results == ["r-before", "r-after"], limit_s=10)
    assert sorted(jobs) == sorted(f"j{i}" for i in range(8))
    assert pub_metrics.value("bus_events", event="disconnected") >= 1


async def test_start_creates_the_stream_or_updates_a_different_one(
    make_nats_bus: NatsBusFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cortex.bus")
    first = await make_nats_bus(stream_max_age_s=60.0)
    stream = first.stream_name
    assert stream is not None
    js = first.connection.jetstream()
    created = (await js.stream_info(stream)).config
    assert created.retention == "limits"
    assert created.max_age == 60.0
    assert created.duplicate_window == 60.0  # never longer than the retention
    assert sorted(created.subjects or []) == sorted(
        f"{first.subject_prefix}{s}" for s in DURABLE_SUBJECTS
    )
    await make_nats_bus(stream_max_age_s=60.0)  # same settings: left alone
    await make_nats_bus(stream_max_age_s=600.0)  # another process, newer settings: updated
    updated = (await js.stream_info(stream)).config
    assert (updated.max_age, updated.duplicate_window) == (600.0, 120.0)
    events = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stream_")]
    assert events == ["stream_created", "stream_updated"]


async def test_publish_carries_msg_id_and_traceparent(make_nats_bus: NatsBusFactory) -> None:
    b = await make_nats_bus()
    raw = await b.connection.subscribe(f"{b.subject_prefix}>")
    await b.publish("sys.job.submit", submit("j-headers"))
    heartbeat = BusPacket(trace_id="", sender_id="w1", created_at=1.5, payload=packet(0).payload)
    await b.publish("sys.heartbeat.w1", heartbeat)
    stored = await raw.next_msg(timeout=2)
    plain = await raw.next_msg(timeout=2)
    assert stored.subject == f"{b.subject_prefix}sys.job.submit"
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == "j-headers"
    version, trace_id, span_id, flags = stored.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "cd" * 16, "01")
    assert len(span_id) == 16
    assert int(span_id, 16) != 0
    assert plain.subject == f"{b.subject_prefix}sys.heartbeat.w1"
    assert not (plain.headers or {}).get("traceparent")  # no trace id, no traceparent
    await raw.unsubscribe()


async def test_start_names_the_url_it_cannot_reach() -> None:
    url = f"nats://cortex:s3cret@127.0.0.1:{free_port()}"
    b: NatsBus = new_nats_bus(url=url, connect_timeout_s=0.3)
    with pytest.raises(BusConnectError, match=r"127\.0\.0\.1") as caught:
        await b.start()
    assert "s3cret" not in str(caught.value)
