"""The worker runtime and the workers that ship with Cortex."""

from cortex_adapters.worker.echo import echo_handler
from cortex_adapters.worker.runtime import JobContext, Worker, WorkerConfig

__all__ = ["JobContext", "Worker", "WorkerConfig", "echo_handler"]
