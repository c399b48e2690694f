"""The production plan's local flow, automated: gateway, scheduler and echo workers as real OS
processes against real NATS and Redis, driven over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
import redis

from cortex_adapters.nats import stream_name
from tests.fake_openai import FakeOpenAI
from tests.policies import FORBIDDEN_TOPIC_POLICY
from tests.processes import Proc, claim_private_redis_db

pytestmark = [pytest.mark.processes, pytest.mark.nats, pytest.mark.redis]

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "uppercase_worker.py"


async def _delete_stream(prefix: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(stream_name(prefix))
    finally:
        await nc.close()


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    """Every process of one test shares a private subject namespace on the shared NATS."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    # Its own Redis database too: schedulers sweep every job in theirs, and must not touch
    # another test's (or another test run's) jobs.
    store, url = claim_private_redis_db()
    yield {
        "CORTEX_SUBJECT_PREFIX": prefix,
        "REDIS_URL": url,
        "CORTEX_ACK_WAIT_S": "2",
        "CORTEX_HEARTBEAT_INTERVAL_S": "0.5",
        "CORTEX_STALE_AFTER_S": "1.5",
        "CORTEX_SWEEP_INTERVAL_S": "0.2",
        # These tests drive the REST API without keys (tests/e2e/test_gateway_api.py has auth),
        # and each gateway's gRPC API takes a free port, not the shared default.
        "CORTEX_NO_AUTH": "1",
        "CORTEX_GRPC_ADDR": "127.0.0.1:0",
        "CORTEX_RATE_LIMIT_PER_S": "0",  # the tests poll hard; no limit (0) for them
    }
    asyncio.run(_delete_stream(prefix))
    store.flushdb()  # ours alone since the claim
    store.close()


@pytest.fixture
def cortex(env: dict[str, str]) -> Iterator[tuple[str, list[Proc]]]:
    """Gateway, scheduler and Safety Kernel as separate processes (workers come per test)."""
    kernel = Proc("safety-kernel", "--address", "127.0.0.1:0", env=env)
    procs = [kernel]
    try:
        env["SAFETY_KERNEL_ADDR"] = kernel.wait_for(r"safety-kernel ready on (\S+)").group(1)
        procs += [Proc("gateway", "--port", "0", env=env), Proc("scheduler", env=env)]
        base = procs[1].wait_for(r"Cortex is up \(gateway.*\) on (http://\S+)").group(1)
        procs[2].wait_for("cortex scheduler ready")
        yield base, procs
    finally:
        for p in reversed(procs):
            if p.popen.poll() is None:
                p.terminate()


def start_worker(env: dict[str, str], worker_id: str, parallel: int = 2) -> Proc:
    w = Proc(
        "worker", "echo", "--worker-id", worker_id, "--max-parallel-jobs", str(parallel), env=env
    )
    w.wait_for(f"cortex worker {worker_id} ready")
    return w


def finished(
    http: httpx.Client, job_ids: list[str], timeout: float = 60.0
) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + timeout
    states: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        states = {j: http.get(f"/v1/jobs/{j}").json() for j in job_ids}
        if all(s["status"] not in ("PENDING", "RUNNING") for s in states.values()):
            return states
        time.sleep(0.1)
    unfinished = {
        j: s["status"] for j, s in states.items() if s["status"] in ("PENDING", "RUNNING")
    }
    raise AssertionError(f"{len(unfinished)} jobs unfinished after {timeout}s: {unfinished}")


@pytest.fixture
def policy_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A Safety Kernel policy that DENIES topic ``job.forbidden`` (the REST API refuses
    topics outside ``job.*`` with a 400 before they reach the policy)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(FORBIDDEN_TOPIC_POLICY)
    env["CORTEX_POLICY_FILE"] = str(policy)
    return env


