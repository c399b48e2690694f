"""The REST gateway's whole API over real HTTP, against real processes on real NATS and Redis:
every route and every error path, API keys and tenants, the rate limit, idempotency keys,
cancel, approval, Server-Sent Events, the worker registry, the dead-letter queue, readiness,
NATS and Redis going down, and the gRPC ``CortexApi`` the gateway serves alongside.

One set of processes (Safety Kernel, gateway, scheduler, one echo worker with a single slot)
serves the whole module; the tests that need a differently configured gateway, or a broker
that they stop, start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
import pytest
import redis

from cortex_adapters.grpc.cortex_api import (
    API_KEY_METADATA,
    GET_JOB_STATUS_METHOD,
    SUBMIT_JOB_METHOD,
)
from cortex_adapters.nats import stream_name
from cortex_proto.cortex import v1
from tests.nats_server import NatsServer, free_port
from tests.processes import Proc, claim_private_redis_db

pytestmark = [pytest.mark.processes, pytest.mark.nats, pytest.mark.redis]

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
KEY_A, KEY_B = "key-aaaaaaaa", "key-bbbbbbbb"
API_KEYS = f"{KEY_A}=tenant-a,{KEY_B}=tenant-b"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "DENIED"}
DEAD = {"FAILED", "TIMEOUT", "DENIED"}
FORBIDDEN_REASON = "topic job.forbidden is forbidden"
REVIEW_REASON = "a person must review jobs labelled review=yes"
POLICY = f"""\
policy:
  default: {{decision: ALLOW, reason: "no rule matched; default allow"}}
  rules:
    - id: deny-forbidden
      decision: DENY
      reason: "{FORBIDDEN_REASON}"
      topic: "job.forbidden"
    - id: review
      decision: REQUIRE_APPROVAL
      reason: "{REVIEW_REASON}"
      labels: {{review: "yes"}}
"""
GATEWAY_UP = r"Cortex is up \(gateway: .*gRPC on ([^)\s]+)\) on (http://\S+)"


# -- processes -----------------------------------------------------------------------------


@dataclass
class Stack:
    base: str
    grpc_target: str
    env: dict[str, str]
    """The environment of every process (the gateway's adds the access settings)."""
    kernel: Proc
    gateway: Proc
    scheduler: Proc
    worker: Proc
    worker_id: str


async def _delete_stream(url: str, prefix: str) -> None:
    nc = await nats.connect(url)
    try:
        with contextlib.suppress(Exception):  # the test may have failed before it existed
            await nc.jetstream().delete_stream(stream_name(prefix))
    finally:
        await nc.close()


def _base_env(prefix: str, redis_url: str) -> dict[str, str]:
    """tests/e2e/test_processes.py's settings: a private subject namespace on the shared NATS,
    a private Redis database, sub-second heartbeats and sweeps."""
    return {
        "NATS_URL": NATS_URL,
        "CORTEX_SUBJECT_PREFIX": prefix,
        "REDIS_URL": redis_url,
        "CORTEX_ACK_WAIT_S": "2",
        "CORTEX_HEARTBEAT_INTERVAL_S": "0.5",
        "CORTEX_STALE_AFTER_S": "1.5",
        "CORTEX_SWEEP_INTERVAL_S": "0.2",
        "CORTEX_NO_AUTH": "",
        "CORTEX_API_KEYS_FILE": "",
    }


def _gateway_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **env,
        "CORTEX_API_KEYS": API_KEYS,
        "CORTEX_RATE_LIMIT_PER_S": "1000",
        "CORTEX_RATE_LIMIT_BURST": "1000",
        "CORTEX_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        **extra,
    }


def start_gateway(env: dict[str, str]) -> tuple[Proc, str, str]:
    """A gateway process; its HTTP base URL and gRPC address, from its banner."""
    gateway = Proc("gateway", "--port", "0", env=env)
    try:
        m = gateway.wait_for(GATEWAY_UP)
    except BaseException:
        if gateway.popen.poll() is None:
            gateway.kill()
        raise
    return gateway, m.group(2), m.group(1)


def _stop(procs: list[Proc]) -> None:
    for p in reversed(procs):
        if p.popen.poll() is None:
            p.terminate()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gateway-api")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    store, url = claim_private_redis_db()
    env = {**_base_env(prefix, url), "CORTEX_POLICY_FILE": str(policy)}
    procs: list[Proc] = []
    try:
        kernel = Proc("safety-kernel", "--address", "127.0.0.1:0", env=env)
        procs.append(kernel)
        env["SAFETY_KERNEL_ADDR"] = kernel.wait_for(r"safety-kernel ready on (\S+)").group(1)
        worker_id = f"echo-{uuid.uuid4().hex[:6]}"
        scheduler = Proc("scheduler", env=env)
        worker = Proc(
            "worker", "echo", "--worker-id", worker_id, "--max-parallel-jobs", "1", env=env
        )
        procs += [scheduler, worker]
        gateway, base, grpc_target = start_gateway(_gateway_env(env))
        procs.append(gateway)
        scheduler.wait_for("cortex scheduler ready")
        worker.wait_for(f"cortex worker {worker_id} ready")
        yield Stack(base, grpc_target, env, kernel, gateway, scheduler, worker, worker_id)
        for p in procs:
            assert "Traceback" not in p.output, p.output
    finally:
        _stop(procs)
        asyncio.run(_delete_stream(NATS_URL, prefix))
        store.flushdb()  # ours alone since the claim
        store.close()


def _client(base: str, key: str | None) -> httpx.Client:
    return httpx.Client(
        base_url=base, headers={"X-API-Key": key} if key else {}, timeout=httpx.Timeout(15.0)
    )


