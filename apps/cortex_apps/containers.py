"""Composition: which adapter plays each port. The only place that knows them all.

``CortexServices`` wires the core's services (scheduler, front door, echo worker) once, to
adapters it receives as dependencies; each mode (``EmbeddedContainer`` here,
``DistributedContainer`` in ``distributed.py``) only chooses the adapters.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.config import ReloadingRouting
from cortex_adapters.config.policy import ReloadingPolicy
from cortex_adapters.grpc import CortexApiServer
from cortex_adapters.memory import (
    InMemoryBus,
    InMemoryJobStore,
    InMemoryMemoryStore,
    InMemoryWorkerRegistry,
    InProcessSafetyChecker,
)
from cortex_adapters.system import AsyncioConcurrency, SystemClock, UuidIdGenerator
from cortex_adapters.telemetry import OtelMetrics
from cortex_adapters.watch import BusJobWatch
from cortex_adapters.worker import Worker, WorkerConfig, echo_handler
from cortex_adapters.worker import echo as echo_worker
from cortex_apps.auth import build_gatekeeper
from cortex_core.frontdoor import FrontDoor
from cortex_core.ports import Bus, Clock, JobStore, MemoryStore, Metrics, SafetyChecker
from cortex_core.scheduler import DispatchMode, Scheduler, SchedulerConfig


class CortexServices(containers.DeclarativeContainer):
    """The services every mode runs, on whichever adapters the mode supplies."""

    config = providers.Configuration(strict=True)
    bus: providers.Dependency[Bus] = providers.Dependency()
    memory: providers.Dependency[MemoryStore] = providers.Dependency()
    jobs: providers.Dependency[JobStore] = providers.Dependency()
    metrics: providers.Dependency[Metrics] = providers.Dependency()
    clock: providers.Dependency[Clock] = providers.Dependency()
    safety: providers.Dependency[SafetyChecker] = providers.Dependency()

    ids = providers.Singleton(UuidIdGenerator)
    concurrency = providers.Singleton(AsyncioConcurrency)
    registry = providers.Singleton(InMemoryWorkerRegistry, clock=clock)
    routing = providers.Singleton(
        ReloadingRouting, config.routing_file, interval_s=config.routing_reload_s
    )

    scheduler = providers.Singleton(
        Scheduler,
        bus=bus,
        jobs=jobs,
        safety=safety,
        registry=registry,
        routing=routing,
        metrics=metrics,
        clock=clock,
        config=providers.Factory(
            SchedulerConfig,
            sender_id=config.process_name,
            stale_after_s=config.stale_after_s,
            dispatch_mode=config.dispatch_mode,
            max_attempts=config.max_attempts,
            max_in_flight=config.scheduler_max_in_flight,
            sweep_interval_s=config.sweep_interval_s,
            retry_backoff_s=config.retry_backoff_s,
            overrun_grace_s=config.overrun_grace_s,
        ),
        concurrency=concurrency,
    )
    echo_worker = providers.Singleton(
        Worker,
        config=providers.Factory(
            WorkerConfig,
            worker_id=config.worker_id,
            pool=echo_worker.POOL,
            topics=echo_worker.TOPICS,
            max_parallel_jobs=config.max_parallel_jobs,
            heartbeat_interval_s=config.heartbeat_interval_s,
        ),
        handler=echo_handler,
        bus=bus,
        memory=memory,
        clock=clock,
        metrics=metrics,
    )
    watch = providers.Singleton(BusJobWatch, bus=bus, metrics=metrics)
    frontdoor = providers.Singleton(
        FrontDoor,
        bus=bus,
        memory=memory,
        jobs=jobs,
        clock=clock,
        ids=ids,
        metrics=metrics,
        sender_id=config.process_name,
        watch=watch,
    )
    gatekeeper = providers.Singleton(
        build_gatekeeper,
        api_keys=config.api_keys,
        api_keys_file=config.api_keys_file,
        no_auth=config.no_auth,
        rate_limit_per_s=config.rate_limit_per_s,
        rate_limit_burst=config.rate_limit_burst,
        clock=clock,
    )
    cortex_api = providers.Singleton(
        CortexApiServer, frontdoor=frontdoor, gatekeeper=gatekeeper, address=config.grpc_addr
    )


class EmbeddedContainer(containers.DeclarativeContainer):
    """``cortex up``: gateway, scheduler, safety policy and an echo worker in one process,
    on in-memory adapters. Packets still cross the bus as protobuf bytes."""

    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    metrics = providers.Singleton(OtelMetrics, service="cortex-up")
    codec = providers.Singleton(ProtobufCodec)
    bus = providers.Singleton(InMemoryBus, codec=codec, metrics=metrics)
    memory = providers.Singleton(
        InMemoryMemoryStore,
        clock=clock,
        ttl_s=config.memory_ttl_s,
        max_value_bytes=config.max_value_bytes,
    )
    jobs = providers.Singleton(InMemoryJobStore)
    policy = providers.Singleton(
        ReloadingPolicy, config.policy_file, interval_s=config.policy_reload_s
    )
    safety = providers.Singleton(InProcessSafetyChecker, policy, metrics=metrics)
    services = providers.Container(
        CortexServices,
        config=config,
        bus=bus,
        memory=memory,
        jobs=jobs,
        metrics=metrics,
        clock=clock,
        safety=safety,
    )


DEFAULTS: dict[str, object] = {
    "process_name": "embedded",
    "memory_ttl_s": 24 * 3600.0,
    "max_value_bytes": 1 << 20,
    "routing_file": None,
    "routing_reload_s": 1.0,
    "policy_file": None,
    "policy_reload_s": 1.0,
    "worker_id": "echo-embedded",
    "max_parallel_jobs": 8,
    "heartbeat_interval_s": 5.0,
    "stale_after_s": 15.0,
    "sweep_interval_s": 1.0,
    "max_attempts": 3,
    "scheduler_max_in_flight": 64,
    "retry_backoff_s": 1.0,
    "overrun_grace_s": 5.0,
    "dispatch_mode": DispatchMode.WORKER,
    "api_keys": "",
    "api_keys_file": None,
    "no_auth": False,
    "rate_limit_per_s": 100.0,
    "rate_limit_burst": 200,
    "grpc_addr": "127.0.0.1:50052",
    "otlp_endpoint": None,
}
