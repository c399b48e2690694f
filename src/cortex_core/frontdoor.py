"""The front door: what the REST gateway (and the gRPC ``CortexApi``) do, on ports only.

Submit stores the context in the memory fabric, records the job PENDING, and publishes the
``JobRequest`` on ``sys.job.submit``, in that order, so that a scheduler never sees a job whose
context or record is missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from cortex_core.bus_protocol import SUBJECT_JOB_SUBMIT, TOPIC_ECHO
from cortex_core.errors import JobNotFound, ResultNotReady
from cortex_core.jobs import Job, JobSpec, new_job
from cortex_core.messages import BusPacket, Priority
from cortex_core.pointers import is_valid_job_id
from cortex_core.ports import Bus, Clock, IdGenerator, JobStore, MemoryStore

DEFAULT_TOPIC = TOPIC_ECHO


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitJob:
    prompt: str
    topic: str = DEFAULT_TOPIC
    adapter_id: str = ""
    priority: Priority = Priority.INTERACTIVE
    labels: Mapping[str, str] = field(default_factory=dict)
    tenant_id: str = ""


@dataclass(frozen=True, slots=True)
class Submitted:
    job_id: str
    trace_id: str


def encode_context(cmd: SubmitJob) -> bytes:
    """The context document a worker reads from ``ctx:<job_id>`` (JSON, UTF-8)."""
    doc = {
        "prompt": cmd.prompt,
        "topic": cmd.topic,
        "adapter_id": cmd.adapter_id,
        "priority": cmd.priority.value,
        "labels": dict(cmd.labels),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


class FrontDoor:
    def __init__(
        self,
        *,
        bus: Bus,
        memory: MemoryStore,
        jobs: JobStore,
        clock: Clock,
        ids: IdGenerator,
        sender_id: str = "gateway",
    ) -> None:
        self._bus = bus
        self._memory = memory
        self._jobs = jobs
        self._clock = clock
        self._ids = ids
        self._sender_id = sender_id

    async def submit(self, cmd: SubmitJob) -> Submitted:
        job_id, trace_id = self._ids.job_id(), self._ids.trace_id()
        now = self._clock.now()
        pointer = await self._memory.put_context(job_id, encode_context(cmd))
        spec = JobSpec(
            job_id=job_id,
            trace_id=trace_id,
            topic=cmd.topic,
            context_ptr=pointer,
            created_at=now,
            priority=cmd.priority,
            adapter_id=cmd.adapter_id,
            tenant_id=cmd.tenant_id,
            labels=cmd.labels,
            prompt_bytes=len(cmd.prompt.encode()),
        )
        if not await self._jobs.create(new_job(spec, now)):
            raise RuntimeError(f"IdGenerator produced a duplicate job id {job_id!r}")
        packet = BusPacket(
            trace_id=trace_id,
            sender_id=self._sender_id,
            created_at=now,
            payload=spec.to_request(attempt=0),
        )
        await self._bus.publish(SUBJECT_JOB_SUBMIT, packet)
        return Submitted(job_id, trace_id)

    async def status(self, job_id: str) -> Job:
        job = await self._jobs.get(job_id) if is_valid_job_id(job_id) else None
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def result(self, job_id: str) -> tuple[Job, bytes]:
        """The finished job and its stored result document."""
        job = await self.status(job_id)
        if not job.is_terminal:
            raise ResultNotReady(job_id, job.status, f"job {job_id} is {job.status}; no result yet")
        if job.result_ptr is None:
            raise ResultNotReady(
                job_id, job.status, f"job {job_id} ended {job.status} without a result"
            )
        data = await self._memory.get_result(job_id)
        if data is None:
            raise ResultNotReady(
                job_id, job.status, f"the result of job {job_id} has expired from the memory fabric"
            )
        return job, data
