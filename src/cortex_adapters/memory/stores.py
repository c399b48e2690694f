"""In-memory ``MemoryStore`` and ``JobStore``."""

from __future__ import annotations

import heapq

from cortex_core.errors import PayloadTooLarge
from cortex_core.jobs import Job, PendingJob
from cortex_core.messages import JobStatus
from cortex_core.pointers import context_key, context_ptr, result_key, result_ptr
from cortex_core.ports import Clock, StatusFilter

DEFAULT_TTL_S = 24 * 3600.0
DEFAULT_MAX_VALUE_BYTES = 1 << 20


class InMemoryMemoryStore:
    """Contexts and results by key, with a TTL and a size limit, like the Redis store."""

    def __init__(
        self,
        *,
        clock: Clock,
        ttl_s: float = DEFAULT_TTL_S,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._clock = clock
        self._ttl_s = ttl_s
        self._max = max_value_bytes
        self._data: dict[str, tuple[bytes, float]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()

    def _put(self, key: str, what: str, data: bytes) -> None:
        if len(data) > self._max:
            raise PayloadTooLarge(what, len(data), self._max)
        self._data[key] = (bytes(data), self._clock.now() + self._ttl_s)

    def _get(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        data, expires_at = entry
        if self._clock.now() >= expires_at:
            del self._data[key]
            return None
        return data

    async def put_context(self, job_id: str, data: bytes) -> str:
        self._put(context_key(job_id), "context", data)
        return context_ptr(job_id)

    async def get_context(self, job_id: str) -> bytes | None:
        return self._get(context_key(job_id))

    async def put_result(self, job_id: str, data: bytes) -> str:
        self._put(result_key(job_id), "result", data)
        return result_ptr(job_id)

    async def get_result(self, job_id: str) -> bytes | None:
        return self._get(result_key(job_id))


class InMemoryJobStore:
    """Jobs by id. Each call runs without awaiting, so compare-and-set is atomic on the loop
    and a listed page is a snapshot."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._keys: dict[tuple[str, str], str] = {}  # (tenant, idempotency key) -> job_id
        self._withdrawn: set[str] = set()  # ids that may never be created again

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create(self, job: PendingJob) -> bool:
        if job.job_id in self._jobs or job.job_id in self._withdrawn:
            return False
        self._jobs[job.job_id] = job
        return True

    async def create_or_get(self, job: PendingJob) -> Job:
        spec = job.spec
        key = (spec.tenant_id, spec.idempotency_key)
        if spec.idempotency_key and key in self._keys:
            return self._jobs[self._keys[key]]
        if job.job_id in self._jobs or job.job_id in self._withdrawn:
            raise ValueError(f"job id {job.job_id!r} is taken")
        self._jobs[job.job_id] = job
        if spec.idempotency_key:
            self._keys[key] = job.job_id
        return job

    async def withdraw(self, job: PendingJob) -> bool:
        current = self._jobs.get(job.job_id)
        if current is None or current.version != job.version:
            return False
        del self._jobs[job.job_id]
        self._withdrawn.add(job.job_id)
        key = (job.spec.tenant_id, job.spec.idempotency_key)
        if self._keys.get(key) == job.job_id:
            del self._keys[key]
        return True

    async def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def transition(self, job: Job) -> bool:
        current = self._jobs.get(job.job_id)
        if current is None or current.version != job.version - 1:
            return False
        self._jobs[job.job_id] = job
        return True

    async def list_jobs(
        self,
        *,
        status: StatusFilter = None,
        tenant_id: str | None = None,
        topic: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Newest first, as in the port: a scan of every job, fine for one process's jobs."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        after = None if cursor is None else _parse_cursor(cursor)
        statuses = None if status is None else _statuses(status)
        jobs = heapq.nlargest(
            limit + 1,
            (
                j
                for j in self._jobs.values()
                if (statuses is None or j.status in statuses)
                and (tenant_id is None or j.spec.tenant_id == tenant_id)
                and (topic is None or j.spec.topic == topic)
                and (after is None or _key(j) < after)
            ),
            key=_key,
        )
        page = jobs[:limit]
        return page, (_cursor(page[-1]) if len(jobs) > limit else None)


def _statuses(status: JobStatus | frozenset[JobStatus]) -> frozenset[JobStatus]:
    return frozenset({status}) if isinstance(status, JobStatus) else status


def _key(job: Job) -> tuple[float, str]:
    return (job.spec.created_at, job.job_id)


def _cursor(job: Job) -> str:
    """``<created_at as a hex float> <job_id>``: exact, and opaque to callers."""
    return f"{job.spec.created_at.hex()} {job.job_id}"


def _parse_cursor(cursor: str) -> tuple[float, str]:
    problem = f"invalid cursor {cursor!r}: not in the form this job store issues"
    created_at, _, job_id = cursor.partition(" ")
    try:
        at = float.fromhex(created_at)
    except ValueError:
        raise ValueError(problem) from None
    if not job_id:
        raise ValueError(problem)
    return (at, job_id)
