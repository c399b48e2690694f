"""The echo worker: returns the prompt it was given, as a JSON result document."""

from __future__ import annotations

import json

from cortex_adapters.worker.runtime import JobContext
from cortex_core.bus_protocol import TOPIC_ECHO

POOL = "echo"
TOPICS = (TOPIC_ECHO,)


async def echo_handler(job: JobContext) -> bytes:
    doc = json.loads(job.context)
    result = {"echo": doc.get("prompt", ""), "topic": job.request.topic, "worker_id": job.worker_id}
    return json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()
