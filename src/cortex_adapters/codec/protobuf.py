"""The bus codec: core ``BusPacket`` ⇄ protobuf bytes through protoc's upb runtime.

This is the hot path (every packet is encoded once and decoded once), so it goes straight
from the core's dataclasses to ``bus_pb2`` and back, with no intermediate objects.
docs/adr/0002 has the figures against betterproto.
"""

from __future__ import annotations

import math

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

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
from cortex_proto._wire.cortex.v1 import bus_pb2 as pb

_PRIORITY_TO_WIRE = {
    Priority.INTERACTIVE: pb.JOB_PRIORITY_INTERACTIVE,
    Priority.BATCH: pb.JOB_PRIORITY_BATCH,
}
_PRIORITY_FROM_WIRE = {v: k for k, v in _PRIORITY_TO_WIRE.items()}
_STATUS_TO_WIRE = {
    JobStatus.PENDING: pb.JOB_STATUS_PENDING,
    JobStatus.RUNNING: pb.JOB_STATUS_RUNNING,
    JobStatus.COMPLETED: pb.JOB_STATUS_COMPLETED,
    JobStatus.FAILED: pb.JOB_STATUS_FAILED,
    JobStatus.DENIED: pb.JOB_STATUS_DENIED,
    JobStatus.CANCELLED: pb.JOB_STATUS_CANCELLED,
    JobStatus.TIMEOUT: pb.JOB_STATUS_TIMEOUT,
    JobStatus.APPROVAL_REQUIRED: pb.JOB_STATUS_APPROVAL_REQUIRED,
}
_STATUS_FROM_WIRE = {v: k for k, v in _STATUS_TO_WIRE.items()}


def _set_time(ts: Timestamp, t: float) -> None:
    # Whole microseconds: a float epoch time carries no finer detail (~0.2 µs near 2026), and
    # runtimes that read Timestamps as datetime (betterproto) truncate to microseconds.
    seconds = math.floor(t)
    micros = round((t - seconds) * 1e6)  # t - floor(t) is exact; only this product rounds
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    ts.seconds, ts.nanos = seconds, micros * 1000


def _get_time(ts: Timestamp) -> float:
    # int / int is correctly rounded; converting the nanoseconds to float first is not.
    return (ts.seconds * 1_000_000_000 + ts.nanos) / 1_000_000_000


class ProtobufCodec:
    def encode(self, packet: BusPacket) -> bytes:
        msg = pb.BusPacket(
            trace_id=packet.trace_id,
            sender_id=packet.sender_id,
            protocol_version=packet.protocol_version,
        )
        _set_time(msg.created_at, packet.created_at)
        p = packet.payload
        if isinstance(p, JobRequest):
            r = msg.job_request
            r.job_id = p.job_id
            r.topic = p.topic
            r.priority = _PRIORITY_TO_WIRE[p.priority]
            r.context_ptr = p.context_ptr
            r.adapter_id = p.adapter_id
            r.tenant_id = p.tenant_id
            r.attempt = p.attempt
            r.prompt_bytes = p.prompt_bytes
            if p.labels:
                r.labels.update(p.labels)
            if p.deadline is not None:
                _set_time(r.deadline, p.deadline)
            if p.timeout_s is not None:
                r.timeout_s = p.timeout_s
        elif isinstance(p, JobResult):
            msg.job_result.CopyFrom(
                pb.JobResult(
                    job_id=p.job_id,
                    status=_STATUS_TO_WIRE[p.status],
                    result_ptr=p.result_ptr,
                    worker_id=p.worker_id,
                    execution_ms=p.execution_ms,
                    error_code=p.error_code,
                    error_message=p.error_message,
                    attempt=p.attempt,
                )
            )
        elif isinstance(p, Heartbeat):
            msg.heartbeat.CopyFrom(
                pb.Heartbeat(
                    worker_id=p.worker_id,
                    region=p.region,
                    type=p.type,
                    cpu_load=p.cpu_load,
                    gpu_utilization=p.gpu_utilization,
                    active_jobs=p.active_jobs,
                    capabilities=p.capabilities,
                    pool=p.pool,
                    max_parallel_jobs=p.max_parallel_jobs,
                )
            )
        elif isinstance(p, JobCancel):
            msg.job_cancel.job_id = p.job_id
            msg.job_cancel.reason = p.reason
            msg.job_cancel.attempt = p.attempt
        else:  # pragma: no cover - the Payload union is closed
            raise CodecError(f"cannot encode payload {type(p).__name__}")
        return msg.SerializeToString()

    def decode(self, data: bytes) -> BusPacket:
        msg = pb.BusPacket()
        try:
            msg.ParseFromString(data)
        except DecodeError as exc:
            raise CodecError(f"undecodable packet ({len(data)} bytes): {exc}") from exc
        if msg.protocol_version == 0:
            raise CodecError("packet has no protocol_version")
        kind = msg.WhichOneof("payload")
        payload: Payload
        if kind == "job_request":
            r = msg.job_request
            payload = JobRequest(
                job_id=r.job_id,
                topic=r.topic,
                context_ptr=r.context_ptr,
                priority=_PRIORITY_FROM_WIRE.get(r.priority, Priority.INTERACTIVE),
                adapter_id=r.adapter_id,
                tenant_id=r.tenant_id,
                labels=dict(r.labels),
                deadline=_get_time(r.deadline) if r.HasField("deadline") else None,
                attempt=r.attempt,
                prompt_bytes=r.prompt_bytes,
                timeout_s=r.timeout_s if r.HasField("timeout_s") else None,
            )
        elif kind == "job_result":
            s = msg.job_result
            status = _STATUS_FROM_WIRE.get(s.status)
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
        elif kind == "heartbeat":
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
        elif kind == "job_cancel":
            c = msg.job_cancel
            payload = JobCancel(job_id=c.job_id, reason=c.reason, attempt=c.attempt)
        else:
            raise CodecError("packet has no payload, or one this version does not know")
        return BusPacket(
            trace_id=msg.trace_id,
            sender_id=msg.sender_id,
            created_at=_get_time(msg.created_at),
            payload=payload,
            protocol_version=msg.protocol_version,
        )
