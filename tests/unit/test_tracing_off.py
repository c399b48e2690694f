"""Trace context with tracing off: what ``telemetry/tracing.py`` builds by hand in place of the
no-op tracer and the global propagator (docs/adr/0012) must be what they would give.

This process never installs a tracer provider (OpenTelemetry allows one per process, and the
other unit tests need tracing off); the one test with tracing on runs in a subprocess.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanContext

from cortex_adapters.telemetry import tracing
from cortex_adapters.telemetry.tracing import (
    consuming,
    current_trace_id,
    grpc_client_span,
    grpc_server_span,
    producing,
)
from cortex_core.bus_protocol import SUBJECT_JOB_SUBMIT
from cortex_core.messages import BusPacket, JobRequest
from cortex_core.pointers import context_ptr

TRACE = "ab" * 16
OTHER = "cd" * 16
PARENT = "12" * 8
HEADER = f"00-{TRACE}-{PARENT}-01"
CHECK = "/cortex.v1.SafetyKernel/Check"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _packet(trace_id: str) -> BusPacket:
    request = JobRequest(job_id="j1", topic="job.echo", context_ptr=context_ptr("j1"))
    return BusPacket(trace_id=trace_id, sender_id="s", created_at=0.0, payload=request)


def _parts(header: str) -> tuple[str, str, str]:
    match = TRACEPARENT.fullmatch(header)
    assert match is not None, header
    trace_id, span_id, flags = match.groups()
    return trace_id, span_id, flags


def _current() -> SpanContext:
    return trace.get_current_span().get_span_context()


def _library(carrier: Mapping[str, object]) -> SpanContext:
    """The span context OpenTelemetry's own propagator extracts from ``carrier``."""
    return trace.get_current_span(propagate.extract(carrier)).get_span_context()


@pytest.fixture(autouse=True)
def no_tracer() -> Iterator[None]:
    """Tracing is off here, and the by-hand path never reaches for the tracer."""
    assert tracing._untraced()
    real = tracing.TRACER

    class Unused:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the tracer was used ({name}) with tracing off")

    tracing.TRACER = Unused()  # type: ignore[assignment]
    try:
        yield
    finally:
        tracing.TRACER = real
    assert current_trace_id() is None  # every test left the context as it found it


# -- publishing ----------------------------------------------------------------------------


def test_each_publish_of_a_packet_is_a_new_parent_in_the_packets_trace() -> None:
    span_ids = set()
    for _ in range(20):
        with producing(SUBJECT_JOB_SUBMIT, _packet(TRACE)) as headers:
            trace_id, span_id, flags = _parts(headers["traceparent"])
            assert (trace_id, flags) == (TRACE, "01")
            assert int(span_id, 16) != 0
            assert headers.keys() == {"traceparent"}
            # The publish runs in the packet's trace: its logs read the same trace id.
            assert current_trace_id() == TRACE
            assert _current().span_id == int(span_id, 16)
        span_ids.add(span_id)
        assert current_trace_id() is None
    assert len(span_ids) == 20


def test_a_packet_without_a_trace_publishes_no_trace_context() -> None:
    with producing(SUBJECT_JOB_SUBMIT, _packet("")) as headers:
        assert headers == {}
        assert current_trace_id() is None
    with (
        consuming(SUBJECT_JOB_SUBMIT, _packet(TRACE), None),  # not even the current one
        producing("sys.heartbeat", _packet("")) as headers,
    ):
        assert headers == {}
        assert current_trace_id() == TRACE


def test_a_packets_trace_id_is_read_as_hex_and_written_lowercase() -> None:
    with producing(SUBJECT_JOB_SUBMIT, _packet(TRACE.upper())) as headers:
        assert _parts(headers["traceparent"])[0] == TRACE
    # int(x, 16) alone would take a sign, underscores or spaces: a broken traceparent.
    for not_a_trace in ("xyz", "0" * 32, "a" * 33, "-" + "a" * 31, "a_" * 16, " " + "a" * 31):
        with producing(SUBJECT_JOB_SUBMIT, _packet(not_a_trace)) as headers:
            assert headers == {}


