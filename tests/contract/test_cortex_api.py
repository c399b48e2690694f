"""The front door over gRPC: ``CortexApiServer`` on a real loopback socket.

The server runs over a ``FrontDoor`` on the in-memory adapters and on the real services (NATS
for the bus, Redis for the memory fabric and the job store); the client is a ``grpc.aio``
channel speaking the generated betterproto2 messages, as any client would. Covered: the
submit/status round trip, idempotency keys, tenants, every status code the service answers
(an outage of NATS or Redis included: UNAVAILABLE, and no job left visible), the message size
limit, health and reflection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.grpc import CortexApiBindError, CortexApiServer
from cortex_adapters.grpc.cortex_api import (
    API_KEY_METADATA,
    GET_JOB_STATUS_METHOD,
    RETRY_AFTER_METADATA,
    SERVICE_NAME,
    SUBMIT_JOB_METHOD,
    grpc_error,
    max_request_bytes_for,
)
from cortex_adapters.memory import InMemoryBus, InMemoryJobStore, InMemoryMemoryStore
from cortex_adapters.redis import RedisJobStore, RedisMemoryStore
from cortex_adapters.system import SystemClock, UuidIdGenerator
from cortex_core.access import Gatekeeper, RateLimit
from cortex_core.errors import (
    InvalidField,
    JobConflict,
    JobNotFound,
    PayloadTooLarge,
    RateLimited,
    ResultNotReady,
    Unauthenticated,
    Unavailable,
)
from cortex_core.frontdoor import FrontDoor, SubmitLimits
from cortex_core.messages import JobStatus, Priority
from cortex_core.ports import Bus, JobStore, MemoryStore
from cortex_proto.cortex import v1
from tests.contract.fixtures_bus import (
    NATS_URL,
    NatsBusFactory,
    delete_stream,
    make_nats_bus,
    new_nats_bus,
)
from tests.contract.fixtures_stores import REDIS_URL, _delete_namespace, _namespace
from tests.nats_server import NatsServer

__all__ = ["make_nats_bus"]

KEY_A, KEY_B = "key-aaaaaaaa", "key-bbbbbbbb"
KEYS = {KEY_A: "tenant-a", KEY_B: "tenant-b"}
ROOT = Path(__file__).resolve().parents[2]

BACKENDS = [
    "memory",
    pytest.param("nats+redis", marks=[pytest.mark.nats, pytest.mark.redis]),
]


# -- harness -----------------------------------------------------------------------------


@dataclass
class Backend:
    frontdoor: FrontDoor
    jobs: JobStore


def frontdoor_on(bus: Bus, memory: MemoryStore, jobs: JobStore, **options: Any) -> FrontDoor:
    settings: dict[str, Any] = {"clock": SystemClock(), "ids": UuidIdGenerator(), **options}
    return FrontDoor(bus=bus, memory=memory, jobs=jobs, **settings)


def memory_frontdoor() -> FrontDoor:
    return frontdoor_on(InMemoryBus(), InMemoryMemoryStore(clock=SystemClock()), InMemoryJobStore())


@contextlib.asynccontextmanager
async def open_backend(kind: str, **options: Any) -> AsyncIterator[Backend]:
    """A ``FrontDoor`` on started adapters of one kind; everything closed (and the test's
    stream and keys deleted) afterwards."""
    if kind == "memory":
        mem_bus = InMemoryBus(codec=ProtobufCodec())
        jobs: JobStore = InMemoryJobStore()
        await mem_bus.start()
        try:
            yield Backend(
                frontdoor_on(mem_bus, InMemoryMemoryStore(clock=SystemClock()), jobs, **options),
                jobs,
            )
        finally:
            await mem_bus.close()
        return
    namespace = _namespace()
    nats_bus = new_nats_bus()
    memory = RedisMemoryStore(
        url=REDIS_URL, ttl_s=60.0, max_value_bytes=4 << 20, namespace=namespace
    )
    redis_jobs = RedisJobStore(url=REDIS_URL, namespace=namespace)
    try:
        for part in (nats_bus, memory, redis_jobs):
            await part.start()
        yield Backend(frontdoor_on(nats_bus, memory, redis_jobs, **options), redis_jobs)
    finally:
        try:
            for part in (redis_jobs, memory, nats_bus):
                await part.close()
        finally:
            await delete_stream(NATS_URL, nats_bus.stream_name)
            await _delete_namespace(namespace)


@contextlib.asynccontextmanager
async def serving(frontdoor: FrontDoor, gatekeeper: Gatekeeper | None = None) -> AsyncIterator[Api]:
    """A started ``CortexApiServer`` and a client channel to it."""
    server = CortexApiServer(
        frontdoor=frontdoor,
        gatekeeper=gatekeeper or Gatekeeper(keys=KEYS, clock=SystemClock()),
        address="127.0.0.1:0",
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            yield Api(server, channel)
    finally:
        await server.close(grace=0)


class Api:
    """The client: the two RPCs with betterproto2 messages, and the API key as metadata."""

    def __init__(self, server: CortexApiServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self._submit = channel.unary_unary(
            SUBMIT_JOB_METHOD,
            request_serializer=v1.SubmitJobRequest.SerializeToString,
            response_deserializer=v1.SubmitJobResponse.FromString,
        )
        self._status = channel.unary_unary(
            GET_JOB_STATUS_METHOD,
            request_serializer=v1.GetJobStatusRequest.SerializeToString,
            response_deserializer=v1.GetJobStatusResponse.FromString,
        )

    async def submit(self, key: str | None = KEY_A, **fields: Any) -> v1.SubmitJobResponse:
        fields.setdefault("prompt", "hello")
        response: v1.SubmitJobResponse = await self._submit(
            v1.SubmitJobRequest(**fields), metadata=_metadata(key), timeout=15
        )
        return response

    async def status(self, job_id: str, key: str | None = KEY_A) -> v1.GetJobStatusResponse:
        response: v1.GetJobStatusResponse = await self._status(
            v1.GetJobStatusRequest(job_id=job_id), metadata=_metadata(key), timeout=15
        )
        return response


def _metadata(key: str | None) -> tuple[tuple[str, str], ...]:
    return () if key is None else ((API_KEY_METADATA, key),)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def all_jobs(store: JobStore) -> list[Any]:
    jobs, _ = await store.list_jobs()
    return jobs


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with open_backend(request.param) as b:
        yield b


@pytest.fixture
async def api(backend: Backend) -> AsyncIterator[Api]:
    async with serving(backend.frontdoor) as client:
        yield client


@pytest.fixture
async def memory_api() -> AsyncIterator[Api]:
    """The service on the in-memory adapters only: for what does not depend on the adapters."""
    async with open_backend("memory") as b, serving(b.frontdoor) as client:
        yield client


# -- submit and status -------------------------------------------------------------------


async def test_a_submitted_job_is_pending_and_recorded_for_the_tenant(
    api: Api, backend: Backend
) -> None:
    submitted = await api.submit(
        prompt="summarise this",
        topic="job.chat.llm",
        adapter_id="gpt-small",
        priority="batch",
        labels={"env": "dev", "team": "ml"},
        timeout_s=30.0,
    )
    assert submitted.job_id
    assert len(submitted.trace_id) == 32

    status = await api.status(submitted.job_id)
    assert status.job_id == submitted.job_id
    assert status.status == JobStatus.PENDING.value
    assert status.trace_id == submitted.trace_id
    assert (status.result_ptr, status.worker_id, status.attempts) == ("", "", 0)

    job = await backend.jobs.get(submitted.job_id)
    assert job is not None
    spec = job.spec
    assert spec.tenant_id == "tenant-a"
    assert (spec.topic, spec.adapter_id, spec.priority) == (
        "job.chat.llm",
        "gpt-small",
        Priority.BATCH,
    )
    assert dict(spec.labels) == {"env": "dev", "team": "ml"}
    assert spec.prompt_bytes == len(b"summarise this")
    assert spec.timeout_s == 30.0


async def test_an_empty_topic_and_priority_take_the_defaults(api: Api, backend: Backend) -> None:
    submitted = await api.submit(prompt="hi")
    job = await backend.jobs.get(submitted.job_id)
    assert job is not None
    assert (job.spec.topic, job.spec.priority, job.spec.timeout_s) == (
        "job.echo",
        Priority.INTERACTIVE,
        None,
    )


async def test_an_idempotency_key_gives_the_same_job_twice(api: Api, backend: Backend) -> None:
    first = await api.submit(prompt="once", idempotency_key="order-42")
    again = await api.submit(prompt="once", idempotency_key="order-42")
    assert (again.job_id, again.trace_id) == (first.job_id, first.trace_id)
    other_tenant = await api.submit(key=KEY_B, prompt="once", idempotency_key="order-42")
    assert other_tenant.job_id != first.job_id
    other_key = await api.submit(prompt="once", idempotency_key="order-43")
    assert other_key.job_id != first.job_id
    assert len(await all_jobs(backend.jobs)) == 3


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"topic": "sys.destroy"}, "topic"),
        ({"topic": "job..echo"}, "topic"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 1_000_001}, "prompt"),
        ({"priority": "urgent"}, "priority"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
        ({"labels": {"env": "v" * 257}}, "labels.env"),
        ({"adapter_id": "a" * 129}, "adapter_id"),
        ({"idempotency_key": "k" * 129}, "idempotency_key"),
        ({"timeout_s": 0.0}, "timeout_s"),
        ({"timeout_s": math.nan}, "timeout_s"),
    ],
    ids=[
        "sys-topic",
        "bad-topic",
        "empty-prompt",
        "long-prompt",
        "bad-priority",
        "too-many-labels",
        "long-label",
        "long-adapter-id",
        "long-idempotency-key",
        "zero-timeout",
        "nan-timeout",
    ],
)
async def test_an_invalid_submit_is_invalid_argument_naming_the_field(
    api: Api, backend: Backend, fields: dict[str, Any], field: str
) -> None:
    error = await rpc_error(api.submit(**fields))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}: ")
    assert await all_jobs(backend.jobs) == []


@pytest.mark.parametrize(
    ("method", "data", "field"),
    [
        (SUBMIT_JOB_METHOD, b"\x0a\x02\xff\xfe", "SubmitJobRequest"),  # prompt not UTF-8
        (SUBMIT_JOB_METHOD, b"\x08\x01", "prompt"),  # prompt sent as a varint
        (SUBMIT_JOB_METHOD, b"\x0a\x01x\x2a\x02\x08\x01", "labels"),  # an int label key
        (SUBMIT_JOB_METHOD, b"\x0a\x01x\x38\x01", "timeout_s"),  # timeout_s as a varint
        (GET_JOB_STATUS_METHOD, b"\x08\x07", "job_id"),
    ],
    ids=["bad-utf8", "int-prompt", "int-label-key", "varint-timeout", "int-job-id"],
)
async def test_undecodable_bytes_are_invalid_argument(
    memory_api: Api, method: str, data: bytes, field: str
) -> None:
    raw = memory_api.channel.unary_unary(method, None, None)  # bytes as they are
    error = await rpc_error(raw(data, metadata=_metadata(KEY_A), timeout=5))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}: ")


async def test_a_context_over_the_memory_fabric_limit_is_invalid_argument_on_the_prompt() -> None:
    memory = InMemoryMemoryStore(clock=SystemClock(), max_value_bytes=1000)
    jobs = InMemoryJobStore()
    frontdoor = frontdoor_on(InMemoryBus(), memory, jobs)
    async with serving(frontdoor) as api:
        error = await rpc_error(api.submit(prompt="p" * 2000))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("prompt: context is ")
    assert await all_jobs(jobs) == []


@pytest.mark.parametrize("job_id", ["0" * 32, "no-such-job", "../../etc/passwd", ""])
async def test_an_unknown_job_is_not_found(api: Api, job_id: str) -> None:
    error = await rpc_error(api.status(job_id))
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_another_tenants_job_is_not_found(api: Api) -> None:
    submitted = await api.submit(key=KEY_A)
    error = await rpc_error(api.status(submitted.job_id, key=KEY_B))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert (error.details() or "") == f"job {submitted.job_id!r} not found"
    assert (await api.status(submitted.job_id, key=KEY_A)).status == "PENDING"


@pytest.mark.parametrize("key", [None, "", "key-cccccccc", KEY_A.upper()])
async def test_a_missing_or_unknown_api_key_is_unauthenticated(
    api: Api, backend: Backend, key: str | None
) -> None:
    for call in (api.submit(key=key), api.status("0" * 32, key=key)):
        error = await rpc_error(call)
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert await all_jobs(backend.jobs) == []


async def test_a_key_over_its_rate_limit_is_resource_exhausted_with_retry_after() -> None:
    gatekeeper = Gatekeeper(
        keys=KEYS, clock=SystemClock(), rate_limit=RateLimit(rate_per_s=0.001, burst=2)
    )
    async with open_backend("memory") as backend, serving(backend.frontdoor, gatekeeper) as api:
        submitted = await api.submit()
        await api.status(submitted.job_id)
        error = await rpc_error(api.submit())
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "rate limit" in (error.details() or "")
        trailers: dict[str, Any] = dict(error.trailing_metadata() or ())  # type: ignore[arg-type]
        retry_after = str(trailers[RETRY_AFTER_METADATA])
        assert 999 <= int(retry_after) <= 1000  # one token at 0.001/s, rounded up
        assert len(await all_jobs(backend.jobs)) == 1
        # The budget is per key: the other tenant's key still gets through.
        assert (await api.submit(key=KEY_B)).job_id


@pytest.mark.nats
@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_dead_bus_is_unavailable_and_leaves_no_job(
    tmp_path: Path, make_nats_bus: NatsBusFactory, store: str
) -> None:
    nats_server = NatsServer(tmp_path)
    await nats_server.start()
    namespace = _namespace()
    jobs: JobStore = (
        InMemoryJobStore()
        if store == "memory"
        else RedisJobStore(url=REDIS_URL, namespace=namespace)
    )
    await jobs.start()
    try:
        bus = await make_nats_bus(url=nats_server.url, publish_timeout_s=1.0)
        frontdoor = frontdoor_on(bus, InMemoryMemoryStore(clock=SystemClock()), jobs)
        async with serving(frontdoor) as api:
            assert (await api.submit()).job_id  # up: accepted
            before = await all_jobs(jobs)
            await nats_server.stop()
            error = await rpc_error(api.submit(prompt="lost?"))
            assert error.code() is grpc.StatusCode.UNAVAILABLE
            assert "bus" in (error.details() or "")
            assert await all_jobs(jobs) == before  # withdrawn: nothing half-submitted
            # The server itself lives on.
            assert (await api.status(before[0].job_id)).status == "PENDING"
    finally:
        await nats_server.stop()
        await jobs.close()
        await _delete_namespace(namespace)


class CuttableProxy:
    """A TCP proxy in front of Redis that a test can cut: Redis gone, as far as the client
    can tell (open connections drop, new ones are refused)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._db = parts.path
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}{self._db}"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in self._writers:
            writer.close()
        for writer in self._writers:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        self._writers.clear()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if server is not None:
            await server.wait_closed()


