"""Announcing that a job ended, so that whoever waits on it need not poll the job store.

Whoever commits a terminal state (the scheduler, or the front door for cancel and reject)
announces it on ``sys.job.done`` (at most once, core NATS). A ``JobWatch`` (the port; the
adapter is ``cortex_adapters.watch.BusJobWatch``) in each gateway listens there and wakes
whoever waits on that job. A notice can be lost (it is not durable), so ``FrontDoor.wait``
also looks at the store again every ``recheck_s``: a lost notice delays an answer, never
loses it.
"""

from __future__ import annotations

import logging

from cortex_core.bus_protocol import SUBJECT_JOB_DONE
from cortex_core.jobs import Job
from cortex_core.messages import BusPacket, JobResult
from cortex_core.ports import Bus

log = logging.getLogger("cortex.watch")


async def announce_done(bus: Bus, job: Job, sender_id: str) -> None:
    """Publish that ``job`` ended (best effort: a waiter re-checks the store anyway)."""
    notice = BusPacket(
        trace_id=job.spec.trace_id,
        sender_id=sender_id,
        created_at=job.updated_at,
        payload=JobResult(
            job_id=job.job_id,
            status=job.status,
            worker_id=job.worker_id or "",
            result_ptr=job.result_ptr or "",
            attempt=job.attempts,
        ),
    )
    try:
        await bus.publish(SUBJECT_JOB_DONE, notice)
    except Exception as exc:
        log.warning(
            "done_notice_failed",
            extra={"component": "watch", "job_id": job.job_id, "cause": repr(exc)},
        )
