"""Observability of real processes on real NATS and Redis: Prometheus ``/metrics`` on every
process, counters that move by exactly what a known set of jobs should move them, traces that
follow one job across the gateway, scheduler, Safety Kernel and worker, and JSON logs that
carry the job's ids on every line.

One stack (Safety Kernel, scheduler, gateway, two echo workers), each process with its own
``--metrics-port 0`` (the gateway's ``/metrics`` is on its HTTP port) and its traces exported
over OTLP/HTTP to a receiver in this test.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import nats
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from cortex_adapters.grpc._safety_wire import CHECK_BATCH_METHOD
from cortex_adapters.grpc.cortex_api import SUBMIT_JOB_METHOD
from cortex_adapters.nats import stream_name
from cortex_proto._wire.cortex.v1 import safety_pb2
from cortex_proto.cortex import v1
from tests.nats_server import free_port
from tests.policies import FORBIDDEN_TOPIC_POLICY
from tests.processes import Proc, claim_private_redis_db

pytestmark = [pytest.mark.processes, pytest.mark.nats, pytest.mark.redis]

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "DENIED"}
METRICS_AT = r"metrics on (http://\S+/metrics)"


# -- an OTLP/HTTP receiver -----------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


@dataclass
class Receiver:
    """Collects the spans every process exports to ``url``."""

    url: str = ""
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        attrs: dict[str, Any] = {}
                        for a in s.attributes:
                            v = a.value
                            attrs[a.key] = (
                                v.string_value if v.HasField("string_value") else v.int_value
                            )
                        self.spans.append(
                            Span(
                                service=resource.get("service.name", ""),
                                name=s.name,
                                kind=s.kind,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_id=s.parent_span_id.hex(),
                                attributes=attrs,
                            )
                        )

    def of_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


@contextlib.contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.add(body)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/v1/traces"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


# -- the stack -----------------------------------------------------------------------------


@dataclass
class Stack:
    base: str
    grpc_target: str
    kernel: Proc
    scheduler: Proc
    gateway: Proc
    workers: list[Proc]
    worker_ids: list[str]
    metrics_urls: dict[str, list[str]]
    """Each kind of process's ``/metrics`` URLs (two for the workers)."""
    receiver: Receiver

    @property
    def procs(self) -> list[Proc]:
        return [self.kernel, self.scheduler, self.gateway, *self.workers]


