"""The bus messages as the core sees them: frozen dataclasses, free of any wire library.

``proto/cortex/v1/bus.proto`` is the wire form; a ``PacketCodec`` adapter converts between
the two. Times are Unix epoch seconds (``float``), as read from the injected ``Clock``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from cortex_core.bus_protocol import PROTOCOL_VERSION, SUBJECT_JOB_SUBMIT


class Priority(enum.StrEnum):
    INTERACTIVE = "interactive"
    BATCH = "batch"


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DENIED = "DENIED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.DENIED,
        JobStatus.CANCELLED,
        JobStatus.TIMEOUT,
    }
)

DEAD_LETTER_STATUSES = frozenset({JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.DENIED})
"""The endings that put a job in the dead-letter view (``GET /v1/dlq``), where it may be retried."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequest:
    job_id: str
    topic: str
    context_ptr: str
    priority: Priority = Priority.INTERACTIVE
    adapter_id: str = ""
    tenant_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    deadline: float | None = None
    attempt: int = 1
    prompt_bytes: int = 0
    timeout_s: float | None = None
    """How long this attempt may run on the worker (None: no limit of its own)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResult:
    job_id: str
    status: JobStatus
    result_ptr: str = ""
    worker_id: str = ""
    execution_ms: int = 0
    error_code: str = ""
    error_message: str = ""
    attempt: int = 0
    """The ``JobRequest.attempt`` this answers (0: unknown, from a worker that doesn't say)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    worker_id: str
    pool: str
    max_parallel_jobs: int
    active_jobs: int = 0
    cpu_load: float = 0.0
    gpu_utilization: float = 0.0
    region: str = ""
    type: str = ""
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancel:
    job_id: str
    reason: str = ""
    attempt: int = 0
    """Only this attempt (a retried job's earlier, overrunning one); 0: whichever runs."""


Payload = JobRequest | JobResult | Heartbeat | JobCancel


@dataclass(frozen=True, slots=True, kw_only=True)
class BusPacket:
    """The envelope of every bus message."""

    trace_id: str
    sender_id: str
    created_at: float
    payload: Payload
    protocol_version: int = PROTOCOL_VERSION


def dedup_id(packet: BusPacket, subject: str) -> str | None:
    """The de-duplication id (``Nats-Msg-Id``) of ``packet`` on ``subject``; None for packets
    never deduplicated.

    Derived from the job id, and different for each step of a job, so that a repeat of one
    step is dropped while the steps stay apart:

    * submit (on ``sys.job.submit``): ``<job_id>``;
    * dispatch of attempt n (any other subject): ``<job_id>.<n>``;
    * a worker's result: ``<job_id>.result.<attempt>.<worker_id>``;
    * cancel: ``<job_id>.cancel.<attempt>`` (attempt 0: a client's cancel of the job);
    * heartbeats: None (core NATS, never deduplicated).
    """
    p = packet.payload
    if isinstance(p, JobRequest):
        return p.job_id if subject == SUBJECT_JOB_SUBMIT else f"{p.job_id}.{p.attempt}"
    if isinstance(p, JobResult):
        return f"{p.job_id}.result.{p.attempt}.{p.worker_id}"
    if isinstance(p, JobCancel):
        return f"{p.job_id}.cancel.{p.attempt}"
    return None
