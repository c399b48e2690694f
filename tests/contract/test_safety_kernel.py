"""The Safety Kernel over gRPC, on real loopback sockets, and the scheduler's fail-closed client.

The first tests are the ``SafetyChecker`` contract, held by every adapter of the port: the
in-process checker and ``GrpcSafetyChecker`` against a real ``SafetyKernelServer`` (with each
``Check`` codec). The policy is a file in ``tmp_path`` behind a ``ReloadingPolicy``. The rest
is what only the service has: Explain, INVALID_ARGUMENT, health, reflection, the deadline, the
circuit breaker, and the core ``Scheduler`` living through a kernel that dies and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.config import DEFAULT_POLICY_FILE, ReloadingPolicy
from cortex_adapters.grpc import (
    INVALID_REQUEST_RULE,
    SERVICE_NAME,
    UNAVAILABLE_REASON,
    UNAVAILABLE_RULE,
    BreakerState,
    CheckCodecName,
    GrpcSafetyChecker,
    SafetyKernelBindError,
    SafetyKernelError,
    SafetyKernelServer,
)
from cortex_adapters.grpc._safety_wire import MAX_BATCH, UpbCheckCodec
from cortex_adapters.memory import (
    InMemoryBus,
    InMemoryJobStore,
    InMemoryMetrics,
    InMemoryWorkerRegistry,
    InProcessSafetyChecker,
)
from cortex_core.bus_protocol import SUBJECT_JOB_SUBMIT, heartbeat_subject
from cortex_core.messages import BusPacket, Heartbeat, JobRequest, JobStatus, Payload, Priority
from cortex_core.pointers import context_ptr
from cortex_core.policy import Decision, Policy, SafetyRequest, default_policy
from cortex_core.ports import SafetyChecker
from cortex_core.routing import RoutingTable
from cortex_core.scheduler import Scheduler
from cortex_proto._wire.cortex.v1 import safety_pb2
from tests.fakes import FakeClock

CHECK = f"/{SERVICE_NAME}/Check"
CHECK_BATCH = f"/{SERVICE_NAME}/CheckBatch"

DENY_ECHO = """\
policy:
  rules:
    - id: deny-sys-destroy
      decision: DENY
      reason: "topic sys.destroy is forbidden"
      topic: "sys.destroy"
    - id: deny-echo
      decision: DENY
      reason: "echo is switched off"
      topic: "job.echo"
"""

# Every criterion at once: a request that meets them all proves each field crossed the wire.
APPROVE_BIG_BATCH = """\
policy:
  rules:
    - id: approve-big-batch
      decision: REQUIRE_APPROVAL
      reason: "big batch prompts on gpu need a person"
      topic: "job.chat.*"
      tenants: [acme]
      priorities: [batch]
      adapter_ids: [gpu]
      labels: {env: prod}
      min_prompt_bytes: 1000
