"""cortex_core imports only the standard library (import-linter checks the named ones; this
catches any third-party import at all) and its public surface is pinned."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import cortex_core

CORE = Path(cortex_core.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_imports_only_the_standard_library() -> None:
    offenders = {
        f"{path.name}: {root}"
        for path in CORE.rglob("*.py")
        for root in _imported_roots(path)
        if root not in sys.stdlib_module_names and root not in {"cortex_core", "__future__"}
    }
    assert not offenders


def test_public_exports_are_pinned() -> None:
    assert sorted(cortex_core.__all__) == [
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
        "Gatekeeper",
        "Heartbeat",
        "HeartbeatFeed",
        "IdGenerator",
        "InvalidField",
        "Job",
        "JobCancel",
        "JobConflict",
        "JobNotFound",
        "JobPage",
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
        "PoolLoad",
        "Priority",
        "RateLimit",
        "RateLimited",
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
        "SubmitLimits",
        "Submitted",
        "TimedOutJob",
        "Unauthenticated",
        "Unavailable",
        "WorkerRegistry",
        "WorkerState",
        "default_policy",
        "new_job",
        "parse_api_keys",
        "pick_worker",
        "pool_loads",
        "score",
    ]
    for name in cortex_core.__all__:
        assert hasattr(cortex_core, name), name
