"""The gateway's registry, fed from heartbeats on the bus."""

from __future__ import annotations

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import InMemoryBus, InMemoryMetrics, InMemoryWorkerRegistry
from cortex_core.bus_protocol import heartbeat_subject
from cortex_core.heartbeats import HeartbeatFeed
from cortex_core.messages import BusPacket, Heartbeat, JobCancel
from tests.fakes import FakeClock


async def test_heartbeats_reach_the_registry_and_other_payloads_are_counted_drops() -> None:
    clock = FakeClock()
    bus = InMemoryBus(codec=ProtobufCodec(), strict=True)
    registry = InMemoryWorkerRegistry(clock=clock)
    metrics = InMemoryMetrics()
    feed = HeartbeatFeed(bus=bus, registry=registry, clock=clock, metrics=metrics)
    await feed.start()
    hb = Heartbeat(worker_id="w1", pool="echo", max_parallel_jobs=4, active_jobs=3)
    await bus.publish(
        heartbeat_subject("w1"),
        BusPacket(trace_id="ab" * 16, sender_id="w1", created_at=clock.now(), payload=hb),
    )
    await bus.publish(
        heartbeat_subject("w2"),
        BusPacket(
            trace_id="ab" * 16,
            sender_id="w2",
            created_at=clock.now(),
            payload=JobCancel(job_id="j"),
        ),
    )
    await bus.settle()
    [w] = await registry.workers("echo")
    assert (w.worker_id, w.active_jobs, w.max_parallel_jobs, w.last_seen) == (
        "w1",
        3,
        4,
        clock.now(),
    )
    assert metrics.total("packets_dropped") == 1
    await feed.close()
    await bus.publish(
        heartbeat_subject("w3"),
        BusPacket(
            trace_id="ab" * 16,
            sender_id="w3",
            created_at=clock.now(),
            payload=Heartbeat(worker_id="w3", pool="echo", max_parallel_jobs=1),
        ),
    )
    await bus.settle()
    assert [w.worker_id for w in await registry.workers()] == ["w1"]  # closed: no longer fed
    await bus.close()
