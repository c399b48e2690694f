"""Traces that follow a job across processes (docs/adr/0012).

A job's ``trace_id`` *is* its OpenTelemetry trace id: the gateway takes it from the request's
server span (or from the caller's ``traceparent``), and every hop carries W3C trace context:

* NATS: each publish is a PRODUCER span whose context travels in the ``traceparent`` header;
  each handled packet is a CONSUMER span, child of that header (or, for a packet sent without
  one, of the packet's own ``trace_id``);
* gRPC: the Safety Kernel's ``Check`` is a CLIENT span on the scheduler and a SERVER span on
  the kernel, the context in the call's metadata.

So gateway → scheduler → safety → worker → result is one trace. Spans carry ``cortex.job_id``,
``cortex.topic``, ``cortex.worker_id`` and ``cortex.attempt`` where the packet has them.

Exporting is off unless an OTLP endpoint is configured (``Tracing``); without it the spans are
OpenTelemetry's no-op ones and only the ``traceparent`` headers are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import (
    INVALID_SPAN_ID,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
)

from cortex_core.messages import BusPacket

log = logging.getLogger("cortex.telemetry")

TRACER = trace.get_tracer("cortex")
"""Resolves to the process's tracer provider once ``Tracing`` sets one (a no-op before)."""


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None when there is no valid span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _trace_context(trace_id: str) -> otel_context.Context | None:
    """A remote parent in the trace ``trace_id`` (a packet sent without trace context)."""
    try:
        tid = int(trace_id, 16) if len(trace_id) == 32 else 0
    except ValueError:
        return None
    if tid == 0:
        return None
    span_id = random.getrandbits(64) or 1
    parent = SpanContext(tid, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _in_trace(trace_id: str) -> otel_context.Context | None:
    """The current context if its span belongs to ``trace_id``; else a parent in that trace."""
    current = trace.get_current_span().get_span_context()
    if current.is_valid and format(current.trace_id, "032x") == trace_id:
        return None  # start_as_current_span's default: the current context
    return _trace_context(trace_id)


def packet_attributes(subject: str, packet: BusPacket) -> dict[str, str | int]:
    attrs: dict[str, str | int] = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "cortex.payload": type(packet.payload).__name__,
    }
    payload = packet.payload
    for name in ("job_id", "topic", "worker_id", "attempt"):
        value = getattr(payload, name, None)
        if value not in (None, ""):
            attrs[f"cortex.{name}"] = value
    if "cortex.worker_id" not in attrs and packet.sender_id:
        attrs["messaging.client_id"] = packet.sender_id
    return attrs


@contextlib.contextmanager
def producing(subject: str, packet: BusPacket) -> Iterator[dict[str, str]]:
    """A PRODUCER span around one publish; yields the headers that carry its context."""
    headers: dict[str, str] = {}
    if not packet.trace_id:
        yield headers  # heartbeats: no trace
        return
    with TRACER.start_as_current_span(
        f"{subject} publish", context=_in_trace(packet.trace_id), kind=SpanKind.PRODUCER
    ) as span:
        if span.is_recording():  # tracing on: a no-op span would discard them
            span.set_attributes(packet_attributes(subject, packet))
        propagate.inject(headers, context=trace.set_span_in_context(span))
        if "traceparent" not in headers:  # a no-op span of no trace: keep the packet's own
            fallback = _trace_context(packet.trace_id)
            if fallback is not None:
                propagate.inject(headers, context=fallback)
        yield headers


@contextlib.contextmanager
def consuming(subject: str, packet: BusPacket, headers: Mapping[str, str] | None) -> Iterator[Span]:
    """A CONSUMER span around handling one packet, child of the publisher's span."""
    parent: otel_context.Context | None = None
    if headers and "traceparent" in headers:
        extracted = propagate.extract(headers)
        if trace.get_current_span(extracted).get_span_context().span_id != INVALID_SPAN_ID:
            parent = extracted
    if parent is None and packet.trace_id:
        parent = _trace_context(packet.trace_id)
    if parent is None:  # heartbeats: no trace, no span
        yield trace.INVALID_SPAN
        return
    with TRACER.start_as_current_span(
        f"{subject} process", context=parent, kind=SpanKind.CONSUMER
    ) as span:
        if span.is_recording():
            span.set_attributes(packet_attributes(subject, packet))
        yield span


def _rpc_attributes(method: str, attrs: Mapping[str, str]) -> dict[str, str]:
    service, _, name = method.strip("/").rpartition("/")
    fields = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
    return fields | {f"cortex.{k}": v for k, v in attrs.items() if v}


@contextlib.contextmanager
def grpc_client_span(method: str, **attrs: str) -> Iterator[tuple[tuple[str, str], ...]]:
    """A CLIENT span around one call of ``method``; yields the metadata carrying its context."""
    with TRACER.start_as_current_span(
        method.strip("/"), kind=SpanKind.CLIENT, attributes=_rpc_attributes(method, attrs)
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield tuple(carrier.items())


@contextlib.contextmanager
def grpc_server_span(method: str, metadata: object, **attrs: str) -> Iterator[Span]:
    """A SERVER span around serving ``method``, child of the caller's context in
    ``metadata`` (a call's ``invocation_metadata()``)."""
    carrier: dict[str, str] = {}
    for item in metadata or ():  # type: ignore[attr-defined]
        key, value = item[0], item[1]
        if isinstance(value, str):
            carrier[key] = value
    with TRACER.start_as_current_span(
        method.strip("/"),
        context=propagate.extract(carrier),
        kind=SpanKind.SERVER,
        attributes=_rpc_attributes(method, attrs),
    ) as span:
        yield span


class Tracing:
    """The process's tracer provider, exporting over OTLP/HTTP when ``endpoint`` is set.

    ``start()`` installs it (once per process, as OpenTelemetry allows); ``close()`` flushes
    and stops the exporter. Without an endpoint it does nothing: spans stay no-ops.
    ``exporter`` replaces the OTLP one (tests).
    """

    def __init__(
        self,
        *,
        service: str,
        instance: str,
        endpoint: str | None,
        exporter: SpanExporter | None = None,
    ) -> None:
        self._service = service
        self._instance = instance
        self._endpoint = endpoint
        self._exporter = exporter
        self._provider: TracerProvider | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._endpoint) or self._exporter is not None

    async def start(self) -> None:
        if not self.enabled:
            return
        exporter = self._exporter
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=self._endpoint)
        resource = Resource.create(
            {"service.name": self._service, "service.instance.id": self._instance}
        )
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        self._provider = provider
        log.info(
            "tracing_enabled",
            extra={"component": "telemetry", "endpoint": self._endpoint, "service": self._service},
        )

    async def close(self) -> None:
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)  # flushes what is batched
            self._provider = None
