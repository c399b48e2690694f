"""The Taskiq peer: taskiq-nats's broker and taskiq-redis's result backend; runs in its own
virtualenv.

Worker (the orchestrator starts it)::

    python -m taskiq worker peer_taskiq:broker --workers 1 --max-async-tasks 2C
        --log-level WARNING

``BENCH_TASKIQ_BROKER=jetstream`` (the default): ``PullBasedJetStreamBroker``, a durable pull
consumer with explicit acks on a stream of its own (at least once, like Cortex's job subjects),
fetching one message per request (taskiq-nats's default ``pull_consume_batch=1``); the worker
acks when the result is saved (taskiq's default ``--ack-type when_saved``). Not the push-based
broker: its ``startup()`` subscribes to the consumer's queue group in every process, clients
included, so a client would take (and never run) a share of the tasks.
``core``: ``NatsBroker``, a core NATS subject and queue group (at most once).

Per job: the client's ``await echo.kiq(payload)`` publishes the task (JetStream: and awaits
the PubAck); the worker runs ``echo`` as an asyncio task, stores the result (a Redis ``SET``)
and acks; the client's ``await task.wait_result()`` polls the result key (``EXISTS``) every
``check_interval`` (default 0.2 s, set to 10 ms here, ``--poll-ms``), then ``GET``s it.

Environment: ``NATS_URL``, ``REDIS_URL`` (a private database), ``BENCH_PREFIX`` (the subject,
stream and consumer names), ``BENCH_TASKIQ_BROKER``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from taskiq import AsyncBroker, TaskiqEvents, TaskiqState
from taskiq_nats import NatsBroker, PullBasedJetStreamBroker
from taskiq_redis import RedisAsyncResultBackend

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import client_main

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX", "taskiq.")
KIND = os.environ.get("BENCH_TASKIQ_BROKER", "jetstream")
STREAM = PREFIX.replace(".", "").upper() or "TASKIQ"
"""The JetStream stream's name (the orchestrator deletes it afterwards)."""


def _broker() -> AsyncBroker:
    subject, queue = PREFIX + "tasks", PREFIX.replace(".", "-") + "workers"
    if KIND == "jetstream":
        return PullBasedJetStreamBroker(
            servers=NATS_URL, subject=subject, stream_name=STREAM, durable=queue
        )
    if KIND == "core":
        return NatsBroker(servers=NATS_URL, subject=subject, queue=queue)
    raise SystemExit(f"BENCH_TASKIQ_BROKER must be jetstream or core, not {KIND!r}")


broker = _broker().with_result_backend(RedisAsyncResultBackend(REDIS_URL))


@broker.task(task_name="bench_echo")
async def echo(payload: str) -> str:
    return payload


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def _ready(_: TaskiqState) -> None:
    print("taskiq worker ready", flush=True)


class TaskiqClient:
    def __init__(self, timeout_s: float, poll_s: float) -> None:
        self._timeout_s = timeout_s
        self._poll_s = poll_s

    async def start(self, max_concurrency: int) -> None:
        await broker.startup()

    async def prepare(self, concurrency: int) -> None:
        pass

    async def submit_and_wait(self, payload: str) -> str:
        task = await echo.kiq(payload)
        result = await task.wait_result(check_interval=self._poll_s, timeout=self._timeout_s)
        if result.is_err:
            raise RuntimeError(f"task failed: {result.error!r}")
        value: Any = result.return_value
        return str(value)

    def phase_stats(self) -> dict[str, float]:
        return {}

    async def close(self) -> None:
        await broker.shutdown()


def _make(args: argparse.Namespace) -> TaskiqClient:
    return TaskiqClient(args.timeout_s, args.poll_ms / 1000)


if __name__ == "__main__":
    client_main(
        f"taskiq ({KIND})", _make, "taskiq", "taskiq-nats", "taskiq-redis", "nats-py", "redis"
    )
