"""Every codec round-trips every payload, and all codecs speak the same wire format."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given

from cortex_adapters.codec import BetterprotoCodec, ProtobufCodec
from cortex_core.errors import CodecError
from cortex_core.messages import (
    BusPacket,
    Heartbeat,
    JobCancel,
    JobRequest,
    JobResult,
    JobStatus,
    Payload,
    Priority,
)
from cortex_core.ports import PacketCodec
from cortex_proto._wire.cortex.v1 import bus_pb2 as pb

text = st.text(max_size=40)
# Times on the wire are nanoseconds; compare at microsecond-exact floats.
times = st.integers(0, 4_000_000_000_000_000).map(lambda us: us / 1_000_000)
f32 = st.floats(0, 1, width=32)
u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(0, 2**31 - 1)
# An optional double: unset, zero (present on the wire, unlike a plain double's zero), or any
# value a double holds (NaN aside: it never equals itself).
timeouts = st.none() | st.just(0.0) | st.floats(allow_nan=False)

payloads = st.one_of(
    st.builds(
        JobRequest,
        job_id=text,
        topic=text,
        context_ptr=text,
        priority=st.sampled_from(Priority),
        adapter_id=text,
        tenant_id=text,
        labels=st.dictionaries(text, text, max_size=4),
        deadline=st.none() | times,
        attempt=u32,
        prompt_bytes=st.integers(0, 2**64 - 1),
        timeout_s=timeouts,
    ),
    st.builds(
        JobResult,
        job_id=text,
        status=st.sampled_from(JobStatus),
        result_ptr=text,
        worker_id=text,
        execution_ms=st.integers(-(2**63), 2**63 - 1),
        error_code=text,
        error_message=text,
        attempt=u32,
    ),
    st.builds(
        Heartbeat,
        worker_id=text,
        pool=text,
        max_parallel_jobs=i32,
        active_jobs=i32,
        cpu_load=f32,
        gpu_utilization=f32,
        region=text,
        type=text,
        capabilities=st.lists(text, max_size=3).map(tuple),
    ),
    st.builds(JobCancel, job_id=text, reason=text, attempt=u32),
)
packets = st.builds(
    BusPacket,
    trace_id=text,
    sender_id=text,
    created_at=times,
    payload=payloads,
    protocol_version=st.integers(1, 2**32 - 1),
)


@given(packets)
def test_round_trip(codec: PacketCodec, packet: BusPacket) -> None:
    assert codec.decode(codec.encode(packet)) == packet


@given(packets)
def test_every_codec_reads_what_the_others_write(packet: BusPacket) -> None:
    # Not byte-for-byte: protobuf serialization isn't canonical (the runtimes encode empty
    # map keys differently), so the contract is that each reads the other's bytes.
    upb, bp = ProtobufCodec(), BetterprotoCodec()
    assert bp.decode(upb.encode(packet)) == packet
    assert upb.decode(bp.encode(packet)) == packet


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xff\xff", None),  # garbage: rejected, for whichever reason the parser finds first
        (bytes.fromhex("0a0174"), "protocol_version"),  # trace_id only
        (bytes.fromhex("2001"), "no payload"),  # protocol_version=1, no payload
        (bytes.fromhex("2001aa0600"), "no payload"),  # an unknown payload field (101)
    ],
)
def test_bad_bytes_are_a_codec_error(codec: PacketCodec, data: bytes, why: str | None) -> None:
    with pytest.raises(CodecError, match=why):
        codec.decode(data)


def _packet(payload: Payload) -> BusPacket:
    return BusPacket(trace_id="ab" * 16, sender_id="t", created_at=1.5, payload=payload)


@pytest.mark.parametrize("timeout_s", [None, 0.0, 0.5, 86_400.25])
def test_timeout_s_keeps_unset_apart_from_zero(codec: PacketCodec, timeout_s: float | None) -> None:
    packet = _packet(JobRequest(job_id="j", topic="job.echo", context_ptr="", timeout_s=timeout_s))
    data = codec.encode(packet)
    assert codec.decode(data) == packet
    for other in (ProtobufCodec(), BetterprotoCodec()):
        decoded = other.decode(data).payload
        assert isinstance(decoded, JobRequest)
        assert decoded.timeout_s == timeout_s
        assert (decoded.timeout_s is None) == (timeout_s is None)
    # On the wire: present whenever set, even at 0.0 (proto3 ``optional``).
    assert pb.BusPacket.FromString(data).job_request.HasField("timeout_s") == (
        timeout_s is not None
    )


@pytest.mark.parametrize(
    "payload",
    [
        JobResult(job_id="j", status=JobStatus.TIMEOUT, worker_id="w", attempt=2),
        JobResult(job_id="j", status=JobStatus.COMPLETED, worker_id="w"),  # attempt 0: unknown
        JobCancel(job_id="j", reason="overran", attempt=3),
        JobCancel(job_id="j", reason="client"),  # attempt 0: whichever runs
        JobRequest(job_id="j", topic="job.echo", context_ptr="", attempt=2**32 - 1),
    ],
    ids=["result-2", "result-0", "cancel-3", "cancel-0", "request-max"],
)
def test_attempts_cross_every_codec(codec: PacketCodec, payload: Payload) -> None:
    packet = _packet(payload)
    data = codec.encode(packet)
    assert codec.decode(data) == packet
    assert ProtobufCodec().decode(data) == packet
    assert BetterprotoCodec().decode(data) == packet
    wire = pb.BusPacket.FromString(data)
    message = getattr(wire, wire.WhichOneof("payload"))
    assert message.attempt == getattr(payload, "attempt", None)
