"""A circuit breaker for calls to one remote service, on a monotonic clock.

* **closed**: calls go through; ``failure_threshold`` consecutive failures open it.
* **open**: calls are refused at once, with no network call, for ``reset_after_s``.
* **half-open**: after that, exactly one call (the probe) goes through and the others are
  still refused; the probe's success closes the breaker, its failure opens it again.

Any success closes it and resets the count. Every ``acquire()`` that returned True must be
followed by ``record_success``, ``record_failure`` or (cancelled) ``abandon``. Single event
loop, no locks: none of them awaits.
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self, *, failure_threshold: int, reset_after_s: float, clock: Callable[[], float]
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_after_s < 0:
            raise ValueError("reset_after_s must not be negative")
        self._threshold = failure_threshold
        self._reset_after_s = reset_after_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def acquire(self) -> bool:
        """May a call go through now? True for a half-open probe, which must be recorded."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self._reset_after_s:
                return False
            self._state = BreakerState.HALF_OPEN
        if self._probing:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probing = False

    def abandon(self) -> None:
        """The call was cancelled, so it says nothing about the service: let another probe."""
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
            self._probing = False
