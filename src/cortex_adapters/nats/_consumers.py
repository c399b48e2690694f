"""The receiving side of ``NatsBus``: one subscription, over JetStream, core NATS, or both.

* ``JetStreamPart``: a pull consumer and a fetch loop. A message is acked only after its
  handler returned; a raising handler gets a delayed nak (redelivery) until the last allowed
  delivery, when the message is termed, logged and counted. Running handlers keep their
  messages alive with in-progress acks. Undecodable data is termed, logged and counted.
* ``CorePart``: a plain (or queue) subscription; at most once, so a raising handler is logged
  and counted, never redelivered.

Each part runs at most ``max_in_flight`` handlers at once, in order when that is 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as CoreSubscription
from nats.js import JetStreamContext, api

from cortex_adapters.nats._names import durable_consumer_name, ephemeral_consumer_name
from cortex_adapters.telemetry.tracing import consuming
from cortex_core.bus_protocol import is_durable_subject
from cortex_core.errors import CodecError
from cortex_core.messages import BusPacket
from cortex_core.ports import Metrics, PacketCodec, PacketHandler

log = logging.getLogger("cortex.bus")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerSettings:
    ack_wait_s: float
    max_deliver: int
    nak_delay_s: float
    fetch_timeout_s: float
    ephemeral_inactive_s: float
    fetch_batch: int = 1


@dataclass(slots=True, kw_only=True)
class Wire:
    """What a subscription needs from its bus: the connection and how to report."""

    nc: NatsClient
    js: JetStreamContext
    codec: PacketCodec
    metrics: Metrics
    prefix: str
    stream: str | None
    client_name: str
    connected: asyncio.Event
    settings: ConsumerSettings

    def unprefixed(self, wire_subject: str) -> str:
        return wire_subject[len(self.prefix) :]

    def drop(self, reason: str, subject: str, **fields: object) -> None:
        self.metrics.inc_packets_dropped(reason)
        log.warning(
            "packet_dropped",
            extra={"component": "bus", "reason": reason, "subject": subject, **fields},
        )


class _Slots:
    """At most ``n`` handler calls at once; tracks the spawned ones so a stop can await them.

    A caller takes a slot *before* it fetches, so a fetched message starts at once (its
    ack_wait is already running) and is never left waiting for a slot.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._free = asyncio.Semaphore(n)
        self._tasks: set[asyncio.Task[None]] = set()

    async def acquire(self) -> None:
        await self._free.acquire()

    async def take_free(self, most: int) -> int:
        """Take up to ``most`` more slots that are free right now (never waits for one)."""
        taken = 0
        while taken < most and not self._free.locked():
            await self._free.acquire()  # free: returns at once
            taken += 1
        return taken

    def release(self) -> None:
        self._free.release()

    async def run_acquired(self, call: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``call`` in the slot already taken: inline when n == 1 (strict order), else in
        a task that frees the slot when done."""
        if self.n == 1:
            try:
                await call
            finally:
                self.release()
            return
        task = asyncio.create_task(call, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("handler_task_crashed", exc_info=exc, extra={"component": "bus"})

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class JetStreamPart:
    """A subscription's JetStream side: a pull consumer on the stream, and its fetch loop.

    With a ``queue`` the consumer is durable and named after (queue, subject), so every member
    of the group, in any process, pulls from the same consumer and each message goes to one
    of them; it outlives its subscribers. Without one the consumer is ephemeral: it starts at
    the next message, is deleted by ``stop()``, and expires on the server if this process dies.
    """

    def __init__(
        self,
        wire: Wire,
        *,
        subject: str,
        handler: PacketHandler,
        queue: str | None,
        max_in_flight: int,
    ) -> None:
        assert wire.stream is not None
        self._wire = wire
        self._stream = wire.stream
        self.subject = subject
        self._filter = wire.prefix + subject
        self._handler = handler
        self._queue = queue
        self._slots = _Slots(max_in_flight)
        self.consumer = (
            durable_consumer_name(queue, subject)
            if queue is not None
            else ephemeral_consumer_name(wire.client_name, subject)
        )
        self._psub: JetStreamContext.PullSubscription | None = None
        self._loop: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._fetching: asyncio.Task[list[Msg]] | None = None
        self._in_flight: dict[int, Msg] = {}
        self._stopping = False
        self._failures = 0

    def _config(self) -> api.ConsumerConfig:
        s = self._wire.settings
        durable = self._queue is not None
        return api.ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer if durable else None,
            description=(
                f"cortex queue {self._queue} on {self.subject}"
                if durable
                else f"cortex fan-out on {self.subject}"
            ),
            # A durable group consumer also gets what was stored before it first existed; a
            # fan-out subscriber, like a core NATS one, gets what is published after it.
            deliver_policy=api.DeliverPolicy.ALL if durable else api.DeliverPolicy.NEW,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait_s,
            max_deliver=s.max_deliver,
            filter_subject=self._filter,
            inactive_threshold=None if durable else s.ephemeral_inactive_s,
        )

    async def start(self) -> None:
        # Create or update: members of a group converge on the latest ack_wait/max_deliver.
        await self._wire.js.add_consumer(self._stream, config=self._config())
        self._psub = await self._wire.js.pull_subscribe_bind(
            consumer=self.consumer, stream=self._stream
        )
        self._loop = asyncio.create_task(self._run(), name=f"bus-fetch:{self.subject}")
        self._keepalive = asyncio.create_task(
            self._keep_alive(), name=f"bus-in-progress:{self.subject}"
        )

    async def recover(self) -> None:
        """After a reconnect: make sure the consumer still exists, then fetch afresh."""
        await self._ensure_consumer()
        self.kick()

    def kick(self) -> None:
        """Abandon the pending fetch (its pull request died with the old connection)."""
        if self._fetching is not None:
            self._fetching.cancel()

    async def _ensure_consumer(self) -> None:
        try:
            await self._wire.js.consumer_info(self._stream, self.consumer)
        except nats.js.errors.NotFoundError:
            await self._wire.js.add_consumer(self._stream, config=self._config())
            self._wire.metrics.inc_bus_event("consumer_recreated")
            log.warning(
                "consumer_recreated",
                extra={"component": "bus", "stream": self._stream, "consumer": self.consumer},
            )

    async def _next(self, backoff_s: float, batch: int) -> list[Msg]:
        if backoff_s:
            await asyncio.sleep(backoff_s)
        await self._wire.connected.wait()  # no pull requests piling up while reconnecting
        assert self._psub is not None
        return await self._psub.fetch(batch, timeout=self._wire.settings.fetch_timeout_s)

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            if self._stopping:
                self._slots.release()
                return
            # With fetch_batch > 1, one pull asks for as many messages as there are free slots
            # (what is stored comes at once; an idle pull waits for the first): a burst costs a
            # round trip per batch, not per message. The pull may go on delivering after it
            # returned, into the client's queue, until it expires; such a message waits there
            # for a slot with its ack_wait running, so batching is for short handlers only.
            batch = 1 + await self._slots.take_free(self._wire.settings.fetch_batch - 1)
            msgs, go_on = await self._fetch(batch)
            for _ in range(batch - len(msgs)):
                self._slots.release()
            for msg in msgs:
                await self._slots.run_acquired(
                    self._process(msg), name=f"bus-handle:{self.subject}"
                )
            if not go_on:
                return

    async def _fetch(self, batch: int) -> tuple[list[Msg], bool]:
        """Up to ``batch`` messages, or none (idle, kicked, failed); and whether the loop may
        go on."""
        backoff_s = min(0.1 * 2 ** (self._failures - 1), 5.0) if self._failures else 0.0
        fetch = asyncio.create_task(self._next(backoff_s, batch), name=f"bus-fetch:{self.subject}")
        self._fetching = fetch
        try:
            await asyncio.wait({fetch})
        finally:
            self._fetching = None
            if not fetch.done():
                fetch.cancel()
        if fetch.cancelled():
            return [], True  # stop() or kick(): the loop looks at _stopping again
        exc = fetch.exception()
        if exc is not None:
            return [], await self._fetch_failed(exc)
        self._failures = 0
        return fetch.result(), True

    async def _fetch_failed(self, exc: BaseException) -> bool:
        """Handle a failed fetch; False when the loop must end (the connection is gone)."""
        if isinstance(exc, asyncio.TimeoutError):
            return True  # idle: no message within fetch_timeout_s
        if isinstance(exc, nats.errors.ConnectionClosedError) or self._wire.nc.is_closed:
            if not self._stopping:
                log.error(
                    "consumer_stopped",
                    extra={
                        "component": "bus",
                        "consumer": self.consumer,
                        "reason": "connection closed",
                    },
                )
            return False
        self._failures += 1
        self._wire.metrics.inc_bus_event("fetch_error")
        log.warning(
            "fetch_failed",
            extra={
                "component": "bus",
                "consumer": self.consumer,
                "subject": self.subject,
                "failures": self._failures,
                "error": repr(exc),
            },
        )
        if isinstance(exc, nats.js.errors.APIError | nats.errors.NoRespondersError):
            try:  # 503/404: the consumer (or JetStream) is gone; bring the consumer back
                await self._ensure_consumer()
            except Exception as again:
                log.warning(
                    "consumer_recreate_failed",
                    extra={"component": "bus", "consumer": self.consumer, "error": repr(again)},
                )
        return True

    async def _process(self, msg: Msg) -> None:
        subject = self._wire.unprefixed(msg.subject)
        self._in_flight[id(msg)] = msg
        try:
            try:
                packet = self._wire.codec.decode(msg.data)
            except CodecError as exc:
                await self._settle(msg, "term")
                self._wire.drop(
                    "undecodable",
                    subject,
                    error=str(exc),
                    stream_seq=msg.metadata.sequence.stream,
                    consumer=self.consumer,
                )
                return
            try:
                with consuming(subject, packet, msg.headers):
                    await self._handler(packet)
            except Exception as exc:
                await self._handler_failed(msg, packet, subject, exc)
                return
            await self._settle(msg, "ack")
        finally:
            del self._in_flight[id(msg)]

    async def _handler_failed(
        self, msg: Msg, packet: BusPacket, subject: str, exc: Exception
    ) -> None:
        delivered = msg.metadata.num_delivered or 1
        settings = self._wire.settings
        fields = {
            "component": "bus",
            "subject": subject,
            "trace_id": packet.trace_id,
            "consumer": self.consumer,
            "delivery": delivered,
        }
        if delivered < settings.max_deliver:
            log.warning("handler_failed_redelivering", extra={**fields, "error": repr(exc)})
            await self._settle(msg, "nak", delay_s=settings.nak_delay_s * delivered)
            return
        log.error("handler_failed_dropping", exc_info=exc, extra=fields)
        await self._settle(msg, "term")
        self._wire.drop("handler_failed", subject, error=repr(exc), trace_id=packet.trace_id)

    async def _settle(
        self, msg: Msg, action: Literal["ack", "nak", "term"], *, delay_s: float = 0.0
    ) -> None:
        """Ack, nak or term. A failure is logged and counted: the server redelivers the message
        after ``ack_wait`` (at-least-once), so nothing is lost, only repeated."""
        try:
            if action == "ack":
                await msg.ack()
            elif action == "nak":
                await msg.nak(delay=delay_s or None)
            else:
                await msg.term()
        except Exception as exc:
            self._wire.metrics.inc_bus_event("ack_failed")
            log.warning(
                "ack_failed",
                extra={
                    "component": "bus",
                    "action": action,
                    "consumer": self.consumer,
                    "error": repr(exc),
                },
            )

    async def _keep_alive(self) -> None:
        """In-progress acks every ack_wait/3, so a live, long handler is never redelivered."""
        interval = self._wire.settings.ack_wait_s / 3
        while True:
            await asyncio.sleep(interval)
            if self._wire.nc.is_closed:
                return  # nobody to tell: the server redelivers after ack_wait
            for msg in list(self._in_flight.values()):
                try:
                    await msg.in_progress()
                except Exception as exc:
                    log.warning(
                        "in_progress_failed",
                        extra={"component": "bus", "consumer": self.consumer, "error": repr(exc)},
                    )

    async def stop(self) -> None:
        """Stop fetching, let running handlers finish (and ack), then release the consumer."""
        self._stopping = True
        self.kick()
        if self._loop is not None:
            await self._loop  # includes an inline (max_in_flight=1) handler still running
        if self._psub is not None and not self._wire.nc.is_closed:
            # Drop the pull request's inbox now: the server then forgets the pending request
            # instead of handing it a message nobody will take.
            await _quietly("pull_unsubscribe_failed", self._psub.unsubscribe())
        await self._slots.wait_idle()
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        if self._queue is None and self._wire.nc.is_connected:
            # (Not connected: the server drops it after ephemeral_inactive_s on its own.)
            await _quietly(
                "consumer_delete_failed",
                self._wire.js.delete_consumer(self._stream, self.consumer),
            )


class CorePart:
    """A subscription's core NATS side: at most once, no acks, no redelivery.

    With ``skip_durable`` it ignores durable subjects, which the JetStream part of the same
    subscription delivers (a pattern such as ``worker.>`` spans both).
    """

    def __init__(
        self,
        wire: Wire,
        *,
        subject: str,
        handler: PacketHandler,
        queue: str | None,
        max_in_flight: int,
        skip_durable: bool,
    ) -> None:
        self._wire = wire
        self.subject = subject
        self._handler = handler
        self._queue = queue
        self._slots = _Slots(max_in_flight)
        self._skip_durable = skip_durable
        self._sub: CoreSubscription | None = None

    async def start(self) -> None:
        self._sub = await self._wire.nc.subscribe(
            self._wire.prefix + self.subject, queue=self._queue or "", cb=self._on_msg
        )

    async def _on_msg(self, msg: Msg) -> None:
        subject = self._wire.unprefixed(msg.subject)
        if self._skip_durable and is_durable_subject(subject):
            return
        await self._slots.acquire()
        await self._slots.run_acquired(
            self._process(subject, msg.data, msg.headers), name=f"bus-handle:{subject}"
        )

    async def _process(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        try:
            packet = self._wire.codec.decode(data)
        except CodecError as exc:
            self._wire.drop("undecodable", subject, error=str(exc))
            return
        try:
            with consuming(subject, packet, headers):
                await self._handler(packet)
        except Exception as exc:
            log.error(
                "handler_failed_dropping",
                exc_info=exc,
                extra={"component": "bus", "subject": subject, "trace_id": packet.trace_id},
            )
            self._wire.drop("handler_failed", subject, error=repr(exc), trace_id=packet.trace_id)

    async def stop(self) -> None:
        """Stop receiving, handle what already arrived, wait for running handlers."""
        sub, nc = self._sub, self._wire.nc
        if sub is not None and not nc.is_closed:
            # Drain (handle what already arrived) when connected; otherwise just let go.
            drained = nc.is_connected and await _quietly(
                "drain_failed",
                sub.drain(),  # type: ignore[no-untyped-call]
            )
            if not drained:
                await _quietly("unsubscribe_failed", sub.unsubscribe())
        await self._slots.wait_idle()


@dataclass(eq=False)
class NatsSubscription:
    """What ``NatsBus.subscribe`` returns: one or two parts, stopped together."""

    subject: str
    parts: list[JetStreamPart | CorePart]
    on_close: Callable[[NatsSubscription], None]
    _stopped: bool = field(default=False, init=False)

    @property
    def consumers(self) -> tuple[str, ...]:
        """Names of the JetStream consumers behind this subscription (none if core only)."""
        return tuple(p.consumer for p in self.parts if isinstance(p, JetStreamPart))

    async def unsubscribe(self) -> None:
        """Stop receiving; handlers already running finish (and ack) first. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.on_close(self)
        await asyncio.gather(*(part.stop() for part in self.parts))


async def _quietly(event: str, call: Awaitable[object]) -> bool:
    """Await a best-effort cleanup call; log (never raise) a failure. True on success."""
    try:
        await call
    except Exception as exc:
        log.warning(event, extra={"component": "bus", "error": repr(exc)})
        return False
    return True
