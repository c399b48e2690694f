"""Field numbers that have landed are frozen: this test pins every one of them.

Appending a field or an enum value means adding it here too. Changing or removing an entry
that is already here breaks every peer that speaks the old schema: don't.
"""

from __future__ import annotations

import dataclasses
import enum

import pytest

from cortex_proto._wire.cortex.v1 import bus_pb2
from cortex_proto.cortex import v1

FROZEN_FIELDS: dict[str, dict[str, int]] = {
    "BusPacket": {
        "trace_id": 1,
        "sender_id": 2,
        "created_at": 3,
        "protocol_version": 4,
        "job_request": 10,
        "job_result": 11,
        "heartbeat": 12,
        "job_cancel": 13,
    },
    "JobRequest": {
        "job_id": 1,
        "topic": 2,
        "priority": 3,
        "context_ptr": 4,
        "adapter_id": 5,
        "tenant_id": 6,
        "labels": 7,
        "deadline": 8,
        "attempt": 9,
        "prompt_bytes": 10,
    },
    "JobResult": {
        "job_id": 1,
        "status": 2,
        "result_ptr": 3,
        "worker_id": 4,
        "execution_ms": 5,
        "error_code": 6,
        "error_message": 7,
    },
    "Heartbeat": {
        "worker_id": 1,
        "region": 2,
        "type": 3,
        "cpu_load": 4,
        "gpu_utilization": 5,
        "active_jobs": 6,
        "capabilities": 7,
        "pool": 8,
        "max_parallel_jobs": 9,
    },
    "JobCancel": {"job_id": 1, "reason": 2},
    "SubmitJobRequest": {
        "prompt": 1,
        "topic": 2,
        "adapter_id": 3,
        "priority": 4,
        "labels": 5,
        "idempotency_key": 6,
        "timeout_s": 7,
    },
    "SubmitJobResponse": {"job_id": 1, "trace_id": 2},
    "GetJobStatusRequest": {"job_id": 1},
    "GetJobStatusResponse": {
        "job_id": 1,
        "status": 2,
        "result_ptr": 3,
        "worker_id": 4,
        "attempts": 5,
        "reason": 6,
        "trace_id": 7,
    },
    "PolicyCheckRequest": {
        "job_id": 1,
        "topic": 2,
        "tenant": 3,
        "priority": 4,
        "adapter_id": 5,
        "labels": 6,
        "prompt_bytes": 7,
        "traceparent": 8,
        "tracestate": 9,
    },
    "PolicyCheckResponse": {"decision": 1, "reason": 2, "rule_id": 3, "invalid_request": 4},
    "PolicyCheckBatch": {"requests": 1},
    "PolicyCheckBatchResponse": {"decisions": 1},
    "RuleEvaluation": {"rule_id": 1, "matched": 2, "why": 3},
    "PolicyExplanation": {"decision": 1, "reason": 2, "rule_id": 3, "evaluations": 4},
}
FROZEN_ENUMS: dict[str, dict[str, int]] = {
    "JobPriority": {"UNSPECIFIED": 0, "INTERACTIVE": 1, "BATCH": 2},
    "JobStatus": {
        "UNSPECIFIED": 0,
        "PENDING": 1,
        "RUNNING": 2,
        "COMPLETED": 3,
        "FAILED": 4,
        "DENIED": 5,
        "CANCELLED": 6,
        "TIMEOUT": 7,
        "APPROVAL_REQUIRED": 8,
    },
    "DecisionType": {"UNSPECIFIED": 0, "ALLOW": 1, "DENY": 2, "REQUIRE_APPROVAL": 3},
}


@pytest.mark.parametrize("name", sorted(FROZEN_FIELDS))
def test_landed_field_numbers_are_unchanged(name: str) -> None:
    numbers = {
        f.name: f.metadata["betterproto"].number for f in dataclasses.fields(getattr(v1, name))
    }
    landed = FROZEN_FIELDS[name]
    assert {k: numbers.get(k) for k in landed} == landed
    appended = {k: n for k, n in numbers.items() if k not in landed}
    assert all(n > max(landed.values()) for n in appended.values()), (
        f"append new fields: {appended}"
    )


@pytest.mark.parametrize("name", sorted(FROZEN_ENUMS))
def test_landed_enum_values_are_unchanged(name: str) -> None:
    members: type[enum.Enum] = getattr(v1, name)
    values = {m.name: m.value for m in members}
    assert {k: values.get(k) for k in FROZEN_ENUMS[name]} == FROZEN_ENUMS[name]


LANDED_BUS_FIELDS: dict[tuple[str, str], tuple[int, str, bool]] = {
    ("JobRequest", "timeout_s"): (11, "double", True),
    ("JobResult", "attempt"): (8, "uint32", False),
    ("JobCancel", "attempt"): (3, "uint32", False),
}
"""bus.proto fields for per-attempt time limits and cancels: (number, type, presence). A
``timeout_s`` of 0.0 must stay apart from an unset one, so it keeps ``optional``."""


@pytest.mark.parametrize(("message", "name"), sorted(LANDED_BUS_FIELDS))
def test_landed_bus_fields_are_unchanged_in_both_runtimes(message: str, name: str) -> None:
    number, proto_type, presence = LANDED_BUS_FIELDS[message, name]
    (bp,) = (
        f.metadata["betterproto"]
        for f in dataclasses.fields(getattr(v1, message))
        if f.name == name
    )
    assert (bp.number, bp.proto_type, bp.optional) == (number, proto_type, presence)
    upb = getattr(bus_pb2, message).DESCRIPTOR.fields_by_name[name]
    upb_type = {"double": upb.TYPE_DOUBLE, "uint32": upb.TYPE_UINT32}[proto_type]
    assert (upb.number, upb.type, upb.has_presence) == (number, upb_type, presence)
