"""Core ``BusPacket`` ⇄ betterproto2 ``cortex.v1.BusPacket``, and a codec built on it.

The conversion functions are the bridge for code that wants betterproto's typed messages (gRPC
edges, embedders). As a ``PacketCodec`` this is the baseline the benchmark compares the upb
codec against; both produce the same wire format, which the contract suite checks.
"""

from __future__ import annotations

import datetime as dt

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
from cortex_proto.cortex import v1

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_PRIORITY_TO_BP = {
    Priority.INTERACTIVE: v1.JobPriority.INTERACTIVE,
    Priority.BATCH: v1.JobPriority.BATCH,
}
_PRIORITY_FROM_BP = {v: k for k, v in _PRIORITY_TO_BP.items()}
_STATUS_TO_BP = {s: v1.JobStatus[s.value] for s in JobStatus}
_STATUS_FROM_BP = {v: k for k, v in _STATUS_TO_BP.items()}


def _ts(t: float) -> dt.datetime:
    """Exact to the microsecond, datetime's resolution (``fromtimestamp`` is not)."""
    return _EPOCH + dt.timedelta(microseconds=round(t * 1e6))


def _seconds(d: dt.datetime) -> float:
    return ((d - _EPOCH) // _MICROSECOND) / 1e6


def to_betterproto(packet: BusPacket) -> v1.BusPacket:
    p = packet.payload
    msg = v1.BusPacket(
        trace_id=packet.trace_id,
        sender_id=packet.sender_id,
        created_at=_ts(packet.created_at),
        protocol_version=packet.protocol_version,
    )
    if isinstance(p, JobRequest):
        msg.job_request = v1.JobRequest(
            job_id=p.job_id,
            topic=p.topic,
            priority=_PRIORITY_TO_BP[p.priority],
            context_ptr=p.context_ptr,
            adapter_id=p.adapter_id,
            tenant_id=p.tenant_id,
            labels=dict(p.labels),
            deadline=_ts(p.deadline) if p.deadline is not None else None,
            attempt=p.attempt,
            prompt_bytes=p.prompt_bytes,
            timeout_s=p.timeout_s,
        )
    elif isinstance(p, JobResult):
        msg.job_result = v1.JobResult(
            job_id=p.job_id,
            status=_STATUS_TO_BP[p.status],
            result_ptr=p.result_ptr,
            worker_id=p.worker_id,
            execution_ms=p.execution_ms,
            error_code=p.error_code,
            error_message=p.error_message,
            attempt=p.attempt,
        )
    elif isinstance(p, Heartbeat):
        msg.heartbeat = v1.Heartbeat(
            worker_id=p.worker_id,
            region=p.region,
            type=p.type,
            cpu_load=p.cpu_load,
            gpu_utilization=p.gpu_utilization,
            active_jobs=p.active_jobs,
            capabilities=list(p.capabilities),
            pool=p.pool,
            max_parallel_jobs=p.max_parallel_jobs,
        )
    else:
        msg.job_cancel = v1.JobCancel(job_id=p.job_id, reason=p.reason, attempt=p.attempt)
    return msg


def from_betterproto(msg: v1.BusPacket) -> BusPacket:
    if msg.protocol_version == 0:
        raise CodecError("packet has no protocol_version")
    payload: Payload
    if msg.job_request is not None:
        r = msg.job_request
        payload = JobRequest(
            job_id=r.job_id,
            topic=r.topic,
            context_ptr=r.context_ptr,
            priority=_PRIORITY_FROM_BP.get(r.priority, Priority.INTERACTIVE),
            adapter_id=r.adapter_id,
            tenant_id=r.tenant_id,
            labels=dict(r.labels),
            deadline=_seconds(r.deadline) if r.deadline is not None else None,
            attempt=r.attempt,
            prompt_bytes=r.prompt_bytes,
            timeout_s=r.timeout_s,
        )
    elif msg.job_result is not None:
        s = msg.job_result
        status = _STATUS_FROM_BP.get(s.status)
        if status is None:
            raise CodecError(f"job_result for {s.job_id!r} has unknown status {s.status}")
        payload = JobResult(
            job_id=s.job_id,
            status=status,
            result_ptr=s.result_ptr,
            worker_id=s.worker_id,
            execution_ms=s.execution_ms,
            error_code=s.error_code,
            error_message=s.error_message,
            attempt=s.attempt,
        )
    elif msg.heartbeat is not None:
        h = msg.heartbeat
        payload = Heartbeat(
            worker_id=h.worker_id,
            pool=h.pool,
            max_parallel_jobs=h.max_parallel_jobs,
            active_jobs=h.active_jobs,
            cpu_load=h.cpu_load,
            gpu_utilization=h.gpu_utilization,
            region=h.region,
            type=h.type,
            capabilities=tuple(h.capabilities),
        )
    elif msg.job_cancel is not None:
        c = msg.job_cancel
        payload = JobCancel(job_id=c.job_id, reason=c.reason, attempt=c.attempt)
    else:
        raise CodecError("packet has no payload, or one this version does not know")
    created = _seconds(msg.created_at) if msg.created_at is not None else 0.0
    return BusPacket(
        trace_id=msg.trace_id,
        sender_id=msg.sender_id,
        created_at=created,
        payload=payload,
        protocol_version=msg.protocol_version,
    )


class BetterprotoCodec:
    def encode(self, packet: BusPacket) -> bytes:
        return bytes(to_betterproto(packet))

    def decode(self, data: bytes) -> BusPacket:
        try:
            msg = v1.BusPacket.parse(data)
        except Exception as exc:  # betterproto2 raises assorted errors on bad bytes
            raise CodecError(f"undecodable packet ({len(data)} bytes): {exc}") from exc
        return from_betterproto(msg)
