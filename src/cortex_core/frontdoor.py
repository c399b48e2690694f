"""The front door: what the REST gateway and the gRPC ``CortexApi`` do, on ports only.

Submit validates the request against ``SubmitLimits``, stores the context in the memory fabric,
records the job PENDING, and publishes the ``JobRequest`` on ``sys.job.submit``, in that order,
so that a scheduler never sees a job whose context or record is missing. When a dependency is
down the submit raises ``Unavailable`` and leaves no job visible: a job whose publish failed is
withdrawn (deleted) again. If even that fails, the job stays PENDING and the scheduler's sweep
takes it up as an orphan, so it is never stranded.

Every call takes the caller's tenant. A job of another tenant is ``JobNotFound``, exactly like
a job that does not exist, so nothing leaks about it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from cortex_core.bus_protocol import (
    SUBJECT_JOB_CANCEL,
    SUBJECT_JOB_SUBMIT,
    TOPIC_ECHO,
    is_job_topic,
)
from cortex_core.errors import (
    CortexError,
    InvalidField,
    JobConflict,
    JobNotFound,
    ResultNotReady,
    Unavailable,
)
from cortex_core.jobs import (
    ActiveJob,
    ApprovalRequiredJob,
    Job,
    JobSpec,
    PendingJob,
    RunningJob,
    new_job,
)
from cortex_core.messages import (
    DEAD_LETTER_STATUSES,
    BusPacket,
    JobCancel,
    JobStatus,
    Priority,
)
from cortex_core.pointers import is_valid_job_id
from cortex_core.ports import (
    Bus,
    Clock,
    IdGenerator,
    JobStore,
    JobWatch,
    MemoryStore,
    Metrics,
    StatusFilter,
)
from cortex_core.watch import announce_done

log = logging.getLogger("cortex.frontdoor")

DEFAULT_TOPIC = TOPIC_ECHO
CANCELLED_BY_CLIENT = "cancelled by client"
REJECTED_BY_REVIEWER = "rejected by reviewer"
RETRY_KEY_PREFIX = "retry:"
"""The idempotency key of a dead-letter retry is ``retry:<old job id>``: retrying one job twice
gives the same new job."""
MAX_WAIT_S = 60.0
"""The longest a client may wait on one job in one call (``wait``, ``?wait_s=``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitLimits:
    """What one submit may carry. A request past any of them is ``InvalidField`` naming the
    field and the limit."""

    max_prompt_chars: int = 1_000_000
    max_labels: int = 32
    max_label_key_chars: int = 64
    max_label_value_chars: int = 256
    max_adapter_id_chars: int = 128
    max_idempotency_key_chars: int = 128
    max_timeout_s: float = 7 * 24 * 3600.0
    max_reason_chars: int = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitJob:
    prompt: str
    topic: str = DEFAULT_TOPIC
    adapter_id: str = ""
    priority: Priority = Priority.INTERACTIVE
    labels: Mapping[str, str] = field(default_factory=dict)
    tenant_id: str = ""
    idempotency_key: str = ""
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    job_id: str
    trace_id: str
    created: bool = True
    """False when an idempotency key gave back a job submitted earlier."""


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


def validate(cmd: SubmitJob, limits: SubmitLimits) -> None:
    """Raise ``InvalidField`` for the first field of ``cmd`` that breaks a rule or a limit."""
    if not cmd.prompt:
        raise InvalidField("prompt", "prompt must not be empty")
    if len(cmd.prompt) > limits.max_prompt_chars:
        raise InvalidField(
            "prompt",
            f"prompt is {len(cmd.prompt)} characters; the limit is {limits.max_prompt_chars}",
            limit=limits.max_prompt_chars,
        )
    if not is_job_topic(cmd.topic):
        raise InvalidField(
            "topic",
            "topic must be job.<pool>[.<kind>], each part 1-64 of letters, digits, '_' or '-' "
            f"(got {cmd.topic[:80]!r})",
        )
    if len(cmd.adapter_id) > limits.max_adapter_id_chars:
        raise InvalidField(
            "adapter_id",
            f"adapter_id is longer than {limits.max_adapter_id_chars} characters",
            limit=limits.max_adapter_id_chars,
        )
    if len(cmd.labels) > limits.max_labels:
        raise InvalidField(
            "labels",
            f"{len(cmd.labels)} labels; the limit is {limits.max_labels}",
            limit=limits.max_labels,
        )
    for key, value in cmd.labels.items():
        if not key or len(key) > limits.max_label_key_chars:
            raise InvalidField(
                "labels",
                f"label key {key[:80]!r} must be 1-{limits.max_label_key_chars} characters",
                limit=limits.max_label_key_chars,
            )
        if len(value) > limits.max_label_value_chars:
            raise InvalidField(
                f"labels.{key}",
                f"label {key!r} is {len(value)} characters; the limit is "
                f"{limits.max_label_value_chars}",
                limit=limits.max_label_value_chars,
            )
    if len(cmd.idempotency_key) > limits.max_idempotency_key_chars:
        raise InvalidField(
            "idempotency_key",
            f"idempotency_key is longer than {limits.max_idempotency_key_chars} characters",
            limit=limits.max_idempotency_key_chars,
        )
    if cmd.timeout_s is not None and not 0 < cmd.timeout_s <= limits.max_timeout_s:
        raise InvalidField(
            "timeout_s",
            f"timeout_s must be more than 0 and at most {limits.max_timeout_s:g} seconds",
            limit=int(limits.max_timeout_s),
        )


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


def check_wait_s(wait_s: float) -> None:
    """``InvalidField`` naming ``wait_s`` unless it is more than 0 and at most ``MAX_WAIT_S``
    seconds: the one bound of every wait, checked by ``FrontDoor.wait`` and by a route that
    must refuse a bad ``wait_s`` before it does anything else."""
    if not 0 < wait_s <= MAX_WAIT_S:  # also false for NaN and infinity
        raise InvalidField("wait_s", f"wait_s must be > 0 and <= {MAX_WAIT_S:g}")


def parse_status_filter(text: str) -> StatusFilter:
    """``RUNNING`` or ``FAILED,TIMEOUT`` (any case) into a filter; ``InvalidField`` otherwise."""
    names = [part.strip().upper() for part in text.split(",") if part.strip()]
    try:
        statuses = frozenset(JobStatus(n) for n in names)
    except ValueError:
        raise InvalidField(
            "status", f"status must be one or more of {', '.join(JobStatus)} (comma-separated)"
        ) from None
    if not statuses:
        return None
    return next(iter(statuses)) if len(statuses) == 1 else statuses


class FrontDoor:
    def __init__(
        self,
        *,
        bus: Bus,
        memory: MemoryStore,
        jobs: JobStore,
        clock: Clock,
        ids: IdGenerator,
        metrics: Metrics | None = None,
        limits: SubmitLimits | None = None,
        sender_id: str = "gateway",
        max_page: int = 200,
        watch: JobWatch | None = None,
        recheck_s: float = 1.0,
    ) -> None:
        self._bus = bus
        self._memory = memory
        self._jobs = jobs
        self._clock = clock
        self._ids = ids
        self._metrics = metrics
        self.limits = limits or SubmitLimits()
        self._sender_id = sender_id
        self.max_page = max_page
        self._watch = watch
        self._recheck_s = recheck_s
        self._draining = False

    # -- submit ------------------------------------------------------------------------

    async def submit(self, cmd: SubmitJob) -> Submitted:
        validate(cmd, self.limits)
        prompt_bytes = len(cmd.prompt.encode())
        return await self._submit(cmd, encode_context(cmd), prompt_bytes, retry_of="")

    async def _submit(
        self, cmd: SubmitJob, context: bytes, prompt_bytes: int, *, retry_of: str
    ) -> Submitted:
        job_id, trace_id = self._ids.job_id(), self._ids.trace_id()
        now = self._clock.now()
        pointer = await _guard("memory fabric", self._memory.put_context(job_id, context))
        spec = JobSpec(
            job_id=job_id,
            trace_id=trace_id,
            topic=cmd.topic,
            context_ptr=pointer,
            created_at=now,
            priority=cmd.priority,
            adapter_id=cmd.adapter_id,
            tenant_id=cmd.tenant_id,
            labels=dict(cmd.labels),
            prompt_bytes=prompt_bytes,
            timeout_s=cmd.timeout_s,
            idempotency_key=cmd.idempotency_key,
            retry_of=retry_of,
        )
        job = new_job(spec, now)
        if cmd.idempotency_key:
            stored = await _guard("job store", self._jobs.create_or_get(job))
            if stored.job_id != job_id:
                log.info("submit_deduplicated", extra=_fields(stored, key=cmd.idempotency_key))
                return Submitted(stored.job_id, stored.spec.trace_id, created=False)
        elif not await _guard("job store", self._jobs.create(job)):
            raise RuntimeError(f"IdGenerator produced a duplicate job id {job_id!r}")
        packet = BusPacket(
            trace_id=trace_id,
            sender_id=self._sender_id,
            created_at=now,
            payload=spec.to_request(attempt=0),
        )
        try:
            await self._bus.publish(SUBJECT_JOB_SUBMIT, packet)
        except Exception as exc:
            await self._withdraw(job, exc)
            raise Unavailable(
                "bus", f"the bus is unavailable; the job was not submitted ({_what(exc)})"
            ) from exc
        log.info("job_submitted", extra=_fields(job, state=job.status))
        return Submitted(job_id, trace_id)

    async def _withdraw(self, job: PendingJob, cause: Exception) -> None:
        """Undo a submit whose publish failed, so that no half-submitted job is visible."""
        try:
            withdrawn = await self._jobs.withdraw(job)
        except Exception as exc:
            withdrawn = False
            cause = exc
        extra = _fields(job, cause=_what(cause))
        if withdrawn:
            log.warning("submit_withdrawn", extra=extra)
        else:  # the job stays PENDING; the scheduler's sweep adopts it as an orphan
            log.error("submit_withdraw_failed", extra=extra)

    # -- reads -------------------------------------------------------------------------

    async def status(self, job_id: str, tenant_id: str = "") -> Job:
        job = None
        if is_valid_job_id(job_id):
            job = await _guard("job store", self._jobs.get(job_id))
        if job is None or job.spec.tenant_id != tenant_id:
            raise JobNotFound(job_id)
        return job

    async def wait(self, job_id: str, tenant_id: str = "", timeout_s: float = 30.0) -> Job:
        """The job once it has ended, or as it is when ``timeout_s`` runs out or the front
        door is drained (``drain``), whichever comes first.

        It wakes on the job's ``sys.job.done`` notice (``JobWatch``), and looks at the store
        again every ``recheck_s`` in case a notice was lost. Without a watch, or once drained,
        it answers at once. ``JobNotFound`` as ``status``; ``InvalidField`` for a timeout
        outside (0, 60] s.
        """
        check_wait_s(timeout_s)
        watch = self._watch
        if watch is None:
            return await self.status(job_id, tenant_id)
        deadline = self._clock.now() + timeout_s
        with watch.expect(job_id) as ended:
            while True:
                job = await self.status(job_id, tenant_id)
                left = deadline - self._clock.now()
                if job.is_terminal or left <= 0 or self.draining:
                    return job
                await ended.wait(min(left, self._recheck_s))

    @property
    def draining(self) -> bool:
        """True once ``drain`` was called: whoever serves a long-lived request (a wait, a
        stream of events) should answer it now. Also once its watch was drained."""
        return self._draining or (self._watch is not None and self._watch.draining)

    def drain(self) -> int:
        """Stop waiting, for a server that is shutting down: every ``wait`` in progress
        returns the job as it is now (as if its time had run out), and every later one
        answers at once. The jobs themselves run on; only the waiting stops. Returns how many
        waiters were woken. Call it on the event loop the waits run on."""
        first = not self._draining
        self._draining = True
        woken = self._watch.drain() if self._watch is not None else 0
        if first:
            log.info("draining_waiters", extra={"component": "gateway", "waiters": woken})
        return woken

    async def result(
        self, job_id: str, tenant_id: str = "", wait_s: float | None = None
    ) -> tuple[Job, bytes]:
        """The finished job and its stored result document; with ``wait_s``, after waiting up
        to that long for the job to end (``wait``). ``ResultNotReady`` if it has not."""
        job = await (
            self.wait(job_id, tenant_id, wait_s)
            if wait_s is not None
            else self.status(job_id, tenant_id)
        )
        return job, await self.result_of(job)

    async def result_of(self, job: Job) -> bytes:
        """The stored result document of ``job``, a job ``status`` or ``wait`` gave the caller.
        ``ResultNotReady`` with the job's status if it has not ended, ended without a result,
        or its result has expired from the memory fabric."""
        job_id = job.job_id
        if not job.is_terminal:
            raise ResultNotReady(job_id, job.status, f"job {job_id} is {job.status}; no result yet")
        if job.result_ptr is None:
            raise ResultNotReady(
                job_id, job.status, f"job {job_id} ended {job.status} without a result"
            )
        data = await _guard("memory fabric", self._memory.get_result(job_id))
        if data is None:
            raise ResultNotReady(
                job_id, job.status, f"the result of job {job_id} has expired from the memory fabric"
            )
        return data

    async def list_jobs(
        self,
        tenant_id: str = "",
        *,
        status: StatusFilter = None,
        topic: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """The tenant's jobs, newest first, one page at a time."""
        if not 1 <= limit <= self.max_page:
            raise InvalidField("limit", f"limit must be 1 to {self.max_page}", limit=self.max_page)
        if topic is not None and not is_job_topic(topic):
            raise InvalidField("topic", "topic must be job.<pool>[.<kind>]")
        try:
            jobs, nxt = await _guard(
                "job store",
                self._jobs.list_jobs(
                    status=status, tenant_id=tenant_id, topic=topic, limit=limit, cursor=cursor
                ),
            )
        except ValueError as exc:
            raise InvalidField("cursor", str(exc)) from None
        return JobPage(jobs, nxt)

    async def dead_letters(
        self, tenant_id: str = "", *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """The tenant's FAILED, TIMEOUT and DENIED jobs, newest first."""
        return await self.list_jobs(
            tenant_id, status=DEAD_LETTER_STATUSES, limit=limit, cursor=cursor
        )

    # -- actions -----------------------------------------------------------------------

    async def cancel(self, job_id: str, tenant_id: str = "", reason: str = "") -> Job:
        """CANCELLED, and a running worker is told on ``sys.job.cancel``. ``JobConflict`` with
        the job's status if it has already finished."""
        reason = _reason(reason or CANCELLED_BY_CLIENT, self.limits)
        while True:
            job = await self.status(job_id, tenant_id)
            if not isinstance(job, ActiveJob):
                raise JobConflict(job_id, job.status, f"job {job_id} already ended {job.status}")
            cancelled = job.cancel(reason, self._clock.now())
            if await _guard("job store", self._jobs.transition(cancelled)):
                break  # else it moved meanwhile: look again
        await self._ended(cancelled)
        log.info(
            "job_cancelled",
            extra=_fields(cancelled, state=cancelled.status, was=job.status, reason=reason),
        )
        if isinstance(job, RunningJob):
            notice = BusPacket(
                trace_id=job.spec.trace_id,
                sender_id=self._sender_id,
                created_at=self._clock.now(),
                payload=JobCancel(job_id=job_id, reason=reason),
            )
            try:
                await self._bus.publish(SUBJECT_JOB_CANCEL, notice)
            except Exception as exc:  # the job is CANCELLED; its late result will be ignored
                log.warning("cancel_notice_failed", extra=_fields(job, cause=_what(exc)))
        return cancelled

    async def approve(self, job_id: str, tenant_id: str = "") -> Job:
        """An APPROVAL_REQUIRED job goes back PENDING (reason ``approved``); a scheduler routes
        it on its next sweep, without asking the policy again."""
        job = await self._awaiting_approval(job_id, tenant_id)
        approved = job.approve(self._clock.now())
        return await self._decide(job, approved, "job_approved")

    async def reject(self, job_id: str, tenant_id: str = "", reason: str = "") -> Job:
        job = await self._awaiting_approval(job_id, tenant_id)
        rejected = job.reject(
            _reason(reason or REJECTED_BY_REVIEWER, self.limits), self._clock.now()
        )
        decided = await self._decide(job, rejected, "job_rejected")
        await self._ended(decided)
        return decided

    async def _awaiting_approval(self, job_id: str, tenant_id: str) -> ApprovalRequiredJob:
        job = await self.status(job_id, tenant_id)
        if not isinstance(job, ApprovalRequiredJob):
            raise JobConflict(
                job_id,
                job.status,
                f"job {job_id} is {job.status}, not {JobStatus.APPROVAL_REQUIRED}",
            )
        return job

    async def _decide(self, was: ApprovalRequiredJob, now: Job, event: str) -> Job:
        if not await _guard("job store", self._jobs.transition(now)):
            current = await self.status(was.job_id, was.spec.tenant_id)
            raise JobConflict(
                was.job_id,
                current.status,
                f"job {was.job_id} was decided meanwhile: {current.status}",
            )
        log.info(event, extra=_fields(now, state=now.status))
        return now

    async def _ended(self, job: Job) -> None:
        """Count and announce a job this front door ended (cancelled, rejected), as the
        scheduler does."""
        if self._metrics is not None:
            self._metrics.inc_jobs_completed(job.spec.topic, job.status)
            elapsed = max(job.updated_at - job.spec.created_at, 0.0)
            self._metrics.observe_end_to_end(job.spec.topic, job.status, elapsed)
        await announce_done(self._bus, job, self._sender_id)

    async def retry(self, job_id: str, tenant_id: str = "") -> Submitted:
        """Submit a dead-lettered job again as a new job (``retry_of`` links it to the old one),
        through the whole submit path: safety check, routing, dispatch. Retrying the same job
        twice gives the same new job."""
        job = await self.status(job_id, tenant_id)
        if job.status not in DEAD_LETTER_STATUSES:
            raise JobConflict(
                job_id,
                job.status,
                f"job {job_id} is {job.status}; only FAILED, TIMEOUT and "
                "DENIED jobs can be retried",
            )
        context = await _guard("memory fabric", self._memory.get_context(job_id))
        if context is None:
            raise JobConflict(
                job_id, job.status, f"the context of job {job_id} has expired; submit it anew"
            )
        spec = job.spec
        cmd = SubmitJob(
            prompt="",
            topic=spec.topic,
            adapter_id=spec.adapter_id,
            priority=spec.priority,
            labels=spec.labels,
            tenant_id=spec.tenant_id,
            idempotency_key=RETRY_KEY_PREFIX + job_id,
            timeout_s=spec.timeout_s,
        )
        submitted = await self._submit(cmd, context, spec.prompt_bytes, retry_of=job_id)
        log.info("job_retried", extra=_fields(job, new_job_id=submitted.job_id))
        return submitted


def _reason(reason: str, limits: SubmitLimits) -> str:
    if len(reason) > limits.max_reason_chars:
        raise InvalidField(
            "reason",
            f"reason is longer than {limits.max_reason_chars} characters",
            limit=limits.max_reason_chars,
        )
    return reason


_T = TypeVar("_T")


async def _guard(dependency: str, call: Awaitable[_T]) -> _T:
    """Await a port call; a failure that is not one of the core's own errors means the
    dependency is down: ``Unavailable``, naming it."""
    try:
        return await call
    except (CortexError, ValueError):
        raise
    except Exception as exc:
        raise Unavailable(dependency, f"the {dependency} is unavailable ({_what(exc)})") from exc


def _what(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _fields(job: Job, **extra: object) -> dict[str, object]:
    return {
        "component": "gateway",
        "trace_id": job.spec.trace_id,
        "job_id": job.job_id,
        "topic": job.spec.topic,
        "worker_id": job.worker_id,
        "tenant_id": job.spec.tenant_id,
        **extra,
    }