@pytest.mark.redis
@pytest.mark.parametrize("dependency", ["memory fabric", "job store"])
async def test_a_dead_redis_is_unavailable_and_leaves_no_job(dependency: str) -> None:
    namespace = _namespace()
    direct_jobs = RedisJobStore(url=REDIS_URL, namespace=namespace)
    await direct_jobs.start()
    try:
        async with CuttableProxy(REDIS_URL) as proxy:
            cut_url = {dependency: proxy.url}
            memory = RedisMemoryStore(
                url=cut_url.get("memory fabric", REDIS_URL),
                ttl_s=60.0,
                max_value_bytes=1 << 20,
                namespace=namespace,
            )
            jobs = RedisJobStore(url=cut_url.get("job store", REDIS_URL), namespace=namespace)
            await memory.start()
            await jobs.start()
            try:
                frontdoor = frontdoor_on(InMemoryBus(), memory, jobs)
                async with serving(frontdoor) as api:
                    await proxy.cut()
                    error = await rpc_error(api.submit(prompt="lost?"))
                    assert error.code() is grpc.StatusCode.UNAVAILABLE
                    assert dependency in (error.details() or "")
                    assert await all_jobs(direct_jobs) == []
            finally:
                await memory.close()
                await jobs.close()
    finally:
        await direct_jobs.close()
        await _delete_namespace(namespace)


