"""``/metrics`` on a port of its own, for the processes that serve no HTTP (the scheduler, the
Safety Kernel, workers): prometheus_client's HTTP server on the process's registry."""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from cortex_adapters.telemetry.metrics import NoMetrics, OtelMetrics

log = logging.getLogger("cortex.telemetry")


class MetricsServer:
    """Serves ``metrics`` on ``host:port`` (port 0: any free port, see ``port``) while started.

    The server runs on a thread of its own, so a scrape never waits on the event loop.
    """

    def __init__(
        self, metrics: OtelMetrics | NoMetrics, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/metrics"

    async def start(self) -> None:
        self._server, self._thread = start_http_server(
            self._port, addr=self._host, registry=self._metrics.registry
        )
        log.info("metrics_serving", extra={"component": "telemetry", "url": self.url})

    async def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
