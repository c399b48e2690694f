"""The systems of the end-to-end benchmark, each started as real processes on loopback.

A system is a context manager: given the run's settings and a private Redis database, it starts
its server processes (each waited for until it says it is ready), yields the clients to run
against them, and on the way out stops every process and deletes what it made on NATS (its
JetStream stream). The orchestrator flushes the Redis database afterwards.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

from bench.e2e.procs import CORTEX, Group
from cortex_adapters.nats import stream_name

E2E = Path(__file__).resolve().parent
PEERS = ("celery", "dramatiq", "taskiq")
CORTEX_QUIET = ("--log-level", "warning")
CORTEX_BANNER = r"Cortex is up \(.*\) on (http://\S+)"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    nats_url: str
    workers: int
    concurrency: int
    jobs: int
    sequential: int
    warmup: int
    poll_ms: float
    timeout_s: float
    taskiq_broker: str
    peer_python: dict[str, Path] = field(default_factory=dict)

    def client_args(self) -> list[str]:
        return [
            f"--jobs={self.jobs}",
            f"--concurrency={self.concurrency}",
            f"--sequential={self.sequential}",
            f"--warmup={self.warmup}",
            f"--poll-ms={self.poll_ms:g}",
            f"--timeout-s={self.timeout_s:g}",
        ]


@dataclass(frozen=True, slots=True)
class ClientSpec:
    row: str
    argv: list[str]
    env: dict[str, str]


Running = Iterator[tuple[Group, list[ClientSpec]]]
Starter = Callable[[RunConfig, str], AbstractContextManager[tuple[Group, list[ClientSpec]]]]


@dataclass(frozen=True, slots=True)
class System:
    name: str
    rows: tuple[str, ...]
    """The result rows (clients) it yields: Cortex has two, REST and bus."""
    start: Starter
    peer: str | None = None
    """The peer whose virtualenv runs it (None: the project's environment)."""


def _token() -> str:
    return uuid.uuid4().hex[:10]


def _js_stream(nats_url: str, name: str, subjects: Sequence[str] | None) -> None:
    """Create the stream (``subjects``) or, with ``subjects=None``, delete it if it exists."""

    async def act() -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            if subjects is None:
                with suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(name)
            else:
                config = StreamConfig(name=name, subjects=list(subjects), storage=StorageType.FILE)
                await js.add_stream(config)
        finally:
            await nc.close()

    asyncio.run(act())


def _delete_stream(nats_url: str, name: str) -> None:
    try:
        _js_stream(nats_url, name, None)
    except Exception as exc:
        print(f"stream {name} not deleted: {exc!r}", file=sys.stderr)


def _floor(jetstream: bool) -> Starter:
    @contextmanager
    def start(cfg: RunConfig, redis_url: str) -> Running:
        prefix = f"floor{_token()}."
        stream = prefix.rstrip(".").upper()
        env = {
            "NATS_URL": cfg.nats_url,
            "REDIS_URL": redis_url,
            "BENCH_PREFIX": prefix,
            "BENCH_FLOOR_BUS": "jetstream" if jetstream else "core",
        }
        script = str(E2E / "floor.py")
        group = Group()
        try:
            if jetstream:
                subjects = [prefix + s for s in ("submit", "work", "result")]
                _js_stream(cfg.nats_url, stream, subjects)
            group.start("floor router", [sys.executable, script, "router"], env=env)
            for i in range(cfg.workers):
                group.start(f"floor worker {i}", [sys.executable, script, "worker"], env=env)
            for p in group.procs:
                p.ready(r"floor \w+ ready")
            client = [sys.executable, script, "client", *cfg.client_args()]
            yield group, [ClientSpec("floor-js" if jetstream else "floor", client, env)]
        finally:
            try:
                group.stop()
            finally:
                if jetstream:
                    _delete_stream(cfg.nats_url, stream)

    return start


def _peer_python(cfg: RunConfig, peer: str) -> str:
    return str(cfg.peer_python[peer])


@contextmanager
def _celery(cfg: RunConfig, redis_url: str) -> Running:
    python = _peer_python(cfg, "celery")
    env = {"REDIS_URL": redis_url, "BENCH_QUEUE": f"bench-e2e-{_token()}", "PYTHONPATH": str(E2E)}
    group = Group()
    try:
        for i in range(cfg.workers):
            argv = [python, "-m", "celery", "-A", "peer_celery", "worker"]
            argv += ["--pool", "threads", f"--concurrency={cfg.concurrency}"]
            argv += ["-Q", env["BENCH_QUEUE"], "-n", f"bench{i}@%h", "--loglevel", "WARNING"]
            argv += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
            group.start(f"celery worker {i}", argv, env=env, cwd=E2E)
        for p in group.procs:
            p.ready("celery worker ready")
        client = [python, str(E2E / "peer_celery.py"), *cfg.client_args()]
        yield group, [ClientSpec("celery", client, env)]
    finally:
        group.stop()


@contextmanager
def _dramatiq(cfg: RunConfig, redis_url: str) -> Running:
    python = _peer_python(cfg, "dramatiq")
    env = {
        "REDIS_URL": redis_url,
        "BENCH_QUEUE": f"bench-e2e-{_token()}",
        "PYTHONPATH": str(E2E),
        "dramatiq_worker_timeout": "10",  # its idle polling, capped at 10 ms like every peer's
    }
    group = Group()
    try:
        for i in range(cfg.workers):
            argv = [python, "-m", "dramatiq", "peer_dramatiq", "--processes", "1"]
            argv += ["--threads", str(cfg.concurrency), "--queues", env["BENCH_QUEUE"]]
            group.start(f"dramatiq worker {i}", argv, env=env, cwd=E2E)
        for p in group.procs:
            p.ready("dramatiq worker ready")
        client = [python, str(E2E / "peer_dramatiq.py"), *cfg.client_args()]
        yield group, [ClientSpec("dramatiq", client, env)]
    finally:
        group.stop()


@contextmanager
def _taskiq(cfg: RunConfig, redis_url: str) -> Running:
    python = _peer_python(cfg, "taskiq")
    prefix = f"taskiq{_token()}."
    env = {
        "NATS_URL": cfg.nats_url,
        "REDIS_URL": redis_url,
        "BENCH_PREFIX": prefix,
        "BENCH_TASKIQ_BROKER": cfg.taskiq_broker,
        "PYTHONPATH": str(E2E),
    }
    group = Group()
    try:
        for i in range(cfg.workers):
            argv = [python, "-m", "taskiq", "worker", "peer_taskiq:broker", "--workers", "1"]
            argv += [f"--max-async-tasks={2 * cfg.concurrency}", "--log-level", "WARNING"]
            # Its worker child does not always exit after a SIGTERM (it shuts its broker down,
            # then lingers: taskiq-python/taskiq#646); what is left is killed after 3 s.
            group.start(f"taskiq worker {i}", argv, env=env, cwd=E2E, grace_s=3.0)
        for p in group.procs:
            p.ready("taskiq worker ready")
        client = [python, str(E2E / "peer_taskiq.py"), *cfg.client_args()]
        yield group, [ClientSpec("taskiq", client, env)]
    finally:
        try:
            group.stop()
        finally:
            if cfg.taskiq_broker == "jetstream":
                _delete_stream(cfg.nats_url, prefix.rstrip(".").upper())


def _cortex(*, metrics: bool) -> Starter:
    """Cortex's processes; ``metrics=False`` runs them with ``CORTEX_METRICS_ENABLED=false``,
    for the metrics overhead (its REST row is ``cortex-rest-nometrics``)."""

    @contextmanager
    def run(cfg: RunConfig, redis_url: str) -> Running:
        with _cortex_processes(cfg, redis_url, metrics=metrics) as (group, clients):
            if not metrics:
                clients = [
                    ClientSpec("cortex-rest-nometrics", c.argv, c.env)
                    for c in clients
                    if c.row == "cortex-rest"
                ]
            yield group, clients

    return run


@contextmanager
def _cortex_processes(cfg: RunConfig, redis_url: str, *, metrics: bool) -> Running:
    """The Safety Kernel, the gateway, a scheduler and N echo workers, as deployed."""
    prefix = f"benche2e{_token()}."
    env = {
        "CORTEX_METRICS_ENABLED": "true" if metrics else "false",
        "NATS_URL": cfg.nats_url,
        "REDIS_URL": redis_url,
        "CORTEX_SUBJECT_PREFIX": prefix,
        "CORTEX_NO_AUTH": "1",
        "CORTEX_RATE_LIMIT_PER_S": "0",
        "CORTEX_GRPC_ADDR": "127.0.0.1:0",
        "CORTEX_MAX_PARALLEL_JOBS": str(cfg.concurrency),
    }
    group = Group()
    try:
        kernel = group.start(
            "cortex safety-kernel",
            [CORTEX, "safety-kernel", "--address", "127.0.0.1:0", *CORTEX_QUIET],
            env=env,
        )
        env["SAFETY_KERNEL_ADDR"] = kernel.ready(r"safety-kernel ready on (\S+)").group(1)
        gateway = group.start(
            "cortex gateway",
            [CORTEX, "gateway", "--no-auth", "--port", "0", *CORTEX_QUIET],
            env=env,
        )
        scheduler = group.start("cortex scheduler", [CORTEX, "scheduler", *CORTEX_QUIET], env=env)
        workers = [
            group.start(f"cortex worker {i}", [CORTEX, "worker", "echo", *CORTEX_QUIET], env=env)
            for i in range(cfg.workers)
        ]
        base = gateway.ready(CORTEX_BANNER).group(1)
        scheduler.ready("cortex scheduler ready")
        for w in workers:
            w.ready("cortex worker .* ready")
        client = [sys.executable, str(E2E / "cortex_client.py"), *cfg.client_args()]
        yield (
            group,
            [
                ClientSpec(
                    "cortex-rest", client, {"BENCH_CORTEX_MODE": "rest", "BENCH_CORTEX_URL": base}
                ),
                ClientSpec("cortex-bus", client, {**env, "BENCH_CORTEX_MODE": "bus"}),
            ],
        )
    finally:
        try:
            group.stop()
        finally:
            _delete_stream(cfg.nats_url, stream_name(prefix))


SYSTEMS: tuple[System, ...] = (
    System("floor", ("floor",), _floor(jetstream=False)),
    System("floor-js", ("floor-js",), _floor(jetstream=True)),
    System("celery", ("celery",), _celery, peer="celery"),
    System("dramatiq", ("dramatiq",), _dramatiq, peer="dramatiq"),
    System("taskiq", ("taskiq",), _taskiq, peer="taskiq"),
    System("cortex", ("cortex-rest", "cortex-bus"), _cortex(metrics=True)),
    System("cortex-nometrics", ("cortex-rest-nometrics",), _cortex(metrics=False)),
)
ROWS = tuple(row for s in SYSTEMS for row in s.rows)
