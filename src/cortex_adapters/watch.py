"""``BusJobWatch``: the ``JobWatch`` port on any ``Bus``, listening on ``sys.job.done``.

The gateway (NATS) and ``cortex up`` (the in-memory bus) both use it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from cortex_core.bus_protocol import SUBJECT_JOB_DONE
from cortex_core.messages import BusPacket, JobResult
from cortex_core.ports import Bus, Metrics, Subscription

log = logging.getLogger("cortex.watch")


class _Expectation:
    """One waiter on one job: ``wait()`` returns True for each notice it catches, and at once
    once the watch is drained."""

    def __init__(self, watch: BusJobWatch, job_id: str) -> None:
        self._watch = watch
        self._job_id = job_id
        self.future = watch._arm(job_id)

    async def wait(self, timeout_s: float) -> bool:
        if not self.future.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.future), max(timeout_s, 0.0))
        if not self.future.done():
            return False
        self.future = self._watch._arm(self._job_id)  # ready for the next notice
        return True


class BusJobWatch:
    """Wakes the waiters of a job when ``sys.job.done`` names it."""

    def __init__(self, bus: Bus, metrics: Metrics | None = None) -> None:
        self._bus = bus
        self._metrics = metrics
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._subscription: Subscription | None = None
        self._draining = False

    async def start(self) -> None:
        # Many handlers at once: a notice does nothing slow, and a busy gateway gets many.
        self._subscription = await self._bus.subscribe(
            SUBJECT_JOB_DONE, self._on_done, max_in_flight=64
        )

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    @property
    def waiting(self) -> int:
        """Jobs someone is waiting on right now."""
        return len(self._waiters)

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self) -> int:
        """Wake every waiter, and let every later ``wait()`` return at once (see the port)."""
        self._draining = True
        woken = 0
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
                    woken += 1
        return woken

    @contextlib.contextmanager
    def expect(self, job_id: str) -> Iterator[_Expectation]:
        """Something to ``wait()`` on until ``job_id`` is announced ended; it catches notices
        from the moment the block is entered (so look at the store inside it)."""
        expectation = _Expectation(self, job_id)
        try:
            yield expectation
        finally:
            self._disarm(job_id, expectation.future)

    def _arm(self, job_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._draining:  # nothing to wait for: the expectation answers at once
            future.set_result(None)
        else:
            self._waiters.setdefault(job_id, set()).add(future)
        return future

    def _disarm(self, job_id: str, future: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[job_id]
        future.cancel()

    async def _on_done(self, packet: BusPacket) -> None:
        notice = packet.payload
        if not isinstance(notice, JobResult):
            if self._metrics is not None:
                self._metrics.inc_packets_dropped("unexpected_payload")
            log.warning(
                "packet_dropped",
                extra={
                    "component": "watch",
                    "reason": "unexpected_payload",
                    "payload_type": type(notice).__name__,
                },
            )
            return
        for future in self._waiters.pop(notice.job_id, ()):
            if not future.done():
                future.set_result(None)