"""

BROKEN = "policy:\n  rules:\n    - id: [this is not\n"


def req(topic: str = "job.echo", job_id: str = "j1", **kw: object) -> SafetyRequest:
    return SafetyRequest(job_id=job_id, topic=topic, **kw)  # type: ignore[arg-type]


def write(path: Path, text: str) -> None:
    """Write, and move the mtime on, so no test depends on the timestamp resolution."""
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    write(path, DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    return path


@pytest.fixture
def reloading(policy_file: Path) -> ReloadingPolicy:
    # Never polls on its own during a test: the tests call reload() when they mean it.
    return ReloadingPolicy(policy_file, interval_s=3600)


@pytest.fixture
def kernel_metrics() -> InMemoryMetrics:
    return InMemoryMetrics()


@pytest.fixture
async def kernel(
    reloading: ReloadingPolicy, kernel_metrics: InMemoryMetrics
) -> AsyncIterator[SafetyKernelServer]:
    server = SafetyKernelServer(policy=reloading, address="127.0.0.1:0", metrics=kernel_metrics)
    await server.start()
    yield server
    await server.close(grace=0)


@pytest.fixture
async def client(kernel: SafetyKernelServer) -> AsyncIterator[GrpcSafetyChecker]:
    checker = GrpcSafetyChecker(address=kernel.target)
    await checker.start()
    yield checker
    await checker.close()


@pytest.fixture
async def channel(kernel: SafetyKernelServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(kernel.target) as ch:
        yield ch


@pytest.fixture(params=["in-process", "grpc-upb", "grpc-betterproto2"])
async def checker(
    request: pytest.FixtureRequest, reloading: ReloadingPolicy, kernel: SafetyKernelServer
) -> AsyncIterator[SafetyChecker]:
    """Every ``SafetyChecker`` adapter, evaluating the policy file behind ``reloading`` (the
    gRPC ones through ``kernel``, with each ``Check`` codec)."""
    adapter: SafetyChecker
    if request.param == "in-process":
        adapter = InProcessSafetyChecker(reloading)
    else:
        codec: CheckCodecName = "upb" if request.param == "grpc-upb" else "betterproto2"
        adapter = GrpcSafetyChecker(address=kernel.target, check_codec_name=codec)
    await adapter.start()
    yield adapter
    await adapter.close()


class SilentPeer:
    """A TCP listener that accepts connections and never says a word: a hung kernel."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> SilentPeer:
        async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()


# -- the SafetyChecker contract: every adapter -----------------------------------------


async def test_the_default_policy_allows_and_denies_with_rule_and_reason(
    checker: SafetyChecker,
) -> None:
    allowed = await checker.check(req("job.echo"))
    assert (allowed.decision, allowed.rule_id) == (Decision.ALLOW, "default")
    assert allowed.reason == "no rule matched; default allow"
    denied = await checker.check(req("sys.destroy", job_id="j2"))
    assert (denied.decision, denied.rule_id) == (Decision.DENY, "deny-sys-destroy")
    assert denied.reason == "topic sys.destroy is forbidden"


async def test_every_field_of_the_request_reaches_the_policy(
    checker: SafetyChecker, reloading: ReloadingPolicy, policy_file: Path
) -> None:
    write(policy_file, APPROVE_BIG_BATCH)
    assert await reloading.reload()
    full = {
        "topic": "job.chat.llm",
        "tenant_id": "acme",
        "priority": Priority.BATCH,
        "adapter_id": "gpu",
        "labels": {"env": "prod", "team": "ml"},
        "prompt_bytes": 5_000_000_000,  # past 32 bits: the wire is uint64
    }
    decision = await checker.check(req(**full))
    assert decision.decision is Decision.REQUIRE_APPROVAL
    assert decision.rule_id == "approve-big-batch"
    assert decision.reason == "big batch prompts on gpu need a person"
    for field, other in [
        ("topic", "job.echo"),
        ("tenant_id", "globex"),
        ("priority", Priority.INTERACTIVE),
        ("adapter_id", "cpu"),
        ("labels", {"env": "dev"}),
        ("prompt_bytes", 999),
    ]:
        missed = await checker.check(req(**{**full, field: other}))
        assert missed.rule_id == "default", field


async def test_an_edited_policy_file_applies_without_a_restart(
    checker: SafetyChecker, reloading: ReloadingPolicy, policy_file: Path
) -> None:
    assert (await checker.check(req("job.echo"))).allowed
    write(policy_file, DENY_ECHO)
    assert await reloading.reload()
    assert reloading.version == 2
    denied = await checker.check(req("job.echo", job_id="j2"))
    assert (denied.decision, denied.rule_id) == (Decision.DENY, "deny-echo")
    assert denied.reason == "echo is switched off"


