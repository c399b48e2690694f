"""The scheduler service: safety check, routing, least-loaded dispatch and job state.

It talks to the world only through ports. A submitted ``JobRequest`` is checked by the
``SafetyChecker``; a DENY ends the job DENIED with the reason. An ALLOW routes the topic to a
pool, scores the pool's live workers and dispatches to the least-loaded one, and the job is
RUNNING. A ``JobResult`` moves a RUNNING job to COMPLETED or FAILED (or CANCELLED/TIMEOUT) and
records its ``result_ptr``. Anything for a job that has already finished changes nothing.

A job whose pool has no live worker with a free slot waits PENDING (reason ``no_workers`` or
``pool_at_capacity``) and is dispatched when a heartbeat from that pool shows capacity.

``sweep()``, driven by a timer in the app, keeps jobs from being stranded: a RUNNING job whose
worker went silent, or whose attempt overran its ``timeout_s`` (then also cancelled), is put
back PENDING (reason ``retry``) and dispatched again after an exponential backoff, up to
``max_attempts``, after which it is FAILED; a job whose deadline has passed, running or
waiting, ends TIMEOUT; an approved job is routed; a RUNNING job's dispatch is re-published
once (de-duplicated if it went out); a PENDING job no scheduler has seen is adopted. Several
replicas may sweep at once: every change is a compare-and-set.

A replica remembers the RUNNING record of each job it dispatched (at most
``remember_dispatched``), and settles the job's result against that copy without reading the
store first. That is safe because every change is a compare-and-set on the record's version:
if anything moved the job meanwhile (a cancel, another replica's sweep), the write loses and
the result is handled again from a fresh read, exactly as it would have been without the copy.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from cortex_core.bus_protocol import (
    QUEUE_SCHEDULER,
    SUBJECT_HEARTBEAT_ALL,
    SUBJECT_JOB_CANCEL,
    SUBJECT_JOB_RESULT,
    SUBJECT_JOB_SUBMIT,
    worker_subject,
)
from cortex_core.concurrency import OneAfterAnother
from cortex_core.jobs import APPROVED, Job, JobSpec, PendingJob, RunningJob, new_job
from cortex_core.messages import BusPacket, Heartbeat, JobCancel, JobRequest, JobResult, JobStatus
from cortex_core.policy import Decision, SafetyDecision, SafetyRequest
from cortex_core.ports import (
    Bus,
    Clock,
    Concurrency,
    JobStore,
    Metrics,
    SafetyChecker,
    Subscription,
    WorkerRegistry,
)
from cortex_core.routing import RoutingSource, RoutingTable
from cortex_core.scoring import (
    NO_WORKERS,
    POOL_AT_CAPACITY,
    ScoringWeights,
    pick_worker,
    pool_loads,
)
from cortex_core.watch import announce_done

log = logging.getLogger("cortex.scheduler")

NO_POOL_FOR_TOPIC = "no_pool_for_topic"
RETRY = "retry"
"""The waiting reason of a job whose worker went silent: it backs off, then goes again."""
WORKER_LOST = "worker_lost"
OVERRAN = "overran"
"""An attempt ran past the job's ``timeout_s``: it is cancelled and the job tried again."""
DEADLINE_PASSED = "deadline_passed"
WAITING_REASONS = frozenset({NO_WORKERS, POOL_AT_CAPACITY})
DISPATCH_FAILED = "dispatch_failed"
_SETTLED_FROM_MEMORY = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
"""Results settled against the remembered RUNNING record; the rest (a TIMEOUT may mean a
retry) read the store first."""