def test_local_flow_with_context_and_result_in_redis(
    policy_env: dict[str, str], cortex: tuple[str, list[Proc]]
) -> None:
    env = policy_env
    base, procs = cortex
    procs.append(start_worker(env, f"echo-{uuid.uuid4().hex[:6]}"))
    store = redis.Redis.from_url(env["REDIS_URL"])
    with httpx.Client(base_url=base, timeout=10) as http:
        job_id = http.post("/v1/jobs", json={"prompt": "through real NATS and Redis"}).json()[
            "job_id"
        ]
        status = finished(http, [job_id])[job_id]
        assert status["status"] == "COMPLETED"
        assert status["result_ptr"] == f"redis://res:{job_id}"
        context = json.loads(store.get(f"ctx:{job_id}") or b"null")
        assert context["prompt"] == "through real NATS and Redis"
        result = json.loads(store.get(f"res:{job_id}") or b"null")
        assert result["echo"] == "through real NATS and Redis"
        assert json.loads(http.get(f"/v1/jobs/{job_id}/result").content) == result

        refused = http.post("/v1/jobs", json={"prompt": "x", "topic": "sys.destroy"})
        assert refused.status_code == 400, refused.text
        assert refused.json()["field"] == "topic"

        denied = http.post("/v1/jobs", json={"prompt": "x", "topic": "job.forbidden"}).json()[
            "job_id"
        ]
        status = finished(http, [denied])[denied]
        assert (status["status"], status["reason"]) == (
            "DENIED",
            "topic job.forbidden is forbidden",
        )
        assert store.get(f"res:{denied}") is None
    store.close()
    assert "AUTH IS OFF" in procs[1].output, procs[1].output
    for p in procs:  # graceful: SIGTERM drains and exits
        assert p.terminate() in (0, -15), p.output
        assert "Traceback" not in p.output, p.output


def test_a_worker_killed_mid_burst_loses_no_job(
    cortex: tuple[str, list[Proc]], env: dict[str, str]
) -> None:
    base, procs = cortex
    first = start_worker(env, f"echo-a{uuid.uuid4().hex[:6]}")
    procs.append(first)
    with httpx.Client(base_url=base, timeout=10) as http:
        ids = [
            http.post(
                "/v1/jobs", json={"prompt": f"p{i}", "labels": {"echo.delay_ms": "150"}}
            ).json()["job_id"]
            for i in range(30)
        ]
        # Kill the only worker while it is in the middle of the burst.
        deadline = time.monotonic() + 30
        while sum(http.get(f"/v1/jobs/{j}").json()["status"] == "COMPLETED" for j in ids) < 4:
            assert time.monotonic() < deadline, first.output
            time.sleep(0.05)
        first.kill()
        procs.append(start_worker(env, f"echo-b{uuid.uuid4().hex[:6]}"))
        states = finished(http, ids)
        assert {s["status"] for s in states.values()} == {"COMPLETED"}
        for i, job_id in enumerate(ids):
            assert json.loads(http.get(f"/v1/jobs/{job_id}/result").content)["echo"] == f"p{i}"
    # Exactly once: the scheduler committed exactly one completion per job.
    finishes = procs[2].events("job_finished")
    for job_id in ids:
        assert sum(f["job_id"] == job_id for f in finishes) == 1, job_id


async def _publish_junk(prefix: str) -> None:
    """Bad input straight onto the durable subjects, as a broken or hostile client would."""
    from cortex_adapters.codec import ProtobufCodec
    from cortex_core.messages import BusPacket, Heartbeat, JobResult, JobStatus

    codec = ProtobufCodec()
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    unknown_result = BusPacket(
        trace_id="ab" * 16,
        sender_id="junk",
        created_at=0.0,
        payload=JobResult(job_id="no-such-job", status=JobStatus.COMPLETED, worker_id="w"),
    )
    wrong_payload = BusPacket(
        trace_id="ab" * 16,
        sender_id="junk",
        created_at=0.0,
        payload=Heartbeat(worker_id="w", pool="echo", max_parallel_jobs=1),
    )
    await js.publish(f"{prefix}sys.job.submit", b"\xff\x00 not protobuf")
    await js.publish(f"{prefix}sys.job.submit", bytes.fromhex("2001aa0600"))  # unknown payload type
    await js.publish(f"{prefix}sys.job.submit", codec.encode(wrong_payload))
    await js.publish(f"{prefix}sys.job.result", codec.encode(unknown_result))
    await js.publish(f"{prefix}job.echo", b"garbage for the workers")
    await nc.close()


