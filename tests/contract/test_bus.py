"""The Bus contract: what every adapter promises (in memory, NATS with JetStream, core NATS).

Redelivery after a handler error is promised only by the at-least-once adapters; it lives in
``test_bus_redelivery.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from cortex_core.messages import BusPacket, JobCancel
from cortex_core.ports import Bus


def packet(n: int) -> BusPacket:
    return BusPacket(
        trace_id="ab" * 16, sender_id="t", created_at=1.5, payload=JobCancel(job_id=f"j{n}")
    )


async def wait_for(predicate: object, limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_plain_subscribers_each_get_every_packet(bus: Bus) -> None:
    got: dict[str, list[str]] = {"a": [], "b": []}
    for name in got:

        async def handler(p: BusPacket, name: str = name) -> None:
            assert isinstance(p.payload, JobCancel)
            got[name].append(p.payload.job_id)

        await bus.subscribe("sys.job.cancel", handler)
    for i in range(10):
        await bus.publish("sys.job.cancel", packet(i))
    await wait_for(lambda: len(got["a"]) == len(got["b"]) == 10)
    assert got["a"] == got["b"] == [f"j{i}" for i in range(10)]  # in order


async def test_a_queue_group_splits_the_work(bus: Bus) -> None:
    seen: Counter[str] = Counter()
    ids: list[str] = []
    for member in ("m1", "m2", "m3"):

        async def handler(p: BusPacket, member: str = member) -> None:
            assert isinstance(p.payload, JobCancel)
            seen[member] += 1
            ids.append(p.payload.job_id)

        await bus.subscribe("job.echo", handler, queue="workers-echo")
    for i in range(30):
        await bus.publish("job.echo", packet(i))
    await wait_for(lambda: len(ids) == 30)
    assert sorted(ids) == sorted(f"j{i}" for i in range(30))  # each exactly once
    assert set(seen) == {"m1", "m2", "m3"}


async def test_wildcards_match_tokens(bus: Bus) -> None:
    got: list[str] = []

    async def handler(p: BusPacket) -> None:
        got.append("x")

    await bus.subscribe("sys.heartbeat.*", handler)
    await bus.subscribe("worker.>", handler)
    for subject in (
        "sys.heartbeat.w1",
        "sys.heartbeat.w1.extra",
        "worker.w1.jobs",
        "worker",
        "job.echo",
    ):
        await bus.publish(subject, packet(0))
    await wait_for(lambda: len(got) >= 2)
    await asyncio.sleep(0.05)
    assert len(got) == 2


async def test_unsubscribed_handlers_get_nothing_more(bus: Bus) -> None:
    got: list[str] = []

    async def handler(p: BusPacket) -> None:
        got.append("x")

    sub = await bus.subscribe("job.echo", handler)
    await bus.publish("job.echo", packet(1))
    await wait_for(lambda: len(got) == 1)
    await sub.unsubscribe()
    await bus.publish("job.echo", packet(2))
    await asyncio.sleep(0.05)
    assert len(got) == 1


async def test_max_in_flight_bounds_concurrent_handler_calls(bus: Bus) -> None:
    active = 0
    peak = 0
    done: list[str] = []

    async def handler(p: BusPacket) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        done.append("x")

    await bus.subscribe("job.echo", handler, queue="workers-echo", max_in_flight=3)
    for i in range(9):
        await bus.publish("job.echo", packet(i))
    await wait_for(lambda: len(done) == 9)
    assert peak == 3


async def test_close_lets_running_handlers_finish(bus: Bus) -> None:
    started: list[str] = []
    finished: list[str] = []

    async def handler(p: BusPacket) -> None:
        started.append("x")
        await asyncio.sleep(0.05)
        finished.append("x")

    await bus.subscribe("job.echo", handler, queue="workers-echo")
    await bus.publish("job.echo", packet(1))
    await wait_for(lambda: started == ["x"])
    await bus.close()
    assert finished == ["x"]
