"""An echo handler that also writes down when it ran, for tests/e2e/test_scheduler_processes.py.

Run it as ``cortex worker run --handler tests/e2e/_burst_worker.py:handle --pool echo
--topic job.echo`` with ``CORTEX_TEST_INTERVALS`` naming a file of this worker's own. Every job
appends one JSON line ``{"job_id", "worker_id", "pid", "start", "end"}`` to it: the handler's
own ``time.monotonic()`` on entry and on exit. The intervals of one worker then show how many
jobs really ran inside it at once, whatever its configuration claims.

The result is the echo worker's: ``{"echo": prompt, "topic": ..., "worker_id": ...}``, after
the delay of the label ``echo.delay_ms``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from cortex_adapters.worker import JobContext

INTERVALS_ENV = "CORTEX_TEST_INTERVALS"


async def handle(job: JobContext) -> bytes:
    start = time.monotonic()
    delay_ms = float(job.request.labels.get("echo.delay_ms") or 0)
    await asyncio.sleep(delay_ms / 1000)
    prompt = json.loads(job.context).get("prompt", "")
    end = time.monotonic()
    record = {
        "job_id": job.request.job_id,
        "worker_id": job.worker_id,
        "pid": os.getpid(),
        "start": start,
        "end": end,
    }
    await asyncio.to_thread(_append, os.environ[INTERVALS_ENV], json.dumps(record) + "\n")
    result = {"echo": prompt, "topic": job.request.topic, "worker_id": job.worker_id}
    return json.dumps(result, separators=(",", ":")).encode()


def _append(path: str, line: str) -> None:
    """One short write in append mode per job: lines never interleave."""
    with open(path, "a", encoding="utf-8") as out:
        out.write(line)