def test_bad_input_on_the_bus_is_dropped_and_nothing_gets_stuck(
    cortex: tuple[str, list[Proc]], env: dict[str, str]
) -> None:
    base, procs = cortex
    worker = start_worker(env, f"echo-{uuid.uuid4().hex[:6]}")
    procs.append(worker)
    asyncio.run(_publish_junk(env["CORTEX_SUBJECT_PREFIX"]))
    with httpx.Client(base_url=base, timeout=10) as http:
        job_id = http.post("/v1/jobs", json={"prompt": "after the junk"}).json()["job_id"]
        assert finished(http, [job_id])[job_id]["status"] == "COMPLETED"
    scheduler = procs[2]
    scheduler.wait_for_event("packet_dropped", reason="unknown_job")
    scheduler.wait_for_event("packet_dropped", reason="unexpected_payload")
    undecodable = scheduler.events("packet_dropped", reason="undecodable")
    assert len(undecodable) >= 2, scheduler.output
    worker.wait_for_event("packet_dropped", reason="undecodable")
    for p in procs:
        assert p.popen.poll() is None, p.output  # nothing crashed


def test_sigterm_lets_a_worker_finish_the_job_in_flight(
    cortex: tuple[str, list[Proc]], env: dict[str, str]
) -> None:
    base, procs = cortex
    worker = start_worker(env, f"echo-{uuid.uuid4().hex[:6]}")
    procs.append(worker)
    with httpx.Client(base_url=base, timeout=10) as http:
        body = {"prompt": "slow", "labels": {"echo.delay_ms": "1500"}}
        job_id = http.post("/v1/jobs", json=body).json()["job_id"]
        deadline = time.monotonic() + 20
        while http.get(f"/v1/jobs/{job_id}").json()["status"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)  # the worker is inside the 1.5 s job now
        assert worker.terminate() in (0, -15), worker.output
        # It finished the job before exiting: no other worker exists to pick it up.
        status = finished(http, [job_id], timeout=5)[job_id]
        assert status["status"] == "COMPLETED"
    assert worker.events("job_done"), worker.output
    assert "Traceback" not in worker.output, worker.output


def test_a_dead_safety_kernel_denies_jobs_and_a_restarted_one_allows_them(
    cortex: tuple[str, list[Proc]], env: dict[str, str]
) -> None:
    base, procs = cortex
    procs.append(start_worker(env, f"echo-{uuid.uuid4().hex[:6]}"))
    kernel, address = procs[0], env["SAFETY_KERNEL_ADDR"]
    with httpx.Client(base_url=base, timeout=10) as http:
        ok = http.post("/v1/jobs", json={"prompt": "before"}).json()["job_id"]
        assert finished(http, [ok])[ok]["status"] == "COMPLETED"

        kernel.kill()
        denied = [
            http.post("/v1/jobs", json={"prompt": f"d{i}"}).json()["job_id"] for i in range(5)
        ]
        for state in finished(http, denied).values():
            assert (state["status"], state["reason"]) == ("DENIED", "safety kernel unavailable")
            assert state["result_ptr"] is None  # never reached a worker

        restarted = Proc("safety-kernel", "--address", address, env=env)
        procs[0] = restarted
        restarted.wait_for("safety-kernel ready")
        deadline = time.monotonic() + 30  # the client's breaker lets a probe through soon
        while True:
            job_id = http.post("/v1/jobs", json={"prompt": "after"}).json()["job_id"]
            state = finished(http, [job_id])[job_id]
            if state["status"] == "COMPLETED":
                break
            assert state["reason"] == "safety kernel unavailable", state
            assert time.monotonic() < deadline, "the kernel came back but jobs are still denied"
            time.sleep(0.5)


@pytest.fixture
def routing_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The shipped pools plus the docs' example pool ``upper`` (docs/WORKERS.md)."""
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        "routing:\n  pools:\n"
        '    echo: {topics: ["job.echo"]}\n'
        '    log: {topics: ["job.log.analyze"]}\n'
        '    chat-llm: {topics: ["job.chat.llm"]}\n'
        '    upper: {topics: ["job.upper"]}\n'
    )
    env["CORTEX_ROUTING_FILE"] = str(routing)
    return env


