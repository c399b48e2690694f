"""Keeping a ``WorkerRegistry`` fed from the bus, for a process that only reads it (the
gateway's ``GET /v1/workers``); the scheduler feeds its own as it schedules."""

from __future__ import annotations

import logging

from cortex_core.bus_protocol import SUBJECT_HEARTBEAT_ALL
from cortex_core.messages import BusPacket, Heartbeat
from cortex_core.ports import Bus, Clock, Metrics, Subscription, WorkerRegistry

log = logging.getLogger("cortex.heartbeats")


class HeartbeatFeed:
    def __init__(
        self, *, bus: Bus, registry: WorkerRegistry, clock: Clock, metrics: Metrics | None = None
    ) -> None:
        self._bus = bus
        self._registry = registry
        self._clock = clock
        self._metrics = metrics
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._bus.subscribe(SUBJECT_HEARTBEAT_ALL, self.on_heartbeat)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()

    async def on_heartbeat(self, packet: BusPacket) -> None:
        hb = packet.payload
        if not isinstance(hb, Heartbeat):
            if self._metrics is not None:
                self._metrics.inc_packets_dropped("unexpected_payload")
            log.warning(
                "packet_dropped",
                extra={
                    "component": "heartbeats",
                    "reason": "unexpected_payload",
                    "trace_id": packet.trace_id,
                    "sender_id": packet.sender_id,
                },
            )
            return
        await self._registry.record(hb, self._clock.now())
