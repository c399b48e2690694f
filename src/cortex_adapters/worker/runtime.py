"""A worker runtime: subscribe, heartbeat, fetch the context, run a handler, store the result.

A worker listens on its own subject ``worker.<id>.jobs`` (least-loaded dispatch) and, in its
pool's queue group ``workers-<pool>``, on each of its topics (pool dispatch). It runs at most
``max_parallel_jobs`` handlers at once; a handler's exception makes the job FAILED with the
exception's type and message, and the worker carries on.

A job's packet counts as handled only once its result is published: the bus acknowledges it
when ``_on_job`` returns. A worker that dies mid-job leaves the packet unacknowledged, and a
durable bus hands it to another worker.

A job ends:

* COMPLETED with the handler's bytes stored under ``res:<job_id>``;
* FAILED when the handler raises: ``error_code`` is the exception's ``error_code`` attribute
  if it has one, else its type name, and ``error_message`` its text;
* CANCELLED when a ``JobCancel`` for it arrives on ``sys.job.cancel``: one naming its
  attempt, or attempt 0 (any attempt). The handler task is cancelled; a cancel that arrives
  before its attempt does is remembered, so that attempt ends CANCELLED without running.
  Several attempts of one job may run here at once (the scheduler gave up on one and sent
  the next to the same worker): each is cancelled apart;
* TIMEOUT when the first of the job's ``deadline``, the request's ``timeout_s`` (this
  attempt's limit) and the worker's own ``job_timeout_s`` passes.

Every result carries the ``attempt`` of the request it answers.

A handler may be a plain async function or an object with ``async start()``/``close()`` (an
HTTP client, say): the worker starts it before taking jobs and closes it after the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cortex_core.bus_protocol import (
    SUBJECT_JOB_CANCEL,
    SUBJECT_JOB_RESULT,
    heartbeat_subject,
    pool_queue,
    worker_subject,
)
from cortex_core.errors import CortexError
from cortex_core.messages import BusPacket, Heartbeat, JobCancel, JobRequest, JobResult, JobStatus
from cortex_core.pointers import check_context_ptr
from cortex_core.ports import Bus, Clock, MemoryStore, Metrics, Subscription

log = logging.getLogger("cortex.worker")


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets: the request, its context document and who is running it."""

    request: JobRequest
    context: bytes
    trace_id: str
    worker_id: str


Handler = Callable[[JobContext], Awaitable[bytes]]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    worker_id: str
    pool: str
    topics: tuple[str, ...]
    max_parallel_jobs: int = 4
    heartbeat_interval_s: float = 5.0
    region: str = ""
    type: str = ""
    capabilities: tuple[str, ...] = ()
    job_timeout_s: float | None = None
    """Longest a handler may run, whatever the job's own deadline (None: no limit)."""
    stop_grace_s: float = 5.0
    """How long a handler cancelled for its timeout may take to stop before its slot is freed."""


class JobError(Exception):
    """A handler's failure with a stable ``error_code`` (the type name is used otherwise)."""

    error_code = "job_error"


_REMEMBERED_CANCELS = 4096