# -- handling ------------------------------------------------------------------------------


def test_a_handled_packet_continues_the_senders_context() -> None:
    with consuming(SUBJECT_JOB_SUBMIT, _packet(OTHER), {"traceparent": HEADER}) as span:
        assert span is trace.get_current_span()
        assert not span.is_recording()
        assert current_trace_id() == TRACE  # the header wins over the packet's field
        ctx = _current()
        assert (ctx.span_id, ctx.trace_flags, ctx.is_remote) == (int(PARENT, 16), 1, True)
        # With no span of its own, what it publishes or calls carries that same context.
        with producing("worker.w1.jobs", _packet(TRACE)) as headers:
            assert headers == {"traceparent": HEADER}
        with grpc_client_span(CHECK, job_id="j1", topic="job.echo") as metadata:
            assert metadata == (("traceparent", HEADER),)
        # A packet of another trace still goes out in its own.
        with producing("worker.w1.jobs", _packet(OTHER)) as headers:
            assert _parts(headers["traceparent"])[0] == OTHER
            assert current_trace_id() == OTHER
        assert current_trace_id() == TRACE
    assert current_trace_id() is None


def test_an_unsampled_context_stays_unsampled_and_its_tracestate_travels_on() -> None:
    incoming = {"traceparent": HEADER[:-2] + "00", "tracestate": "vendor=1,other=2"}
    with consuming(SUBJECT_JOB_SUBMIT, _packet(TRACE), incoming):
        with producing("worker.w1.jobs", _packet(TRACE)) as headers:
            assert headers == incoming
        with grpc_client_span(CHECK) as metadata:
            assert dict(metadata) == incoming


def test_a_packet_sent_without_a_header_is_handled_in_its_own_trace() -> None:
    with consuming(SUBJECT_JOB_SUBMIT, _packet(OTHER), {"Nats-Msg-Id": "j1"}):
        assert current_trace_id() == OTHER
        ctx = _current()
        assert ctx.span_id != 0
        assert ctx.trace_flags == 1
        with grpc_client_span(CHECK) as metadata:
            [(key, value)] = metadata
        assert (key, _parts(value)) == ("traceparent", (OTHER, f"{ctx.span_id:016x}", "01"))


def test_a_heartbeat_is_handled_outside_any_trace() -> None:
    with consuming("sys.heartbeat", _packet(""), None) as span:
        assert span is trace.INVALID_SPAN
        assert current_trace_id() is None
        with grpc_client_span(CHECK) as metadata:
            assert metadata == ()


@pytest.mark.parametrize(
    "traceparent",
    [
        HEADER.upper(),  # hex must be lowercase
        f"00-{'0' * 32}-{PARENT}-01",  # an all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # an all-zero span id
        "ff" + HEADER[2:],  # the forbidden version
        HEADER + "-extra",  # version 00 has exactly four fields
        HEADER[:-1],
        HEADER.replace("-", "_"),
        HEADER[:10] + "g" + HEADER[11:],
        "x" + HEADER,
        "",
        "garbage",
    ],
)
def test_an_invalid_traceparent_is_ignored_for_the_packets_trace(traceparent: str) -> None:
    with consuming(SUBJECT_JOB_SUBMIT, _packet(OTHER), {"traceparent": traceparent}):
        assert current_trace_id() == OTHER
        assert _current().span_id != int(PARENT, 16)
    with consuming(SUBJECT_JOB_SUBMIT, _packet(""), {"traceparent": traceparent}) as span:
        assert span is trace.INVALID_SPAN
        assert current_trace_id() is None


@pytest.mark.parametrize(
    "traceparent",
    ["01" + HEADER[2:], "cc" + HEADER[2:] + "-future-fields", f" \t{HEADER} ", HEADER + "\n"],
)
def test_what_the_propagator_accepts_beyond_the_usual_form_is_accepted(traceparent: str) -> None:
    with consuming(SUBJECT_JOB_SUBMIT, _packet(OTHER), {"traceparent": traceparent}):
        assert current_trace_id() == TRACE
        assert _current().span_id == int(PARENT, 16)


