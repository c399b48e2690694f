"""The echo worker: returns the prompt it was given, as a JSON result document.

A job may ask for an artificial delay with the label ``echo.delay_ms`` (at most 60 s), which
makes echo useful for demos, load tests and tests of what happens to a job in flight.
"""

from __future__ import annotations

import asyncio
import json

from cortex_adapters.worker.runtime import JobContext
from cortex_core.bus_protocol import TOPIC_ECHO

POOL = "echo"
TOPICS = (TOPIC_ECHO,)
DELAY_LABEL = "echo.delay_ms"
MAX_DELAY_MS = 60_000.0


async def echo_handler(job: JobContext) -> bytes:
    doc = json.loads(job.context)
    raw_delay = job.request.labels.get(DELAY_LABEL)
    if raw_delay:
        delay_ms = float(raw_delay)  # a bad value fails the job with ValueError, by design
        await asyncio.sleep(min(max(delay_ms, 0.0), MAX_DELAY_MS) / 1000)
    result = {"echo": doc.get("prompt", ""), "topic": job.request.topic, "worker_id": job.worker_id}
    return json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()