class DispatchMode(enum.StrEnum):
    WORKER = "worker"
    """Publish to the chosen worker's own subject, ``worker.<id>.jobs``: the choice is real."""
    POOL = "pool"
    """Publish to the job's topic; the pool's queue group picks the worker."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    sender_id: str = "scheduler"
    stale_after_s: float = 15.0
    """A worker silent this long is not a candidate (3 missed 5 s heartbeats)."""
    dispatch_mode: DispatchMode = DispatchMode.WORKER
    weights: ScoringWeights = field(default_factory=ScoringWeights)
    max_attempts: int = 3
    """Dispatches a job may have; when the worker of the last one goes silent, it FAILS."""
    retry_backoff_s: float = 1.0
    """The wait before attempt n+1 is ``retry_backoff_s * 2**(n-1)``, at most the cap below."""
    retry_backoff_max_s: float = 60.0
    overrun_grace_s: float = 5.0
    """How long past its ``timeout_s`` an attempt may go unreported (the worker enforces the
    timeout itself and reports TIMEOUT) before the scheduler gives up on it."""
    orphan_after_s: float = 60.0
    """A job left PENDING this long without a scheduler having seen it (its submit was lost,
    or its publish failed and could not be undone) is taken up by the sweep."""
    max_in_flight: int = 64
    """Submits, and results, one replica handles at once. Each waits mostly on I/O (the job
    store, the Safety Kernel, the bus); every change is a compare-and-set and a slot is
    reserved before anything awaits, so concurrent decisions are as safe as replicas'."""
    sweep_interval_s: float = 1.0
    """How often the app calls ``sweep()`` (it bounds the window of the re-publish below)."""
    republish_after_s: float = 5.0
    """A RUNNING job this old has its dispatch published once more, which the bus's
    de-duplication (``<job_id>.<attempt>``, a 120 s window) drops if the first one went out: a
    scheduler killed between committing RUNNING and publishing strands no job."""
    remember_dispatched: int = 10_000
    """RUNNING records of jobs dispatched here, kept to settle their results without a read of
    the store (0: always read). The oldest are forgotten first."""

    def backoff(self, attempts: int) -> float:
        return min(self.retry_backoff_s * 2.0 ** max(attempts - 1, 0), self.retry_backoff_max_s)


