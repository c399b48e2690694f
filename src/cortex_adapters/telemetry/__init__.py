"""Observability: metrics on OpenTelemetry read by Prometheus, and traces that follow a job
across processes (docs/adr/0012)."""

from cortex_adapters.telemetry.metrics import NoMetrics, OtelMetrics, make_metrics
from cortex_adapters.telemetry.server import MetricsServer
from cortex_adapters.telemetry.tracing import Tracing

__all__ = ["MetricsServer", "NoMetrics", "OtelMetrics", "Tracing", "make_metrics"]
