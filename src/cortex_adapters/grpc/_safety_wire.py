"""The Safety Kernel's wire: core ``SafetyRequest``/``SafetyDecision`` ⇄ protobuf bytes.

``Check`` is on the per-job hot path, so by default it goes straight between the core's
dataclasses and protoc's upb classes (``safety_pb2``), as the bus codec does
(docs/adr/0002). The betterproto2 codec speaks the same bytes and stays selectable: it is the
baseline ``bench/bench_safety.py`` measures against, and docs/adr/0007 has the figures.
``Explain`` is for tooling and uses the betterproto2 messages. ``CheckBatch`` (many checks in
one call, each request carrying its own trace context) is upb only: it exists for speed.

Both sides (de)serialize in their own code, not in grpcio's serializer hooks, so a request
that can't be decoded or lacks a field becomes a precise ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol

from google.protobuf.message import DecodeError

from cortex_core.messages import Priority
from cortex_core.policy import (
    Decision,
    PolicyExplanation,
    RuleEvaluation,
    SafetyDecision,
    SafetyRequest,
)
from cortex_proto._wire.cortex.v1 import safety_pb2 as pb
from cortex_proto.cortex import v1

SERVICE_NAME = "cortex.v1.SafetyKernel"
CHECK_METHOD = f"/{SERVICE_NAME}/Check"
EXPLAIN_METHOD = f"/{SERVICE_NAME}/Explain"
CHECK_BATCH_METHOD = f"/{SERVICE_NAME}/CheckBatch"
MAX_BATCH = 1024
"""The most requests the kernel takes in one ``CheckBatch`` (INVALID_ARGUMENT beyond)."""
TRACE_FIELDS = ("traceparent", "tracestate")
"""The W3C trace context a batched request carries in its own fields."""

CheckCodecName = Literal["upb", "betterproto2"]

_DECISION_TO_WIRE = {
    Decision.ALLOW: 1,  # DECISION_TYPE_ALLOW
    Decision.DENY: 2,  # DECISION_TYPE_DENY
    Decision.REQUIRE_APPROVAL: 3,  # DECISION_TYPE_REQUIRE_APPROVAL
}
_DECISION_FROM_WIRE = {v: k for k, v in _DECISION_TO_WIRE.items()}


class InvalidRequest(ValueError):
    """A ``PolicyCheckRequest`` the kernel can't evaluate; the message names the field."""


class BadResponse(ValueError):
    """An answer from the kernel that is not a usable decision."""


class CheckCodec(Protocol):
    name: CheckCodecName

    def encode_request(self, req: SafetyRequest) -> bytes: ...

    def decode_request(self, data: bytes) -> SafetyRequest:
        """Raise ``InvalidRequest`` for bytes that are not a request the policy can evaluate."""
        ...

    def encode_decision(self, decision: SafetyDecision) -> bytes: ...

    def decode_decision(self, data: bytes) -> SafetyDecision:
        """Raise ``BadResponse`` for bytes that are not a decision."""
        ...


def _request(
    *,
    job_id: str,
    topic: str,
    tenant: str,
    priority: str,
    adapter_id: str,
    labels: Mapping[str, str],
    prompt_bytes: int,
) -> SafetyRequest:
    if not job_id:
        raise InvalidRequest("job_id is required")
    if not topic:
        raise InvalidRequest("topic is required")
    try:
        prio = Priority(priority) if priority else Priority.INTERACTIVE
    except ValueError:
        allowed = " or ".join(repr(p.value) for p in Priority)
        raise InvalidRequest(f"priority must be {allowed}, not {priority!r}") from None
    return SafetyRequest(
        job_id=job_id,
        topic=topic,
        tenant_id=tenant,
        priority=prio,
        adapter_id=adapter_id,
        labels=labels,
        prompt_bytes=prompt_bytes,
    )