async def test_a_broken_policy_file_leaves_the_last_good_policy_in_force(
    checker: SafetyChecker, reloading: ReloadingPolicy, policy_file: Path
) -> None:
    write(policy_file, DENY_ECHO)
    assert await reloading.reload()
    write(policy_file, BROKEN)
    assert not await reloading.reload()
    assert reloading.version == 2
    still = await checker.check(req("job.echo"))
    assert (still.decision, still.rule_id) == (Decision.DENY, "deny-echo")
    assert (await checker.check(req("job.other", job_id="j2"))).allowed


# -- the service -------------------------------------------------------------------------


async def test_explain_returns_each_rule_evaluated_and_the_decision(
    client: GrpcSafetyChecker, reloading: ReloadingPolicy, policy_file: Path
) -> None:
    write(policy_file, DENY_ECHO)
    assert await reloading.reload()
    explained = await client.explain(req("job.echo"))
    assert explained.decision.decision is Decision.DENY
    assert explained.decision.rule_id == "deny-echo"
    assert explained.decision == reloading.current.explain(req("job.echo")).decision
    assert [(e.rule_id, e.matched) for e in explained.evaluations] == [
        ("deny-sys-destroy", False),
        ("deny-echo", True),
    ]
    assert "does not match" in explained.evaluations[0].why
    nothing = await client.explain(req("job.other"))
    assert nothing.decision.rule_id == "default"
    assert [e.matched for e in nothing.evaluations] == [False, False]


async def test_explain_raises_when_the_kernel_is_gone(
    client: GrpcSafetyChecker, kernel: SafetyKernelServer
) -> None:
    await kernel.close(grace=0)
    with pytest.raises(SafetyKernelError, match="UNAVAILABLE"):
        await client.explain(req())


async def test_the_kernel_logs_and_counts_every_decision(
    client: GrpcSafetyChecker, kernel_metrics: InMemoryMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cortex.safety_kernel"):
        await client.check(req("sys.destroy", job_id="j-doomed"))
        await client.check(req("job.echo", job_id="j-fine"))
    decisions = [
        (r.job_id, r.topic, r.rule_id, r.decision)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "safety_decision" and getattr(r, "component", None) == "safety-kernel"
    ]
    assert decisions == [
        ("j-doomed", "sys.destroy", "deny-sys-destroy", "DENY"),
        ("j-fine", "job.echo", "default", "ALLOW"),
    ]
    assert kernel_metrics.value("safety_decisions", rule_id="deny-sys-destroy", decision="DENY")
    assert kernel_metrics.value("safety_decisions", rule_id="default", decision="ALLOW") == 1


@pytest.mark.parametrize(
    ("request_bytes", "field"),
    [
        (safety_pb2.PolicyCheckRequest(job_id="j1").SerializeToString(), "topic"),
        (safety_pb2.PolicyCheckRequest(topic="job.echo").SerializeToString(), "job_id"),
        (
            safety_pb2.PolicyCheckRequest(
                job_id="j1", topic="job.echo", priority="urgent"
            ).SerializeToString(),
            "priority",
        ),
        (b"\xff\xff\xff", "PolicyCheckRequest"),
    ],
    ids=["no-topic", "no-job-id", "bad-priority", "not-protobuf"],
)
async def test_an_invalid_request_is_invalid_argument_naming_the_field(
    channel: grpc.aio.Channel, kernel_metrics: InMemoryMetrics, request_bytes: bytes, field: str
) -> None:
    check = channel.unary_unary(CHECK, None, None)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await check(request_bytes, timeout=2)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in (info.value.details() or "")
    assert kernel_metrics.total("safety_decisions") == 0


async def test_the_client_denies_an_invalid_request_without_tripping_the_breaker(
    client: GrpcSafetyChecker,
) -> None:
    for i in range(5):
        decision = await client.check(req("", job_id=f"j{i}"))
        assert (decision.decision, decision.rule_id) == (Decision.DENY, INVALID_REQUEST_RULE)
        assert "topic is required" in decision.reason
    assert client.breaker_state is BreakerState.CLOSED
    assert (await client.check(req())).allowed


async def test_health_is_serving_for_the_server_and_the_service(
    channel: grpc.aio.Channel,
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_reflection_lists_and_describes_the_safety_kernel(
    channel: grpc.aio.Channel,
) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    asks = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME),
    ]
    answers = [a async for a in stub.ServerReflectionInfo(iter(asks), timeout=2)]
    listed = {s.name for s in answers[0].list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= listed
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answers[1].file_descriptor_response.file_descriptor_proto
    ]
    [safety] = [f for f in files if f.name == "cortex/v1/safety.proto"]
    [service] = safety.service
    assert [m.name for m in service.method] == ["Check", "Explain", "CheckBatch"]


