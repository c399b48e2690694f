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
OpenTelemetry's no-op ones and only the ``traceparent`` headers are made. That path is written
out by hand below (``_untraced``): the same headers and the same current span as the no-op
tracer and the global propagator give, without their per-call cost (docs/adr/0012).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import Token
from typing import Generic, TypeVar

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import (
    INVALID_SPAN,
    INVALID_SPAN_CONTEXT,
    INVALID_SPAN_ID,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cortex_core.messages import BusPacket

log = logging.getLogger("cortex.telemetry")

TRACER = trace.get_tracer("cortex")
"""Resolves to the process's tracer provider once ``Tracing`` sets one (a no-op before)."""

_T = TypeVar("_T")


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None when there is no valid span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


# -- tracing off: the no-op tracer's effects, by hand ---------------------------------------
#
# Without a tracer provider, ``TRACER.start_as_current_span(..., context=parent)`` makes the
# parent's span itself current (a ``NonRecordingSpan``; it wraps any other span in one), and
# ``propagate.inject`` writes that span's context. Through the proxy and no-op tracers, their
# generator context managers and the composite propagator, that cost 9-12 µs per publish,
# handled packet or gRPC call; the functions below do the same in 2-3.5 µs. Anything out of
# the ordinary (a non-canonical or invalid ``traceparent``, a ``tracestate`` or ``baggage``
# header, baggage in the current context) is left to the propagator, so it is decided
# exactly as before.

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
"""The form every W3C tracer sends (version 00); the propagator judges any other."""
_BAGGAGE_KEY: str = getattr(baggage, "_BAGGAGE_KEY", "")
"""Where ``baggage`` keeps the context's baggage (``baggage.get_all()`` costs 4 times more)."""
_UNKNOWN = object()


def _plain_w3c(textmap: TextMapPropagator) -> TextMapPropagator | None:
    """``textmap`` if it is OpenTelemetry's default (``OTEL_PROPAGATORS`` unset: trace context,
    then baggage), which the by-hand path imitates; else None."""
    propagators = getattr(textmap, "_propagators", None)
    default = [TraceContextTextMapPropagator, W3CBaggagePropagator]
    if (
        isinstance(textmap, CompositePropagator)
        and isinstance(propagators, list | tuple)
        and [type(p) for p in propagators] == default
        and _BAGGAGE_KEY
    ):
        return textmap
    return None


_PLAIN_W3C = _plain_w3c(propagate.get_global_textmap())


def _untraced() -> bool:
    """Whether spans are no-ops and the propagator the default one, so that the by-hand path
    gives what OpenTelemetry would. ``ProxyTracer`` (``TRACER``) turns real once a tracer
    provider is set (``Tracing.start``; once per process): this reads the module global it
    reads, where ``trace.get_tracer_provider()`` would cost 15 times more. Should a later
    OpenTelemetry rename it (or ``_propagators``, ``_BAGGAGE_KEY``), this is False: the
    library's path, as before."""
    return (
        getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None
        and propagate.get_global_textmap() is _PLAIN_W3C
    )


class _Current(Generic[_T]):
    """``with`` gives ``value``, with ``span`` the current span in between (if one is given):
    the context manager ``start_as_current_span`` is with a no-op tracer, less its cost."""

    __slots__ = ("_span", "_token", "_value")

    def __init__(self, value: _T, span: Span | None = None) -> None:
        self._value = value
        self._span = span
        self._token: Token[otel_context.Context] | None = None

    def __enter__(self) -> _T:
        if self._span is not None:
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._value

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None


def _as_noop_span(span: Span) -> NonRecordingSpan:
    """The span a no-op tracer starts under ``span``: itself, if it records nothing."""
    return span if isinstance(span, NonRecordingSpan) else NonRecordingSpan(span.get_span_context())


def _inject(carrier: dict[str, str], span: Span) -> None:
    """What ``propagate.inject`` writes with ``span`` current."""
    if otel_context.get_value(_BAGGAGE_KEY):  # rare: the propagators write it all
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return
    ctx = span.get_span_context()
    if ctx != INVALID_SPAN_CONTEXT:  # the propagator's test, and its header
        ids = (ctx.trace_id, ctx.span_id, ctx.trace_flags)
        carrier["traceparent"] = "00-%032x-%016x-%02x" % ids  # noqa: UP031 - f-string: 1.6x slower
        if ctx.trace_state:
            carrier["tracestate"] = ctx.trace_state.to_header()


def _extracted_span(carrier: Mapping[str, object]) -> Span:
    """The span of ``propagate.extract(carrier)``: the sender's, or INVALID_SPAN."""
    value = carrier.get("traceparent")
    if (
        type(value) is str
        and len(value) == 55
        and "tracestate" not in carrier
        and "baggage" not in carrier
        and (match := _TRACEPARENT.fullmatch(value)) is not None
    ):
        trace_id, span_id, flags = match.groups()
        if trace_id == "0" * 32 or span_id == "0" * 16:
            return INVALID_SPAN
        remote = SpanContext(int(trace_id, 16), int(span_id, 16), True, TraceFlags(int(flags, 16)))
        return NonRecordingSpan(remote)
    return trace.get_current_span(propagate.extract(carrier))


# -- spans -----------------------------------------------------------------------------------


def _remote_parent(trace_id: str) -> NonRecordingSpan | None:
    """A remote parent span in the trace ``trace_id`` (a packet sent without trace context):
    32 hex digits, not all zero; anything else (``int`` would take a sign, ``_`` or spaces) is
    no trace."""
    if _TRACE_ID.fullmatch(trace_id) is None:
        return None
    tid = int(trace_id, 16)
    if tid == 0:
        return None
    span_id = random.getrandbits(64) or 1
    return NonRecordingSpan(SpanContext(tid, span_id, True, _SAMPLED))  # remote, sampled


def _trace_context(trace_id: str) -> otel_context.Context | None:
    """A remote parent in the trace ``trace_id`` (a packet sent without trace context)."""
    parent = _remote_parent(trace_id)
    return None if parent is None else trace.set_span_in_context(parent)


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


def producing(subject: str, packet: BusPacket) -> AbstractContextManager[dict[str, str]]:
    """A PRODUCER span around one publish; yields the headers that carry its context."""
    if not _untraced():
        return _traced_producing(subject, packet)
    headers: dict[str, str] = {}
    if not packet.trace_id:
        return _Current(headers)  # heartbeats: no trace
    current = trace.get_current_span()
    ctx = current.get_span_context()
    parent = None
    if not (ctx.is_valid and format(ctx.trace_id, "032x") == packet.trace_id):
        parent = _remote_parent(packet.trace_id)  # else: the current span, as _in_trace says
    span = _as_noop_span(current) if parent is None else parent
    _inject(headers, span)
    return _Current(headers, None if span is current else span)


@contextlib.contextmanager
def _traced_producing(subject: str, packet: BusPacket) -> Iterator[dict[str, str]]:
    """``producing`` through the tracer and the propagator (tracing on)."""
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


def consuming(
    subject: str, packet: BusPacket, headers: Mapping[str, str] | None
) -> AbstractContextManager[Span]:
    """A CONSUMER span around handling one packet, child of the publisher's span."""
    if not _untraced():
        return _traced_consuming(subject, packet, headers)
    span: Span | None = None
    if headers and "traceparent" in headers:
        span = _extracted_span(headers)
        if span.get_span_context().span_id == INVALID_SPAN_ID:
            span = None
    if span is None and packet.trace_id:
        span = _remote_parent(packet.trace_id)
    if span is None:  # heartbeats: no trace, no span
        return _Current(INVALID_SPAN)
    return _Current(span, span)


@contextlib.contextmanager
def _traced_consuming(
    subject: str, packet: BusPacket, headers: Mapping[str, str] | None
) -> Iterator[Span]:
    """``consuming`` through the tracer and the propagator (tracing on)."""
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


def grpc_client_span(
    method: str, **attrs: str
) -> AbstractContextManager[tuple[tuple[str, str], ...]]:
    """A CLIENT span around one call of ``method``; yields the metadata carrying its context."""
    if not _untraced():
        return _traced_grpc_client_span(method, **attrs)
    current = trace.get_current_span()
    span = _as_noop_span(current)
    carrier: dict[str, str] = {}
    _inject(carrier, span)
    return _Current(tuple(carrier.items()), None if span is current else span)


@contextlib.contextmanager
def _traced_grpc_client_span(method: str, **attrs: str) -> Iterator[tuple[tuple[str, str], ...]]:
    """``grpc_client_span`` through the tracer and the propagator (tracing on)."""
    with TRACER.start_as_current_span(
        method.strip("/"), kind=SpanKind.CLIENT, attributes=_rpc_attributes(method, attrs)
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield tuple(carrier.items())


def _metadata_carrier(metadata: object) -> dict[str, str]:
    """The text entries of gRPC metadata (binary ``-bin`` values left out)."""
    carrier: dict[str, str] = {}
    for item in metadata or ():  # type: ignore[attr-defined]
        key, value = item[0], item[1]
        if isinstance(value, str):
            carrier[key] = value
    return carrier


def grpc_server_span(method: str, metadata: object, **attrs: str) -> AbstractContextManager[Span]:
    """A SERVER span around serving ``method``, child of the caller's context in
    ``metadata`` (a call's ``invocation_metadata()``)."""
    if not _untraced():
        return _traced_grpc_server_span(method, metadata, **attrs)
    span = _extracted_span(_metadata_carrier(metadata))  # INVALID_SPAN if none: made current
    return _Current(span, span)


@contextlib.contextmanager
def _traced_grpc_server_span(method: str, metadata: object, **attrs: str) -> Iterator[Span]:
    """``grpc_server_span`` through the tracer and the propagator (tracing on)."""
    with TRACER.start_as_current_span(
        method.strip("/"),
        context=propagate.extract(_metadata_carrier(metadata)),
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