class Worker:
    def __init__(
        self,
        *,
        config: WorkerConfig,
        handler: Handler,
        bus: Bus,
        memory: MemoryStore,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        if config.max_parallel_jobs < 1:
            raise ValueError("max_parallel_jobs must be at least 1")
        heartbeat_subject(config.worker_id)  # validates the id early
        self.config = config
        self._handler = handler
        self._bus = bus
        self._memory = memory
        self._clock = clock
        self._metrics = metrics
        self._slots = asyncio.Semaphore(config.max_parallel_jobs)
        self._active = 0
        self._running: dict[tuple[str, int], asyncio.Task[bytes]] = {}
        """(job_id, attempt) -> the handler task running it"""
        self._cancelled: OrderedDict[tuple[str, int], str] = OrderedDict()
        """(job_id, the attempt cancelled or 0 for every attempt) -> the reason; the latest
        ``_REMEMBERED_CANCELS``, so that a packet of a cancelled attempt that comes late (a
        redelivery) is cancelled too"""
        self._closing = False
        self._subs: list[Subscription] = []
        self._heartbeats: asyncio.Task[None] | None = None
        self._cpu_mark = (time.process_time(), time.monotonic())

    @property
    def active_jobs(self) -> int:
        return self._active

    async def start(self) -> None:
        cfg = self.config
        n = cfg.max_parallel_jobs
        handler_start = getattr(self._handler, "start", None)
        if callable(handler_start):
            await handler_start()
        self._subs = [
            await self._bus.subscribe(SUBJECT_JOB_CANCEL, self._on_cancel),
            await self._bus.subscribe(worker_subject(cfg.worker_id), self._on_job, max_in_flight=n),
        ]
        for topic in cfg.topics:
            self._subs.append(
                await self._bus.subscribe(
                    topic, self._on_job, queue=pool_queue(cfg.pool), max_in_flight=n
                )
            )
        await self.heartbeat()
        self._heartbeats = asyncio.create_task(
            self._heartbeat_loop(), name=f"heartbeat:{cfg.worker_id}"
        )

    async def close(self) -> None:
        """Stop taking jobs, finish the ones in flight, stop heartbeating.

        The last heartbeat says the worker has no capacity, so no scheduler dispatches to it
        while it drains.
        """
        self._closing = True
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
            self._heartbeats = None
        with contextlib.suppress(Exception):
            await self.heartbeat()
        for sub in self._subs:
            await sub.unsubscribe()  # drains: handlers in flight finish first
        self._subs = []
        handler_close = getattr(self._handler, "close", None)
        if callable(handler_close):
            await handler_close()

    def _cpu_load(self) -> float:
        """This process's CPU time over wall time since the last heartbeat (0..1 of one core)."""
        cpu, wall = time.process_time(), time.monotonic()
        last_cpu, last_wall = self._cpu_mark
        self._cpu_mark = (cpu, wall)
        elapsed = wall - last_wall
        return min(max((cpu - last_cpu) / elapsed, 0.0), 1.0) if elapsed > 0 else 0.0

    async def heartbeat(self) -> None:
        cfg = self.config
        hb = Heartbeat(
            worker_id=cfg.worker_id,
            pool=cfg.pool,
            max_parallel_jobs=0 if self._closing else cfg.max_parallel_jobs,
            active_jobs=self.active_jobs,
            cpu_load=self._cpu_load(),
            region=cfg.region,
            type=cfg.type,
            capabilities=cfg.capabilities,
        )
        packet = BusPacket(
            trace_id="", sender_id=cfg.worker_id, created_at=self._clock.now(), payload=hb
        )
        await self._bus.publish(heartbeat_subject(cfg.worker_id), packet)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            try:
                await self.heartbeat()
            except Exception:
                log.exception(
                    "heartbeat_failed",
                    extra={"component": "worker", "worker_id": self.config.worker_id},
                )

    async def _on_job(self, packet: BusPacket) -> None:
        request = packet.payload
        if not isinstance(request, JobRequest):
            if self._metrics is not None:
                self._metrics.inc_packets_dropped("unexpected_payload")
            log.warning(
                "packet_dropped",
                extra={
                    "component": "worker",
                    "reason": "unexpected_payload",
                    "payload_type": type(request).__name__,
                    "trace_id": packet.trace_id,
                    "worker_id": self.config.worker_id,
                },
            )
            return
        async with self._slots:  # all subscriptions together: at most max_parallel_jobs
            self._active += 1
            started = time.perf_counter()
            try:
                result = await self._execute(request, packet.trace_id)
            finally:
                self._active -= 1
        if self._metrics is not None:
            self._metrics.observe_execution(
                self.config.pool, result.status.value, time.perf_counter() - started
            )
        # Raises if the bus is down: the job packet is then not acknowledged, and comes back.
        await self._bus.publish(
            SUBJECT_JOB_RESULT,
            BusPacket(
                trace_id=packet.trace_id,
                sender_id=self.config.worker_id,
                created_at=self._clock.now(),
                payload=result,
            ),
        )
        log.info(
            "job_done",
            extra={
                "component": "worker",
                "trace_id": packet.trace_id,
                "job_id": request.job_id,
                "topic": request.topic,
                "worker_id": self.config.worker_id,
                "status": result.status.value,
            },
        )

    async def _on_cancel(self, packet: BusPacket) -> None:
        cancel = packet.payload
        if not isinstance(cancel, JobCancel):
            return
        # Remembered whether or not the attempt runs here now: its packet may come later.
        key = (cancel.job_id, cancel.attempt)
        self._cancelled[key] = cancel.reason or "cancelled"
        self._cancelled.move_to_end(key)
        while len(self._cancelled) > _REMEMBERED_CANCELS:
            self._cancelled.popitem(last=False)
        for (job_id, attempt), task in list(self._running.items()):
            if job_id == cancel.job_id and cancel.attempt in (0, attempt):
                task.cancel()
                log.info(
                    "job_cancelling",
                    extra={
                        "component": "worker",
                        "trace_id": packet.trace_id,
                        "job_id": job_id,
                        "attempt": attempt,
                        "worker_id": self.config.worker_id,
                    },
                )

    async def _stop(self, task: asyncio.Task[bytes]) -> None:
        """Cancel a handler and wait (boundedly) until it has really stopped, so that its slot
        is not handed to another job while it still runs."""
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.config.stop_grace_s)
        if not done:
            log.warning(
                "handler_ignores_cancellation",
                extra={
                    "component": "worker",
                    "worker_id": self.config.worker_id,
                    "task": task.get_name(),
                    "grace_s": self.config.stop_grace_s,
                },
            )

    def _cancel_reason(self, request: JobRequest) -> str | None:
        """Why ``request`` (its attempt, or every attempt of its job) was cancelled, or None."""
        reason = self._cancelled.get((request.job_id, request.attempt))
        return reason if reason is not None else self._cancelled.get((request.job_id, 0))

    def _time_left(self, request: JobRequest) -> float | None:
        limits = [self.config.job_timeout_s] if self.config.job_timeout_s is not None else []
        if request.timeout_s is not None:
            limits.append(request.timeout_s)
        if request.deadline is not None:
            limits.append(request.deadline - self._clock.now())
        return min(limits) if limits else None

    async def _execute(self, request: JobRequest, trace_id: str) -> JobResult:
        wid = self.config.worker_id
        started = time.perf_counter()

        def ended(status: JobStatus, code: str, message: str) -> JobResult:
            return JobResult(
                job_id=request.job_id,
                status=status,
                worker_id=wid,
                execution_ms=int((time.perf_counter() - started) * 1000),
                error_code=code,
                error_message=message,
                attempt=request.attempt,
            )

        def failed(code: str, message: str) -> JobResult:
            return ended(JobStatus.FAILED, code, message)

        if (why := self._cancel_reason(request)) is not None:
            return ended(JobStatus.CANCELLED, "cancelled", why)
        time_left = self._time_left(request)
        if time_left is not None and time_left <= 0:
            return ended(JobStatus.TIMEOUT, "timeout", "the job's time was up before it started")

        try:
            check_context_ptr(request.context_ptr, request.job_id)
        except CortexError as exc:
            return failed("bad_context_ptr", str(exc))
        context = await self._memory.get_context(request.job_id)
        if context is None:
            return failed("context_missing", f"no context under {request.context_ptr}")
        job = JobContext(request, context, trace_id, wid)

        async def run_handler() -> bytes:
            return await self._handler(job)

        task = asyncio.create_task(run_handler(), name=f"job:{request.job_id}")
        key = (request.job_id, request.attempt)
        self._running[key] = task
        if self._cancel_reason(request) is not None:  # cancelled while its context was fetched
            task.cancel()
        try:
            async with asyncio.timeout(time_left):
                output = await asyncio.shield(task)
        except TimeoutError:
            await self._stop(task)
            return ended(
                JobStatus.TIMEOUT, "timeout", f"the job ran past its time ({time_left:.3f} s)"
            )
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                task.cancel()
                raise  # the worker itself is being cancelled, not the job
            if (why := self._cancel_reason(request)) is not None:
                return ended(JobStatus.CANCELLED, "cancelled", why)
            # Nobody cancelled it: the handler raised CancelledError itself. A failure, not a
            # reason to take the subscription down with it.
            return failed("CancelledError", "the handler raised CancelledError unasked")
        except Exception as exc:
            code = getattr(exc, "error_code", None)
            return failed(code if isinstance(code, str) and code else type(exc).__name__, str(exc))
        finally:
            if self._running.get(key) is task:  # unless a redelivery of this attempt took over
                del self._running[key]
        pointer = await self._memory.put_result(request.job_id, output)
        return JobResult(
            job_id=request.job_id,
            status=JobStatus.COMPLETED,
            result_ptr=pointer,
            worker_id=wid,
            execution_ms=int((time.perf_counter() - started) * 1000),
            attempt=request.attempt,
        )