async def test_a_taken_address_is_a_clear_error(kernel: SafetyKernelServer) -> None:
    policy = default_policy()
    second = SafetyKernelServer(policy=lambda: policy, address=kernel.target)
    with pytest.raises(SafetyKernelBindError, match=kernel.target.replace(".", r"\.")):
        await second.start()


# -- the client: deadline, fail closed, breaker ----------------------------------------


async def test_a_hung_kernel_is_denied_at_the_deadline_and_opens_the_breaker() -> None:
    async with SilentPeer() as peer:
        checker = GrpcSafetyChecker(
            address=f"127.0.0.1:{peer.port}", timeout_s=0.05, failure_threshold=2
        )
        await checker.start()
        try:
            async with asyncio.timeout(5):  # a check that ignored its deadline would hang here
                decisions = [await checker.check(req(job_id=f"j{i}")) for i in range(4)]
            assert {(d.decision, d.reason, d.rule_id) for d in decisions} == {
                (Decision.DENY, UNAVAILABLE_REASON, UNAVAILABLE_RULE)
            }
            assert checker.rpc_calls == 2
            assert checker.short_circuited == 2
            assert checker.breaker_state is BreakerState.OPEN
        finally:
            await checker.close()


async def test_a_check_before_start_fails_closed() -> None:
    metrics = InMemoryMetrics()
    checker = GrpcSafetyChecker(address="127.0.0.1:1", metrics=metrics)
    decision = await checker.check(req())
    assert (decision.decision, decision.rule_id) == (Decision.DENY, UNAVAILABLE_RULE)
    assert metrics.value("safety_decisions", rule_id=UNAVAILABLE_RULE, decision="DENY") == 1


async def test_the_breaker_half_opens_after_reset_after_s_on_the_real_clock(
    reloading: ReloadingPolicy,
) -> None:
    kernel = SafetyKernelServer(policy=reloading, address="127.0.0.1:0")
    await kernel.start()
    target = kernel.target
    checker = GrpcSafetyChecker(address=target, failure_threshold=1, reset_after_s=0.1)
    await checker.start()
    try:
        assert (await checker.check(req())).allowed
        await kernel.close(grace=0)
        assert not (await checker.check(req())).allowed
        assert checker.breaker_state is BreakerState.OPEN
        kernel = SafetyKernelServer(policy=reloading, address=target)
        await kernel.start()
        assert not (await checker.check(req())).allowed  # still open: no call went out
        assert kernel.checks_served == 0
        await asyncio.sleep(0.15)
        assert (await checker.check(req())).allowed
        assert checker.breaker_state is BreakerState.CLOSED
        assert kernel.checks_served == 1
    finally:
        await checker.close()
        await kernel.close(grace=0)