def test_every_worker_kind_runs_as_a_process(
    routing_env: dict[str, str], cortex: tuple[str, list[Proc]]
) -> None:
    base, procs = cortex
    env = routing_env
    with FakeOpenAI() as llm_server:
        llm_env = {**env, "CORTEX_LLM_BASE_URL": llm_server.base_url, "CORTEX_LLM_MODEL": "tiny"}
        workers = [
            Proc("worker", "log-analyzer", "--worker-id", "log-1", env=env),
            Proc("worker", "llm", "--worker-id", "llm-1", env=llm_env),
            Proc(
                "worker",
                "run",
                "--worker-id",
                "upper-1",
                "--pool",
                "upper",
                "--topic",
                "job.upper",
                "--handler",
                str(EXAMPLE) + ":handle",
                env=env,
            ),
        ]
        procs += workers
        for w in workers:
            w.wait_for("cortex worker .* ready")
        log_text = "\n".join(
            [
                "2026-11-21T14:00:01Z INFO [api] started",
                "2026-11-21T14:00:02Z ERROR [db] timeout after 30s on 10.0.0.1",
                "2026-11-21T14:00:03Z ERROR [db] timeout after 45s on 10.0.0.2",
                "\x00 not a log line",
            ]
        )
        with httpx.Client(base_url=base, timeout=10) as http:
            ids = {
                "log": http.post("/v1/jobs", json={"prompt": log_text, "topic": "job.log.analyze"}),
                "llm": http.post(
                    "/v1/jobs", json={"prompt": "hello model", "topic": "job.chat.llm"}
                ),
                "upper": http.post("/v1/jobs", json={"prompt": "shout", "topic": "job.upper"}),
                "empty": http.post("/v1/jobs", json={"prompt": "   ", "topic": "job.upper"}),
            }
            ids = {k: r.json()["job_id"] for k, r in ids.items()}
            states = finished(http, list(ids.values()))

            def result(kind: str) -> dict[str, object]:
                assert states[ids[kind]]["status"] == "COMPLETED", states[ids[kind]]
                return json.loads(http.get(f"/v1/jobs/{ids[kind]}/result").content)

            report = result("log")
            assert report["levels"]["ERROR"] == 2
            assert report["lines"]["malformed"] == 1
            (signature,) = report["top_error_signatures"]
            assert signature["count"] == 2
            assert result("llm")["text"] == "hello model"  # the fake server echoes
            assert llm_server.requests[-1].body["model"] == "tiny"
            assert result("upper")["upper"] == "SHOUT"
            failed = states[ids["empty"]]
            assert failed["status"] == "FAILED"
            assert "ValueError" in str(failed["reason"])


def test_a_job_whose_worker_is_killed_completes_on_another_worker(
    cortex: tuple[str, list[Proc]], env: dict[str, str]
) -> None:
    """The default, least-loaded ``worker`` dispatch: the job sits on the dead worker's own
    subject, and only the scheduler's sweep can bring it back."""
    base, procs = cortex
    doomed = start_worker(env, f"echo-a{uuid.uuid4().hex[:6]}")
    procs.append(doomed)
    with httpx.Client(base_url=base, timeout=10) as http:
        body = {"prompt": "survivor", "labels": {"echo.delay_ms": "3000"}}
        job_id = http.post("/v1/jobs", json=body).json()["job_id"]
        doomed.wait_for("worker .* ready")
        deadline = time.monotonic() + 20
        while http.get(f"/v1/jobs/{job_id}").json()["status"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)  # inside the 3 s job now
        doomed.kill()  # its job's packet sits on worker.<doomed>.jobs: nobody else reads it
        procs.append(start_worker(env, f"echo-b{uuid.uuid4().hex[:6]}"))
        state = finished(http, [job_id], timeout=40)[job_id]
        assert state["status"] == "COMPLETED"
        assert json.loads(http.get(f"/v1/jobs/{job_id}/result").content)["echo"] == "survivor"
    procs[2].wait_for_event("job_requeued", job_id=job_id)  # the sweep re-dispatched it
