"""The real clock, id source and concurrency."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import TypeVar

from cortex_adapters.telemetry.tracing import current_trace_id


class SystemClock:
    def now(self) -> float:
        return time.time()


class UuidIdGenerator:
    """Job ids and W3C trace ids from ``uuid4`` (122 random bits, 32 lowercase hex digits).

    A job submitted while a span is active (the gateway's request span, with tracing on or a
    caller's ``traceparent``) takes that span's trace id: the job's trace is the request's.
    """

    def job_id(self) -> str:
        return uuid.uuid4().hex

    def trace_id(self) -> str:
        return current_trace_id() or uuid.uuid4().hex


_A = TypeVar("_A")
_B = TypeVar("_B")


class AsyncioConcurrency:
    """The ``Concurrency`` port on the running event loop: both awaitables at once."""

    async def both(self, first: Awaitable[_A], second: Awaitable[_B]) -> tuple[_A, _B]:
        a, b = await asyncio.gather(first, second, return_exceptions=True)
        if isinstance(a, BaseException):
            raise a
        if isinstance(b, BaseException):
            raise b
        return a, b
