"""The raw floor: the least work the same round trip can do, with nats-py and redis-py alone.

Three processes, one message per job on every hop (no batching)::

    client  SET payload:<id>, publish <prefix>submit "<inbox> <id>"
    router  HSET job:<id> state RUNNING, publish <prefix>work "<inbox> <id>"
    worker  GET payload:<id>, SET result:<id> <payload>, publish <prefix>result "<inbox> <id>"
    router  HSET job:<id> state COMPLETED, publish <inbox> "<id>"     (core NATS)
    client  GET result:<id>, and checks the echo

``--bus core``: every hop is core NATS (at most once: a message published while no process
subscribes is gone). ``--bus jetstream``: the three job hops (submit, work, result) go through
a JetStream stream, published with an awaited PubAck and consumed by durable push consumers in
a queue group with explicit acks (acked once the handler's writes and publish are done), the
same at-least-once hand-off Cortex makes; only the client's completion notice stays core NATS.
The stream is created and deleted by the orchestrator.

Each message is handled in a task of its own, so that a process works on many at once; Redis
is one ``redis.asyncio`` client (a connection pool) per process. The router and worker run on
uvloop, and redis-py parses with hiredis, when they are installed (the project depends on both,
and Cortex's processes use them); the client, like every system's client, on stock asyncio.

Environment: ``NATS_URL``, ``REDIS_URL``, ``BENCH_PREFIX`` (subjects; ends with a dot).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import redis.asyncio as aioredis
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import client_main

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX", "floor.")
SUBMIT, WORK, RESULT = PREFIX + "submit", PREFIX + "work", PREFIX + "result"
JOB_SUBJECTS = [SUBMIT, WORK, RESULT]
"""What the JetStream stream of ``--bus jetstream`` must hold."""

Handler = Callable[[Msg], Awaitable[None]]


class Hop:
    """Publishing and subscribing the job hops, on core NATS or JetStream."""

    def __init__(self, nc: Nats, jetstream: bool) -> None:
        self.nc = nc
        self.js: JetStreamContext | None = nc.jetstream() if jetstream else None
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, subject: str, data: bytes) -> None:
        if self.js is not None:
            await self.js.publish(subject, data)  # awaits the stream's PubAck
        else:
            await self.nc.publish(subject, data)

    async def subscribe(self, subject: str, group: str, handler: Handler) -> None:
        """Every message in a task of its own; with JetStream, acked when ``handler`` is done."""
        jetstream = self.js is not None

        async def run(msg: Msg) -> None:
            await handler(msg)
            if jetstream:
                await msg.ack()

        async def spawn(msg: Msg) -> None:
            task = asyncio.create_task(run(msg))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        if self.js is not None:
            config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=100_000)
            await self.js.subscribe(
                subject, queue=group, durable=group, cb=spawn, manual_ack=True, config=config
            )
        else:
            await self.nc.subscribe(subject, queue=group, cb=spawn)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            print(f"handler failed: {exc!r}", file=sys.stderr, flush=True)


async def serve(role: str, jetstream: bool) -> None:
    nc = await nats.connect(NATS_URL, name=f"floor-{role}")
    store = aioredis.Redis.from_url(REDIS_URL)
    hop = Hop(nc, jetstream)

    async def route(msg: Msg) -> None:
        _, job_id = msg.data.split(b" ", 1)
        await store.hset(b"job:" + job_id, b"state", b"RUNNING")
        await hop.publish(WORK, msg.data)

    async def complete(msg: Msg) -> None:
        inbox, job_id = msg.data.split(b" ", 1)
        await store.hset(b"job:" + job_id, b"state", b"COMPLETED")
        await nc.publish(inbox.decode(), job_id)

    async def work(msg: Msg) -> None:
        _, job_id = msg.data.split(b" ", 1)
        data = await store.get(b"payload:" + job_id)
        if data is None:
            raise RuntimeError(f"no payload for job {job_id!r}")
        await store.set(b"result:" + job_id, data)  # echo
        await hop.publish(RESULT, msg.data)

    if role == "router":
        await hop.subscribe(SUBMIT, "floor-router-submit", route)
        await hop.subscribe(RESULT, "floor-router-result", complete)
    else:
        await hop.subscribe(WORK, "floor-worker", work)
    await nc.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"floor {role} ready", flush=True)
    await stop.wait()
    await nc.drain()
    await store.aclose()


class FloorClient:
    def __init__(self, jetstream: bool, timeout_s: float) -> None:
        self._jetstream = jetstream
        self._timeout_s = timeout_s
        self._inbox = f"{PREFIX}done.{uuid.uuid4().hex}"
        self._waiting: dict[bytes, asyncio.Future[None]] = {}

    async def start(self, max_concurrency: int) -> None:
        self._nc = await nats.connect(NATS_URL, name="floor-client")
        self._store = aioredis.Redis.from_url(REDIS_URL)
        self._hop = Hop(self._nc, self._jetstream)
        await self._nc.subscribe(self._inbox, cb=self._completed)
        await self._nc.flush()

    async def _completed(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.data, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def prepare(self, concurrency: int) -> None:
        pass

    async def submit_and_wait(self, payload: str) -> str:
        job_id = uuid.uuid4().hex.encode()
        done = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = done
        try:
            await self._store.set(b"payload:" + job_id, payload.encode())
            await self._hop.publish(SUBMIT, self._inbox.encode() + b" " + job_id)
            await asyncio.wait_for(done, self._timeout_s)
        finally:
            self._waiting.pop(job_id, None)
        result = await self._store.get(b"result:" + job_id)
        if result is None:
            raise RuntimeError(f"job {job_id!r} completed without a result")
        return result.decode() if isinstance(result, bytes) else str(result)

    def phase_stats(self) -> dict[str, float]:
        return {}

    async def close(self) -> None:
        await self._nc.drain()
        await self._store.aclose()


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    bus = os.environ.get("BENCH_FLOOR_BUS", "core")
    if bus not in ("core", "jetstream"):
        raise SystemExit(f"BENCH_FLOOR_BUS must be core or jetstream, not {bus!r}")
    jetstream = bus == "jetstream"
    if role in ("router", "worker"):
        try:  # the runtime Cortex's processes have: uvloop (and hiredis, which redis-py takes
            import uvloop  # on its own when it is installed)
        except ImportError:
            asyncio.run(serve(role, jetstream))
        else:
            uvloop.run(serve(role, jetstream))
    elif role == "client":
        del sys.argv[1]

        def make(args: argparse.Namespace) -> FloorClient:
            return FloorClient(jetstream, args.timeout_s)

        client_main(f"floor ({bus})", make, "nats-py", "redis")
    else:
        raise SystemExit(f"usage: {sys.argv[0]} router|worker|client [client options]")


if __name__ == "__main__":
    main()