def _decision(wire_value: int, reason: str, rule_id: str) -> SafetyDecision:
    decision = _DECISION_FROM_WIRE.get(wire_value)
    if decision is None:
        raise BadResponse(f"unknown decision {wire_value}")
    return SafetyDecision(decision=decision, reason=reason, rule_id=rule_id)


def _to_pb(req: SafetyRequest, trace: Mapping[str, str] | None = None) -> pb.PolicyCheckRequest:
    msg = pb.PolicyCheckRequest(
        job_id=req.job_id,
        topic=req.topic,
        tenant=req.tenant_id,
        priority=req.priority.value,
        adapter_id=req.adapter_id,
        labels=req.labels,
        prompt_bytes=req.prompt_bytes,
    )
    for name in TRACE_FIELDS:
        if trace and (value := trace.get(name)):
            setattr(msg, name, value)
    return msg


def _from_message(msg: pb.PolicyCheckRequest | v1.PolicyCheckRequest) -> SafetyRequest:
    """The request a decoded ``PolicyCheckRequest`` (upb or betterproto2) asks about."""
    return _request(
        job_id=msg.job_id,
        topic=msg.topic,
        tenant=msg.tenant,
        priority=msg.priority,
        adapter_id=msg.adapter_id,
        labels=dict(msg.labels),
        prompt_bytes=msg.prompt_bytes,
    )


def _decision_to_pb(decision: SafetyDecision) -> pb.PolicyCheckResponse:
    return pb.PolicyCheckResponse(
        decision=_DECISION_TO_WIRE[decision.decision],  # type: ignore[arg-type]
        reason=decision.reason,
        rule_id=decision.rule_id,
    )


class UpbCheckCodec:
    """Core dataclasses ⇄ ``safety_pb2`` (upb) ⇄ bytes: the codec on the wire."""

    name: CheckCodecName = "upb"

    def encode_request(self, req: SafetyRequest) -> bytes:
        return _to_pb(req).SerializeToString()

    def decode_request(self, data: bytes) -> SafetyRequest:
        try:
            msg = pb.PolicyCheckRequest.FromString(data)
        except DecodeError as exc:
            raise InvalidRequest(f"not a PolicyCheckRequest: {exc}") from None
        return _from_message(msg)

    def encode_decision(self, decision: SafetyDecision) -> bytes:
        return _decision_to_pb(decision).SerializeToString()

    def decode_decision(self, data: bytes) -> SafetyDecision:
        try:
            msg = pb.PolicyCheckResponse.FromString(data)
        except DecodeError as exc:
            raise BadResponse(f"not a PolicyCheckResponse: {exc}") from None
        return _decision(msg.decision, msg.reason, msg.rule_id)


# -- CheckBatch (upb) ------------------------------------------------------------------------

BatchedRequest = tuple[SafetyRequest | InvalidRequest, dict[str, str]]
"""A request of a batch, or why it can't be evaluated; and its trace context."""


def encode_check_batch(items: Sequence[tuple[SafetyRequest, Mapping[str, str]]]) -> bytes:
    """A ``PolicyCheckBatch`` of ``(request, its trace context)``."""
    return pb.PolicyCheckBatch(
        requests=[_to_pb(req, trace) for req, trace in items]
    ).SerializeToString()


def decode_check_batch(data: bytes) -> list[BatchedRequest]:
    """Each request of a batch, or the ``InvalidRequest`` it is; ``InvalidRequest`` for bytes
    that are no batch at all, or a batch of more than ``MAX_BATCH``."""
    try:
        msg = pb.PolicyCheckBatch.FromString(data)
    except DecodeError as exc:
        raise InvalidRequest(f"not a PolicyCheckBatch: {exc}") from None
    if len(msg.requests) > MAX_BATCH:
        raise InvalidRequest(f"requests: at most {MAX_BATCH} in one batch, not {len(msg.requests)}")
    out: list[BatchedRequest] = []
    for item in msg.requests:
        trace = {name: value for name in TRACE_FIELDS if (value := getattr(item, name))}
        try:
            out.append((_from_message(item), trace))
        except InvalidRequest as exc:
            out.append((exc, trace))
    return out


