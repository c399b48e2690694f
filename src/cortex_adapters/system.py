"""The real clock and id source."""

from __future__ import annotations

import time
import uuid


class SystemClock:
    def now(self) -> float:
        return time.time()


class UuidIdGenerator:
    """Job ids and W3C trace ids from ``uuid4`` (122 random bits, 32 lowercase hex digits)."""

    def job_id(self) -> str:
        return uuid.uuid4().hex

    def trace_id(self) -> str:
        return uuid.uuid4().hex
