"""``Bus`` over NATS: JetStream for the job subjects (at least once), core NATS for the rest.

Guarantees (``durable=True``, the default; docs/adr/0005 and BUS_PROTOCOL.md section 4):

* **Job subjects are stored.** ``sys.job.submit``, ``sys.job.result``, ``sys.job.cancel``,
  ``job.>`` and ``worker.*.jobs`` (``DURABLE_SUBJECTS``) go to one JetStream stream per
  ``subject_prefix``. ``publish`` returns once the stream has stored the packet, with
  ``Nats-Msg-Id = dedup_id(packet, subject)``, so a repeat within the duplicate window is
  stored once.
* **At least once, acked after the handler.** A message is acked only when its handler
  returned. A handler that raises gets the message again (nak with a growing delay) until
  ``max_deliver`` deliveries, after which it is termed, logged and counted
  (``packets_dropped{reason="handler_failed"}``). A subscriber that dies mid-message never
  acks it, and JetStream hands it to another member after ``ack_wait_s``. A long handler
  sends in-progress acks every ``ack_wait_s / 3``, so it is not redelivered while it runs.
* **Queue groups span processes.** Subscribers sharing ``queue`` on a subject pull from one
  durable consumer named after (queue, subject): each message goes to one of them, and what
  is stored while none runs is delivered when one comes back. A subscription without a queue
  has its own ephemeral consumer: every subscriber gets every packet published after it
  subscribed.
* **Everything else is at most once**: heartbeats (``sys.heartbeat.*``) and any subject not
  in ``DURABLE_SUBJECTS`` use core NATS. ``durable=False`` uses core NATS for every subject:
  no storage, no redelivery; a raising handler is logged and counted.
* **Order.** With ``max_in_flight=1`` a subscription handles one packet at a time, in stream
  (publish) order; a redelivered packet may be overtaken by later ones.

Every publish carries a W3C ``traceparent`` header when the packet has a valid trace id, and
every publish and handled packet is a span (``cortex_adapters.telemetry.tracing``).
``subject_prefix`` namespaces subjects, the stream and its consumers, so several deployments
or test runs can share one server. The connection reconnects forever with jittered
exponential backoff; every connection event is logged and counted (``inc_bus_event``).
``close()`` stops fetching, lets running handlers finish and ack, then drains the connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.client import Server
from nats.js import JetStreamContext, api

from cortex_adapters.nats._consumers import (
    ConsumerSettings,
    CorePart,
    JetStreamPart,
    NatsSubscription,
    Wire,
)
from cortex_adapters.nats._names import check_prefix, redact_url, stream_name
from cortex_adapters.telemetry.tracing import producing
from cortex_core.bus_protocol import (
    DURABLE_SUBJECTS,
    durable_coverage,
    is_durable_subject,
    is_valid_topic,
)
from cortex_core.messages import BusPacket, dedup_id
from cortex_core.ports import Metrics, PacketCodec, PacketHandler

log = logging.getLogger("cortex.bus")

MSG_ID_HEADER = "Nats-Msg-Id"


class BusClosed(RuntimeError):
    """``publish`` or ``subscribe`` on a bus that was closed (or never started)."""


class BusConnectError(ConnectionError):
    """``start()`` could not reach NATS (or JetStream) at the configured URL."""


class BusPublishError(RuntimeError):
    """JetStream did not confirm a durable publish within ``publish_timeout_s``."""


_RETRYABLE_PUBLISH = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)


_NO_JETSTREAM = (
    TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
)


class NatsBus:
    """The ``Bus`` port over NATS (see the module docstring for the guarantees).

    Nothing connects until ``start()``. Options beyond the port's:

    * ``ack_wait_s``: how long JetStream waits for an ack before redelivering;
      ``max_deliver``: deliveries per message before it is dropped (handler errors and
      missed acks both count); ``nak_delay_s``: redelivery delay after a handler error,
      times the delivery number.
    * ``stream_max_age_s`` / ``stream_max_bytes`` / ``duplicate_window_s``: the stream's
      limits (retention is by limits, not by acks: docs/adr/0005).
    * ``connect_timeout_s``: ``start()`` gives up after this long; ``reconnect_wait_s`` /
      ``reconnect_wait_max_s``: first and largest backoff between reconnect attempts
      (jittered, doubling; attempts never stop).
    * ``publish_timeout_s``: a durable publish retries (safely: ``Nats-Msg-Id``) until the
      stream confirms it or this runs out; ``fetch_timeout_s``: how long one idle pull
      request lasts; ``ephemeral_inactive_s``: how long the server keeps a fan-out consumer
      whose process went away.
    * ``fetch_batch``: the most messages one pull asks for (never more than the subscription's
      free slots). 1, the default, pulls one at a time. More is for short handlers only, such
      as the scheduler's: a batched pull may go on delivering into the client's queue after it
      returned, and such a message waits there for a slot with its ``ack_wait`` running and
      no in-progress acks (docs/adr/0013).
    """

    def __init__(
        self,
        *,
        url: str,
        name: str,
        codec: PacketCodec,
        metrics: Metrics,
        durable: bool = True,
        subject_prefix: str = "",
        ack_wait_s: float = 30.0,
        max_deliver: int = 5,
        nak_delay_s: float = 0.25,
        stream_max_age_s: float = 3600.0,
        stream_max_bytes: int = 1 << 30,
        stream_replicas: int = 1,
        duplicate_window_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        reconnect_wait_s: float = 0.25,
        reconnect_wait_max_s: float = 5.0,
        ping_interval_s: int = 20,
        max_outstanding_pings: int = 3,
        publish_timeout_s: float = 5.0,
        fetch_timeout_s: float = 5.0,
        ephemeral_inactive_s: float = 120.0,
        fetch_batch: int = 1,
        drain_timeout_s: int = 10,
    ) -> None:
        if max_deliver < 1:
            raise ValueError("max_deliver must be at least 1")
        if ack_wait_s <= 0 or fetch_timeout_s <= 0 or publish_timeout_s <= 0:
            raise ValueError("ack_wait_s, fetch_timeout_s and publish_timeout_s must be > 0")
        self._url = url
        self._name = name
        self._codec = codec
        self._metrics = metrics
        self._durable = durable
        self._prefix = check_prefix(subject_prefix)
        self._stream = stream_name(self._prefix) if durable else None
        self._stream_limits = (stream_max_age_s, stream_max_bytes, stream_replicas)
        self._duplicate_window_s = duplicate_window_s
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_wait = (reconnect_wait_s, reconnect_wait_max_s)
        self._pings = (ping_interval_s, max_outstanding_pings)
        self._publish_timeout_s = publish_timeout_s
        self._drain_timeout_s = drain_timeout_s
        self._settings = ConsumerSettings(
            ack_wait_s=ack_wait_s,
            max_deliver=max_deliver,
            nak_delay_s=nak_delay_s,
            fetch_timeout_s=fetch_timeout_s,
            ephemeral_inactive_s=ephemeral_inactive_s,
            fetch_batch=max(1, fetch_batch),
        )
        self._nc: NatsClient | None = None
        self._wire: Wire | None = None
        self._connected = asyncio.Event()
        self._subs: list[NatsSubscription] = []
        self._resync: asyncio.Task[None] | None = None
        self._closing = False
        self._last_error: Exception | None = None

    # -- introspection --------------------------------------------------------------------

    @property
    def stream_name(self) -> str | None:
        """The JetStream stream this bus writes to; None with ``durable=False``."""
        return self._stream

    @property
    def subject_prefix(self) -> str:
        return self._prefix

    @property
    def connection(self) -> NatsClient:
        """The underlying nats-py client, for diagnostics (and tests that cut it)."""
        if self._nc is None:
            raise BusClosed("the bus is not started")
        return self._nc

    async def ping(self, timeout_s: int = 2) -> None:
        """Round trip to the server (a PING/PONG flush); raises if it does not answer in time,
        or the bus is not connected. For readiness probes."""
        nc = self.connection
        if not nc.is_connected:
            raise BusClosed(f"not connected to {redact_url(self._url)}")
        await nc.flush(timeout=timeout_s)

    def _fields(self, event: str, **extra: object) -> dict[str, object]:
        return {
            "component": "bus",
            "event": event,
            "client_name": self._name,
            "url": redact_url(self._url),
            **extra,
        }

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (and, when durable, create or update the stream). Idempotent.

        Raises ``BusConnectError`` naming the URL if NATS is not reachable within
        ``connect_timeout_s``, or if JetStream is not enabled there while ``durable``.
        """
        if self._closing:
            raise BusClosed("a closed NatsBus cannot be started again; make a new one")
        if self._nc is not None:
            return
        nc = NatsClient()
        ping_interval, max_pings = self._pings
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await nc.connect(
                    servers=[self._url],
                    name=self._name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,  # never give up: the broker comes back
                    reconnect_to_server_handler=self._next_server,
                    connect_timeout=max(1, round(self._connect_timeout_s)),
                    reconnect_time_wait=1,  # only paces the first connect's attempts
                    ping_interval=ping_interval,
                    max_outstanding_pings=max_pings,
                    drain_timeout=self._drain_timeout_s,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await self._abandon(nc)
            cause = self._last_error if isinstance(exc, TimeoutError) else exc
            raise BusConnectError(
                f"cannot connect to NATS at {redact_url(self._url)} "
                f"within {self._connect_timeout_s:g}s: "
                f"{repr(cause) if cause is not None else 'no answer'}"
            ) from exc
        self._nc = nc
        self._connected.set()
        js = nc.jetstream(timeout=max(2.0, self._connect_timeout_s))
        self._wire = Wire(
            nc=nc,
            js=js,
            codec=self._codec,
            metrics=self._metrics,
            prefix=self._prefix,
            stream=self._stream,
            client_name=self._name,
            connected=self._connected,
            settings=self._settings,
        )
        if self._durable:
            try:
                await self._ensure_stream(js)
            except BaseException as exc:
                await self._abandon(nc)
                self._nc = self._wire = None
                if isinstance(exc, _NO_JETSTREAM):
                    raise BusConnectError(
                        f"JetStream is not available at {redact_url(self._url)} ({exc!r}): "
                        "run nats-server with -js, or use durable=False"
                    ) from exc
                raise
        log.info(
            "bus_connected",
            extra=self._fields(
                "connected", durable=self._durable, stream=self._stream, prefix=self._prefix
            ),
        )

    async def _abandon(self, nc: NatsClient) -> None:
        """Close a connection that never became ours (failed start)."""
        self._closing = True
        try:
            if not nc.is_closed:
                await nc.close()
        except Exception as exc:
            log.warning("close_failed", extra=self._fields("close_failed", error=repr(exc)))
        finally:
            self._closing = False

    def _stream_config(self) -> api.StreamConfig:
        assert self._stream is not None
        max_age_s, max_bytes, replicas = self._stream_limits
        return api.StreamConfig(
            name=self._stream,
            description=f"Cortex job subjects (prefix {self._prefix!r}), at-least-once",
            subjects=[self._prefix + s for s in DURABLE_SUBJECTS],
            # Limits, not WorkQueue (forbids overlapping consumers, and the scheduler, workers
            # and tests overlap) nor Interest (drops what is published before a consumer
            # exists, e.g. a submit before the first scheduler starts): docs/adr/0005.
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=max_age_s,
            max_bytes=max_bytes,
            discard=api.DiscardPolicy.OLD,
            # The server refuses a duplicate window longer than the retention.
            duplicate_window=min(self._duplicate_window_s, max_age_s),
            num_replicas=replicas,
        )

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """Create the stream, or update it when its configuration differs. Idempotent, and
        safe when several processes start at once."""
        want = self._stream_config()
        assert want.name is not None
        try:
            have = (await js.stream_info(want.name)).config
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(want)
            except nats.js.errors.BadRequestError:  # another process created it just now
                have = (await js.stream_info(want.name)).config
            else:
                log.info("stream_created", extra=self._fields("stream_created", stream=want.name))
                return
        changed = _stream_diff(have, want)
        if changed:
            await js.update_stream(want)
            log.warning(
                "stream_updated",
                extra=self._fields("stream_updated", stream=want.name, changed=changed),
            )

    async def close(self) -> None:
        """Stop every subscription (running handlers finish and ack), then drain. Idempotent."""
        if self._closing:
            return
        self._closing = True
        await asyncio.gather(*(sub.unsubscribe() for sub in list(self._subs)))
        if self._resync is not None:
            self._resync.cancel()
        nc = self._nc
        if nc is None or nc.is_closed:
            return
        try:
            if nc.is_connected:
                await nc.drain()  # flushes what we published; ``async with`` would only close
            else:
                await nc.close()
        except Exception as exc:
            log.warning("drain_failed", extra=self._fields("drain_failed", error=repr(exc)))
            await nc.close()

    def _open_wire(self) -> Wire:
        if self._closing:
            raise BusClosed("the bus is closed")
        if self._wire is None:
            raise BusClosed("the bus is not started: call start() first")
        return self._wire

    # -- publish --------------------------------------------------------------------------

    async def publish(self, subject: str, packet: BusPacket) -> None:
        """Send ``packet`` on a literal subject.

        A durable subject returns once the stream stored the packet (or a copy with the same
        ``dedup_id``); it raises ``BusPublishError`` if that takes over ``publish_timeout_s``.
        Any other subject is handed to the connection (buffered while reconnecting).
        """
        wire = self._open_wire()
        if not is_valid_topic(subject):
            raise ValueError(f"cannot publish to {subject!r}: not a literal subject")
        data = self._codec.encode(packet)
        with producing(subject, packet) as headers:  # a span; its trace context in the headers
            if self._durable and is_durable_subject(subject):
                msg_id = dedup_id(packet, subject)
                if msg_id is not None:
                    headers[MSG_ID_HEADER] = msg_id
                await self._publish_stored(
                    wire.nc, wire.js, subject, data, headers, retry=msg_id is not None
                )
            else:
                await wire.nc.publish(self._prefix + subject, data, headers=headers or None)

    async def _publish_stored(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        *,
        retry: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            if not nc.is_connected:
                # Never hand a durable packet to a disconnected client: nats-py would keep it in
                # its reconnect buffer and send it later, after the caller was told it failed
                # (a submit answered 503 would then run anyway). Wait for the connection instead.
                if not retry or remaining <= 0:
                    raise BusPublishError(
                        f"publish to {subject!r} (stream {self._stream}) failed: not connected "
                        f"to NATS ({redact_url(self._url)})"
                    )
                await asyncio.sleep(min(0.05 * 2**attempt, remaining, 0.25))
                continue
            try:
                ack = await js.publish(
                    self._prefix + subject,
                    data,
                    timeout=max(0.05, min(remaining, 2.0)),
                    stream=self._stream,
                    headers=headers,
                )
            except _RETRYABLE_PUBLISH as exc:
                remaining = deadline - loop.time()
                if not retry or remaining <= 0:
                    raise BusPublishError(
                        f"publish to {subject!r} (stream {self._stream}) not confirmed "
                        f"after {attempt} attempt(s): {exc!r}"
                    ) from exc
                log.warning(
                    "publish_retrying",
                    extra=self._fields(
                        "publish_retrying", subject=subject, attempt=attempt, error=repr(exc)
                    ),
                )
                await asyncio.sleep(min(0.05 * 2**attempt, remaining, 1.0))
                continue
            if ack.duplicate:
                log.info(
                    "publish_deduplicated",
                    extra=self._fields(
                        "publish_deduplicated",
                        subject=subject,
                        msg_id=headers.get(MSG_ID_HEADER),
                        stream_seq=ack.seq,
                    ),
                )
            return

    # -- subscribe ------------------------------------------------------------------------

    async def subscribe(
        self,
        subject: str,
        handler: PacketHandler,
        *,
        queue: str | None = None,
        max_in_flight: int = 1,
    ) -> NatsSubscription:
        """Deliver packets on ``subject`` (wildcards allowed) to ``handler``.

        Durable subjects come from a JetStream consumer, the others from a core
        subscription; a pattern spanning both (``worker.>``) gets one of each, and
        ``max_in_flight`` then applies to each of them.
        """
        wire = self._open_wire()
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        some_durable, all_durable = durable_coverage(subject) if self._durable else (False, False)
        parts: list[JetStreamPart | CorePart] = []
        if some_durable:
            parts.append(
                JetStreamPart(
                    wire, subject=subject, handler=handler, queue=queue, max_in_flight=max_in_flight
                )
            )
        if not all_durable:
            parts.append(
                CorePart(
                    wire,
                    subject=subject,
                    handler=handler,
                    queue=queue,
                    max_in_flight=max_in_flight,
                    skip_durable=some_durable,
                )
            )
        sub = NatsSubscription(subject, parts, self._subs.remove)
        started: list[JetStreamPart | CorePart] = []
        try:
            for part in parts:
                await part.start()
                started.append(part)
        except BaseException:
            await asyncio.gather(*(p.stop() for p in started), return_exceptions=True)
            raise
        self._subs.append(sub)
        log.info(
            "subscribed",
            extra=self._fields(
                "subscribed",
                subject=subject,
                queue=queue,
                max_in_flight=max_in_flight,
                transports=[type(p).__name__ for p in parts],
            ),
        )
        return sub

    # -- connection events ----------------------------------------------------------------

    def _next_server(self, servers: list[Server], info: dict[str, Any]) -> tuple[Server, float]:
        """Reconnect backoff: doubling from ``reconnect_wait_s`` to ``reconnect_wait_max_s``,
        with full jitter on the upper half, so a fleet does not reconnect in lockstep."""
        first, cap = self._reconnect_wait
        server = min(servers, key=lambda s: s.reconnects)
        ceiling = min(cap, first * 2 ** min(server.reconnects, 16))
        return server, random.uniform(ceiling / 2, ceiling)  # jitter, not crypto

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        self._metrics.inc_bus_event("error")
        log.warning("bus_error", extra=self._fields("error", error=repr(exc)))

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        self._metrics.inc_bus_event("disconnected")
        level = logging.INFO if self._closing else logging.WARNING
        log.log(level, "bus_disconnected", extra=self._fields("disconnected"))

    async def _on_reconnected(self) -> None:
        self._metrics.inc_bus_event("reconnected")
        nc = self._nc
        server = nc.connected_url.netloc if nc is not None and nc.connected_url else None
        log.warning("bus_reconnected", extra=self._fields("reconnected", server=server))
        self._connected.set()
        if self._durable and not self._closing:
            if self._resync is not None:
                self._resync.cancel()  # superseded: this connection is the one to sync
            self._resync = asyncio.create_task(self._resync_after_reconnect(), name="bus-resync")

    async def _resync_after_reconnect(self) -> None:
        """The server may have restarted (or be a new one): make sure the stream and every
        consumer exist, and restart each fetch on the new connection."""
        wire = self._wire
        if wire is None:
            return
        try:
            await self._ensure_stream(wire.js)
            for sub in list(self._subs):
                for part in sub.parts:
                    if isinstance(part, JetStreamPart):
                        await part.recover()
        except Exception as exc:
            # The fetch loops recover on their own (they recreate a missing consumer).
            log.warning("resync_failed", extra=self._fields("resync_failed", error=repr(exc)))

    async def _on_closed(self) -> None:
        self._connected.clear()
        self._metrics.inc_bus_event("closed")
        if self._closing:
            log.info("bus_closed", extra=self._fields("closed"))
        else:
            log.error("bus_closed_unexpectedly", extra=self._fields("closed"))


def _stream_diff(have: api.StreamConfig, want: api.StreamConfig) -> list[str]:
    """The names of the settings this bus manages that differ on the server."""
    changed = []
    if sorted(have.subjects or []) != sorted(want.subjects or []):
        changed.append("subjects")
    for attr in (
        "retention",
        "storage",
        "max_age",
        "max_bytes",
        "discard",
        "duplicate_window",
        "num_replicas",
    ):
        if getattr(have, attr) != getattr(want, attr):
            changed.append(attr)
    return changed