def encode_batch_decisions(answers: Sequence[SafetyDecision | InvalidRequest]) -> bytes:
    return pb.PolicyCheckBatchResponse(
        decisions=[
            pb.PolicyCheckResponse(invalid_request=str(a))
            if isinstance(a, InvalidRequest)
            else _decision_to_pb(a)
            for a in answers
        ]
    ).SerializeToString()


def decode_batch_decisions(data: bytes, expected: int) -> list[SafetyDecision | InvalidRequest]:
    """The answers to a batch of ``expected`` requests, in order; ``BadResponse`` for anything
    else (undecodable, another count, an unknown decision)."""
    try:
        msg = pb.PolicyCheckBatchResponse.FromString(data)
    except DecodeError as exc:
        raise BadResponse(f"not a PolicyCheckBatchResponse: {exc}") from None
    if len(msg.decisions) != expected:
        raise BadResponse(f"{len(msg.decisions)} answers to a batch of {expected} requests")
    return [
        InvalidRequest(d.invalid_request)
        if d.invalid_request
        else _decision(d.decision, d.reason, d.rule_id)
        for d in msg.decisions
    ]


class BetterprotoCheckCodec:
    """Core dataclasses ⇄ betterproto2 messages ⇄ bytes: the same bytes, the typed messages."""

    name: CheckCodecName = "betterproto2"

    def encode_request(self, req: SafetyRequest) -> bytes:
        return v1.PolicyCheckRequest(
            job_id=req.job_id,
            topic=req.topic,
            tenant=req.tenant_id,
            priority=req.priority.value,
            adapter_id=req.adapter_id,
            labels=dict(req.labels),
            prompt_bytes=req.prompt_bytes,
        ).SerializeToString()

    def decode_request(self, data: bytes) -> SafetyRequest:
        try:
            msg = v1.PolicyCheckRequest.FromString(data)
        except Exception as exc:  # betterproto2 raises whatever its parser hit
            raise InvalidRequest(f"not a PolicyCheckRequest: {exc}") from None
        return _from_message(msg)

    def encode_decision(self, decision: SafetyDecision) -> bytes:
        return v1.PolicyCheckResponse(
            decision=v1.DecisionType(_DECISION_TO_WIRE[decision.decision]),
            reason=decision.reason,
            rule_id=decision.rule_id,
        ).SerializeToString()

    def decode_decision(self, data: bytes) -> SafetyDecision:
        try:
            msg = v1.PolicyCheckResponse.FromString(data)
        except Exception as exc:
            raise BadResponse(f"not a PolicyCheckResponse: {exc}") from None
        return _decision(int(msg.decision), msg.reason, msg.rule_id)


def check_codec(name: CheckCodecName) -> CheckCodec:
    if name == "upb":
        return UpbCheckCodec()
    if name == "betterproto2":
        return BetterprotoCheckCodec()
    raise ValueError(f"unknown check codec {name!r}: 'upb' or 'betterproto2'")


def encode_explanation(explanation: PolicyExplanation) -> bytes:
    d = explanation.decision
    return v1.PolicyExplanation(
        decision=v1.DecisionType(_DECISION_TO_WIRE[d.decision]),
        reason=d.reason,
        rule_id=d.rule_id,
        evaluations=[
            v1.RuleEvaluation(rule_id=e.rule_id, matched=e.matched, why=e.why)
            for e in explanation.evaluations
        ],
    ).SerializeToString()


def decode_explanation(data: bytes) -> PolicyExplanation:
    try:
        msg = v1.PolicyExplanation.FromString(data)
    except Exception as exc:
        raise BadResponse(f"not a PolicyExplanation: {exc}") from None
    return PolicyExplanation(
        decision=_decision(int(msg.decision), msg.reason, msg.rule_id),
        evaluations=tuple(
            RuleEvaluation(rule_id=e.rule_id, matched=e.matched, why=e.why) for e in msg.evaluations
        ),
    )
