"""Small deterministic fakes for the core's Clock and IdGenerator."""

from __future__ import annotations

import itertools


class FakeClock:
    def __init__(self, start: float = 1_763_726_400.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class SequentialIds:
    def __init__(self) -> None:
        self._n = itertools.count(1)

    def job_id(self) -> str:
        return f"job-{next(self._n):06d}"

    def trace_id(self) -> str:
        return f"{next(self._n):032x}"
