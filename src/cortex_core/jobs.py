"""The job state machine.

Each state is its own immutable class, and a transition is a method that exists only on the
states it may leave::

    PENDING ──dispatch──▶ RUNNING ──complete──▶ COMPLETED
       ▲                     ├──────fail──────▶ FAILED
       └──────requeue────────┘                  (its worker went silent: try again)
       ├──deny──▶ DENIED
       ├──fail──▶ FAILED            (the job cannot be routed: no_pool_for_topic)
       ├──require_approval──▶ APPROVAL_REQUIRED ──approve──▶ PENDING
       │                                        └──reject───▶ DENIED
       └─(any non-terminal)──cancel / time_out──▶ CANCELLED / TIMEOUT

Terminal states have no transition methods at all, so an illegal transition cannot be
written (mypy rejects ``completed.dispatch(...)``), and a late or duplicate event for a
finished job has nothing to call: it changes nothing. Every transition returns a *new* job
whose ``version`` is one higher; stores use the version for compare-and-set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from cortex_core.messages import JobRequest, JobStatus, Priority


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What was asked for; fixed for the life of the job."""

    job_id: str
    trace_id: str
    topic: str
    context_ptr: str
    created_at: float
    priority: Priority = Priority.INTERACTIVE
    adapter_id: str = ""
    tenant_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    deadline: float | None = None
    """Absolute (epoch seconds): past it the job ends TIMEOUT, running or waiting."""
    prompt_bytes: int = 0
    timeout_s: float | None = None
    """How long one attempt may run; an attempt that overruns it is retried (``max_attempts``)."""
    idempotency_key: str = ""
    """The client's key: the same tenant with the same key gets this job again."""
    retry_of: str = ""
    """The dead-lettered job this one retries, if any."""

    @classmethod
    def from_request(cls, request: JobRequest, *, trace_id: str, created_at: float) -> JobSpec:
        return cls(
            job_id=request.job_id,
            trace_id=trace_id,
            topic=request.topic,
            context_ptr=request.context_ptr,
            created_at=created_at,
            priority=request.priority,
            adapter_id=request.adapter_id,
            tenant_id=request.tenant_id,
            labels=request.labels,
            deadline=request.deadline,
            prompt_bytes=request.prompt_bytes,
            timeout_s=request.timeout_s,
        )

    def to_request(self, *, attempt: int) -> JobRequest:
        return JobRequest(
            job_id=self.job_id,
            topic=self.topic,
            context_ptr=self.context_ptr,
            priority=self.priority,
            adapter_id=self.adapter_id,
            tenant_id=self.tenant_id,
            labels=self.labels,
            deadline=self.deadline,
            attempt=attempt,
            prompt_bytes=self.prompt_bytes,
            timeout_s=self.timeout_s,
        )


_J = TypeVar("_J", bound="_Job")

APPROVED = "approved"
"""The reason an approved job carries while it is PENDING again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Job:
    spec: JobSpec
    updated_at: float
    version: int = 1
    attempts: int = 0
    worker_id: str | None = None
    result_ptr: str | None = None
    reason: str | None = None

    status: ClassVar[JobStatus]

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def _to(self, cls: type[_J], now: float, **changes: object) -> _J:
        fields: dict[str, object] = {
            "spec": self.spec,
            "updated_at": now,
            "version": self.version + 1,
            "attempts": self.attempts,
            "worker_id": self.worker_id,
            "result_ptr": self.result_ptr,
            "reason": self.reason,
        }
        fields.update(changes)
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class _ActiveJob(_Job):
    """A job that has not finished: it can still be cancelled or time out."""

    def cancel(self, reason: str, now: float) -> CancelledJob:
        return self._to(CancelledJob, now, reason=reason)

    def time_out(self, reason: str, now: float) -> TimedOutJob:
        return self._to(TimedOutJob, now, reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingJob(_ActiveJob):
    status: ClassVar[JobStatus] = JobStatus.PENDING

    def dispatch(self, worker_id: str, now: float) -> RunningJob:
        return self._to(
            RunningJob, now, worker_id=worker_id, attempts=self.attempts + 1, reason=None
        )

    def deny(self, reason: str, now: float) -> DeniedJob:
        return self._to(DeniedJob, now, reason=reason)

    def fail(self, reason: str, now: float) -> FailedJob:
        """The job cannot be scheduled at all (for example ``no_pool_for_topic``)."""
        return self._to(FailedJob, now, reason=reason)

    def waiting(self, reason: str, now: float) -> PendingJob:
        """Still PENDING, now with the reason it waits (``no_workers``, ``pool_at_capacity``)."""
        return self._to(PendingJob, now, reason=reason)

    def require_approval(self, reason: str, now: float) -> ApprovalRequiredJob:
        """The safety policy wants a person to decide."""
        return self._to(ApprovalRequiredJob, now, reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequiredJob(_ActiveJob):
    status: ClassVar[JobStatus] = JobStatus.APPROVAL_REQUIRED

    def approve(self, now: float) -> PendingJob:
        """Approved: PENDING again (reason ``approved``), to be routed and dispatched."""
        return self._to(PendingJob, now, reason=APPROVED)

    def reject(self, reason: str, now: float) -> DeniedJob:
        return self._to(DeniedJob, now, reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningJob(_ActiveJob):
    status: ClassVar[JobStatus] = JobStatus.RUNNING

    def complete(self, result_ptr: str | None, now: float) -> CompletedJob:
        return self._to(CompletedJob, now, result_ptr=result_ptr, reason=None)

    def fail(self, reason: str, now: float, result_ptr: str | None = None) -> FailedJob:
        return self._to(FailedJob, now, reason=reason, result_ptr=result_ptr)

    def requeue(self, reason: str, now: float) -> PendingJob:
        """Back to PENDING for another attempt (its ``attempts`` count is kept)."""
        return self._to(PendingJob, now, reason=reason, worker_id=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletedJob(_Job):
    status: ClassVar[JobStatus] = JobStatus.COMPLETED


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedJob(_Job):
    status: ClassVar[JobStatus] = JobStatus.FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class DeniedJob(_Job):
    status: ClassVar[JobStatus] = JobStatus.DENIED


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelledJob(_Job):
    status: ClassVar[JobStatus] = JobStatus.CANCELLED


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOutJob(_Job):
    status: ClassVar[JobStatus] = JobStatus.TIMEOUT


Job = (
    PendingJob
    | ApprovalRequiredJob
    | RunningJob
    | CompletedJob
    | FailedJob
    | DeniedJob
    | CancelledJob
    | TimedOutJob
)

ActiveJob = PendingJob | ApprovalRequiredJob | RunningJob
"""A job that has not finished: it can still be cancelled or time out."""

JOB_CLASSES: Mapping[JobStatus, type[Job]] = {
    cls.status: cls
    for cls in (
        PendingJob,
        ApprovalRequiredJob,
        RunningJob,
        CompletedJob,
        FailedJob,
        DeniedJob,
        CancelledJob,
        TimedOutJob,
    )
}
"""For stores that rebuild a job from its saved fields: ``JOB_CLASSES[status](**fields)``."""


def new_job(spec: JobSpec, now: float) -> PendingJob:
    """Every job starts PENDING at version 1."""
    return PendingJob(spec=spec, updated_at=now)
