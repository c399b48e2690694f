"""Settings for the separate processes: environment variables, then command-line flags.

Every setting has an environment variable; flags given on the command line win. Defaults
point at the standard loopback ports.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields

from cortex_core.errors import ConfigError
from cortex_core.scheduler import DispatchMode

ENV_VARS: Mapping[str, str] = {
    "nats_url": "NATS_URL",
    "redis_url": "REDIS_URL",
    "safety_kernel_addr": "SAFETY_KERNEL_ADDR",
    "safety_timeout_s": "CORTEX_SAFETY_TIMEOUT_S",
    "policy_file": "CORTEX_POLICY_FILE",
    "policy_reload_s": "CORTEX_POLICY_RELOAD_S",
    "bus_durable": "CORTEX_BUS_DURABLE",
    "subject_prefix": "CORTEX_SUBJECT_PREFIX",
    "ack_wait_s": "CORTEX_ACK_WAIT_S",
    "max_deliver": "CORTEX_MAX_DELIVER",
    "memory_ttl_s": "CORTEX_MEMORY_TTL_S",
    "max_value_bytes": "CORTEX_MAX_VALUE_BYTES",
    "routing_file": "CORTEX_ROUTING_FILE",
    "routing_reload_s": "CORTEX_ROUTING_RELOAD_S",
    "dispatch_mode": "CORTEX_DISPATCH_MODE",
    "stale_after_s": "CORTEX_STALE_AFTER_S",
    "sweep_interval_s": "CORTEX_SWEEP_INTERVAL_S",
    "max_attempts": "CORTEX_MAX_ATTEMPTS",
    "scheduler_max_in_flight": "CORTEX_SCHEDULER_MAX_IN_FLIGHT",
    "retry_backoff_s": "CORTEX_RETRY_BACKOFF_S",
    "overrun_grace_s": "CORTEX_OVERRUN_GRACE_S",
    "worker_id": "CORTEX_WORKER_ID",
    "max_parallel_jobs": "CORTEX_MAX_PARALLEL_JOBS",
    "heartbeat_interval_s": "CORTEX_HEARTBEAT_INTERVAL_S",
    "job_timeout_s": "CORTEX_JOB_TIMEOUT_S",
    "api_keys": "CORTEX_API_KEYS",
    "api_keys_file": "CORTEX_API_KEYS_FILE",
    "no_auth": "CORTEX_NO_AUTH",
    "rate_limit_per_s": "CORTEX_RATE_LIMIT_PER_S",
    "rate_limit_burst": "CORTEX_RATE_LIMIT_BURST",
    "grpc_addr": "CORTEX_GRPC_ADDR",
    "metrics_enabled": "CORTEX_METRICS_ENABLED",
    "metrics_port": "CORTEX_METRICS_PORT",
    "metrics_host": "CORTEX_METRICS_HOST",
    "otlp_endpoint": "CORTEX_OTLP_ENDPOINT",
    "log_format": "CORTEX_LOG_FORMAT",
}
"""Each setting's environment variable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str = "redis://127.0.0.1:6379/0"
    safety_kernel_addr: str = "127.0.0.1:50051"
    """Where the scheduler finds the Safety Kernel, and where ``cortex safety-kernel`` listens."""
    safety_timeout_s: float = 0.25
    """The scheduler's per-call deadline on the kernel; past it the job is DENIED (fail closed)."""
    policy_file: str | None = None
    """The safety policy (YAML); None: the shipped policy. Reloaded when it changes."""
    policy_reload_s: float = 1.0
    bus_durable: bool = True
    """JetStream (at-least-once) for job subjects; False: core NATS everywhere (at-most-once)."""
    subject_prefix: str = ""
    """Namespace every subject on the wire (several deployments on one NATS server)."""
    ack_wait_s: float = 30.0
    max_deliver: int = 5
    memory_ttl_s: float = 24 * 3600.0
    max_value_bytes: int = 1 << 20
    routing_file: str | None = None
    routing_reload_s: float = 1.0
    """How often the routing file is checked for changes."""
    dispatch_mode: DispatchMode = DispatchMode.WORKER
    """``worker``: the least-loaded worker's own subject (a job whose worker dies is requeued by
    the sweep once the worker is stale); ``pool``: the pool's queue group picks."""
    stale_after_s: float = 15.0
    sweep_interval_s: float = 1.0
    """How often a scheduler looks for jobs whose worker went silent or whose deadline passed."""
    scheduler_max_in_flight: int = 64
    """Submits, and results, one scheduler handles at once."""
    max_attempts: int = 3
    """Attempts a job gets (its worker went silent, or it overran ``timeout_s``) before it FAILS."""
    retry_backoff_s: float = 1.0
    """The wait before attempt n+1: ``retry_backoff_s * 2**(n-1)``, at most 60 s."""
    overrun_grace_s: float = 5.0
    """How long past its ``timeout_s`` an unreported attempt is given before it is cancelled."""
    worker_id: str = ""
    max_parallel_jobs: int = 4
    heartbeat_interval_s: float = 5.0
    job_timeout_s: float | None = None
    """A worker's limit on any one job, whatever its deadline (None: only the deadline)."""
    api_keys: str = ""
    """``key1=tenant-a,key2=tenant-b``: with keys configured (here or in the file), auth is on."""
    api_keys_file: str | None = None
    """A file of ``<key>=<tenant>`` lines (``#`` comments), for real deployments."""
    no_auth: bool = False
    """Development only: no API keys, every job in one tenant. Announced loudly at start."""
    rate_limit_per_s: float = 100.0
    """Requests a second per API key, on average (0: no limit); per gateway process."""
    rate_limit_burst: int = 200
    grpc_addr: str = "127.0.0.1:50052"
    """Where the gateway serves the gRPC ``CortexApi`` (port 0: any free port)."""
    metrics_enabled: bool = True
    """False: metrics are not recorded (``/metrics`` shows only the process's own series)."""
    metrics_port: int | None = None
    """Serve Prometheus ``/metrics`` on this port (0: any free one, printed when ready); None:
    none. The gateway always serves ``/metrics`` on its own HTTP port too."""
    metrics_host: str = "127.0.0.1"
    otlp_endpoint: str | None = None
    """Export traces over OTLP/HTTP to this URL (``http://collector:4318/v1/traces``); None:
    tracing stays off (trace context still travels on every message)."""
    log_format: str = "auto"
    """``json``, ``console``, or ``auto``: JSON unless stderr is a terminal."""

    @classmethod
    def env_name(cls, field: str) -> str:
        return ENV_VARS[field]

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
    ) -> Settings:
        """Environment first, then ``overrides`` (flags; None means "not given")."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = ENV_VARS[f.name]
            if name in env and env[name] != "":
                values[f.name] = _parse(name, env[name], f.type)
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        return cls(**values)  # type: ignore[arg-type]


def _parse(name: str, raw: str, kind: object) -> object:
    kind = str(kind).removesuffix(" | None")
    try:
        if kind == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "DispatchMode":
            return DispatchMode(raw)
    except ValueError as exc:
        raise ConfigError(name, f"{raw!r} is not valid: {exc}") from exc
    return raw


def instance_name(kind: str) -> str:
    """``<kind>-<host>-<pid>``, reduced to a valid subject token: a default process/worker id."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40]
    return f"{kind}-{host}-{os.getpid()}"