async def test_half_open_lets_exactly_one_probe_through(reloading: ReloadingPolicy) -> None:
    clock = FakeClock(start=0.0)
    kernel = SafetyKernelServer(policy=reloading, address="127.0.0.1:0")
    await kernel.start()
    target = kernel.target
    await kernel.close(grace=0)
    checker = GrpcSafetyChecker(
        address=target, failure_threshold=1, reset_after_s=1.0, clock=clock.now
    )
    await checker.start()
    kernel = SafetyKernelServer(policy=reloading, address=target)
    try:
        assert not (await checker.check(req())).allowed
        assert checker.breaker_state is BreakerState.OPEN
        await kernel.start()
        clock.advance(1.0)
        probe, other = await asyncio.gather(
            checker.check(req(job_id="probe")), checker.check(req(job_id="other"))
        )
        assert probe.allowed
        assert (other.decision, other.rule_id) == (Decision.DENY, UNAVAILABLE_RULE)
        assert kernel.checks_served == 1
        assert checker.breaker_state is BreakerState.CLOSED
    finally:
        await checker.close()
        await kernel.close(grace=0)


# -- the scheduler through a kernel that dies and comes back -----------------------------


class SchedulerRun:
    """The core scheduler on in-memory adapters, with ``GrpcSafetyChecker`` as its safety port
    and a spy on everything a worker could receive."""

    def __init__(self, safety: GrpcSafetyChecker) -> None:
        self.clock = FakeClock()
        self.bus = InMemoryBus(codec=ProtobufCodec(), strict=True)
        self.jobs = InMemoryJobStore()
        self.metrics = InMemoryMetrics()
        self.safety = safety
        self.scheduler = Scheduler(
            bus=self.bus,
            jobs=self.jobs,
            safety=safety,
            registry=InMemoryWorkerRegistry(clock=self.clock),
            routing=RoutingTable.from_pools({"echo": ("job.echo",)}),
            metrics=self.metrics,
            clock=self.clock,
        )
        self.dispatched: list[str] = []

    async def start(self) -> None:
        async def spy(packet: BusPacket) -> None:
            assert isinstance(packet.payload, JobRequest)
            self.dispatched.append(packet.payload.job_id)

        await self.safety.start()
        await self.scheduler.start()
        for subject in ("worker.>", "job.>"):
            await self.bus.subscribe(subject, spy)
        await self.send(
            heartbeat_subject("w1"), Heartbeat(worker_id="w1", pool="echo", max_parallel_jobs=64)
        )

    async def close(self) -> None:
        await self.scheduler.close()
        await self.bus.close()  # strict: re-raises any handler error
        await self.safety.close()

    async def send(self, subject: str, payload: Payload) -> None:
        packet = BusPacket(
            trace_id="ab" * 16, sender_id="test", created_at=self.clock.now(), payload=payload
        )
        await self.bus.publish(subject, packet)
        await self.bus.settle()

    async def submit(self, *job_ids: str, topic: str = "job.echo") -> None:
        for job_id in job_ids:
            request = JobRequest(job_id=job_id, topic=topic, context_ptr=context_ptr(job_id))
            await self.send(SUBJECT_JOB_SUBMIT, request)

    async def outcome(self, job_id: str) -> tuple[JobStatus, str | None]:
        job = await self.jobs.get(job_id)
        assert job is not None
        return job.status, job.reason


@pytest.fixture
def breaker_clock() -> FakeClock:
    return FakeClock(start=0.0)


@pytest.fixture
async def run(kernel: SafetyKernelServer, breaker_clock: FakeClock) -> AsyncIterator[SchedulerRun]:
    safety = GrpcSafetyChecker(
        address=kernel.target,
        timeout_s=0.5,
        failure_threshold=3,
        reset_after_s=5.0,
        metrics=InMemoryMetrics(),
        clock=breaker_clock.now,
    )
    scheduler_run = SchedulerRun(safety)
    await scheduler_run.start()
    yield scheduler_run
    await scheduler_run.close()


