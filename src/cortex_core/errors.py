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
