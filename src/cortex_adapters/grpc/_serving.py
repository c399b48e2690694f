"""What every Cortex gRPC server does the same way: a ``grpc.aio`` server with one generic
handler, the standard health service and server reflection, started on an address (port 0:
any free port) and stopped gracefully."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # not in stubs
from grpc_reflection.v1alpha import reflection

HEALTH_SERVICE_NAME: str = health.SERVICE_NAME

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
    # Clients ping every 20 s while idle (see safety_client); allow that, not more often.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
]


class _HealthServicer(Protocol):
    """What we use of ``grpc_health.v1.health.aio.HealthServicer`` (its stubs lack ``aio``)."""

    async def set(
        self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus
    ) -> None: ...

    async def enter_graceful_shutdown(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Serving:
    server: grpc.aio.Server
    health: _HealthServicer
    port: int

    async def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, let calls in flight finish for ``grace`` seconds, stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def serve(
    *,
    handler: grpc.GenericRpcHandler[bytes, bytes],
    service_name: str,
    address: str,
    bind_error: type[Exception],
    what: str,
    options: Sequence[tuple[str, int]] = (),
) -> Serving:
    """Start serving ``handler`` (and health, and reflection) on ``address``; ``bind_error``
    naming ``what`` when the address can't be had."""
    server = grpc.aio.server(options=[*SERVER_OPTIONS, *options])
    server.add_generic_rpc_handlers((handler,))
    health_servicer: _HealthServicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (service_name, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise bind_error(
            f"{what} cannot listen on {address}: the port is taken or the host is not an "
            f"address of this machine ({exc})"
        ) from exc
    await server.start()
    for name in ("", service_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Serving(server, health_servicer, port)
