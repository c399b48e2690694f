"""Errors the core raises. Adapters translate them into HTTP statuses, gRPC codes or bus drops."""

from __future__ import annotations


class CortexError(Exception):
    """Base class of every error the core raises on purpose."""


class JobNotFound(CortexError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class ResultNotReady(CortexError):
    """The job exists but has no result to give (yet, or ever)."""

    def __init__(self, job_id: str, status: str, detail: str) -> None:
        super().__init__(detail)
        self.job_id = job_id
        self.status = status


class PointerError(CortexError):
    """A ``context_ptr``/``result_ptr`` is not the one this job may follow."""


class PayloadTooLarge(CortexError):
    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class CodecError(CortexError):
    """Bytes that are not a valid ``BusPacket`` (undecodable, no payload, wrong version)."""


class ConfigError(CortexError):
    """A configuration document is invalid. The message names the field (``a.b[2].c``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class InvalidField(CortexError):
    """A request field breaks a rule or a limit. ``field`` names it (``labels.env``), ``limit``
    is the limit it broke, when there is one. 400 over REST (413 for sizes), INVALID_ARGUMENT
    over gRPC."""

    def __init__(self, field: str, message: str, *, limit: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.limit = limit


class JobConflict(CortexError):
    """The job is in a state that does not allow the action (cancel a finished job, approve a
    job nobody asked about). 409 over REST, FAILED_PRECONDITION over gRPC."""

    def __init__(self, job_id: str, status: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status


class Unauthenticated(CortexError):
    """No API key, or one that belongs to no tenant. 401 / UNAUTHENTICATED."""


class RateLimited(CortexError):
    """The API key used up its request budget. 429 with ``Retry-After`` / RESOURCE_EXHAUSTED."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limit exceeded: retry after {retry_after_s:.2f} s")
        self.retry_after_s = retry_after_s


class Unavailable(CortexError):
    """A dependency (the bus, the job store, the memory fabric) is down: the request was not
    carried out and left nothing half-written. 503 / UNAVAILABLE."""

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency
