import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_PRIORITY_UNSPECIFIED: _ClassVar[JobPriority]
    JOB_PRIORITY_INTERACTIVE: _ClassVar[JobPriority]
    JOB_PRIORITY_BATCH: _ClassVar[JobPriority]

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_PENDING: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_COMPLETED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_DENIED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]
    JOB_STATUS_TIMEOUT: _ClassVar[JobStatus]
    JOB_STATUS_APPROVAL_REQUIRED: _ClassVar[JobStatus]
JOB_PRIORITY_UNSPECIFIED: JobPriority
JOB_PRIORITY_INTERACTIVE: JobPriority
JOB_PRIORITY_BATCH: JobPriority
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_PENDING: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_COMPLETED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_DENIED: JobStatus
JOB_STATUS_CANCELLED: JobStatus
JOB_STATUS_TIMEOUT: JobStatus
JOB_STATUS_APPROVAL_REQUIRED: JobStatus

class BusPacket(_message.Message):
    __slots__ = ("trace_id", "sender_id", "created_at", "protocol_version", "job_request", "job_result", "heartbeat", "job_cancel")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_REQUEST_FIELD_NUMBER: _ClassVar[int]
    JOB_RESULT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    JOB_CANCEL_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    sender_id: str
    created_at: _timestamp_pb2.Timestamp
    protocol_version: int
    job_request: JobRequest
    job_result: JobResult
    heartbeat: Heartbeat
    job_cancel: JobCancel
    def __init__(self, trace_id: _Optional[str] = ..., sender_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., protocol_version: _Optional[int] = ..., job_request: _Optional[_Union[JobRequest, _Mapping]] = ..., job_result: _Optional[_Union[JobResult, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., job_cancel: _Optional[_Union[JobCancel, _Mapping]] = ...) -> None: ...

class JobRequest(_message.Message):
    __slots__ = ("job_id", "topic", "priority", "context_ptr", "adapter_id", "tenant_id", "labels", "deadline", "attempt", "prompt_bytes", "timeout_s")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_PTR_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_BYTES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    topic: str
    priority: JobPriority
    context_ptr: str
    adapter_id: str
    tenant_id: str
    labels: _containers.ScalarMap[str, str]
    deadline: _timestamp_pb2.Timestamp
    attempt: int
    prompt_bytes: int
    timeout_s: float
    def __init__(self, job_id: _Optional[str] = ..., topic: _Optional[str] = ..., priority: _Optional[_Union[JobPriority, str]] = ..., context_ptr: _Optional[str] = ..., adapter_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., prompt_bytes: _Optional[int] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("job_id", "status", "result_ptr", "worker_id", "execution_ms", "error_code", "error_message", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_PTR_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    status: JobStatus
    result_ptr: str
    worker_id: str
    execution_ms: int
    error_code: str
    error_message: str
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., result_ptr: _Optional[str] = ..., worker_id: _Optional[str] = ..., execution_ms: _Optional[int] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("worker_id", "region", "type", "cpu_load", "gpu_utilization", "active_jobs", "capabilities", "pool", "max_parallel_jobs")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CPU_LOAD_FIELD_NUMBER: _ClassVar[int]
    GPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_JOBS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_JOBS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    region: str
    type: str
    cpu_load: float
    gpu_utilization: float
    active_jobs: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    pool: str
    max_parallel_jobs: int
    def __init__(self, worker_id: _Optional[str] = ..., region: _Optional[str] = ..., type: _Optional[str] = ..., cpu_load: _Optional[float] = ..., gpu_utilization: _Optional[float] = ..., active_jobs: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., pool: _Optional[str] = ..., max_parallel_jobs: _Optional[int] = ...) -> None: ...

class JobCancel(_message.Message):
    __slots__ = ("job_id", "reason", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...
