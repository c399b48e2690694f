"""In-memory ``Bus`` with NATS semantics, for one process.

* Subjects and wildcards as in NATS (``*`` one token, ``>`` the rest).
* A plain subscription gets every matching packet; subscriptions sharing a queue group on the
  same subject split the packets between them (round robin).
* Each subscription delivers in order, one packet at a time, on its own task (or, with
  ``max_in_flight=n``, on n tasks sharing its inbox): ``publish`` never runs a handler inline.
* A handler that raises gets the packet again, up to ``max_deliver`` deliveries, then the
  packet is dropped, logged and counted. With ``strict=True`` (tests) ``close()`` re-raises
  the first handler error, so a failing handler can't go unnoticed.
* With a ``codec``, packets cross the bus as wire bytes, exactly as they would over NATS.
* On the durable subjects a packet whose ``dedup_id`` was published in the last
  ``dedup_window_s`` is dropped, as JetStream's ``Nats-Msg-Id`` window does.
* ``close()`` drains: everything already published is handled before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from cortex_core.bus_protocol import is_durable_subject, is_valid_topic, subject_matches
from cortex_core.errors import CodecError
from cortex_core.messages import BusPacket, dedup_id
from cortex_core.ports import Metrics, PacketCodec, PacketHandler

log = logging.getLogger("cortex.bus")

_Item = tuple[BusPacket | bytes, int]


class BusClosed(RuntimeError):
    pass


@dataclass(eq=False)
class _Subscription:
    bus: InMemoryBus
    subject: str
    queue_group: str | None
    handler: PacketHandler
    inbox: asyncio.Queue[_Item] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def unsubscribe(self) -> None:
        """Stop receiving; packets already delivered to this subscription are still handled."""
        if self.bus._remove(self):
            await self.inbox.join()
            for task in self.tasks:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class InMemoryBus:
    def __init__(
        self,
        *,
        codec: PacketCodec | None = None,
        metrics: Metrics | None = None,
        max_deliver: int = 5,
        strict: bool = False,
        dedup_window_s: float = 120.0,
    ) -> None:
        if max_deliver < 1:
            raise ValueError("max_deliver must be at least 1")
        self._codec = codec
        self._metrics = metrics
        self._max_deliver = max_deliver
        self._strict = strict
        self._subs: list[_Subscription] = []
        self._rr = itertools.count()
        self._closed = False
        self._dedup_window_s = dedup_window_s
        self._seen: OrderedDict[str, float] = OrderedDict()  # dedup id -> when (monotonic)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.errors: list[BaseException] = []
        """Every exception a handler raised, in order (redelivered ones included)."""

    async def start(self) -> None:
        self._closed = False

    async def publish(self, subject: str, packet: BusPacket) -> None:
        if self._closed:
            raise BusClosed("the bus is closed")
        if not is_valid_topic(subject):
            raise ValueError(f"cannot publish to {subject!r}: not a literal subject")
        if self._is_duplicate(subject, packet):
            return
        item: BusPacket | bytes = self._codec.encode(packet) if self._codec else packet
        groups: dict[tuple[str, str], list[_Subscription]] = {}
        for sub in self._subs:
            if not subject_matches(sub.subject, subject):
                continue
            if sub.queue_group is None:
                self._enqueue(sub, item, 0)
            else:
                groups.setdefault((sub.subject, sub.queue_group), []).append(sub)
        for members in groups.values():
            self._enqueue(members[next(self._rr) % len(members)], item, 0)

    def _is_duplicate(self, subject: str, packet: BusPacket) -> bool:
        mid = dedup_id(packet, subject) if is_durable_subject(subject) else None
        if mid is None:
            return False
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) < now - self._dedup_window_s:
            self._seen.popitem(last=False)
        if mid in self._seen:
            return True
        self._seen[mid] = now
        return False

    def _enqueue(self, sub: _Subscription, item: BusPacket | bytes, deliveries: int) -> None:
        self._in_flight += 1
        self._idle.clear()
        sub.inbox.put_nowait((item, deliveries))

    async def settle(self) -> None:
        """Wait until every packet published so far, and every packet their handlers
        published in turn, has been handled. For tests and orderly shutdown."""
        await self._idle.wait()

    async def subscribe(
        self,
        subject: str,
        handler: PacketHandler,
        *,
        queue: str | None = None,
        max_in_flight: int = 1,
    ) -> _Subscription:
        if self._closed:
            raise BusClosed("the bus is closed")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        sub = _Subscription(self, subject, queue, handler)
        sub.tasks = [
            asyncio.create_task(self._consume(sub), name=f"bus:{subject}:{i}")
            for i in range(max_in_flight)
        ]
        self._subs.append(sub)
        return sub

    def _remove(self, sub: _Subscription) -> bool:
        if sub in self._subs:
            self._subs.remove(sub)
            return True
        return False

    async def _consume(self, sub: _Subscription) -> None:
        while True:
            item, deliveries = await sub.inbox.get()
            try:
                await self._deliver(sub, item, deliveries)
            finally:
                sub.inbox.task_done()
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()

    async def _deliver(self, sub: _Subscription, item: BusPacket | bytes, deliveries: int) -> None:
        if isinstance(item, bytes):
            assert self._codec is not None
            try:
                packet = self._codec.decode(item)
            except CodecError as exc:
                self._drop("undecodable", sub, error=str(exc))
                return
        else:
            packet = item
        try:
            await sub.handler(packet)
        except Exception as exc:
            self.errors.append(exc)
            if deliveries + 1 < self._max_deliver:
                log.warning(
                    "handler_failed_redelivering",
                    extra={
                        "component": "bus",
                        "subject": sub.subject,
                        "trace_id": packet.trace_id,
                        "delivery": deliveries + 1,
                        "error": repr(exc),
                    },
                )
                self._enqueue(sub, item, deliveries + 1)
            else:
                log.exception(
                    "handler_failed_dropping",
                    extra={"component": "bus", "subject": sub.subject, "trace_id": packet.trace_id},
                )
                self._drop("handler_failed", sub, error=repr(exc))

    def _drop(self, reason: str, sub: _Subscription, **fields: object) -> None:
        if self._metrics is not None:
            self._metrics.inc_packets_dropped(reason)
        log.warning(
            "packet_dropped",
            extra={"component": "bus", "reason": reason, "subject": sub.subject, **fields},
        )

    async def close(self) -> None:
        """Drain every subscription, then stop. Idempotent."""
        self._closed = True
        for sub in list(self._subs):
            await sub.unsubscribe()
        if self._strict and self.errors:
            raise self.errors[0]