async def _delete_stream(prefix: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream_name(prefix))
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    policy = tmp_path_factory.mktemp("observability") / "policy.yaml"
    policy.write_text(FORBIDDEN_TOPIC_POLICY)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    store, redis_url = claim_private_redis_db()
    procs: list[Proc] = []
    with otlp_receiver() as receiver:
        env = {
            "NATS_URL": NATS_URL,
            "REDIS_URL": redis_url,
            "CORTEX_SUBJECT_PREFIX": prefix,
            "CORTEX_POLICY_FILE": str(policy),
            "CORTEX_HEARTBEAT_INTERVAL_S": "0.3",
            "CORTEX_SWEEP_INTERVAL_S": "0.2",
            "CORTEX_METRICS_PORT": "0",
            "CORTEX_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans every 100 ms
            "CORTEX_LOG_FORMAT": "",  # the default: JSON, since the output is a pipe
            "CORTEX_NO_AUTH": "1",
            "CORTEX_API_KEYS": "",
            "CORTEX_API_KEYS_FILE": "",
            "CORTEX_RATE_LIMIT_PER_S": "0",
            "CORTEX_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        }
        try:
            kernel = Proc("safety-kernel", "--address", "127.0.0.1:0", env=env)
            procs.append(kernel)
            ready = kernel.wait_for(r"safety-kernel ready on (\S+); " + METRICS_AT)
            env["SAFETY_KERNEL_ADDR"] = ready.group(1)
            urls = {"safety-kernel": [ready.group(2)]}
            scheduler = Proc("scheduler", env=env)
            procs.append(scheduler)
            worker_ids = [f"echo-{uuid.uuid4().hex[:6]}" for _ in range(2)]
            workers = [Proc("worker", "echo", "--worker-id", w, env=env) for w in worker_ids]
            procs += workers
            gateway = Proc("gateway", "--port", "0", env=env)
            procs.append(gateway)
            base = gateway.wait_for(r"Cortex is up \(gateway.* on (http://\S+)").group(1)
            urls["scheduler"] = [scheduler.wait_for("scheduler ready; " + METRICS_AT).group(1)]
            urls["worker"] = [
                w.wait_for(f"worker {wid} ready .*; {METRICS_AT}").group(1)
                for w, wid in zip(workers, worker_ids, strict=True)
            ]
            urls["gateway"] = [f"{base}/metrics"]
            yield Stack(
                base,
                env["CORTEX_GRPC_ADDR"],
                kernel,
                scheduler,
                gateway,
                workers,
                worker_ids,
                urls,
                receiver,
            )
            for p in procs:
                assert "Traceback" not in p.output, p.output
        finally:
            for p in reversed(procs):
                if p.popen.poll() is None:
                    p.terminate()
            asyncio.run(_delete_stream(prefix))
            store.flushdb()
            store.close()


# -- helpers -------------------------------------------------------------------------------

Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(url: str) -> dict[Sample, float]:
    """Every sample ``/metrics`` shows: (name, labels) → value."""
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def scrape_all(stack: Stack, kind: str) -> Counter[Sample]:
    """The samples of every process of ``kind``, summed (the two workers)."""
    total: Counter[Sample] = Counter()
    for url in stack.metrics_urls[kind]:
        total.update(scrape(url))
    return total


def value(samples: Counter[Sample], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_terminal(client: httpx.Client, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").json()
        if body["status"] in TERMINAL:
            return dict(body)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {body}")


def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


# -- metrics -------------------------------------------------------------------------------


def test_every_process_serves_metrics(stack: Stack) -> None:
    for kind, urls in stack.metrics_urls.items():
        for url in urls:
            names = {name for name, _ in scrape(url)}
            assert {"process_start_time_seconds", "process_cpu_seconds_total"} <= names, kind


def test_counters_move_by_exactly_what_the_jobs_did(stack: Stack) -> None:
    kinds = ("gateway", "scheduler", "safety-kernel", "worker")
    before = {k: scrape_all(stack, k) for k in kinds}
    with httpx.Client(base_url=stack.base, timeout=10) as client:
        echo = [
            client.post("/v1/jobs", json={"prompt": f"hello {i}", "topic": "job.echo"})
            for i in range(5)
        ]
        denied = client.post("/v1/jobs", json={"prompt": "no", "topic": "job.forbidden"})
        unrouted = client.post("/v1/jobs", json={"prompt": "lost", "topic": "job.nowhere"})
        bad = client.post("/v1/jobs", json={"prompt": "x", "topic": "sys.destroy"})
        missing = client.get(f"/v1/jobs/{uuid.uuid4().hex}")
        assert [r.status_code for r in echo] == [202] * 5
        assert (denied.status_code, unrouted.status_code) == (202, 202)
        assert (bad.status_code, missing.status_code) == (400, 404)
        ends = [wait_terminal(client, r.json()["job_id"])["status"] for r in echo]
        assert ends == ["COMPLETED"] * 5
        assert wait_terminal(client, denied.json()["job_id"])["status"] == "DENIED"
        assert wait_terminal(client, unrouted.json()["job_id"])["status"] == "FAILED"

    # The workers count an attempt once its result is published; the scheduler's terminal
    # counts were committed before the status above said so.
    def delta(kind: str, name: str, **labels: str) -> float:
        return value(scrape_all(stack, kind), name, **labels) - value(before[kind], name, **labels)

    wait_until(
        lambda: (
            delta("worker", "cortex_worker_executions_total", pool="echo", status="COMPLETED") >= 5
        )
    )
    echo_t, forbidden_t, nowhere_t = (
        {"topic": "job.echo"},
        {"topic": "job.forbidden"},
        {"topic": "job.nowhere"},
    )
    expected = {
        ("scheduler", "cortex_jobs_received_total", frozenset(echo_t.items())): 5,
        ("scheduler", "cortex_jobs_received_total", frozenset(forbidden_t.items())): 1,
        ("scheduler", "cortex_jobs_received_total", frozenset(nowhere_t.items())): 1,
        ("scheduler", "cortex_jobs_dispatched_total", frozenset(echo_t.items())): 5,
        ("scheduler", "cortex_jobs_dispatched_total", frozenset(nowhere_t.items())): 0,
        ("scheduler", "cortex_safety_denied_total", frozenset(forbidden_t.items())): 1,
        ("scheduler", "cortex_safety_denied_total", frozenset(echo_t.items())): 0,
        (
            "scheduler",
            "cortex_jobs_completed_total",
            frozenset({**echo_t, "status": "COMPLETED"}.items()),
        ): 5,
        (
            "scheduler",
            "cortex_jobs_completed_total",
            frozenset({**forbidden_t, "status": "DENIED"}.items()),
        ): 1,
        (
            "scheduler",
            "cortex_jobs_completed_total",
            frozenset({**nowhere_t, "status": "FAILED"}.items()),
        ): 1,
        ("scheduler", "cortex_job_queue_wait_seconds_count", frozenset(echo_t.items())): 5,
        ("scheduler", "cortex_job_run_seconds_count", frozenset(echo_t.items())): 5,
        (
            "scheduler",
            "cortex_job_end_to_end_seconds_count",
            frozenset({**echo_t, "status": "COMPLETED"}.items()),
        ): 5,
        (
            "safety-kernel",
            "cortex_safety_decisions_total",
            frozenset({"rule_id": "default", "decision": "ALLOW"}.items()),
        ): 6,
        (
            "safety-kernel",
            "cortex_safety_decisions_total",
            frozenset({"rule_id": "deny-forbidden", "decision": "DENY"}.items()),
        ): 1,
        (
            "worker",
            "cortex_worker_executions_total",
            frozenset({"pool": "echo", "status": "COMPLETED"}.items()),
        ): 5,
        (
            "worker",
            "cortex_worker_execution_seconds_count",
            frozenset({"pool": "echo", "status": "COMPLETED"}.items()),
        ): 5,
        (
            "gateway",
            "cortex_http_requests_total",
            frozenset({"method": "POST", "route": "/v1/jobs", "status": "202"}.items()),
        ): 7,
        (
            "gateway",
            "cortex_http_requests_total",
            frozenset({"method": "POST", "route": "/v1/jobs", "status": "400"}.items()),
        ): 1,
        (
            "gateway",
            "cortex_http_requests_total",
            frozenset({"method": "GET", "route": "/v1/jobs/{job_id}", "status": "404"}.items()),
        ): 1,
    }
    after = {k: scrape_all(stack, k) for k in kinds}
    moved = {
        key: value(after[key[0]], key[1], **dict(key[2]))
        - value(before[key[0]], key[1], **dict(key[2]))
        for key in expected
    }
    assert moved == expected
    # Nothing was dropped on the bus, and the latencies are real durations.
    for kind in kinds:
        assert (
            sum(v for (n, _), v in after[kind].items() if n == "cortex_packets_dropped_total") == 0
        )
    e2e_sum = delta("scheduler", "cortex_job_end_to_end_seconds_sum", **echo_t, status="COMPLETED")
    assert 0 < e2e_sum < 5 * 20


def test_pool_gauges_show_live_workers_and_empty_pools(stack: Stack) -> None:
    def gauges() -> dict[str, float]:
        samples = scrape(stack.metrics_urls["scheduler"][0])
        return {
            dict(labels)["pool"]: v
            for (n, labels), v in samples.items()
            if n == "cortex_pool_workers"
        }

    wait_until(lambda: gauges().get("echo") == 2)
    pools = gauges()
    assert pools["log"] == 0  # routed, but no worker runs: what the no-workers alert watches
    samples = scrape(stack.metrics_urls["scheduler"][0])
    slots = value(Counter(samples), "cortex_pool_slots", pool="echo")
    assert slots == 8  # two workers of 4 slots (the default max_parallel_jobs)
    utilization = value(Counter(samples), "cortex_pool_utilization", pool="echo")
    assert 0 <= utilization <= 1


# -- traces and logs -----------------------------------------------------------------------


def test_one_job_is_one_trace_across_every_process(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base, timeout=10) as client:
        submitted = client.post("/v1/jobs", json={"prompt": "trace me", "topic": "job.echo"})
        assert submitted.status_code == 202
        job_id, trace_id = submitted.json()["job_id"], submitted.json()["trace_id"]
        done = wait_terminal(client, job_id)
    assert done["status"] == "COMPLETED"
    worker_id = done["worker_id"]
    assert worker_id in stack.worker_ids

    expected = {
        ("cortex-gateway", "POST /v1/jobs"),
        ("cortex-gateway", "sys.job.submit publish"),
        ("cortex-scheduler", "sys.job.submit process"),
        ("cortex-scheduler", "cortex.v1.SafetyKernel/Check"),
        ("cortex-safety-kernel", "cortex.v1.SafetyKernel/Check"),
        ("cortex-scheduler", f"worker.{worker_id}.jobs publish"),
        ("cortex-worker-echo", f"worker.{worker_id}.jobs process"),
        ("cortex-worker-echo", "sys.job.result publish"),
        ("cortex-scheduler", "sys.job.result process"),
    }

    def seen() -> set[tuple[str, str]]:
        return {(s.service, s.name) for s in stack.receiver.of_trace(trace_id)}

    wait_until(lambda: expected <= seen(), timeout=15)
    spans = stack.receiver.of_trace(trace_id)
    # One tree: a single root (the request), every other span's parent is in the trace.
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id not in ids]
    assert [(r.service, r.name) for r in roots] == [("cortex-gateway", "POST /v1/jobs")]
    assert roots[0].parent_id == ""  # the request started the trace
    # The bus spans name the job; the worker's name the worker too.
    for s in spans:
        if s.name.endswith((" publish", " process")):
            assert s.attributes.get("cortex.job_id") == job_id, s
    process = next(s for s in spans if s.name == f"worker.{worker_id}.jobs process")
    assert process.attributes["cortex.topic"] == "job.echo"
    result = next(s for s in spans if s.name == "sys.job.result publish")
    assert result.attributes["cortex.worker_id"] == worker_id
    kernel = next(s for s in spans if s.service == "cortex-safety-kernel")
    assert kernel.attributes["cortex.job_id"] == job_id
    assert kernel.attributes["cortex.decision"] == "ALLOW"


def test_jobs_submitted_together_each_keep_one_trace_with_their_safety_check(
    stack: Stack,
) -> None:
    """Checks the scheduler asks for together travel in one CheckBatch: each job's trace still
    has its own check, on the kernel, under the scheduler's CLIENT span for that job."""

    async def submit_all() -> list[tuple[str, str]]:
        async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
            answers = await asyncio.gather(
                *(
                    client.post("/v1/jobs", json={"prompt": f"p{i}", "topic": "job.echo"})
                    for i in range(24)
                )
            )
        return [(a.json()["job_id"], a.json()["trace_id"]) for a in answers]

    def check_spans(trace_id: str) -> tuple[list[Span], list[Span]]:
        """The job's check on the kernel, and the scheduler's CLIENT span for it."""
        spans = stack.receiver.of_trace(trace_id)
        return (
            [s for s in spans if s.service == "cortex-safety-kernel"],
            [
                s
                for s in spans
                if s.service == "cortex-scheduler" and s.name == "cortex.v1.SafetyKernel/Check"
            ],
        )

    methods: Counter[str] = Counter()
    for _ in range(3):  # until some went batched: timing decides, not the test
        jobs = asyncio.run(submit_all())
        with httpx.Client(base_url=stack.base, timeout=10) as client:
            for job_id, _ in jobs:
                assert wait_terminal(client, job_id)["status"] == "COMPLETED"
        # Each process exports its spans on its own schedule: wait for both sides.
        wait_until(lambda jobs=jobs: all(all(check_spans(t)) for _, t in jobs), timeout=15)
        for job_id, trace_id in jobs:
            [kernel], [client_span] = check_spans(trace_id)
            assert kernel.attributes["cortex.job_id"] == job_id
            assert kernel.attributes["cortex.decision"] == "ALLOW"
            assert kernel.parent_id == client_span.span_id
            methods[kernel.name] += 1
        if methods["cortex.v1.SafetyKernel/CheckBatch"]:
            break
    # With 24 submits at once the scheduler admits several in one turn: some went batched.
    assert methods["cortex.v1.SafetyKernel/CheckBatch"] > 0, methods


def test_a_check_batch_puts_each_request_in_the_trace_it_carries(stack: Stack) -> None:
    address = stack.kernel.wait_for(r"safety-kernel ready on ([^;\s]+)").group(1)
    contexts = [(uuid.uuid4().hex, uuid.uuid4().hex[:16]) for _ in range(2)]
    batch = safety_pb2.PolicyCheckBatch(
        requests=[
            safety_pb2.PolicyCheckRequest(
                job_id=f"batched-{i}",
                topic="job.echo",
                traceparent=f"00-{trace_id}-{parent}-01",
            )
            for i, (trace_id, parent) in enumerate(contexts)
        ]
    )
    with grpc.insecure_channel(address) as channel:
        data = channel.unary_unary(CHECK_BATCH_METHOD, None, None)(
            batch.SerializeToString(), timeout=5
        )
    answer = safety_pb2.PolicyCheckBatchResponse.FromString(data)
    assert [d.rule_id for d in answer.decisions] == ["default", "default"]
    for i, (trace_id, parent) in enumerate(contexts):
        wait_until(lambda t=trace_id: bool(stack.receiver.of_trace(t)))
        [span] = stack.receiver.of_trace(trace_id)
        assert (span.service, span.name) == (
            "cortex-safety-kernel",
            "cortex.v1.SafetyKernel/CheckBatch",
        )
        assert span.parent_id == parent
        assert span.kind == 2  # SERVER
        assert span.attributes["cortex.job_id"] == f"batched-{i}"
        assert span.attributes["cortex.batch_size"] == "2"


def test_a_callers_traceparent_becomes_the_jobs_trace(stack: Stack) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with httpx.Client(base_url=stack.base, timeout=10) as client:
        submitted = client.post(
            "/v1/jobs",
            json={"prompt": "mine", "topic": "job.echo"},
            headers={"traceparent": f"00-{trace_id}-{parent}-01"},
        )
        assert submitted.json()["trace_id"] == trace_id
        wait_terminal(client, submitted.json()["job_id"])
    wait_until(lambda: any(s.name == "POST /v1/jobs" for s in stack.receiver.of_trace(trace_id)))
    request = next(s for s in stack.receiver.of_trace(trace_id) if s.name == "POST /v1/jobs")
    assert request.parent_id == parent


def test_a_grpc_callers_trace_context_becomes_the_jobs_trace(stack: Stack) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with grpc.insecure_channel(stack.grpc_target) as channel:
        submit_job = channel.unary_unary(
            SUBMIT_JOB_METHOD,
            request_serializer=v1.SubmitJobRequest.SerializeToString,
            response_deserializer=v1.SubmitJobResponse.FromString,
        )
        submitted = submit_job(
            v1.SubmitJobRequest(prompt="over gRPC", topic="job.echo"),
            metadata=(("traceparent", f"00-{trace_id}-{parent}-01"),),
            timeout=15,
        )
    assert submitted.trace_id == trace_id
    with httpx.Client(base_url=stack.base, timeout=10) as client:
        assert wait_terminal(client, submitted.job_id)["status"] == "COMPLETED"

    def names() -> set[str]:
        return {s.name for s in stack.receiver.of_trace(trace_id)}

    wait_until(lambda: {"cortex.v1.CortexApi/SubmitJob", "sys.job.result process"} <= names())
    server = next(
        s for s in stack.receiver.of_trace(trace_id) if s.name == "cortex.v1.CortexApi/SubmitJob"
    )
    assert server.parent_id == parent


def test_every_log_line_of_a_job_carries_its_ids_and_each_state_change_is_one_line(
    stack: Stack,
) -> None:
    with httpx.Client(base_url=stack.base, timeout=10) as client:
        submitted = client.post("/v1/jobs", json={"prompt": "log me", "topic": "job.echo"})
        job_id, trace_id = submitted.json()["job_id"], submitted.json()["trace_id"]
        worker_id = wait_terminal(client, job_id)["worker_id"]
    finished = stack.scheduler.wait_for_event("job_finished", job_id=job_id)
    worker = stack.workers[stack.worker_ids.index(worker_id)]
    worker.wait_for_event("job_done", job_id=job_id)
    lines = [e for p in stack.procs for e in p.events(job_id=job_id)]
    assert len(lines) >= 4
    for line in lines:
        assert {"timestamp", "level", "event", "component"} <= line.keys(), line
        assert line["trace_id"] == trace_id, line
        assert line["topic"] == "job.echo", line
        assert "worker_id" in line, line
    states = [(e["component"], e["event"], e["state"]) for e in lines if "state" in e]
    assert sorted(states, key=lambda s: ["PENDING", "RUNNING", "COMPLETED"].index(s[2])) == [
        ("gateway", "job_submitted", "PENDING"),
        ("scheduler", "job_dispatched", "RUNNING"),
        ("scheduler", "job_finished", "COMPLETED"),
    ]
    assert finished["worker_id"] == worker_id
    assert all(e["worker_id"] == worker_id for e in lines if e["component"] == "worker")