async def test_jobs_fail_closed_while_the_kernel_is_down_and_flow_again_when_it_is_back(
    run: SchedulerRun,
    kernel: SafetyKernelServer,
    reloading: ReloadingPolicy,
    breaker_clock: FakeClock,
) -> None:
    # Up: allowed jobs dispatch, a forbidden one is denied by its rule.
    await run.submit("up-1", "up-2")
    await run.submit("up-destroy", topic="sys.destroy")
    assert run.dispatched == ["up-1", "up-2"]
    assert await run.outcome("up-1") == (JobStatus.RUNNING, None)
    assert await run.outcome("up-destroy") == (JobStatus.DENIED, "topic sys.destroy is forbidden")
    assert kernel.checks_served == 3

    # Killed mid-run: every job is denied, none dispatched; after 3 failures the breaker
    # answers by itself (no more calls go out).
    await kernel.close(grace=0)
    calls_before = run.safety.rpc_calls
    down = [f"down-{i}" for i in range(6)]
    await run.submit(*down)
    for job_id in down:
        assert await run.outcome(job_id) == (JobStatus.DENIED, UNAVAILABLE_REASON)
    assert run.dispatched == ["up-1", "up-2"]
    assert run.safety.breaker_state is BreakerState.OPEN
    assert run.safety.rpc_calls == calls_before + 3
    assert run.safety.short_circuited == 3
    assert run.metrics.value("safety_denied", topic="job.echo") == len(down)

    # After reset_after_s one probe goes out; the kernel is still down, so the breaker reopens.
    breaker_clock.advance(5.0)
    await run.submit("probe-down", "after-probe")
    assert await run.outcome("probe-down") == (JobStatus.DENIED, UNAVAILABLE_REASON)
    assert await run.outcome("after-probe") == (JobStatus.DENIED, UNAVAILABLE_REASON)
    assert run.safety.rpc_calls == calls_before + 4
    assert run.safety.breaker_state is BreakerState.OPEN

    # Restarted on the same port: within reset_after_s the breaker still answers alone ...
    revived = SafetyKernelServer(policy=reloading, address=kernel.target)
    await revived.start()
    try:
        await run.submit("too-soon")
        assert await run.outcome("too-soon") == (JobStatus.DENIED, UNAVAILABLE_REASON)
        assert revived.checks_served == 0
        # ... and after it, the probe reaches the new kernel and jobs flow again.
        breaker_clock.advance(5.0)
        await run.submit("back-1", "back-2")
        await run.submit("back-destroy", topic="sys.destroy")
        assert run.dispatched == ["up-1", "up-2", "back-1", "back-2"]
        assert await run.outcome("back-2") == (JobStatus.RUNNING, None)
        assert await run.outcome("back-destroy") == (
            JobStatus.DENIED,
            "topic sys.destroy is forbidden",
        )
        assert run.safety.breaker_state is BreakerState.CLOSED
        assert revived.checks_served == 3
    finally:
        await revived.close(grace=0)


async def test_the_scheduler_follows_a_policy_edit_made_while_it_runs(
    run: SchedulerRun, reloading: ReloadingPolicy, policy_file: Path
) -> None:
    await run.submit("before")
    write(policy_file, DENY_ECHO)
    assert await reloading.reload()
    await run.submit("after")
    assert run.dispatched == ["before"]
    assert await run.outcome("after") == (JobStatus.DENIED, "echo is switched off")


# -- CheckBatch: checks asked for together travel together ------------------------------


def mixed(n: int) -> list[SafetyRequest]:
    """Requests DENY_ECHO decides differently, in an order that shows whether answers stay in
    order: job.echo is denied by deny-echo, job.chat allowed by default."""
    return [req("job.echo" if i % 3 == 0 else "job.chat", job_id=f"m{i}") for i in range(n)]


