"""cortex_core: the pure domain of Cortex.

No I/O and no third-party imports (an import-linter contract enforces it). Embed it by
implementing the ports in ``cortex_core.ports``, or take the adapters in ``cortex_adapters``.
"""

from cortex_core.errors import (
    CodecError,
    ConfigError,
    CortexError,
    JobNotFound,
    PayloadTooLarge,
    PointerError,
    ResultNotReady,
)
from cortex_core.frontdoor import FrontDoor, SubmitJob, Submitted
from cortex_core.jobs import (
    ApprovalRequiredJob,
    CancelledJob,
    CompletedJob,
    DeniedJob,
    FailedJob,
    Job,
    JobSpec,
    PendingJob,
    RunningJob,
    TimedOutJob,
    new_job,
)
from cortex_core.messages import (
    BusPacket,
    Heartbeat,
    JobCancel,
    JobRequest,
    JobResult,
    JobStatus,
    Priority,
)
from cortex_core.policy import (
    Decision,
    Policy,
    PolicyExplanation,
    Rule,
    RuleEvaluation,
    SafetyDecision,
    SafetyRequest,
    default_policy,
)
from cortex_core.ports import (
    Bus,
    Clock,
    IdGenerator,
    JobStore,
    MemoryStore,
    Metrics,
    PacketCodec,
    SafetyChecker,
    WorkerRegistry,
)
from cortex_core.routing import RoutingTable
from cortex_core.scheduler import DispatchMode, Scheduler, SchedulerConfig
from cortex_core.scoring import ScoringWeights, Selection, WorkerState, pick_worker, score

__all__ = [
    "ApprovalRequiredJob",
    "Bus",
    "BusPacket",
    "CancelledJob",
    "Clock",
    "CodecError",
    "CompletedJob",
    "ConfigError",
    "CortexError",
    "Decision",
    "DeniedJob",
    "DispatchMode",
    "FailedJob",
    "FrontDoor",
    "Heartbeat",
    "IdGenerator",
    "Job",
    "JobCancel",
    "JobNotFound",
    "JobRequest",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "JobStore",
    "MemoryStore",
    "Metrics",
    "PacketCodec",
    "PayloadTooLarge",
    "PendingJob",
    "PointerError",
    "Policy",
    "PolicyExplanation",
    "Priority",
    "ResultNotReady",
    "RoutingTable",
    "Rule",
    "RuleEvaluation",
    "RunningJob",
    "SafetyChecker",
    "SafetyDecision",
    "SafetyRequest",
    "Scheduler",
    "SchedulerConfig",
    "ScoringWeights",
    "Selection",
    "SubmitJob",
    "Submitted",
    "TimedOutJob",
    "WorkerRegistry",
    "WorkerState",
    "default_policy",
    "new_job",
    "pick_worker",
    "score",
]
