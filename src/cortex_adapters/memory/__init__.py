"""In-memory adapters: real implementations of every port, for the embedded single-process
mode (``cortex up``) and for fast tests. They are held to the same contract suites as the
networked adapters."""

from cortex_adapters.memory.bus import InMemoryBus
from cortex_adapters.memory.metrics import InMemoryMetrics
from cortex_adapters.memory.registry import InMemoryWorkerRegistry
from cortex_adapters.memory.safety import InProcessSafetyChecker
from cortex_adapters.memory.stores import InMemoryJobStore, InMemoryMemoryStore

__all__ = [
    "InMemoryBus",
    "InMemoryJobStore",
    "InMemoryMemoryStore",
    "InMemoryMetrics",
    "InMemoryWorkerRegistry",
    "InProcessSafetyChecker",
]