class Scheduler:
    def __init__(
        self,
        *,
        bus: Bus,
        jobs: JobStore,
        safety: SafetyChecker,
        registry: WorkerRegistry,
        routing: RoutingTable | RoutingSource,
        metrics: Metrics,
        clock: Clock,
        config: SchedulerConfig | None = None,
        concurrency: Concurrency | None = None,
    ) -> None:
        self._bus = bus
        self._concurrency = concurrency or OneAfterAnother()
        self._jobs = jobs
        self._safety = safety
        self._registry = registry
        self._routing_source = routing
        self._metrics = metrics
        self._clock = clock
        self._config = config or SchedulerConfig()
        self._waiting: dict[str, deque[str]] = {}
        self._dispatched: OrderedDict[str, RunningJob] = OrderedDict()
        """The RUNNING record this replica last wrote for each job it dispatched."""
        self._subscriptions: list[Subscription] = []
        self._started_at: float | None = None

    @property
    def _routing(self) -> RoutingTable:
        """The table in force: a reloaded routing file takes effect for the next job."""
        source = self._routing_source
        return source if isinstance(source, RoutingTable) else source.current

    async def start(self) -> None:
        self._started_at = self._clock.now()
        await self._recover_waiting()
        self._subscriptions = [
            await self._bus.subscribe(
                SUBJECT_JOB_SUBMIT,
                self.on_submit,
                queue=QUEUE_SCHEDULER,
                max_in_flight=self._config.max_in_flight,
            ),
            await self._bus.subscribe(
                SUBJECT_JOB_RESULT,
                self.on_result,
                queue=QUEUE_SCHEDULER,
                max_in_flight=self._config.max_in_flight,
            ),
            await self._bus.subscribe(SUBJECT_HEARTBEAT_ALL, self.on_heartbeat),
        ]

    async def close(self) -> None:
        for sub in self._subscriptions:
            await sub.unsubscribe()
        self._subscriptions = []

    async def _recover_waiting(self) -> None:
        """Take up the jobs that were waiting for capacity when a scheduler stopped.

        They are PENDING with a waiting reason in the job store; their submits were acked
        long ago, so nothing else would bring them back. Oldest first, as they arrived.
        """
        found = [
            j
            for j in await self._all(JobStatus.PENDING)
            if isinstance(j, PendingJob) and j.reason in WAITING_REASONS
        ]
        queued = self._queued()
        for job in sorted(found, key=lambda j: (j.spec.created_at, j.job_id)):
            self._adopt_waiting(job, queued)
        if found:
            log.info(
                "waiting_jobs_recovered", extra={"component": "scheduler", "count": len(found)}
            )

    async def sweep(self) -> None:
        """Requeue jobs whose worker went silent, retry them after their backoff, fail them
        after ``max_attempts``, and time out jobs whose deadline has passed."""
        now = self._clock.now()
        cfg = self._config
        known = await self._registry.workers()
        self._metrics.set_pool_loads(
            pool_loads(known, self._routing.pools, now=now, stale_after=cfg.stale_after_s)
        )
        workers = {w.worker_id: w for w in known}
        # A scheduler that has just started has heard from nobody yet: a worker it doesn't
        # know is only silent once a whole staleness window has passed since it started.
        settled = self._started_at is None or now - self._started_at > cfg.stale_after_s
        for job in await self._all(JobStatus.RUNNING):
            if not isinstance(job, RunningJob):
                continue
            if job.spec.deadline is not None and now >= job.spec.deadline:
                await self._finish(job.time_out(DEADLINE_PASSED, now), job.worker_id)
                continue
            timeout = job.spec.timeout_s
            if timeout is not None and now > job.updated_at + timeout + cfg.overrun_grace_s:
                await self._cancel_attempt(job, f"ran past its timeout of {timeout:g} s")
                await self._retry_or_fail(
                    job, f"{OVERRAN}: attempt {job.attempts} ran past {timeout:g} s", now
                )
                continue
            age = now - job.updated_at
            if cfg.republish_after_s <= age < cfg.republish_after_s + 2 * cfg.sweep_interval_s:
                await self._republish(job)
            worker = workers.get(job.worker_id or "")
            if worker is None and not settled:
                continue
            if worker is not None and worker.is_fresh(now, cfg.stale_after_s):
                continue
            await self._retry_or_fail(
                job, f"{WORKER_LOST}: worker {job.worker_id} went silent", now
            )
        queued = self._queued()
        for job in await self._all(JobStatus.PENDING):
            if not isinstance(job, PendingJob):
                continue
            if job.spec.deadline is not None and now >= job.spec.deadline:
                await self._finish(job.time_out(DEADLINE_PASSED, now), None)
            elif job.reason == APPROVED or (
                job.reason == RETRY and now >= job.updated_at + cfg.backoff(job.attempts)
            ):
                await self._route(job)
            elif job.reason in WAITING_REASONS:
                self._adopt_waiting(job, queued)
            elif job.reason is None and now - job.updated_at > cfg.orphan_after_s:
                log.warning("orphan_adopted", extra=_fields(job))
                await self._admit(job)

    async def _republish(self, job: RunningJob) -> None:
        try:
            await self._bus.publish(*self._dispatch_of(job))
        except Exception as exc:
            log.warning("dispatch_republish_failed", extra=_fields(job, cause=repr(exc)))
            return
        log.info("dispatch_republished", extra=_fields(job, attempts=job.attempts))

    async def _retry_or_fail(self, job: RunningJob, cause: str, now: float) -> None:
        """Put ``job`` back PENDING for another attempt after its backoff, or FAIL it once it
        has had ``max_attempts``."""
        if job.attempts >= self._config.max_attempts:
            reason = f"{cause}; gave up after {job.attempts} attempts"
            await self._finish(job.fail(reason, now), job.worker_id)
            return
        requeued = await self._commit(
            job.requeue(RETRY, now),
            "job_requeued",
            logging.WARNING,
            worker_id=job.worker_id,
            attempts=job.attempts,
            cause=cause,
        )
        if requeued and job.worker_id is not None:
            await self._registry.release(job.worker_id)

    async def _cancel_attempt(self, job: RunningJob, reason: str) -> None:
        """Tell the worker of an attempt given up on to stop it (best effort: its result is
        ignored anyway, since the job has moved on)."""
        notice = BusPacket(
            trace_id=job.spec.trace_id,
            sender_id=self._config.sender_id,
            created_at=self._clock.now(),
            payload=JobCancel(job_id=job.job_id, reason=reason, attempt=job.attempts),
        )
        try:
            await self._bus.publish(SUBJECT_JOB_CANCEL, notice)
        except Exception as exc:
            log.warning("cancel_notice_failed", extra=_fields(job, cause=repr(exc)))

    def _dispatch_of(self, running: RunningJob) -> tuple[str, BusPacket]:
        """Where and what a dispatch of ``running`` publishes (the same for a re-publish)."""
        subject = (
            worker_subject(running.worker_id)
            if self._config.dispatch_mode is DispatchMode.WORKER and running.worker_id
            else running.spec.topic
        )
        packet = BusPacket(
            trace_id=running.spec.trace_id,
            sender_id=self._config.sender_id,
            created_at=running.updated_at,
            payload=running.spec.to_request(attempt=running.attempts),
        )
        return subject, packet

    def _queued(self) -> set[str]:
        return {job_id for queue in self._waiting.values() for job_id in queue}

    def _adopt_waiting(self, job: PendingJob, queued: set[str]) -> None:
        """Queue a waiting job this scheduler doesn't hold yet (another replica parked it)."""
        pool = self._routing.pool_for(job.spec.topic)
        if pool is not None and job.job_id not in queued:
            self._waiting.setdefault(pool, deque()).append(job.job_id)
            queued.add(job.job_id)
            log.info("waiting_job_adopted", extra=_fields(job, pool=pool))

    async def _all(self, status: JobStatus) -> list[Job]:
        jobs: list[Job] = []
        cursor: str | None = None
        while True:
            page, cursor = await self._jobs.list_jobs(status=status, limit=500, cursor=cursor)
            jobs += page
            if cursor is None:
                return jobs

    async def _finish(self, job: Job, worker_id: str | None) -> None:
        """Commit a terminal state reached by the sweep; count it and free the slot."""
        if await self._commit(job, "job_swept", logging.WARNING, reason=job.reason):
            await self._ended(job)
            if worker_id is not None:
                await self._registry.release(worker_id)

    def waiting(self, pool: str) -> tuple[str, ...]:
        """Ids of the jobs waiting for capacity in ``pool``, oldest first."""
        return tuple(self._waiting.get(pool, ()))

    # -- submit ------------------------------------------------------------------------

    async def on_submit(self, packet: BusPacket) -> None:
        request = packet.payload
        if not isinstance(request, JobRequest):
            self._drop("unexpected_payload", packet, subject=SUBJECT_JOB_SUBMIT)
            return
        now = self._clock.now()
        # The Safety Kernel is asked about what the packet says while the job is read: the
        # decision counts only for a new job whose stored spec asks exactly that (else the
        # stored spec is checked, as it always is). A redelivery's check is wasted.
        asked = SafetyRequest.for_request(request)
        job, early = await self._concurrency.both(
            self._jobs.get(request.job_id), self._safety.check(asked)
        )
        if job is None:
            # Submitted straight onto the bus, not through the front door: adopt it.
            spec = JobSpec.from_request(request, trace_id=packet.trace_id, created_at=now)
            adopted = new_job(spec, now)
            job = adopted if await self._jobs.create(adopted) else await self._jobs.get(spec.job_id)
        if isinstance(job, PendingJob) and job.reason == APPROVED:
            # A person approved what the policy asked about: route it, don't ask again.
            await self._route(job)
            return
        if isinstance(job, RunningJob):
            # A redelivered submit: the scheduler that handled it may have died between
            # committing RUNNING and publishing the dispatch. Publish it again; its
            # de-duplication id (<job_id>.<attempt>) makes the bus drop it if it did go out.
            await self._republish(job)
            return
        if isinstance(job, PendingJob) and job.reason in WAITING_REASONS:
            self._adopt_waiting(job, self._queued())  # parked by a replica that died, maybe
            return
        if not isinstance(job, PendingJob) or job.reason is not None:
            # A redelivery of a job that moved on: nothing new to do.
            log.info("submit_ignored", extra=_fields(job, status=job.status if job else None))
            return
        await self._admit(job, (asked, early))

    async def _admit(
        self, job: PendingJob, known: tuple[SafetyRequest, SafetyDecision] | None = None
    ) -> None:
        """A new job: ask the safety policy (unless ``known`` holds its decision already: what
        was asked, and the answer), then route it (or end it DENIED, or park it for
        approval)."""
        now = self._clock.now()
        self._metrics.inc_jobs_received(job.spec.topic)
        asked = SafetyRequest.for_job(job.spec)
        if known is not None and known[0] == asked:
            decision = known[1]
        else:
            decision = await self._safety.check(asked)
        why: dict[str, object] = {"rule_id": decision.rule_id, "reason": decision.reason}
        if decision.decision is Decision.REQUIRE_APPROVAL:
            await self._commit(
                job.require_approval(decision.reason, now), "job_needs_approval", **why
            )
            return
        if not decision.allowed:
            denied = job.deny(decision.reason, now)
            if await self._commit(denied, "job_denied", **why):
                self._metrics.inc_safety_denied(job.spec.topic)
                await self._ended(denied)
            return
        await self._route(job)

    async def _route(self, job: PendingJob) -> None:
        now = self._clock.now()
        pool = self._routing.pool_for(job.spec.topic)
        if pool is None:
            failed = job.fail(NO_POOL_FOR_TOPIC, now)
            if await self._commit(failed, "job_failed", reason=NO_POOL_FOR_TOPIC):
                await self._ended(failed)
            return
        reason = await self._try_dispatch(job, pool)
        if reason is None:
            return
        parked = job.waiting(reason, now) if job.reason != reason else job
        if parked is job or await self._commit(parked, "job_waiting", pool=pool, reason=reason):
            self._waiting.setdefault(pool, deque()).append(job.job_id)

    async def _try_dispatch(self, job: PendingJob, pool: str) -> str | None:
        """Dispatch ``job`` to the best worker of ``pool``; the reason it can't, or None."""
        now = self._clock.now()
        selection = pick_worker(
            await self._registry.workers(pool),
            now=now,
            stale_after=self._config.stale_after_s,
            weights=self._config.weights,
        )
        if selection.worker is None:
            return selection.reason
        worker_id = selection.worker.worker_id
        # Count the slot as taken before anything awaits, so that a concurrent dispatch
        # sees it; give it back if this dispatch doesn't happen after all.
        await self._registry.reserve(worker_id)
        running = job.dispatch(worker_id, now)
        subject, packet = self._dispatch_of(running)
        if not await self._commit(running, "job_dispatched", pool=pool, subject=subject):
            await self._registry.release(worker_id)
            return None  # another scheduler replica moved it first
        self._remember(running)
        try:
            await self._bus.publish(subject, packet)
        except Exception as exc:  # the bus is down: say so on the job, never strand it RUNNING
            await self._registry.release(worker_id)
            reason = f"{DISPATCH_FAILED}: {type(exc).__name__}: {exc}"
            failed = running.fail(reason, self._clock.now())
            if await self._commit(failed, "job_dispatch_failed", logging.WARNING, reason=reason):
                await self._ended(failed)
            return None
        self._metrics.inc_jobs_dispatched(job.spec.topic)
        # Waiting since submit, or since it was put back for another attempt.
        waited_since = job.spec.created_at if job.attempts == 0 else job.updated_at
        self._metrics.observe_queue_wait(job.spec.topic, max(now - waited_since, 0.0))
        return None

    # -- heartbeats --------------------------------------------------------------------

    async def on_heartbeat(self, packet: BusPacket) -> None:
        hb = packet.payload
        if not isinstance(hb, Heartbeat):
            self._drop("unexpected_payload", packet, subject=SUBJECT_HEARTBEAT_ALL)
            return
        await self._registry.record(hb, self._clock.now())
        queue = self._waiting.get(hb.pool)
        if not queue:
            return
        if hb.active_jobs < hb.max_parallel_jobs:
            await self._drain_waiting(hb.pool)
        else:
            # A full worker's heartbeat can place nothing (the others were drained at their own
            # heartbeats and results): don't re-score the whole pool, just keep the reason true.
            await self._relabel_waiting(queue, POOL_AT_CAPACITY)

    async def _drain_waiting(self, pool: str) -> None:
        """Dispatch waiting jobs, oldest first, while the pool has capacity.

        Heartbeats and results both drain, possibly interleaved: each drain takes its job off
        the queue before awaiting anything, so two drains never work on the same entry.
        """
        queue = self._waiting.get(pool)
        while queue:
            job_id = queue.popleft()
            job = await self._jobs.get(job_id)
            if not isinstance(job, PendingJob):
                continue  # cancelled or otherwise finished while it waited
            reason = await self._try_dispatch(job, pool)
            if reason is not None:  # still no capacity: back to the front of the line
                queue.appendleft(job_id)
                await self._relabel_waiting(queue, reason)
                return

    async def _relabel_waiting(self, queue: deque[str], reason: str) -> None:
        """Keep the waiting jobs' reason true (``no_workers`` ⇄ ``pool_at_capacity``).

        Jobs parked together share their pool's reason, so checking the first one is enough
        to know whether anything changed; the walk happens only when it did.
        """
        first = await self._jobs.get(queue[0])
        if not isinstance(first, PendingJob) or first.reason == reason:
            return
        now = self._clock.now()
        for job_id in list(queue):
            job = await self._jobs.get(job_id)
            if isinstance(job, PendingJob) and job.reason != reason:
                await self._commit(job.waiting(reason, now), "job_waiting", reason=reason)

    # -- results -----------------------------------------------------------------------

    async def on_result(self, packet: BusPacket) -> None:
        result = packet.payload
        if not isinstance(result, JobResult):
            self._drop("unexpected_payload", packet, subject=SUBJECT_JOB_RESULT)
            return
        remembered = self._dispatched.pop(result.job_id, None)
        if (
            remembered is not None
            and result.attempt in (0, remembered.attempts)
            and result.status in _SETTLED_FROM_MEMORY
            and await self._settle(remembered, result, packet, remembered=True)
        ):
            return
        job = await self._jobs.get(result.job_id)
        if job is None:
            self._drop("unknown_job", packet, subject=SUBJECT_JOB_RESULT, job_id=result.job_id)
            return
        if not isinstance(job, RunningJob):
            # Terminal states absorb: a late or duplicate result changes nothing.
            log.info(
                "result_ignored", extra=_fields(job, status=job.status, result_status=result.status)
            )
            if (
                job.status is JobStatus.CANCELLED
                and result.status is JobStatus.CANCELLED
                and job.worker_id
                and job.worker_id == result.worker_id
            ):
                # Cancelled through the front door while it ran: the worker has stopped it, so
                # its slot is free now, not only at the worker's next heartbeat.
                await self._registry.release(job.worker_id)
                pool = self._routing.pool_for(job.spec.topic)
                if pool is not None:
                    await self._drain_waiting(pool)
            return
        if result.attempt not in (0, job.attempts) and result.status is not JobStatus.COMPLETED:
            # An attempt given up on (it overran, or its worker went silent) reports late:
            # the attempt running now decides. A completion still counts: the work is done.
            log.info("stale_result_ignored", extra=_fields(job, attempt=result.attempt))
            return
        await self._settle(job, result, packet, remembered=False)

    async def _settle(
        self, job: RunningJob, result: JobResult, packet: BusPacket, *, remembered: bool
    ) -> bool:
        """Move ``job`` on as ``result`` says. With ``remembered`` (the copy this replica
        wrote at dispatch, not a fresh read), False when the job had moved meanwhile and
        nothing was done: the caller reads the store and comes back."""
        now = self._clock.now()
        new: Job
        if result.status is JobStatus.COMPLETED:
            new = job.complete(result.result_ptr or None, now)
        elif result.status is JobStatus.FAILED:
            reason = ": ".join(p for p in (result.error_code, result.error_message) if p)
            new = job.fail(reason or "worker reported failure", now, result.result_ptr or None)
        elif result.status is JobStatus.CANCELLED:
            new = job.cancel(result.error_message or "cancelled by worker", now)
        elif result.status is JobStatus.TIMEOUT:
            if job.spec.deadline is None or now < job.spec.deadline:
                # The attempt ran past its own time limit, not the job's deadline: try again.
                self._metrics.observe_run_time(job.spec.topic, max(now - job.updated_at, 0.0))
                why = result.error_message or "timed out on worker"
                await self._retry_or_fail(job, f"{OVERRAN}: {why}", now)
                pool = self._routing.pool_for(job.spec.topic)
                if pool is not None:  # its slot is free: a waiting job may go now
                    await self._drain_waiting(pool)
                return True
            new = job.time_out(result.error_message or "timed out on worker", now)
        else:
            self._drop(
                "invalid_result_status", packet, subject=SUBJECT_JOB_RESULT, job_id=job.job_id
            )
            return True
        if not await self._commit(new, "job_finished", logging.INFO, remembered):
            # Lost to a change made since the remembered dispatch: read it and decide again.
            # (From a fresh read, another replica got there first: nothing more to do.)
            return not remembered
        self._metrics.observe_run_time(job.spec.topic, max(now - job.updated_at, 0.0))
        await self._ended(new)
        # The slot it held is free now: jobs waiting for that pool need not wait for the
        # worker's next heartbeat.
        if job.worker_id is not None:
            await self._registry.release(job.worker_id)
        pool = self._routing.pool_for(job.spec.topic)
        if pool is not None:
            await self._drain_waiting(pool)
        return True

    # -- helpers -----------------------------------------------------------------------

    def _remember(self, job: RunningJob) -> None:
        if self._config.remember_dispatched <= 0:
            return
        self._dispatched[job.job_id] = job
        self._dispatched.move_to_end(job.job_id)
        while len(self._dispatched) > self._config.remember_dispatched:
            self._dispatched.popitem(last=False)

    async def _commit(
        self,
        job: Job,
        event: str,
        level: int = logging.INFO,
        quiet_loss: bool = False,
        /,
        **extra: object,
    ) -> bool:
        """Write ``job``'s new state (compare-and-set); on success log ``event``, the one line
        of this state change, with ``state`` = the new status. A lost write is logged unless
        ``quiet_loss`` (the caller reads the job and tries again)."""
        won = await self._jobs.transition(job)
        if won:
            log.log(level, event, extra=_fields(job, state=job.status, **extra))
        elif not quiet_loss:
            log.info("transition_lost", extra=_fields(job, status=job.status))
        return won

    async def _ended(self, job: Job) -> None:
        """A job reached its terminal state: count it, time it since submit, and announce it on
        ``sys.job.done`` for whoever waits on it."""
        self._metrics.inc_jobs_completed(job.spec.topic, job.status)
        elapsed = max(job.updated_at - job.spec.created_at, 0.0)
        self._metrics.observe_end_to_end(job.spec.topic, job.status, elapsed)
        await announce_done(self._bus, job, self._config.sender_id)

    def _drop(self, reason: str, packet: BusPacket, **fields: object) -> None:
        self._metrics.inc_packets_dropped(reason)
        log.warning(
            "packet_dropped",
            extra={
                "component": "scheduler",
                "reason": reason,
                "trace_id": packet.trace_id,
                "sender_id": packet.sender_id,
                "payload_type": type(packet.payload).__name__,
                **fields,
            },
        )


def _fields(job: Job | None, **extra: object) -> dict[str, object]:
    """A job event's log fields: always ``component``, ``trace_id``, ``job_id``, ``topic`` and
    ``worker_id`` (None until the job is dispatched)."""
    if job is None:
        return {"component": "scheduler", **extra}
    return {
        "component": "scheduler",
        "trace_id": job.spec.trace_id,
        "job_id": job.job_id,
        "topic": job.spec.topic,
        "worker_id": job.worker_id,
        **extra,
    }
