"""The Dramatiq peer: the Redis broker and the Results middleware's Redis backend; runs in its
own virtualenv.

Worker (the orchestrator starts it)::

    python -m dramatiq peer_dramatiq --processes 1 --threads C --queues <queue>
    with dramatiq_worker_timeout=10

Per job: the client's ``echo.send(payload)`` enqueues the message (the broker's Lua
``enqueue``: the message hash and the queue list); the worker's consumer fetches up to its
prefetch (2 x threads) with the Lua ``fetch``, runs ``echo`` on one of its C threads, the
Results middleware stores the return value (an ``LPUSH`` on the message's result key, with a
TTL), and the message is acked; the client's ``message.get_result(block=True)`` is a
``BRPOPLPUSH`` on that key (no polling). The client is synchronous, so each job in flight
holds one thread of a pool of C.

The consumer itself polls: when a fetch finds the queue empty it sleeps with an exponential
backoff from 5 ms up to the worker timeout (default 1,000 ms). Like every polling peer here,
its polling is capped at 10 ms (``dramatiq_worker_timeout=10``, set by the orchestrator).

Environment: ``REDIS_URL`` (a private database), ``BENCH_QUEUE``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import ThreadedClient, client_main

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_QUEUE", "bench-e2e")


class Ready(Middleware):
    """Says so on stdout once the worker has booted (its consumers run)."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        print("dramatiq worker ready", flush=True)


broker = RedisBroker(url=REDIS_URL)
broker.add_middleware(Results(backend=RedisBackend(url=REDIS_URL)))
broker.add_middleware(Ready())
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_echo", queue_name=QUEUE, store_results=True, max_retries=0)
def echo(payload: str) -> str:
    return payload


class DramatiqClient(ThreadedClient):
    def run(self, payload: str) -> str:
        message = echo.send(payload)
        result: str = message.get_result(block=True, timeout=int(self.timeout_s * 1000))
        return result


def _make(args: argparse.Namespace) -> DramatiqClient:
    return DramatiqClient(args.timeout_s)


if __name__ == "__main__":
    client_main("dramatiq", _make, "dramatiq", "redis")