class SameIdTwice:
    """An id generator that breaks its contract: every job id is the same."""

    def job_id(self) -> str:
        return "job-the-one"

    def trace_id(self) -> str:
        return "ab" * 16


async def test_an_unexpected_error_is_internal_logged_and_the_server_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = InMemoryJobStore()
    frontdoor = frontdoor_on(
        InMemoryBus(), InMemoryMemoryStore(clock=SystemClock()), jobs, ids=SameIdTwice()
    )
    async with serving(frontdoor) as api:
        first = await api.submit()
        with caplog.at_level(logging.ERROR, logger="cortex.api.grpc"):
            error = await rpc_error(api.submit())
        assert error.code() is grpc.StatusCode.INTERNAL
        assert (error.details() or "") == "internal error in SubmitJob"  # nothing leaks
        assert (await api.status(first.job_id)).status == "PENDING"
    [record] = [r for r in caplog.records if r.getMessage() == "grpc_api_internal_error"]
    assert record.exc_info is not None
    assert "duplicate job id" in str(record.exc_info[1])


@pytest.mark.parametrize(
    ("error", "code", "details"),
    [
        (InvalidField("labels.env", "too long"), "INVALID_ARGUMENT", "labels.env: too long"),
        (PayloadTooLarge("context", 10, 5), "INVALID_ARGUMENT", "prompt: context is 10 bytes"),
        (JobNotFound("j1"), "NOT_FOUND", "job 'j1' not found"),
        (Unauthenticated("unknown API key"), "UNAUTHENTICATED", "unknown API key"),
        (RateLimited(2.01), "RESOURCE_EXHAUSTED", "rate limit exceeded"),
        (Unavailable("bus", "the bus is down"), "UNAVAILABLE", "the bus is down"),
        (JobConflict("j1", "COMPLETED", "already ended"), "FAILED_PRECONDITION", "already"),
        (ResultNotReady("j1", "RUNNING", "no result yet"), "FAILED_PRECONDITION", "no result"),
    ],
)
def test_each_core_error_has_its_status_code(error: Exception, code: str, details: str) -> None:
    status = grpc_error(error)
    assert status is not None
    assert status.code is grpc.StatusCode[code]
    assert status.details.startswith(details)
    expected = ((RETRY_AFTER_METADATA, "3"),) if isinstance(error, RateLimited) else ()
    assert status.trailing_metadata == expected


