"""Ports: what the core needs from the world, as ``typing.Protocol`` classes.

Adapters in ``cortex_adapters`` satisfy them structurally (no inheritance needed). Ports that
hold connections have an explicit lifecycle, ``start()`` then ``close()``; ``close()`` of a bus
drains: in-flight deliveries finish before it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from cortex_core.jobs import Job, PendingJob
from cortex_core.messages import BusPacket, Heartbeat, JobStatus
from cortex_core.policy import SafetyDecision, SafetyRequest
from cortex_core.scoring import PoolLoad, WorkerState

_A = TypeVar("_A")
_B = TypeVar("_B")


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time, Unix epoch seconds."""
        ...


class IdGenerator(Protocol):
    def job_id(self) -> str:
        """A new, unique job id: letters, digits, '_' or '-' (it becomes part of keys)."""
        ...

    def trace_id(self) -> str:
        """A new W3C trace id: 32 lowercase hex digits, not all zero."""
        ...


class Lifecycle(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


PacketHandler = Callable[[BusPacket], Awaitable[None]]


class Subscription(Protocol):
    @property
    def subject(self) -> str: ...

    async def unsubscribe(self) -> None: ...


class Bus(Lifecycle, Protocol):
    async def publish(self, subject: str, packet: BusPacket) -> None:
        """Send ``packet`` on a literal subject (no wildcards)."""
        ...

    async def subscribe(
        self,
        subject: str,
        handler: PacketHandler,
        *,
        queue: str | None = None,
        max_in_flight: int = 1,
    ) -> Subscription:
        """Deliver packets on ``subject`` (wildcards allowed) to ``handler``.

        Subscribers that share a ``queue`` split the messages: each goes to one of them.
        A packet counts as handled (acknowledged) only when ``handler`` returns; one that
        raises is redelivered, up to the adapter's limit. At most ``max_in_flight`` handler
        calls run at once for this subscription (1: strictly in order).
        """
        ...


class PacketCodec(Protocol):
    """``BusPacket`` ⇄ wire bytes. On the hot path: every packet is encoded and decoded once."""

    def encode(self, packet: BusPacket) -> bytes: ...

    def decode(self, data: bytes) -> BusPacket:
        """Raise ``CodecError`` for bytes that are not a usable packet."""
        ...


class MemoryStore(Lifecycle, Protocol):
    """Payloads by pointer: contexts under ``ctx:<job_id>``, results under ``res:<job_id>``."""

    async def put_context(self, job_id: str, data: bytes) -> str:
        """Store a job's context; return its ``context_ptr``. ``PayloadTooLarge`` past the limit."""
        ...

    async def get_context(self, job_id: str) -> bytes | None: ...

    async def put_result(self, job_id: str, data: bytes) -> str:
        """Store a job's result; return its ``result_ptr``."""
        ...

    async def get_result(self, job_id: str) -> bytes | None: ...


StatusFilter = JobStatus | frozenset[JobStatus] | None
"""One status, any of a set of statuses, or every job."""


class JobStore(Lifecycle, Protocol):
    async def create(self, job: PendingJob) -> bool:
        """Save a new job. False, and nothing written, if the id is taken or was withdrawn."""
        ...

    async def create_or_get(self, job: PendingJob) -> Job:
        """Save a new job unless its tenant already has a job with the same non-empty
        ``spec.idempotency_key``; return the stored job: ``job`` itself when it was saved, the
        earlier job otherwise. Atomic: of concurrent calls with one key, exactly one saves.
        ``ValueError`` if the job id is taken (with no earlier job for the key)."""
        ...

    async def withdraw(self, job: PendingJob) -> bool:
        """Delete a job nothing has happened to yet (stored version == ``job.version``), with
        its idempotency key: the undo of a submit whose publish failed. False, and nothing
        deleted, if the job has moved on or is not there. The id stays taken (for a day, at
        least): a submit packet that reaches the bus after all is not adopted as a new job."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def transition(self, job: Job) -> bool:
        """Compare-and-set: save ``job`` only if the stored version is ``job.version - 1``.

        Of many concurrent transitions from one version, exactly one wins.
        """
        ...

    async def list_jobs(
        self,
        *,
        status: StatusFilter = None,
        tenant_id: str | None = None,
        topic: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """One page of jobs, newest first: by ``spec.created_at``, ties by ``job_id`` (both
        descending); only jobs in ``status`` (one, or any of a set), of ``tenant_id`` and with
        exactly ``topic``, for each filter given.

        Returns the page (at most ``limit`` jobs, ``limit`` ≥ 1) and the cursor of the next page,
        None when there is none. The cursor is opaque and belongs to the store that issued it;
        it marks a position, so jobs created after the first page never shift later pages.
        A page may hold fewer than ``limit`` jobs while a cursor is returned (a store may bound
        the work one call does on a filter its indexes don't cover); only a None cursor means
        the end. A page is not a snapshot: a job that changes status while the page is read may
        be left out of a filtered page, but every job returned matches every filter.
        ``ValueError`` for a bad ``limit`` or a cursor not in the form this store issues.
        """
        ...


class SafetyChecker(Lifecycle, Protocol):
    async def check(self, request: SafetyRequest) -> SafetyDecision:
        """ALLOW or DENY with a reason. Fails closed: an error is a DENY, never an exception."""
        ...


class WorkerRegistry(Lifecycle, Protocol):
    async def record(self, heartbeat: Heartbeat, seen_at: float) -> None: ...

    async def reserve(self, worker_id: str) -> None:
        """Count one more job on the worker until its next heartbeat or ``release``: a burst
        between heartbeats then spreads out instead of piling onto one worker."""
        ...

    async def release(self, worker_id: str) -> None:
        """One job of the worker has finished (never below zero)."""
        ...

    async def workers(self, pool: str | None = None) -> Sequence[WorkerState]:
        """The known workers, of one pool or all; may include stale ones (scoring skips them)."""
        ...


class Expectation(Protocol):
    async def wait(self, timeout_s: float) -> bool:
        """True once the job is announced ended, or at once while the watch is drained;
        False if ``timeout_s`` passed first."""
        ...


class JobWatch(Lifecycle, Protocol):
    """Wakes whoever waits on a job when it is announced ended (``sys.job.done``)."""

    def expect(self, job_id: str) -> AbstractContextManager[Expectation]:
        """Catch ``job_id``'s notice from the moment the block is entered."""
        ...

    def drain(self) -> int:
        """Wake every expectation now, and from now on let every ``wait`` return at once
        (the server is shutting down: nobody should wait any longer). Returns how many
        expectations were waiting (0 when drained again). Call it on the event loop the
        expectations wait on."""
        ...

    @property
    def draining(self) -> bool:
        """True once ``drain`` was called: a waiter should stop waiting."""
        ...


class Metrics(Protocol):
    """What Cortex counts and times: the production plan's counters by topic, latencies,
    pool capacity, and bus health. Durations are in seconds."""

    def inc_jobs_received(self, topic: str) -> None: ...

    def inc_jobs_dispatched(self, topic: str) -> None: ...

    def inc_jobs_completed(self, topic: str, status: str) -> None: ...

    def inc_safety_denied(self, topic: str) -> None: ...

    def inc_packets_dropped(self, reason: str) -> None:
        """Bad input on the bus that was logged and dropped (undecodable, unknown job, …)."""
        ...

    def inc_safety_decision(self, rule_id: str, decision: str) -> None:
        """One safety decision, by the rule that made it and what it decided."""
        ...

    def inc_bus_event(self, event: str) -> None:
        """A bus connection event: ``disconnected``, ``reconnected``, ``error``, ``closed``."""
        ...

    def observe_queue_wait(self, topic: str, seconds: float) -> None:
        """A job was dispatched after waiting this long (since submit, or since it was put
        back for a retry)."""
        ...

    def observe_run_time(self, topic: str, seconds: float) -> None:
        """An attempt's result arrived this long after its dispatch."""
        ...

    def observe_end_to_end(self, topic: str, status: str, seconds: float) -> None:
        """A job reached its terminal ``status`` this long after it was submitted."""
        ...

    def observe_execution(self, pool: str, status: str, seconds: float) -> None:
        """A worker ran one attempt of a job of ``pool`` for this long, ending ``status``."""
        ...

    def set_pool_loads(self, loads: Sequence[PoolLoad]) -> None:
        """The current state of every pool (a pool that is not in ``loads`` is gone)."""
        ...


class Concurrency(Protocol):
    """Waits on two things at the same time. The core has no event loop of its own, so the app
    says how (``AsyncioConcurrency``); ``OneAfterAnother`` (``cortex_core.concurrency``) is the
    same contract without one. A round trip made after an idle moment can cost a machine's
    wake-up as much as the work itself (docs/adr/0015), so two waits that overlap take one
    off a job's path."""

    async def both(self, first: Awaitable[_A], second: Awaitable[_B]) -> tuple[_A, _B]:
        """Both results once both are done. If either raised, the first one's error (in
        argument order) is raised, and only once both are done: nothing is left running."""
        ...
