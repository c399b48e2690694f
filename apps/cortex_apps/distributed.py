"""The separate processes: ``cortex gateway``, ``cortex scheduler``, ``cortex worker echo``.

They share NATS (the bus) and Redis (contexts, results and job state); each process runs only
the components it needs, and shuts them down gracefully on SIGTERM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from dependency_injector import containers, providers
from litestar import Litestar

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.config.policy import ReloadingPolicy
from cortex_adapters.grpc import GrpcSafetyChecker, SafetyKernelServer
from cortex_adapters.http import Gateway, Probe, create_app
from cortex_adapters.nats import NatsBus
from cortex_adapters.redis import RedisJobStore, RedisMemoryStore
from cortex_adapters.system import SystemClock
from cortex_adapters.telemetry import MetricsServer, NoMetrics, OtelMetrics, Tracing, make_metrics
from cortex_adapters.worker import Worker, WorkerConfig
from cortex_apps.containers import CortexServices
from cortex_apps.runtime import Periodic, lifespan, serve_until_signalled, with_drain
from cortex_apps.settings import Settings, instance_name
from cortex_apps.workers import WorkerKind
from cortex_core.heartbeats import HeartbeatFeed
from cortex_core.ports import Lifecycle
from cortex_core.scheduler import DispatchMode


class DistributedContainer(containers.DeclarativeContainer):
    """The separate processes: NATS for the bus, Redis for contexts, results and job state.

    Each process takes only the components it needs; ``config`` is a ``Settings`` as a dict.
    """

    config = providers.Configuration(strict=True)

    clock = providers.Singleton(SystemClock)
    metrics = providers.Singleton(
        make_metrics, service=config.process_name, enabled=config.metrics_enabled
    )
    codec = providers.Singleton(ProtobufCodec)
    bus = providers.Singleton(
        NatsBus,
        url=config.nats_url,
        name=config.process_name,
        codec=codec,
        metrics=metrics,
        durable=config.bus_durable,
        subject_prefix=config.subject_prefix,
        ack_wait_s=config.ack_wait_s,
        max_deliver=config.max_deliver,
        fetch_batch=config.bus_fetch_batch,
    )
    memory = providers.Singleton(
        RedisMemoryStore,
        url=config.redis_url,
        ttl_s=config.memory_ttl_s,
        max_value_bytes=config.max_value_bytes,
    )
    jobs = providers.Singleton(RedisJobStore, url=config.redis_url)
    safety = providers.Singleton(
        GrpcSafetyChecker,
        address=config.safety_kernel_addr,
        timeout_s=config.safety_timeout_s,
        metrics=metrics,
    )
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


def build_container(
    settings: Settings, process_name: str, *, fetch_batch: int = 1
) -> DistributedContainer:
    """The container of one process. ``fetch_batch``: messages one JetStream pull may ask for
    (the scheduler's short handlers only: ``NatsBus``)."""
    container = DistributedContainer()
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    container.config.from_dict(
        {**values, "process_name": process_name, "bus_fetch_batch": fetch_batch}
    )
    container.services.routing()  # a bad routing file stops the boot, before anything connects
    return container


@dataclasses.dataclass(frozen=True)
class Observability:
    """A process's tracing (off unless ``otlp_endpoint``) and, if ``metrics_port`` is set, its
    own ``/metrics`` server: started first, so they see everything, and stopped last."""

    tracing: Tracing
    server: MetricsServer | None

    @classmethod
    def of(
        cls, settings: Settings, service: str, instance: str, metrics: OtelMetrics | NoMetrics
    ) -> Observability:
        tracing = Tracing(service=service, instance=instance, endpoint=settings.otlp_endpoint)
        server = None
        if settings.metrics_port is not None:
            server = MetricsServer(metrics, host=settings.metrics_host, port=settings.metrics_port)
        return cls(tracing, server)

    @property
    def components(self) -> list[Lifecycle]:
        return [self.tracing] if self.server is None else [self.tracing, self.server]

    def ready(self, text: Callable[[], str]) -> Callable[[], str]:
        """The ready line: ``text()``, and where the metrics are served (once bound)."""
        server = self.server
        return text if server is None else lambda: f"{text()}; metrics on {server.url}"


def gateway_app(settings: Settings) -> Litestar:
    """REST and gRPC front doors on NATS and Redis; ``GET /v1/workers`` from the heartbeats;
    ``GET /metrics`` on the same port (and on ``metrics_port`` too, if set). It carries the
    front door's drain (``with_drain``), for the server to call as it begins to shut down."""
    name = instance_name("gateway")
    c = build_container(settings, name)
    s = c.services
    s.gatekeeper()  # bad access configuration stops the boot, before anything listens
    feed = HeartbeatFeed(bus=c.bus(), registry=s.registry(), clock=c.clock(), metrics=c.metrics())
    gateway = Gateway(
        frontdoor=s.frontdoor(),
        gatekeeper=s.gatekeeper(),
        clock=c.clock(),
        registry=s.registry(),
        stale_after_s=settings.stale_after_s,
        probes=[Probe("nats", c.bus().ping), Probe("redis", c.jobs().ping)],
        metrics=c.metrics(),
    )
    components = [
        *Observability.of(settings, "cortex-gateway", name, c.metrics()).components,
        c.bus(),
        c.memory(),
        c.jobs(),
        s.registry(),
        feed,
        s.watch(),
        s.cortex_api(),
    ]
    app = create_app(gateway, lifespan=[lifespan(lambda: components)])
    return with_drain(app, s.frontdoor().drain)


async def run_scheduler(settings: Settings) -> None:
    name = instance_name("scheduler")
    # Its handlers are short (store, kernel, bus): it pulls as many as it has free slots.
    c = build_container(settings, name, fetch_batch=settings.scheduler_max_in_flight)
    s = c.services
    seen = Observability.of(settings, "cortex-scheduler", name, c.metrics())
    sweep = Periodic(s.scheduler().sweep, settings.sweep_interval_s, "scheduler-sweep")
    components = [
        *seen.components,
        c.bus(),
        c.jobs(),
        s.routing(),
        s.registry(),
        c.safety(),
        s.scheduler(),
        sweep,
    ]
    await serve_until_signalled(components, seen.ready(lambda: "cortex scheduler ready"))


async def run_worker(settings: Settings, kind: WorkerKind) -> None:
    """One worker of ``kind``: the runtime on NATS and Redis, until SIGTERM."""
    worker_id = settings.worker_id or instance_name(kind.pool)
    # In worker dispatch mode the scheduler sends a worker no more jobs than it has free slots,
    # so a batched pull of its own subject never leaves a job queued without a slot. In pool
    # mode the pool's queue group could: one message per pull.
    batch = settings.max_parallel_jobs if settings.dispatch_mode is DispatchMode.WORKER else 1
    c = build_container(
        dataclasses.replace(settings, worker_id=worker_id), worker_id, fetch_batch=batch
    )
    worker = Worker(
        config=WorkerConfig(
            worker_id=worker_id,
            pool=kind.pool,
            topics=kind.topics,
            max_parallel_jobs=settings.max_parallel_jobs,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            job_timeout_s=settings.job_timeout_s,
        ),
        handler=kind.make_handler(),
        bus=c.bus(),
        memory=c.memory(),
        clock=c.clock(),
        metrics=c.metrics(),
    )
    seen = Observability.of(settings, f"cortex-worker-{kind.pool}", worker_id, c.metrics())
    ready = f"cortex worker {worker_id} ready (pool {kind.pool})"
    await serve_until_signalled(
        [*seen.components, c.bus(), c.memory(), worker], seen.ready(lambda: ready)
    )


async def run_safety_kernel(settings: Settings) -> None:
    """The Safety Kernel: the policy file (validated now, reloaded when it changes) over gRPC."""
    name = instance_name("safety-kernel")
    metrics = make_metrics(name, settings.metrics_enabled)
    seen = Observability.of(settings, "cortex-safety-kernel", name, metrics)
    policy = ReloadingPolicy(settings.policy_file, interval_s=settings.policy_reload_s)
    server = SafetyKernelServer(policy=policy, address=settings.safety_kernel_addr, metrics=metrics)
    await serve_until_signalled(
        [*seen.components, policy, server],
        seen.ready(lambda: f"cortex safety-kernel ready on {server.target}"),
    )
