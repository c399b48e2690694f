"""`cortex up`'s app end to end over HTTP (ASGI, with its full lifespan)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from cortex_apps.up import build_app, build_container
from cortex_core.messages import BusPacket, JobRequest
from tests.policies import FORBIDDEN_TOPIC_POLICY

pytestmark = pytest.mark.e2e


@pytest.fixture
async def cortex(tmp_path: Path) -> AsyncIterator[tuple[AsyncTestClient[Any], list[str]]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(FORBIDDEN_TOPIC_POLICY)
    container = build_container(
        {
            "heartbeat_interval_s": 0.2,
            "no_auth": True,
            "grpc_addr": "127.0.0.1:0",  # not the shared default port
            "rate_limit_per_s": 0,  # the tests poll hard: no limit
            "policy_file": str(policy),
        }
    )
    reached_worker: list[str] = []

    async def spy(packet: BusPacket) -> None:
        assert isinstance(packet.payload, JobRequest)
        reached_worker.append(packet.payload.job_id)

    async def subscribe_spy() -> None:  # runs on the app's own event loop, after the lifespan
        # Everything a worker can receive: its own subject and every pool topic.
        for subject in ("worker.>", "job.>"):
            await container.bus().subscribe(subject, spy)

    app = build_app(container)
    app.on_startup.append(subscribe_spy)
    async with AsyncTestClient(app=app) as client:
        yield client, reached_worker


async def until_finished(client: AsyncTestClient[Any], job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            body: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
            if body["status"] not in ("PENDING", "RUNNING"):
                return body
            await asyncio.sleep(0.01)


async def test_echo_job_completes_with_its_prompt(
    cortex: tuple[AsyncTestClient[Any], list[str]],
) -> None:
    client, reached = cortex
    r = await client.post("/v1/jobs", json={"prompt": "hello, cortex", "labels": {"env": "test"}})
    assert r.status_code == 202
    ids = r.json()
    assert set(ids) == {"job_id", "trace_id"}
    status = await until_finished(client, ids["job_id"])
    assert status["status"] == "COMPLETED"
    assert status["trace_id"] == ids["trace_id"]
    assert status["topic"] == "job.echo"
    assert status["result_ptr"] == f"redis://res:{ids['job_id']}"
    assert status["reason"] is None
    assert status["created_at"] <= status["updated_at"]
    result = await client.get(f"/v1/jobs/{ids['job_id']}/result")
    assert result.status_code == 200
    assert json.loads(result.content)["echo"] == "hello, cortex"
    assert reached == [ids["job_id"]]


async def test_submit_with_wait_s_answers_with_the_result(
    cortex: tuple[AsyncTestClient[Any], list[str]],
) -> None:
    client, reached = cortex
    r = await client.post("/v1/jobs", params={"wait_s": 10}, json={"prompt": "one request"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["topic"]) == ("COMPLETED", "job.echo")
    assert body["result"]["echo"] == "one request"
    assert reached == [body["job_id"]]


async def test_a_denied_job_never_reaches_a_worker(
    cortex: tuple[AsyncTestClient[Any], list[str]],
) -> None:
    client, reached = cortex
    job_id = (
        await client.post("/v1/jobs", json={"prompt": "rm -rf", "topic": "job.forbidden"})
    ).json()["job_id"]
    status = await until_finished(client, job_id)
    assert status["status"] == "DENIED"
    assert status["reason"] == "topic job.forbidden is forbidden"
    assert status["result_ptr"] is None
    r = await client.get(f"/v1/jobs/{job_id}/result")
    assert r.status_code == 409
    assert r.json()["status"] == "DENIED"
    # An echo job submitted after it completes, so the bus has carried everything before it.
    echo = (await client.post("/v1/jobs", json={"prompt": "after"})).json()["job_id"]
    await until_finished(client, echo)
    assert reached == [echo]


async def test_a_burst_of_jobs_all_complete(cortex: tuple[AsyncTestClient[Any], list[str]]) -> None:
    client, _ = cortex
    ids = [
        (await client.post("/v1/jobs", json={"prompt": f"p{i}"})).json()["job_id"]
        for i in range(50)
    ]
    finished = [await until_finished(client, job_id) for job_id in ids]
    assert {s["status"] for s in finished} == {"COMPLETED"}
    for i, job_id in enumerate(ids):
        assert (
            json.loads((await client.get(f"/v1/jobs/{job_id}/result")).content)["echo"] == f"p{i}"
        )


async def test_result_of_an_unfinished_job_is_409(
    cortex: tuple[AsyncTestClient[Any], list[str]],
) -> None:
    client, _ = cortex
    # No chat-llm worker runs in `cortex up`: the job waits PENDING for one.
    job_id = (await client.post("/v1/jobs", json={"prompt": "hi", "topic": "job.chat.llm"})).json()[
        "job_id"
    ]
    await asyncio.sleep(0.05)
    status = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert (status["status"], status["reason"]) == ("PENDING", "no_workers")
    r = await client.get(f"/v1/jobs/{job_id}/result")
    assert r.status_code == 409
    assert r.json() == {
        "error": "result_not_ready",
        "message": f"job {job_id} is PENDING; no result yet",
        "status": "PENDING",
    }


async def test_unknown_job_is_404(cortex: tuple[AsyncTestClient[Any], list[str]]) -> None:
    client, _ = cortex
    for path in ("/v1/jobs/no-such-job", "/v1/jobs/no-such-job/result", "/v1/jobs/a:b"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "topic": 7}, "topic"),
        ({"prompt": "x", "topic": "job echo"}, "topic"),
        ({"prompt": "x", "topic": "job.*"}, "topic"),
        ({"prompt": "x", "topic": "sys.destroy"}, "topic"),
        ({"prompt": "x", "priority": "urgent"}, "priority"),
        ({"prompt": "x", "labels": {"a": 1}}, "labels[...]"),
        ({"prompt": "x", "labels": ["a"]}, "labels"),
        ({"prompt": "x", "adapter_id": 5}, "adapter_id"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ([], "body"),
    ],
)
async def test_malformed_bodies_are_400_naming_the_field(
    cortex: tuple[AsyncTestClient[Any], list[str]], body: object, field: str
) -> None:
    client, reached = cortex
    r = await client.post("/v1/jobs", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert r.json()["field"] == field
    assert r.json()["message"]
    assert reached == []


async def test_invalid_json_is_400(cortex: tuple[AsyncTestClient[Any], list[str]]) -> None:
    client, _ = cortex
    r = await client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["field"] == "body"


async def test_openapi_schema_is_served(cortex: tuple[AsyncTestClient[Any], list[str]]) -> None:
    client, _ = cortex
    schema = (await client.get("/schema/openapi.json")).json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result"} <= set(schema["paths"])
