"""The Celery peer: a Redis broker and the Redis result backend; runs in its own virtualenv.

Worker (the orchestrator starts it)::

    python -m celery -A peer_celery worker --pool threads --concurrency C -Q <queue>
        --without-heartbeat --without-gossip --without-mingle --loglevel WARNING

Per job: the client's ``echo.delay(payload)`` LPUSHes the task message onto the queue's Redis
list; the worker (kombu BRPOPs the list, prefetch multiplier 4) runs ``echo`` on one of its C
threads, stores the return value in the result backend (``SET`` of the
``celery-task-meta-<id>`` key and a ``PUBLISH`` on it) and acks; the client's
``AsyncResult.get()`` waits on that key's pub/sub channel (the Redis backend's own
``ResultConsumer``: no polling), then decodes the result. The client is synchronous, so each
job in flight holds one thread of a pool of C.

Environment: ``REDIS_URL`` (a private database), ``BENCH_QUEUE``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import ThreadedClient, client_main

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-e2e")

app = Celery("bench_e2e", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.echo")
def echo(payload: str) -> str:
    return payload


@worker_ready.connect
def _ready(**_: Any) -> None:
    print("celery worker ready", flush=True)


class CeleryClient(ThreadedClient):
    def run(self, payload: str) -> str:
        result: str = echo.delay(payload).get(timeout=self.timeout_s)
        return result


def _make(args: argparse.Namespace) -> CeleryClient:
    return CeleryClient(args.timeout_s)


if __name__ == "__main__":
    client_main("celery", _make, "celery", "kombu", "redis")
