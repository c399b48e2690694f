"""A complete Cortex worker: it upper-cases the prompt. Run it with

    cortex worker run --handler examples/uppercase_worker.py:handle --pool upper --topic job.upper

and route ``job.upper`` to pool ``upper`` in the scheduler's routing file (see docs/WORKERS.md).
"""

from __future__ import annotations

import json

from cortex_adapters.worker import JobContext


async def handle(job: JobContext) -> bytes:
    """The context is the front door's JSON document; the result is any JSON document."""
    prompt = json.loads(job.context)["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty: nothing to upper-case")  # → FAILED, ValueError
    return json.dumps({"upper": prompt.upper(), "worker_id": job.worker_id}).encode()