async def test_concurrent_checks_travel_in_one_batch_each_with_its_own_decision(
    client: GrpcSafetyChecker,
    kernel: SafetyKernelServer,
    kernel_metrics: InMemoryMetrics,
    reloading: ReloadingPolicy,
    policy_file: Path,
) -> None:
    write(policy_file, DENY_ECHO)
    assert await reloading.reload()
    requests = mixed(10)
    decisions = await asyncio.gather(*(client.check(r) for r in requests))
    for r, d in zip(requests, decisions, strict=True):
        expected = (
            ("deny-echo", Decision.DENY) if r.topic == "job.echo" else ("default", Decision.ALLOW)
        )
        assert (d.rule_id, d.decision) == expected, r
    assert (client.batches_sent, kernel.batches_served) == (1, 1)
    assert kernel.checks_served == client.rpc_calls == 10
    # The kernel counts each decision of a batch as if it had come alone.
    assert kernel_metrics.total("safety_decisions") == 10
    assert client.breaker_state is BreakerState.CLOSED


async def test_a_check_asked_for_alone_is_a_plain_check(
    client: GrpcSafetyChecker, kernel: SafetyKernelServer
) -> None:
    for i in range(3):
        assert (await client.check(req(job_id=f"alone{i}"))).allowed
    assert (client.batches_sent, kernel.batches_served, kernel.checks_served) == (0, 0, 3)


async def test_more_checks_than_max_batch_go_in_several_batches(
    kernel: SafetyKernelServer,
) -> None:
    checker = GrpcSafetyChecker(address=kernel.target, max_batch=4)
    await checker.start()
    try:
        decisions = await asyncio.gather(*(checker.check(req(job_id=f"b{i}")) for i in range(10)))
    finally:
        await checker.close()
    assert all(d.allowed for d in decisions)
    # 4 + 4 in batches; the last 2 are a batch too.
    assert (checker.batches_sent, kernel.batches_served, kernel.checks_served) == (3, 3, 10)


async def test_batching_can_be_switched_off(kernel: SafetyKernelServer) -> None:
    checker = GrpcSafetyChecker(address=kernel.target, batch=False)
    await checker.start()
    try:
        decisions = await asyncio.gather(*(checker.check(req(job_id=f"u{i}")) for i in range(5)))
    finally:
        await checker.close()
    assert all(d.allowed for d in decisions)
    assert (checker.batches_sent, kernel.batches_served, kernel.checks_served) == (0, 0, 5)


async def test_an_invalid_request_in_a_batch_is_denied_alone_and_the_rest_decided(
    client: GrpcSafetyChecker, kernel_metrics: InMemoryMetrics
) -> None:
    requests = [req(job_id="ok1"), req("", job_id="bad"), req("sys.destroy", job_id="ok2")]
    good, bad, denied = await asyncio.gather(*(client.check(r) for r in requests))
    assert client.batches_sent == 1
    assert good.allowed
    assert (bad.decision, bad.rule_id) == (Decision.DENY, INVALID_REQUEST_RULE)
    assert "topic is required" in bad.reason
    assert (denied.decision, denied.rule_id) == (Decision.DENY, "deny-sys-destroy")
    assert client.breaker_state is BreakerState.CLOSED  # the kernel answered
    assert kernel_metrics.total("safety_decisions") == 2  # the invalid one was not decided


async def test_a_batch_to_a_hung_kernel_fails_each_check_closed_and_opens_the_breaker() -> None:
    async with SilentPeer() as peer:
        checker = GrpcSafetyChecker(
            address=f"127.0.0.1:{peer.port}", timeout_s=0.05, failure_threshold=3
        )
        await checker.start()
        try:
            async with asyncio.timeout(5):
                decisions = await asyncio.gather(
                    *(checker.check(req(job_id=f"h{i}")) for i in range(5))
                )
            assert {(d.decision, d.reason, d.rule_id) for d in decisions} == {
                (Decision.DENY, UNAVAILABLE_REASON, UNAVAILABLE_RULE)
            }
            assert checker.batches_sent == 1
            assert checker.breaker_state is BreakerState.OPEN  # five failed checks
            assert not (await checker.check(req(job_id="after"))).allowed
            assert checker.short_circuited == 1
        finally:
            await checker.close()