@pytest.fixture
def a(stack: Stack) -> Iterator[httpx.Client]:
    """Tenant A's client."""
    with _client(stack.base, KEY_A) as client:
        yield client


@pytest.fixture
def b(stack: Stack) -> Iterator[httpx.Client]:
    """Tenant B's client."""
    with _client(stack.base, KEY_B) as client:
        yield client


# -- helpers -------------------------------------------------------------------------------


def submit(http: httpx.Client, prompt: str = "hello", **fields: Any) -> str:
    r = http.post("/v1/jobs", json={"prompt": prompt, **fields})
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def wait_for_job(
    http: httpx.Client,
    job_id: str,
    until: Callable[[dict[str, Any]], bool] = lambda j: j["status"] in TERMINAL,
    timeout: float = 30.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} after {timeout}s: {job}"
        time.sleep(0.05)


def list_all(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = http.get("/v1/jobs", params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None, "more than one page"
    jobs: list[dict[str, Any]] = r.json()["jobs"]
    return jobs


def ids_of(jobs: list[dict[str, Any]]) -> list[str]:
    return [j["job_id"] for j in jobs]


def assert_error(
    r: httpx.Response,
    code: int,
    error: str,
    *,
    field: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    assert r.status_code == code, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["error"] == error, body
    assert body["message"], body
    if field is not None:
        assert body.get("field") == field, body
    if limit is not None:
        assert body.get("limit") == limit, body
        assert str(limit) in body["message"], body  # the message names the limit
    return body


def sse_events(r: httpx.Response) -> Iterator[dict[str, str]]:
    """The events of a text/event-stream, as {field: value} (comment lines skipped)."""
    event: dict[str, str] = {}
    for line in r.iter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
    if event:
        yield event


# -- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "key-unknown-1"])
def test_without_a_valid_key_every_route_is_401(stack: Stack, key: str | None) -> None:
    with _client(stack.base, key) as http:
        for method, path in [
            ("POST", "/v1/jobs"),
            ("GET", "/v1/jobs"),
            ("GET", "/v1/jobs/some-job"),
            ("GET", "/v1/jobs/some-job/result"),
            ("POST", "/v1/jobs/some-job/cancel"),
            ("POST", "/v1/jobs/some-job/approve"),
            ("POST", "/v1/jobs/some-job/reject"),
            ("GET", "/v1/jobs/some-job/events"),
            ("GET", "/v1/workers"),
            ("GET", "/v1/dlq"),
            ("POST", "/v1/dlq/some-job/retry"),
        ]:
            body = {"prompt": "x"} if path == "/v1/jobs" and method == "POST" else None
            r = http.request(method, path, json=body)
            error = assert_error(r, 401, "unauthenticated", field="X-API-Key")
            assert ("missing" if key is None else "unknown") in error["message"], error
            assert r.headers["WWW-Authenticate"] == 'ApiKey header="X-API-Key"', path


def test_health_and_docs_need_no_key(stack: Stack) -> None:
    with _client(stack.base, None) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"nats": "ok", "redis": "ok"}}
        schema = http.get("/schema/openapi.json")
        assert schema.status_code == 200
        doc = schema.json()
        assert {"/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/dlq/{job_id}/retry"} <= set(
            doc["paths"]
        )
        assert doc["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
        assert http.get("/schema/swagger").status_code == 200


# -- submit, status, result ----------------------------------------------------------------


def test_submit_runs_to_completion_with_worker_and_attempts(stack: Stack, a: httpx.Client) -> None:
    r = a.post("/v1/jobs", json={"prompt": "over real HTTP", "labels": {"env": "test"}})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert set(accepted) == {"job_id", "trace_id"}
    assert "Idempotent-Replayed" not in r.headers
    job = wait_for_job(a, accepted["job_id"])
    assert job["status"] == "COMPLETED", job
    assert job["trace_id"] == accepted["trace_id"]
    assert job["worker_id"] == stack.worker_id
    assert job["attempts"] == 1
    assert job["reason"] is None
    assert job["retry_of"] is None
    assert job["topic"] == "job.echo"
    assert job["labels"] == {"env": "test"}
    assert job["priority"] == "interactive"
    assert job["result_ptr"] == f"redis://res:{accepted['job_id']}"
    result = a.get(f"/v1/jobs/{accepted['job_id']}/result")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    assert result.json() == {
        "echo": "over real HTTP",
        "topic": "job.echo",
        "worker_id": stack.worker_id,
    }


def test_wait_s_answers_when_the_job_ends(a: httpx.Client, b: httpx.Client) -> None:
    job_id = submit(a, "wait for me")
    r = a.get(f"/v1/jobs/{job_id}", params={"wait_s": 20})  # one request, no polling
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "COMPLETED"
    # A job that cannot end (it waits for a person) answers with its state when time is up.
    held = submit(a, labels={"review": "yes"})
    wait_for_job(a, held, lambda j: j["status"] == "APPROVAL_REQUIRED")
    r = a.get(f"/v1/jobs/{held}", params={"wait_s": 0.3})
    assert (r.status_code, r.json()["status"]) == (200, "APPROVAL_REQUIRED")
    # A reject through the gateway wakes a waiter at once (the gateway announces it).
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(a.get, f"/v1/jobs/{held}", params={"wait_s": 20})
        time.sleep(0.2)
        assert a.post(f"/v1/jobs/{held}/reject").status_code == 200
        assert waiting.result(timeout=10).json()["status"] == "DENIED"
    for bad in ("0", "-1", "61", "nan", "soon"):
        r = a.get(f"/v1/jobs/{job_id}", params={"wait_s": bad})
        assert_error(r, 400, "invalid_request", field="wait_s")
    assert_error(b.get(f"/v1/jobs/{job_id}", params={"wait_s": 1}), 404, "not_found")


def test_result_with_wait_s_is_one_request_from_submit_to_result(a: httpx.Client) -> None:
    job_id = submit(a, "the whole way")
    r = a.get(f"/v1/jobs/{job_id}/result", params={"wait_s": 20})
    assert r.status_code == 200, r.text
    assert r.json()["echo"] == "the whole way"
    held = submit(a, labels={"review": "yes"})
    wait_for_job(a, held, lambda j: j["status"] == "APPROVAL_REQUIRED")
    r = a.get(f"/v1/jobs/{held}/result", params={"wait_s": 0.3})
    assert assert_error(r, 409, "result_not_ready")["status"] == "APPROVAL_REQUIRED"
    a.post(f"/v1/jobs/{held}/reject")
    for bad in ("0", "61", "inf", "soon"):
        r = a.get(f"/v1/jobs/{job_id}/result", params={"wait_s": bad})
        assert_error(r, 400, "invalid_request", field="wait_s")


def test_submit_with_wait_s_is_one_request_from_submit_to_result(
    stack: Stack, a: httpx.Client
) -> None:
    r = a.post("/v1/jobs", params={"wait_s": 10}, json={"prompt": "in one request"})
    assert r.status_code == 200, r.text
    assert "Idempotent-Replayed" not in r.headers
    body = r.json()
    assert body["status"] == "COMPLETED", body
    assert body["result"] == {
        "echo": "in one request",
        "topic": "job.echo",
        "worker_id": stack.worker_id,
    }
    job_id = body["job_id"]
    assert {k: v for k, v in body.items() if k != "result"} == a.get(f"/v1/jobs/{job_id}").json()
    # Ended without a result (the policy denies it): 200, result null.
    r = a.post("/v1/jobs", params={"wait_s": 10}, json={"prompt": "x", "topic": "job.forbidden"})
    assert r.status_code == 200, r.text
    ended = r.json()
    assert (ended["status"], ended["reason"], ended["result"]) == ("DENIED", FORBIDDEN_REASON, None)
    # Not ended in time (it waits for a person): 202, as without wait_s.
    review = {"prompt": "x", "labels": {"review": "yes"}}
    r = a.post("/v1/jobs", params={"wait_s": 0.3}, json=review)
    assert r.status_code == 202, r.text
    held = r.json()["job_id"]
    wait_for_job(a, held, lambda j: j["status"] == "APPROVAL_REQUIRED")
    a.post(f"/v1/jobs/{held}/reject")
    # A bad wait_s submits nothing.
    run = uuid.uuid4().hex
    never = {"prompt": "never", "labels": {"run": run}}
    for bad in ("0", "61", "nan", "inf", "soon"):
        r = a.post("/v1/jobs", params={"wait_s": bad}, json=never)
        assert_error(r, 400, "invalid_request", field="wait_s")
    assert [j for j in list_all(a) if j["labels"].get("run") == run] == []


def test_unknown_jobs_are_404_and_unfinished_results_409(a: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v1/jobs/no-such-job"),
        ("GET", "/v1/jobs/no-such-job/result"),
        ("POST", "/v1/jobs/no-such-job/cancel"),
        ("POST", "/v1/jobs/no-such-job/approve"),
        ("POST", "/v1/jobs/no-such-job/reject"),
        ("GET", "/v1/jobs/no-such-job/events"),
        ("POST", "/v1/dlq/no-such-job/retry"),
        ("GET", "/v1/jobs/a:b"),
    ]:
        assert_error(a.request(method, path), 404, "not_found")
    held = submit(a, labels={"review": "yes"})
    wait_for_job(a, held, lambda j: j["status"] == "APPROVAL_REQUIRED")
    body = assert_error(a.get(f"/v1/jobs/{held}/result"), 409, "result_not_ready")
    assert body["status"] == "APPROVAL_REQUIRED"
    a.post(f"/v1/jobs/{held}/reject")


def test_another_tenants_job_is_404_everywhere(a: httpx.Client, b: httpx.Client) -> None:
    job_id = submit(a, "tenant a's secret")
    wait_for_job(a, job_id)
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/result"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("POST", f"/v1/jobs/{job_id}/approve"),
        ("POST", f"/v1/jobs/{job_id}/reject"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("POST", f"/v1/dlq/{job_id}/retry"),
    ]:
        body = assert_error(b.request(method, path), 404, "not_found")
        assert "secret" not in json.dumps(body)
    assert job_id not in ids_of(list_all(b))
    assert job_id in ids_of(list_all(a))
    assert a.get(f"/v1/jobs/{job_id}").json()["status"] == "COMPLETED"  # untouched by b


# -- listing -------------------------------------------------------------------------------


def test_list_filters_by_status_and_topic(a: httpx.Client) -> None:
    done = [submit(a, f"list {i}") for i in range(3)]
    for job_id in done:
        assert wait_for_job(a, job_id)["status"] == "COMPLETED"
    held = submit(a, "held", labels={"review": "yes"})
    wait_for_job(a, held, lambda j: j["status"] == "APPROVAL_REQUIRED")
    denied = submit(a, "denied", topic="job.forbidden")
    wait_for_job(a, denied)

    only_held = list_all(a, status="APPROVAL_REQUIRED")
    assert held in ids_of(only_held)
    assert {j["status"] for j in only_held} == {"APPROVAL_REQUIRED"}

    either = list_all(a, status="approval_required, COMPLETED")  # any case, spaces allowed
    assert {held, *done} <= set(ids_of(either))
    assert {j["status"] for j in either} == {"APPROVAL_REQUIRED", "COMPLETED"}
    assert denied not in ids_of(either)

    forbidden = list_all(a, topic="job.forbidden")
    assert denied in ids_of(forbidden)
    assert {j["topic"] for j in forbidden} == {"job.forbidden"}
    assert not set(done) & set(ids_of(forbidden))
    both = list_all(a, topic="job.forbidden", status="DENIED")
    assert denied in ids_of(both)
    assert list_all(a, topic="job.forbidden", status="COMPLETED") == []
    a.post(f"/v1/jobs/{held}/reject")


def test_list_pages_walk_every_job_once_newest_first(a: httpx.Client) -> None:
    for i in range(5):
        submit(a, f"page {i}")
    everything = list_all(a)
    assert len(everything) >= 5
    created = [j["created_at"] for j in everything]
    assert created == sorted(created, reverse=True)
    for limit in (1, 2, 3, len(everything)):
        walked: list[str] = []
        pages = 0
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor is not None:
                params["cursor"] = cursor
            r = a.get("/v1/jobs", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            pages += 1
            assert 0 < len(page["jobs"]) <= limit, (limit, pages, page)
            walked += ids_of(page["jobs"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == ids_of(everything), limit
        assert pages == math.ceil(len(everything) / limit), limit


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "BOGUS"}, "status"),
        ({"status": "COMPLETED,nope"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 1000}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"topic": "sys.destroy"}, "topic"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_field(
    a: httpx.Client, params: dict[str, Any], field: str
) -> None:
    assert_error(a.get("/v1/jobs", params=params), 400, "invalid_request", field=field)


def test_bad_dlq_parameters_are_400(a: httpx.Client) -> None:
    assert_error(a.get("/v1/dlq", params={"limit": 0}), 400, "invalid_request", field="limit")
    assert_error(
        a.get("/v1/dlq", params={"cursor": "junk"}), 400, "invalid_request", field="cursor"
    )


# -- limits and malformed bodies -----------------------------------------------------------

LABELS_33 = {f"k{i}": "v" for i in range(33)}


@pytest.mark.parametrize(
    ("body", "field", "limit"),
    [
        ({"prompt": "x" * 1_000_001}, "prompt", 1_000_000),
        ({"prompt": ""}, "prompt", None),
        ({"prompt": "x", "labels": LABELS_33}, "labels", 32),
        ({"prompt": "x", "labels": {"big": "v" * 257}}, "labels.big", 256),
        ({"prompt": "x", "labels": {"k" * 65: "v"}}, "labels", 64),
        ({"prompt": "x", "topic": "sys.destroy"}, "topic", None),
        ({"prompt": "x", "topic": "job."}, "topic", None),
        ({"prompt": "x", "topic": "job.a.b.c"}, "topic", None),
        ({"prompt": "x", "timeout_s": 0}, "timeout_s", 604800),
        ({"prompt": "x", "timeout_s": -1}, "timeout_s", 604800),
        ({"prompt": "x", "timeout_s": 604801}, "timeout_s", 604800),
        ({"prompt": "x", "idempotency_key": "k" * 129}, "idempotency_key", 128),
        ({"prompt": "x", "adapter_id": "a" * 129}, "adapter_id", 128),
        ({"prompt": "x", "colour": "red"}, "colour", None),
        ({"prompt": 3}, "prompt", None),
        ({"prompt": "x", "labels": ["a"]}, "labels", None),
        ({"prompt": "x", "timeout_s": "soon"}, "timeout_s", None),
        ({"prompt": "x", "priority": "urgent"}, "priority", None),
        ({}, "prompt", None),
        ([], "body", None),
    ],
)
def test_a_body_past_a_limit_or_malformed_is_400_naming_field_and_limit(
    a: httpx.Client, body: object, field: str, limit: int | None
) -> None:
    before = len(list_all(a))
    r = a.post("/v1/jobs", json=body)
    assert_error(r, 400, "invalid_request", field=field, limit=limit)
    assert len(list_all(a)) == before  # nothing was stored


def test_the_limits_themselves_are_accepted(a: httpx.Client) -> None:
    job_id = submit(
        a,
        "x" * 1_000_000,
        labels={f"k{i}": "v" * 256 for i in range(32)},
        topic="job.echo",
        timeout_s=604800,
        idempotency_key="i" * 128,
    )
    assert wait_for_job(a, job_id)["status"] == "COMPLETED"


def test_a_body_that_is_not_json_is_400(a: httpx.Client) -> None:
    r = a.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(r, 400, "invalid_request", field="body")


def test_a_body_over_8_mib_is_413(a: httpx.Client) -> None:
    body = json.dumps({"prompt": "x" * (8 << 20)}).encode()
    r = a.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")


# -- idempotency ---------------------------------------------------------------------------


def test_concurrent_submits_with_one_idempotency_key_make_one_job(
    stack: Stack, a: httpx.Client, b: httpx.Client
) -> None:
    key = f"idem-{uuid.uuid4().hex}"
    run = uuid.uuid4().hex
    body = {"prompt": "once", "idempotency_key": key, "labels": {"run": run}}
    barrier = threading.Barrier(10)

    def post(_: int) -> httpx.Response:
        barrier.wait()
        return a.post("/v1/jobs", json=body)

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(post, range(10)))
    assert {r.status_code for r in responses} == {202}, [r.text for r in responses]
    assert len({r.json()["job_id"] for r in responses}) == 1
    assert len({r.json()["trace_id"] for r in responses}) == 1
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count(None) == 1, replayed  # one created it, nine were replays
    assert replayed.count("true") == 9, replayed
    job_id = responses[0].json()["job_id"]

    assert [j["job_id"] for j in list_all(a) if j["labels"].get("run") == run] == [job_id]
    assert wait_for_job(a, job_id)["status"] == "COMPLETED"
    again = a.post("/v1/jobs", json=body)  # a replay after it finished: the same job
    assert again.status_code == 202
    assert again.json()["job_id"] == job_id
    assert again.headers["Idempotent-Replayed"] == "true"

    # It ran once: one dispatch, one completion, one run on the worker.
    stack.scheduler.wait_for_event("job_finished", job_id=job_id)
    stack.worker.wait_for_event("job_done", job_id=job_id)
    time.sleep(0.5)
    assert len(stack.scheduler.events("job_finished", job_id=job_id)) == 1
    assert len(stack.scheduler.events("job_dispatched", job_id=job_id)) == 1
    assert len(stack.worker.events("job_done", job_id=job_id)) == 1

    # The key is the tenant's own: tenant b gets a job of its own.
    other = b.post("/v1/jobs", json=body)
    assert other.status_code == 202
    assert "Idempotent-Replayed" not in other.headers
    assert other.json()["job_id"] != job_id
    assert wait_for_job(b, other.json()["job_id"])["status"] == "COMPLETED"


# -- cancel --------------------------------------------------------------------------------


def test_cancel_a_running_job_frees_the_workers_slot(stack: Stack, a: httpx.Client) -> None:
    slow = submit(a, "slow", labels={"echo.delay_ms": "5000"})
    running = wait_for_job(a, slow, lambda j: j["status"] == "RUNNING", timeout=20)
    assert running["worker_id"] == stack.worker_id
    time.sleep(0.2)  # inside the handler's 5 s sleep
    cancelled_at = time.monotonic()
    r = a.post(f"/v1/jobs/{slow}/cancel", json={"reason": "changed my mind"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reason"]) == ("CANCELLED", "changed my mind")

    # The worker's only slot is free again long before the 5 s would have passed.
    quick = submit(a, "next")
    assert wait_for_job(a, quick, timeout=20)["status"] == "COMPLETED"
    assert time.monotonic() - cancelled_at < 3.5
    stack.worker.wait_for_event("job_cancelling", job_id=slow)

    again = a.post(f"/v1/jobs/{slow}/cancel")
    body = assert_error(again, 409, "conflict")
    assert body["status"] == "CANCELLED"
    time.sleep(0.5)  # the worker's CANCELLED result has come back and changed nothing
    job = a.get(f"/v1/jobs/{slow}").json()
    assert (job["status"], job["reason"]) == ("CANCELLED", "changed my mind")
    assert job["result_ptr"] is None
    assert_error(a.get(f"/v1/jobs/{slow}/result"), 409, "result_not_ready")


def test_cancel_a_pending_job_and_a_finished_one(a: httpx.Client) -> None:
    held = submit(a, "held", labels={"review": "yes"})
    wait_for_job(a, held, lambda j: j["status"] == "APPROVAL_REQUIRED")
    r = a.post(f"/v1/jobs/{held}/cancel")  # no body: the default reason
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reason"]) == ("CANCELLED", "cancelled by client")
    done = submit(a, "done")
    wait_for_job(a, done)
    body = assert_error(a.post(f"/v1/jobs/{done}/cancel"), 409, "conflict")
    assert body["status"] == "COMPLETED"
    assert_error(
        a.post(f"/v1/jobs/{held}/cancel", json={"reason": "r" * 513}),
        400,
        "invalid_request",
        field="reason",
        limit=512,
    )


# -- approval ------------------------------------------------------------------------------


def test_approve_runs_the_job_and_reject_denies_it(stack: Stack, a: httpx.Client) -> None:
    approved = submit(a, "please", labels={"review": "yes"})
    held = wait_for_job(a, approved, lambda j: j["status"] == "APPROVAL_REQUIRED")
    assert held["reason"] == REVIEW_REASON
    r = a.post(f"/v1/jobs/{approved}/approve")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "PENDING"
    job = wait_for_job(a, approved)
    assert (job["status"], job["worker_id"], job["attempts"]) == (
        "COMPLETED",
        stack.worker_id,
        1,
    )
    assert a.get(f"/v1/jobs/{approved}/result").json()["echo"] == "please"

    rejected = submit(a, "please too", labels={"review": "yes"})
    wait_for_job(a, rejected, lambda j: j["status"] == "APPROVAL_REQUIRED")
    r = a.post(f"/v1/jobs/{rejected}/reject", json={"reason": "not on a Friday"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reason"]) == ("DENIED", "not on a Friday")
    time.sleep(0.5)  # a few sweeps: nothing routes it
    job = a.get(f"/v1/jobs/{rejected}").json()
    assert (job["status"], job["reason"], job["worker_id"]) == ("DENIED", "not on a Friday", None)

    for path in (f"/v1/jobs/{approved}/approve", f"/v1/jobs/{approved}/reject"):
        assert assert_error(a.post(path), 409, "conflict")["status"] == "COMPLETED"
    assert assert_error(a.post(f"/v1/jobs/{rejected}/approve"), 409, "conflict")["status"] == (
        "DENIED"
    )
    plain = submit(a, "never held")
    wait_for_job(a, plain)
    assert assert_error(a.post(f"/v1/jobs/{plain}/approve"), 409, "conflict")["status"] == (
        "COMPLETED"
    )


def test_reject_without_a_reason_gives_the_default(a: httpx.Client) -> None:
    job_id = submit(a, "x", labels={"review": "yes"})
    wait_for_job(a, job_id, lambda j: j["status"] == "APPROVAL_REQUIRED")
    r = a.post(f"/v1/jobs/{job_id}/reject")
    assert (r.status_code, r.json()["reason"]) == (200, "rejected by reviewer")
    bad = a.post(f"/v1/jobs/{job_id}/reject", json={"why": "x"})
    assert_error(bad, 400, "invalid_request", field="why")


# -- events --------------------------------------------------------------------------------


def test_events_stream_state_changes_until_the_terminal_one(
    a: httpx.Client, b: httpx.Client
) -> None:
    job_id = submit(a, "watch me", labels={"echo.delay_ms": "400"})
    with a.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))  # the server ends the stream after the terminal event
    assert events, "no events"
    assert {e.get("event") for e in events} == {"status"}
    views = [json.loads(e["data"]) for e in events]
    versions = [int(e["id"]) for e in events]
    assert versions == sorted(set(versions)), versions  # strictly increasing
    assert {v["job_id"] for v in views} == {job_id}
    statuses = [v["status"] for v in views]
    assert statuses[-1] == "COMPLETED", statuses
    assert "RUNNING" in statuses, statuses  # 400 ms in the handler: long enough to be seen
    order = ["PENDING", "RUNNING", "COMPLETED"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)

    # A finished job: its last state, then the end.
    with a.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        again = list(sse_events(r))
    assert [json.loads(e["data"])["status"] for e in again] == ["COMPLETED"]

    assert_error(a.get("/v1/jobs/no-such-job/events"), 404, "not_found")
    assert_error(b.get(f"/v1/jobs/{job_id}/events"), 404, "not_found")


# -- workers -------------------------------------------------------------------------------


def test_workers_shows_the_echo_worker(stack: Stack, a: httpx.Client) -> None:
    deadline = time.monotonic() + 10
    while True:
        workers = a.get("/v1/workers").json()["workers"]
        mine = [w for w in workers if w["worker_id"] == stack.worker_id]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(mine) == 1, workers
    (w,) = mine
    assert w["pool"] == "echo"
    assert w["alive"] is True
    assert w["max_parallel_jobs"] == 1
    assert 0 <= w["active_jobs"] <= 1
    assert w["last_heartbeat"].endswith("+00:00")
    assert 0 <= w["seconds_since_heartbeat"] < 1.5
    echo = a.get("/v1/workers", params={"pool": "echo"}).json()["workers"]
    assert stack.worker_id in [x["worker_id"] for x in echo]
    assert {x["pool"] for x in echo} == {"echo"}
    assert a.get("/v1/workers", params={"pool": "no-such-pool"}).json() == {"workers": []}


# -- dead letters --------------------------------------------------------------------------


def test_dead_letters_list_and_retry(a: httpx.Client, b: httpx.Client) -> None:
    denied = submit(a, "nope", topic="job.forbidden")
    failed = submit(a, "bad delay", labels={"echo.delay_ms": "not-a-number"})
    done = submit(a, "fine")
    d = wait_for_job(a, denied)
    f = wait_for_job(a, failed)
    assert (d["status"], d["reason"]) == ("DENIED", FORBIDDEN_REASON)
    assert f["status"] == "FAILED", f
    assert "ValueError" in f["reason"], f
    assert wait_for_job(a, done)["status"] == "COMPLETED"

    r = a.get("/v1/dlq", params={"limit": 200})
    assert r.status_code == 200, r.text
    dead = r.json()["jobs"]
    assert {denied, failed} <= set(ids_of(dead))
    assert done not in ids_of(dead)
    assert {j["status"] for j in dead} <= DEAD
    assert denied not in ids_of(b.get("/v1/dlq").json()["jobs"])

    for old, status in ((denied, "DENIED"), (failed, "FAILED")):
        r = a.post(f"/v1/dlq/{old}/retry")
        assert r.status_code == 202, r.text
        new = r.json()
        assert new["retry_of"] == old
        assert new["job_id"] != old
        assert "Idempotent-Replayed" not in r.headers
        job = wait_for_job(a, new["job_id"])
        assert job["retry_of"] == old
        assert job["status"] == status  # the same job again: the same outcome
        assert job["trace_id"] == new["trace_id"] != a.get(f"/v1/jobs/{old}").json()["trace_id"]

        again = a.post(f"/v1/dlq/{old}/retry")  # retrying the same job again: the same new job
        assert again.status_code == 202
        assert again.json()["job_id"] == new["job_id"]
        assert again.headers["Idempotent-Replayed"] == "true"

    assert assert_error(a.post(f"/v1/dlq/{done}/retry"), 409, "conflict")["status"] == "COMPLETED"
    assert_error(b.post(f"/v1/dlq/{denied}/retry"), 404, "not_found")


# -- rate limit ----------------------------------------------------------------------------


def test_the_rate_limit_is_per_key(stack: Stack) -> None:
    env = _gateway_env(stack.env, CORTEX_RATE_LIMIT_PER_S="0.5", CORTEX_RATE_LIMIT_BURST="3")
    gateway, base, _ = start_gateway(env)
    try:
        with _client(base, KEY_A) as a, _client(base, KEY_B) as b:
            assert [a.get("/v1/jobs", params={"limit": 1}).status_code for _ in range(3)] == [
                200
            ] * 3
            r = a.get("/v1/jobs", params={"limit": 1})
            assert_error(r, 429, "rate_limited")
            assert int(r.headers["Retry-After"]) >= 1
            assert b.get("/v1/jobs", params={"limit": 1}).status_code == 200
            assert a.get("/healthz").status_code == 200  # no key, no limit
            assert a.get("/readyz").status_code == 200
            time.sleep(2.1)  # one token back at 0.5/s
            assert a.get("/v1/jobs", params={"limit": 1}).status_code == 200
            assert a.get("/v1/jobs", params={"limit": 1}).status_code == 429
    finally:
        assert gateway.terminate() in (0, -15), gateway.output


# -- dependencies down ---------------------------------------------------------------------


async def _wait_for_job(http: httpx.AsyncClient, job_id: str) -> str:
    async with asyncio.timeout(30):
        while (status := (await http.get(f"/v1/jobs/{job_id}")).json()["status"]) not in TERMINAL:
            await asyncio.sleep(0.05)
    return str(status)


class RefusedJobRevived(AssertionError):
    """A job the gateway refused (503, "not submitted") ran after all."""


async def test_nats_down_submit_is_503_and_leaves_no_job(stack: Stack, tmp_path: Path) -> None:
    """Gateway, scheduler and worker on a private nats-server that is stopped and started
    again; the Safety Kernel of the module's stack.

    Everything up to the last check passes; the last one (a refused job must stay refused once
    NATS is back) once failed here: the bus handed the submit to nats-py's reconnect buffer,
    which sent it after the 503, and the scheduler adopted the withdrawn job."""
    server = NatsServer(tmp_path)
    await server.start()
    prefix = f"t{uuid.uuid4().hex[:10]}."
    store, url = claim_private_redis_db()
    env = {
        **_base_env(prefix, url),
        "NATS_URL": server.url,
        "SAFETY_KERNEL_ADDR": stack.env["SAFETY_KERNEL_ADDR"],
    }
    procs: list[Proc] = []
    try:
        gateway, base, _ = await asyncio.to_thread(start_gateway, _gateway_env(env))
        procs.append(gateway)
        procs.append(Proc("scheduler", env=env))
        procs.append(Proc("worker", "echo", "--worker-id", f"echo-{prefix[1:7]}", env=env))
        await asyncio.to_thread(procs[1].wait_for, "cortex scheduler ready")
        await asyncio.to_thread(procs[2].wait_for, "cortex worker .* ready")
        async with httpx.AsyncClient(
            base_url=base, headers={"X-API-Key": KEY_A}, timeout=30
        ) as http:
            assert (await http.get("/readyz")).status_code == 200
            before = (await http.post("/v1/jobs", json={"prompt": "before"})).json()["job_id"]
            assert await _wait_for_job(http, before) == "COMPLETED"

            await server.stop()
            ready = await http.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["status"] == "unavailable"
            assert ready.json()["checks"]["redis"] == "ok"
            assert ready.json()["checks"]["nats"].startswith("unavailable"), ready.json()

            started = time.monotonic()
            refused = await asyncio.gather(  # with and without an idempotency key
                http.post("/v1/jobs", json={"prompt": "during", "idempotency_key": "k1"}),
                http.post("/v1/jobs", json={"prompt": "during 2"}),
            )
            took = time.monotonic() - started
            for r in refused:
                body = assert_error(r, 503, "unavailable")
                assert "bus is unavailable" in body["message"], body
                assert "not submitted" in body["message"], body
                assert r.headers["Retry-After"] == "1"
            # Reads need only Redis: they go on, and show no trace of the refused submits.
            listed = (await http.get("/v1/jobs")).json()["jobs"]
            assert [j["job_id"] for j in listed] == [before]
            # The contexts they had stored stay (until their TTL), but no job record, only a
            # tombstone that keeps the id from ever being created: the front door withdrew
            # both jobs when the publish failed.
            keys = [k.decode() if isinstance(k, bytes) else k for k in store.keys("ctx:*")]
            contexts = [k.removeprefix("ctx:") for k in keys]
            withdrawn = [job_id for job_id in contexts if job_id != before]
            assert len(withdrawn) == 2, withdrawn
            assert store.ttl(f"ctx:{withdrawn[0]}") > 0  # they expire
            for job_id in withdrawn:
                assert store.hgetall(f"job:{job_id}") == {b"withdrawn": b"1"}
                assert_error(await http.get(f"/v1/jobs/{job_id}"), 404, "not_found")
            assert not store.keys("idem:*")  # the key the refused submit claimed is free

            await server.start()  # back: everything reconnects
            deadline = time.monotonic() + 20
            while (await http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "NATS came back but the gateway isn't ready"
                await asyncio.sleep(0.1)
            # The refused key is free: the job a retry makes is new, not a replay.
            r = await http.post("/v1/jobs", json={"prompt": "during", "idempotency_key": "k1"})
            assert r.status_code == 202, r.text
            assert "Idempotent-Replayed" not in r.headers
            after = r.json()["job_id"]
            assert await _wait_for_job(http, after) == "COMPLETED"
            await asyncio.sleep(3)  # past the ack wait (2 s) and many sweeps
            # The refused jobs never come back to life: not from a publish the client
            # library buffered while disconnected, nor from the scheduler's sweep.
            listed = (await http.get("/v1/jobs")).json()["jobs"]
            revived = {j["job_id"]: j for j in listed if j["job_id"] in withdrawn}
            if revived:
                raise RefusedJobRevived(
                    "jobs answered 503 ('not submitted') came back after NATS did: "
                    f"{json.dumps(revived, indent=1)}\nscheduler: "
                    + "".join(ln for ln in procs[1].lines if any(j in ln for j in revived))
                )
            assert [j["job_id"] for j in listed] == [after, before]
            for job_id in withdrawn:
                assert_error(await http.get(f"/v1/jobs/{job_id}"), 404, "not_found")
        print(f"\nsubmit with NATS down answered 503 in {took:.2f}s")
    finally:
        _stop(procs)
        await server.stop()  # a private server: its stream goes with its store directory
        store.flushdb()
        store.close()
    for p in procs:
        assert "Traceback" not in p.output, p.output


def test_redis_unreachable_at_start_refuses_to_start(stack: Stack) -> None:
    port = free_port()  # nothing listens there
    env = _gateway_env(stack.env, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    gateway = Proc("gateway", "--port", "0", env=env)
    code = gateway.popen.wait(timeout=30)
    gateway.terminate()
    assert code != 0, gateway.output
    assert "Cortex is up" not in gateway.output
    assert f"127.0.0.1:{port}" in gateway.output, gateway.output
    assert "did not answer PING" in gateway.output, gateway.output


def _redis_server(port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    """A private redis-server that keeps its data across a restart (append-only file)."""
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(data_dir),
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
            client = redis.Redis(port=port)
            try:
                if client.ping():
                    return proc
            finally:
                client.close()
        assert proc.poll() is None, "redis-server exited"
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)


def _stop_redis(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_down_after_start_submit_is_503_and_leaves_no_job(
    stack: Stack, tmp_path: Path
) -> None:
    port = free_port()
    server = _redis_server(port, tmp_path)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    env = _gateway_env(_base_env(prefix, f"redis://127.0.0.1:{port}/0"))
    gateway: Proc | None = None
    try:
        gateway, base, _ = start_gateway(env)
        with _client(base, KEY_A) as http:
            before = submit(http, "before")
            _stop_redis(server)
            with socket.socket() as s:  # really gone
                assert s.connect_ex(("127.0.0.1", port)) != 0

            ready = http.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["nats"] == "ok"
            assert ready.json()["checks"]["redis"].startswith("unavailable"), ready.json()

            r = http.post("/v1/jobs", json={"prompt": "during"})
            body = assert_error(r, 503, "unavailable")
            assert "memory fabric is unavailable" in body["message"], body
            assert_error(http.get(f"/v1/jobs/{before}"), 503, "unavailable")
            assert_error(http.get("/v1/jobs"), 503, "unavailable")
            assert gateway.popen.poll() is None  # still serving

            server = _redis_server(port, tmp_path)  # back, with what it had
            deadline = time.monotonic() + 20
            while http.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "Redis came back but the gateway isn't ready"
                time.sleep(0.1)
            listed: list[dict[str, Any]] = []
            while time.monotonic() < deadline:  # the pool's stale connections fail once each
                r = http.get("/v1/jobs")
                if r.status_code == 200:
                    listed = r.json()["jobs"]
                    break
                time.sleep(0.1)
            assert ids_of(listed) == [before]  # nothing of the refused submit
            store = redis.Redis(port=port)
            assert store.keys("ctx:*") == [f"ctx:{before}".encode()]
            store.close()
            deadline = time.monotonic() + 20
            while (r := http.post("/v1/jobs", json={"prompt": "after"})).status_code != 202:
                assert time.monotonic() < deadline, r.text
                time.sleep(0.1)
    finally:
        if gateway is not None:
            gateway.terminate()
        _stop_redis(server)
        asyncio.run(_delete_stream(NATS_URL, prefix))
    assert "Traceback" not in gateway.output, gateway.output


# -- gRPC ----------------------------------------------------------------------------------


def test_grpc_submit_and_status_on_the_gateways_port(stack: Stack, a: httpx.Client) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        submit_job = channel.unary_unary(
            SUBMIT_JOB_METHOD,
            request_serializer=v1.SubmitJobRequest.SerializeToString,
            response_deserializer=v1.SubmitJobResponse.FromString,
        )
        status = channel.unary_unary(
            GET_JOB_STATUS_METHOD,
            request_serializer=v1.GetJobStatusRequest.SerializeToString,
            response_deserializer=v1.GetJobStatusResponse.FromString,
        )
        key_a = ((API_KEY_METADATA, KEY_A),)
        submitted = submit_job(
            v1.SubmitJobRequest(prompt="over gRPC", labels={"via": "grpc"}),
            metadata=key_a,
            timeout=15,
        )
        assert submitted.job_id
        assert submitted.trace_id
        deadline = time.monotonic() + 30
        while True:
            got = status(
                v1.GetJobStatusRequest(job_id=submitted.job_id), metadata=key_a, timeout=15
            )
            if got.status == "COMPLETED" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (got.status, got.worker_id, got.attempts) == ("COMPLETED", stack.worker_id, 1)
        assert got.trace_id == submitted.trace_id
        assert got.result_ptr == f"redis://res:{submitted.job_id}"
        # The same job, the same tenant, over REST.
        assert a.get(f"/v1/jobs/{submitted.job_id}/result").json()["echo"] == "over gRPC"

        with pytest.raises(grpc.RpcError) as missing:
            submit_job(v1.SubmitJobRequest(prompt="no key"), timeout=15)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as unknown:
            status(
                v1.GetJobStatusRequest(job_id=submitted.job_id),
                metadata=((API_KEY_METADATA, "key-unknown-1"),),
                timeout=15,
            )
        assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as other:
            status(
                v1.GetJobStatusRequest(job_id=submitted.job_id),
                metadata=((API_KEY_METADATA, KEY_B),),
                timeout=15,
            )
        assert other.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as bad:
            submit_job(v1.SubmitJobRequest(prompt="x", topic="sys.destroy"), metadata=key_a)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (bad.value.details() or "").startswith("topic:")