CARRIERS = [
    {"traceparent": HEADER},
    {"traceparent": HEADER[:-2] + "ff"},
    {"traceparent": HEADER, "tracestate": "a=1,b=2"},
    {"traceparent": HEADER, "tracestate": ""},
    {"traceparent": HEADER, "baggage": "tenant=t1"},
    {"traceparent": "01" + HEADER[2:] + "-x"},
    {"traceparent": f"00-{'ef' * 16}-{'34' * 8}-00", "Nats-Msg-Id": "j1"},
]


@pytest.mark.parametrize("carrier", CARRIERS)
def test_the_context_handled_in_is_the_one_the_propagator_extracts(
    carrier: dict[str, str],
) -> None:
    with consuming(SUBJECT_JOB_SUBMIT, _packet(""), carrier):
        assert _current() == _library(carrier)
        with producing("worker.w1.jobs", _packet(format(_current().trace_id, "032x"))) as headers:
            expected: dict[str, str] = {}
            propagate.inject(expected)
            assert headers == expected


HEX = "0123456789abcdef"


@st.composite
def traceparents(draw: st.DrawFn) -> str:
    """Near misses of the usual form as well as it: each part valid, or not quite."""

    def part(size: int) -> str:
        return draw(
            st.one_of(
                st.text(HEX, min_size=size, max_size=size),
                st.just("0" * size),
                st.text(HEX + "ABCDEFxg- \t", min_size=size - 1, max_size=size + 1),
            )
        )

    sep = draw(st.sampled_from(["-", "-", "-", "_"]))
    tail = draw(st.sampled_from(["", "", "", "-", "-x", " ", "\n", "\t "]))
    head = draw(st.sampled_from(["", "", " "]))
    version = draw(st.sampled_from(["00", "00", "01", "ff", "0", "0A"]))
    return head + sep.join([version, part(32), part(16), part(2)]) + tail


@settings(max_examples=500, deadline=None)
@given(traceparent=st.one_of(traceparents(), st.text(max_size=60)))
def test_any_traceparent_is_judged_as_the_propagator_judges_it(traceparent: str) -> None:
    carrier = {"traceparent": traceparent}
    expected = _library(carrier)
    with consuming(SUBJECT_JOB_SUBMIT, _packet(""), carrier) as span:
        if expected.is_valid:
            assert _current() == expected
        else:
            assert span is trace.INVALID_SPAN
    with grpc_server_span(CHECK, tuple(carrier.items())):
        assert _current() == (expected if expected.is_valid else trace.INVALID_SPAN_CONTEXT)


# -- gRPC ----------------------------------------------------------------------------------


def test_a_grpc_call_outside_any_trace_sends_no_context() -> None:
    with grpc_client_span(CHECK, job_id="j1") as metadata:
        assert metadata == ()


def test_a_served_call_is_in_the_callers_context_or_in_none() -> None:
    metadata = (("user-agent", "grpc-python"), ("x-bin", b"\x00"), ("traceparent", HEADER))
    with grpc_server_span(CHECK, metadata, batch_size="2") as span:
        assert span is trace.get_current_span()
        assert current_trace_id() == TRACE
        assert _current().span_id == int(PARENT, 16)
        with producing("sys.job.submit", _packet(TRACE)) as headers:
            assert headers == {"traceparent": HEADER}
    # A call without trace context is served in none, even from inside a handled packet.
    with consuming(SUBJECT_JOB_SUBMIT, _packet(OTHER), None):
        for without in (None, (), (("traceparent", HEADER.encode()),)):
            with grpc_server_span(CHECK, without) as span:
                assert span is trace.INVALID_SPAN
                assert current_trace_id() is None
        assert current_trace_id() == OTHER