def test_an_unexpected_error_has_no_mapped_status() -> None:
    assert grpc_error(RuntimeError("boom")) is None
    assert grpc_error(ValueError("bad")) is None


# -- transport ---------------------------------------------------------------------------


def test_the_default_message_limit_fits_every_request_the_limits_allow() -> None:
    limit = max_request_bytes_for(SubmitLimits())
    assert 4_000_000 < limit < 4_300_000
    small = SubmitLimits(max_prompt_chars=10, max_labels=0)
    assert max_request_bytes_for(small) < 128 * 1024


async def test_a_request_over_the_message_limit_is_refused_by_grpc(memory_api: Api) -> None:
    assert memory_api.server.max_request_bytes < 5_000_000
    error = await rpc_error(memory_api.submit(prompt="x" * 5_000_000))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # The largest prompt the limits allow in characters still reaches the validator: four
    # UTF-8 bytes each is 4 MB, which the default memory fabric then refuses as too large.
    error = await rpc_error(memory_api.submit(prompt="\U0001f600" * 1_000_000))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("prompt: ")


async def test_health_is_serving_for_the_server_and_the_service(memory_api: Api) -> None:
    stub = health_pb2_grpc.HealthStub(memory_api.channel)
    for service in ("", SERVICE_NAME):
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_reflection_lists_and_describes_the_cortex_api(memory_api: Api) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(memory_api.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME),
    ]
    answers = [a async for a in stub.ServerReflectionInfo(iter(requests), timeout=5)]
    listed = {s.name for s in answers[0].list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= listed
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answers[1].file_descriptor_response.file_descriptor_proto
    ]
    [api_file] = [f for f in files if f.name == "cortex/v1/api.proto"]
    [service] = api_file.service
    assert [m.name for m in service.method] == ["SubmitJob", "GetJobStatus"]
    fields = {m.name: {f.name: f.number for f in m.field} for m in api_file.message_type}
    assert fields["SubmitJobRequest"]["timeout_s"] == 7
    assert fields["GetJobStatusResponse"]["trace_id"] == 7