async def test_a_cancelled_check_leaves_the_others_of_its_batch_answered(
    client: GrpcSafetyChecker, kernel: SafetyKernelServer
) -> None:
    tasks = [asyncio.create_task(client.check(req(job_id=f"c{i}"))) for i in range(4)]
    await asyncio.sleep(0)  # each has asked; the batch has not gone out yet
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert all(d.allowed for d in done if not isinstance(d, BaseException))
    assert kernel.checks_served == 3  # the cancelled one never left
    assert client.breaker_state is BreakerState.CLOSED
    assert (await client.check(req(job_id="next"))).allowed


@contextlib.asynccontextmanager
async def kernel_without_check_batch(policy: Policy) -> AsyncIterator[str]:
    """A kernel of an older release: ``Check`` and nothing else."""
    codec = UpbCheckCodec()

    async def check(data: bytes, _: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return codec.encode_decision(policy.evaluate(codec.decode_request(data)))

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE_NAME, {"Check": grpc.unary_unary_rpc_method_handler(check)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_a_kernel_without_check_batch_is_sent_plain_checks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with kernel_without_check_batch(default_policy()) as target:
        checker = GrpcSafetyChecker(address=target)
        await checker.start()
        try:
            with caplog.at_level(logging.WARNING, logger="cortex.safety_client"):
                first = await asyncio.gather(
                    *(checker.check(req(job_id=f"o{i}")) for i in range(3))
                )
                again = await asyncio.gather(
                    *(checker.check(req("sys.destroy", job_id=f"p{i}")) for i in range(3))
                )
        finally:
            await checker.close()
    assert all(d.allowed for d in first)
    assert {d.rule_id for d in again} == {"deny-sys-destroy"}
    assert checker.batches_sent == 1  # tried once, then plain Checks only
    assert checker.breaker_state is BreakerState.CLOSED
    assert [r.message for r in caplog.records] == ["safety_kernel_without_check_batch"]


async def test_check_batch_on_the_wire_answers_in_order_and_refuses_what_is_not_a_batch(
    channel: grpc.aio.Channel, kernel: SafetyKernelServer
) -> None:
    call = channel.unary_unary(CHECK_BATCH, None, None)
    batch = safety_pb2.PolicyCheckBatch(
        requests=[
            safety_pb2.PolicyCheckRequest(job_id="w1", topic="sys.destroy"),
            safety_pb2.PolicyCheckRequest(job_id="w2", topic="job.echo", priority="urgent"),
            safety_pb2.PolicyCheckRequest(job_id="w3", topic="job.echo"),
        ]
    )
    answer = safety_pb2.PolicyCheckBatchResponse.FromString(
        await call(batch.SerializeToString(), timeout=2)
    )
    assert [(d.decision, d.rule_id) for d in answer.decisions] == [
        (safety_pb2.DECISION_TYPE_DENY, "deny-sys-destroy"),
        (safety_pb2.DECISION_TYPE_UNSPECIFIED, ""),
        (safety_pb2.DECISION_TYPE_ALLOW, "default"),
    ]
    assert "priority" in answer.decisions[1].invalid_request
    assert (
        safety_pb2.PolicyCheckBatchResponse.FromString(await call(b"", timeout=2)).decisions == []
    )
    too_many = safety_pb2.PolicyCheckBatch(
        requests=[safety_pb2.PolicyCheckRequest(job_id="x", topic="job.echo")] * (MAX_BATCH + 1)
    )
    for data, needle in (
        (too_many.SerializeToString(), "requests"),
        (b"\xff\xff", "PolicyCheckBatch"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(data, timeout=2)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert needle in (info.value.details() or "")


def test_the_port_is_known_only_once_bound() -> None:
    policy: Policy = default_policy()
    server = SafetyKernelServer(policy=policy, address="127.0.0.1:0")
    with pytest.raises(RuntimeError, match="not been started"):
        _ = server.port
