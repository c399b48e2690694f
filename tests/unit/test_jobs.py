"""The job state machine: legal transitions only, terminal states absorb, versions count."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cortex_core.jobs import (
    APPROVED,
    JOB_CLASSES,
    ApprovalRequiredJob,
    Job,
    JobSpec,
    PendingJob,
    RunningJob,
    new_job,
)
from cortex_core.messages import TERMINAL_STATUSES, JobStatus

P, R, C, F, D, X, T, A = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.DENIED,
    JobStatus.CANCELLED,
    JobStatus.TIMEOUT,
    JobStatus.APPROVAL_REQUIRED,
)
# The specification, written out independently of the implementation.
ALLOWED = {
    (P, R),
    (P, D),
    (P, F),
    (P, P),
    (P, X),
    (P, T),
    (P, A),
    (A, P),
    (A, D),
    (A, X),
    (A, T),
    (R, C),
    (R, F),
    (R, X),
    (R, T),
    (R, P),
}
TRANSITIONS = {
    "dispatch",
    "deny",
    "fail",
    "waiting",
    "complete",
    "cancel",
    "time_out",
    "require_approval",
    "approve",
    "reject",
    "requeue",
}
SPEC_METHODS = {
    P: {"dispatch", "deny", "fail", "waiting", "cancel", "time_out", "require_approval"},
    A: {"approve", "reject", "cancel", "time_out"},
    R: {"complete", "fail", "cancel", "time_out", "requeue"},
    **{s: set() for s in TERMINAL_STATUSES},
}


def spec(job_id: str = "j1") -> JobSpec:
    return JobSpec(
        job_id=job_id,
        trace_id="t" * 32,
        topic="job.echo",
        context_ptr="redis://ctx:j1",
        created_at=0.0,
    )


def test_each_state_offers_exactly_its_legal_transitions() -> None:
    for status, cls in JOB_CLASSES.items():
        offered = {name for name in TRANSITIONS if callable(getattr(cls, name, None))}
        assert offered == SPEC_METHODS[status], status


def test_every_status_has_a_class() -> None:
    assert set(JOB_CLASSES) == set(JobStatus)


class JobLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.job: Job = new_job(spec(), self.now)
        self.transitions = 0

    def _tick(self) -> float:
        self.now += 1.0
        return self.now

    def _apply(self, new: Job) -> None:
        assert (self.job.status, new.status) in ALLOWED
        assert new.version == self.job.version + 1
        assert new.spec is self.job.spec
        assert new.updated_at > self.job.updated_at
        self.job = new
        self.transitions += 1

    def _pending(self) -> PendingJob:
        assert isinstance(self.job, PendingJob)
        return self.job

    def _running(self) -> RunningJob:
        assert isinstance(self.job, RunningJob)
        return self.job

    @precondition(lambda self: isinstance(self.job, PendingJob))
    @rule(worker=st.sampled_from(["w1", "w2"]))
    def dispatch(self, worker: str) -> None:
        before = self._pending().attempts
        self._apply(self._pending().dispatch(worker, self._tick()))
        assert self.job.worker_id == worker
        assert self.job.attempts == before + 1

    @precondition(lambda self: isinstance(self.job, PendingJob))
    @rule(reason=st.sampled_from(["no_workers", "pool_at_capacity"]))
    def wait(self, reason: str) -> None:
        self._apply(self._pending().waiting(reason, self._tick()))
        assert self.job.reason == reason

    @precondition(lambda self: isinstance(self.job, PendingJob))
    @rule()
    def deny(self) -> None:
        self._apply(self._pending().deny("policy", self._tick()))
        assert self.job.reason == "policy"

    @precondition(lambda self: isinstance(self.job, PendingJob))
    @rule()
    def fail_unroutable(self) -> None:
        self._apply(self._pending().fail("no_pool_for_topic", self._tick()))

    @precondition(lambda self: isinstance(self.job, PendingJob))
    @rule()
    def require_approval(self) -> None:
        self._apply(self._pending().require_approval("needs a human", self._tick()))

    @precondition(lambda self: isinstance(self.job, ApprovalRequiredJob))
    @rule()
    def approve(self) -> None:
        assert isinstance(self.job, ApprovalRequiredJob)
        self._apply(self.job.approve(self._tick()))
        assert self.job.reason == APPROVED

    @precondition(lambda self: isinstance(self.job, ApprovalRequiredJob))
    @rule()
    def reject(self) -> None:
        assert isinstance(self.job, ApprovalRequiredJob)
        self._apply(self.job.reject("rejected by a person", self._tick()))

    @precondition(lambda self: isinstance(self.job, RunningJob))
    @rule(ptr=st.sampled_from(["redis://res:j1", None]))
    def complete(self, ptr: str | None) -> None:
        self._apply(self._running().complete(ptr, self._tick()))
        assert self.job.result_ptr == ptr

    @precondition(lambda self: isinstance(self.job, RunningJob))
    @rule()
    def requeue(self) -> None:
        attempts = self._running().attempts
        self._apply(self._running().requeue("retry", self._tick()))
        assert (self.job.worker_id, self.job.attempts) == (None, attempts)

    @precondition(lambda self: isinstance(self.job, RunningJob))
    @rule()
    def fail_running(self) -> None:
        self._apply(self._running().fail("boom", self._tick()))

    @precondition(lambda self: not self.job.is_terminal)
    @rule()
    def cancel(self) -> None:
        assert isinstance(self.job, PendingJob | RunningJob | ApprovalRequiredJob)
        self._apply(self.job.cancel("user", self._tick()))

    @precondition(lambda self: not self.job.is_terminal)
    @rule()
    def time_out(self) -> None:
        assert isinstance(self.job, PendingJob | RunningJob | ApprovalRequiredJob)
        self._apply(self.job.time_out("deadline", self._tick()))

    @precondition(lambda self: self.job.is_terminal)
    @rule()
    def late_events_find_nothing_then_next_job(self) -> None:
        finished = self.job
        assert not any(callable(getattr(finished, name, None)) for name in TRANSITIONS)
        self.job, self.transitions = new_job(spec("j2"), self._tick()), 0

    @invariant()
    def version_counts_transitions(self) -> None:
        assert self.job.version == self.transitions + 1

    @invariant()
    def terminal_states_offer_nothing(self) -> None:
        if self.job.is_terminal:
            assert not any(callable(getattr(self.job, name, None)) for name in TRANSITIONS)

    @invariant()
    def running_jobs_have_a_worker(self) -> None:
        if isinstance(self.job, RunningJob):
            assert self.job.worker_id is not None
            assert self.job.attempts >= 1


TestJobLifecycle = JobLifecycle.TestCase