def test_a_batched_request_is_served_in_its_own_trace_context() -> None:
    items = [{"traceparent": HEADER}, {"traceparent": f"00-{OTHER}-{'34' * 8}-01"}, {}]
    seen = []
    for trace_context in items:
        with grpc_server_span(CHECK, trace_context.items(), batch_size="3"):
            seen.append(current_trace_id())
    assert seen == [TRACE, OTHER, None]


# -- what is left as it was ----------------------------------------------------------------


def test_the_context_is_restored_when_the_block_raises() -> None:
    blocks: list[Callable[[], AbstractContextManager[object]]] = [
        lambda: producing(SUBJECT_JOB_SUBMIT, _packet(TRACE)),
        lambda: consuming(SUBJECT_JOB_SUBMIT, _packet(TRACE), {"traceparent": HEADER}),
        lambda: consuming(SUBJECT_JOB_SUBMIT, _packet(TRACE), None),
        lambda: grpc_server_span(CHECK, (("traceparent", HEADER),)),
    ]

    def fail_in(block: AbstractContextManager[object]) -> None:
        with block:
            assert current_trace_id() == TRACE
            raise ValueError("boom")

    with consuming(SUBJECT_JOB_SUBMIT, _packet(OTHER), None):
        outer = _current()
        for block in blocks:
            with pytest.raises(ValueError, match="boom"):
                fail_in(block())
            assert _current() == outer


def test_baggage_in_the_context_goes_out_with_the_trace_context() -> None:
    token = otel_context.attach(baggage.set_baggage("tenant", "t1"))
    try:
        with producing(SUBJECT_JOB_SUBMIT, _packet(TRACE)) as headers:
            assert headers["baggage"] == "tenant=t1"
            assert _parts(headers["traceparent"])[0] == TRACE
            with grpc_client_span(CHECK) as metadata:
                assert [key for key, _ in metadata] == ["traceparent", "baggage"]
    finally:
        otel_context.detach(token)


def test_with_a_tracer_provider_every_hop_is_a_real_span() -> None:
    """In a process of its own (a provider is set once per process): once one is installed,
    the by-hand path steps aside and the spans are the SDK's, as before."""
    script = textwrap.dedent(
        f"""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.trace import SpanKind
        from cortex_adapters.telemetry import tracing
        from cortex_core.messages import BusPacket, JobRequest

        assert tracing._untraced()
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        assert not tracing._untraced()

        request = JobRequest(job_id="j1", topic="job.echo", context_ptr="ctx")
        packet = BusPacket(trace_id="{TRACE}", sender_id="s", created_at=0.0, payload=request)
        with tracing.consuming("sys.job.submit", packet, {{"traceparent": "{HEADER}"}}):
            with tracing.producing("worker.w1.jobs", packet) as headers:
                pass
            with tracing.grpc_client_span("{CHECK}", job_id="j1") as metadata:
                pass
        with tracing.grpc_server_span("{CHECK}", metadata, batch_size="1"):
            pass
        spans = {{s.name: s for s in exporter.get_finished_spans()}}
        process = spans["sys.job.submit process"]
        publish = spans["worker.w1.jobs publish"]
        client = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT][0]
        server = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER][0]
        assert len(spans) == 3 and process.kind is SpanKind.CONSUMER
        assert publish.kind is SpanKind.PRODUCER
        assert process.parent.span_id == 0x{PARENT} and process.parent.is_remote
        assert {{s.context.trace_id for s in (process, publish, client, server)}} == {{0x{TRACE}}}
        assert publish.parent.span_id == process.context.span_id
        assert client.parent.span_id == process.context.span_id
        assert server.parent.span_id == client.context.span_id
        assert headers["traceparent"] == f"00-{TRACE}-{{publish.context.span_id:016x}}-01"
        assert publish.attributes["cortex.job_id"] == "j1"
        assert client.attributes["rpc.method"] == "Check"
        assert server.attributes["cortex.batch_size"] == "1"
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
