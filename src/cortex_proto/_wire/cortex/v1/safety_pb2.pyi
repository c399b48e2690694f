from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecisionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_TYPE_UNSPECIFIED: _ClassVar[DecisionType]
    DECISION_TYPE_ALLOW: _ClassVar[DecisionType]
    DECISION_TYPE_DENY: _ClassVar[DecisionType]
    DECISION_TYPE_REQUIRE_APPROVAL: _ClassVar[DecisionType]
DECISION_TYPE_UNSPECIFIED: DecisionType
DECISION_TYPE_ALLOW: DecisionType
DECISION_TYPE_DENY: DecisionType
DECISION_TYPE_REQUIRE_APPROVAL: DecisionType

class PolicyCheckRequest(_message.Message):
    __slots__ = ("job_id", "topic", "tenant", "priority", "adapter_id", "labels", "prompt_bytes", "traceparent", "tracestate")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_BYTES_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    topic: str
    tenant: str
    priority: str
    adapter_id: str
    labels: _containers.ScalarMap[str, str]
    prompt_bytes: int
    traceparent: str
    tracestate: str
    def __init__(self, job_id: _Optional[str] = ..., topic: _Optional[str] = ..., tenant: _Optional[str] = ..., priority: _Optional[str] = ..., adapter_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., prompt_bytes: _Optional[int] = ..., traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ...) -> None: ...

class PolicyCheckResponse(_message.Message):
    __slots__ = ("decision", "reason", "rule_id", "invalid_request")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    INVALID_REQUEST_FIELD_NUMBER: _ClassVar[int]
    decision: DecisionType
    reason: str
    rule_id: str
    invalid_request: str
    def __init__(self, decision: _Optional[_Union[DecisionType, str]] = ..., reason: _Optional[str] = ..., rule_id: _Optional[str] = ..., invalid_request: _Optional[str] = ...) -> None: ...

class PolicyCheckBatch(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[PolicyCheckRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[PolicyCheckRequest, _Mapping]]] = ...) -> None: ...

class PolicyCheckBatchResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[PolicyCheckResponse]
    def __init__(self, decisions: _Optional[_Iterable[_Union[PolicyCheckResponse, _Mapping]]] = ...) -> None: ...

class RuleEvaluation(_message.Message):
    __slots__ = ("rule_id", "matched", "why")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    matched: bool
    why: str
    def __init__(self, rule_id: _Optional[str] = ..., matched: _Optional[bool] = ..., why: _Optional[str] = ...) -> None: ...

class PolicyExplanation(_message.Message):
    __slots__ = ("decision", "reason", "rule_id", "evaluations")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    decision: DecisionType
    reason: str
    rule_id: str
    evaluations: _containers.RepeatedCompositeFieldContainer[RuleEvaluation]
    def __init__(self, decision: _Optional[_Union[DecisionType, str]] = ..., reason: _Optional[str] = ..., rule_id: _Optional[str] = ..., evaluations: _Optional[_Iterable[_Union[RuleEvaluation, _Mapping]]] = ...) -> None: ...