async def test_a_taken_port_is_a_bind_error(memory_api: Api) -> None:
    second = CortexApiServer(
        frontdoor=frontdoor_on(
            InMemoryBus(), InMemoryMemoryStore(clock=SystemClock()), InMemoryJobStore()
        ),
        gatekeeper=Gatekeeper(keys=KEYS, clock=SystemClock()),
        address=f"127.0.0.1:{memory_api.server.port}",
    )
    with pytest.raises(CortexApiBindError, match="cannot listen"):
        await second.start()


def test_port_and_target_need_a_started_server() -> None:
    server = CortexApiServer(
        frontdoor=frontdoor_on(
            InMemoryBus(), InMemoryMemoryStore(clock=SystemClock()), InMemoryJobStore()
        ),
        gatekeeper=Gatekeeper(keys=None, clock=SystemClock()),
        address="0.0.0.0:0",
    )
    assert server.address == "0.0.0.0:0"
    with pytest.raises(RuntimeError, match="not been started"):
        _ = server.target


async def test_with_auth_off_every_call_is_the_no_auth_tenant() -> None:
    async with (
        open_backend("memory") as backend,
        serving(backend.frontdoor, Gatekeeper(keys=None, clock=SystemClock())) as api,
    ):
        submitted = await api.submit(key=None)
        assert (await api.status(submitted.job_id, key="anything")).status == "PENDING"
        job = await backend.jobs.get(submitted.job_id)
        assert job is not None
        assert job.spec.tenant_id == ""
