"""The LLM worker's handler against a real HTTP server on loopback that speaks OpenAI's protocol."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from cortex_adapters.codec import ProtobufCodec
from cortex_adapters.memory import InMemoryBus, InMemoryMemoryStore
from cortex_adapters.worker import JobContext, Worker, WorkerConfig
from cortex_adapters.worker.llm import (
    ENV_VARS,
    POOL,
    TOPICS,
    LlmConfig,
    LlmError,
    LlmHandler,
)
from cortex_core.bus_protocol import SUBJECT_JOB_RESULT, is_valid_topic, worker_subject
from cortex_core.messages import BusPacket, JobRequest, JobResult, JobStatus
from cortex_core.pointers import context_ptr
from tests.fake_openai import (
    FakeOpenAI,
    closed_port,
    completion,
    error,
    hang_up,
    raw,
    slow,
)
from tests.fakes import FakeClock

API_KEY = "sk-test-5ecret-do-not-leak"

MakeHandler = Callable[..., Awaitable[LlmHandler]]


def job(
    prompt: str | None = "hello",
    *,
    context: Any = None,
    adapter_id: str = "",
    labels: dict[str, str] | None = None,
    deadline: float | None = None,
) -> JobContext:
    if context is None:
        context = {"prompt": prompt, "topic": TOPICS[0], "priority": "INTERACTIVE"}
    raw_context = context if isinstance(context, bytes) else json.dumps(context).encode()
    request = JobRequest(
        job_id="j1",
        topic=TOPICS[0],
        context_ptr=context_ptr("j1"),
        adapter_id=adapter_id,
        labels=labels or {},
        deadline=deadline,
    )
    return JobContext(request, raw_context, trace_id="ab" * 16, worker_id="llm-1")


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_handler(server: FakeOpenAI, clock: FakeClock) -> AsyncIterator[MakeHandler]:
    handlers: list[LlmHandler] = []

    async def make(**config: Any) -> LlmHandler:
        settings: dict[str, Any] = {"base_url": server.base_url, "model": "llama3.2"}
        handler = LlmHandler(LlmConfig(**{**settings, **config}), clock=clock)
        await handler.start()
        handlers.append(handler)
        return handler

    yield make
    for handler in handlers:
        await handler.close()


async def fails(handler: LlmHandler, job_context: JobContext) -> LlmError:
    with pytest.raises(LlmError) as info:
        await handler(job_context)
    assert API_KEY not in str(info.value)
    return info.value


def test_the_pool_and_its_topic() -> None:
    assert POOL == "chat-llm"
    assert TOPICS == ("job.chat.llm",)
    assert all(is_valid_topic(t) for t in TOPICS)


# --- success --------------------------------------------------------------------------------


async def test_the_answer_comes_back_as_a_result_document(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    handler = await make_handler()
    doc = json.loads(await handler(job("hello there")))
    assert doc["text"] == "hello there"  # the fake echoes the last message
    assert (doc["model"], doc["finish_reason"], doc["id"]) == ("llama3.2", "stop", "chatcmpl-fake")
    assert doc["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert isinstance(doc["latency_ms"], int)
    assert doc["latency_ms"] >= 0
    assert set(doc) == {"text", "model", "finish_reason", "usage", "id", "latency_ms"}
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.body == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": False,
    }
    assert req.authorization is None


async def test_the_api_key_max_tokens_and_temperature_are_sent(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    handler = await make_handler(api_key=API_KEY, max_tokens=64, temperature=0.25)
    await handler(job())
    (req,) = server.requests
    assert req.authorization == f"Bearer {API_KEY}"
    assert (req.body["max_tokens"], req.body["temperature"]) == (64, 0.25)


async def test_a_temperature_of_zero_is_sent(server: FakeOpenAI, make_handler: MakeHandler) -> None:
    handler = await make_handler(temperature=0.0)
    await handler(job())
    assert server.requests[0].body["temperature"] == 0.0


async def test_the_adapter_id_selects_the_model(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    handler = await make_handler()
    doc = json.loads(await handler(job(adapter_id="qwen2.5:0.5b")))
    assert server.requests[0].body["model"] == "qwen2.5:0.5b"
    assert doc["model"] == "qwen2.5:0.5b"


async def test_the_model_the_server_names_is_reported(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    server.behaviour = raw(completion("hi", model="llama3.2:latest"))
    handler = await make_handler()
    assert json.loads(await handler(job()))["model"] == "llama3.2:latest"


async def test_a_messages_context_is_sent_as_it_is(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another."},
    ]
    handler = await make_handler()
    context = {"prompt": "ignored", "messages": conversation}
    doc = json.loads(await handler(job(context=context)))
    assert server.requests[0].body["messages"] == conversation
    assert doc["text"] == "Another."


async def test_the_system_label_puts_a_system_message_first(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    handler = await make_handler()
    await handler(job("hi", labels={"llm.system": "You are terse."}))
    messages = [{"role": "user", "content": "hi"}]
    await handler(job(context={"messages": messages}, labels={"llm.system": "Be kind."}))
    assert [r.body["messages"] for r in server.requests] == [
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}],
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}],
    ]


async def test_a_base_url_with_a_trailing_slash(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    handler = await make_handler(base_url=server.base_url + "/")
    await handler(job())
    assert server.requests[0].path == "/v1/chat/completions"


async def test_an_empty_answer_is_an_answer(server: FakeOpenAI, make_handler: MakeHandler) -> None:
    server.behaviour = raw(completion("", finish_reason="length"))
    handler = await make_handler(max_tokens=1)
    doc = json.loads(await handler(job()))
    assert (doc["text"], doc["finish_reason"]) == ("", "length")


async def test_the_handler_runs_jobs_in_parallel_on_one_client(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    handler = await make_handler()
    docs = await asyncio.gather(*(handler(job(f"p{i}")) for i in range(8)))
    assert sorted(json.loads(d)["text"] for d in docs) == [f"p{i}" for i in range(8)]


async def test_as_a_worker_handler_the_result_is_stored(server: FakeOpenAI) -> None:
    clock = FakeClock()
    bus = InMemoryBus(codec=ProtobufCodec(), strict=True)
    memory = InMemoryMemoryStore(clock=clock)
    results: list[JobResult] = []

    async def on_result(packet: BusPacket) -> None:
        assert isinstance(packet.payload, JobResult)
        results.append(packet.payload)

    await bus.subscribe(SUBJECT_JOB_RESULT, on_result)
    async with LlmHandler(LlmConfig(base_url=server.base_url, model="m")) as handler:
        worker = Worker(
            config=WorkerConfig(worker_id="llm-1", pool=POOL, topics=TOPICS),
            handler=handler,
            bus=bus,
            memory=memory,
            clock=clock,
        )
        await worker.start()
        await memory.put_context("j1", b'{"prompt":"ping"}')
        request = JobRequest(job_id="j1", topic=TOPICS[0], context_ptr=context_ptr("j1"))
        await bus.publish(
            worker_subject("llm-1"),
            BusPacket(trace_id="ab" * 16, sender_id="t", created_at=0.0, payload=request),
        )
        async with asyncio.timeout(5):
            while not results:
                await asyncio.sleep(0.005)
        await worker.close()
    await bus.close()
    assert results[0].status is JobStatus.COMPLETED
    stored = await memory.get_result("j1")
    assert stored is not None
    assert json.loads(stored)["text"] == "ping"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "model runner crashed"),
        (429, "Rate limit reached for requests"),
        (404, "model 'nope' not found, try pulling it first"),
        (400, "max_tokens is too large"),
    ],
)
async def test_a_non_2xx_answer_is_llm_http_status(
    server: FakeOpenAI, make_handler: MakeHandler, status: int, message: str
) -> None:
    server.behaviour = error(status, message)
    handler = await make_handler(api_key=API_KEY)
    exc = await fails(handler, job())
    assert exc.error_code == f"llm_http_{status}"
    assert f"HTTP {status}" in str(exc)
    assert message in str(exc)
    assert "'llama3.2'" in str(exc)  # which model was asked for
    if status == 429:
        assert "retry after 2" in str(exc)


async def test_a_401_that_quotes_the_key_does_not_leak_it(
    server: FakeOpenAI, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    server.behaviour = error(401, f"Incorrect API key provided: {API_KEY}.", code="invalid_api_key")
    handler = await make_handler(api_key=API_KEY)
    with caplog.at_level(logging.DEBUG):
        exc = await fails(handler, job())
    assert exc.error_code == "llm_http_401"
    assert "Incorrect API key provided: ***." in str(exc)
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in repr(record.__dict__)
    assert any(r.getMessage() == "llm_failed" for r in caplog.records)


async def test_a_long_server_message_is_truncated(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    server.behaviour = error(500, "x" * 5000)
    handler = await make_handler()
    exc = await fails(handler, job())
    assert exc.error_code == "llm_http_500"
    assert "x" * 200 in str(exc)
    assert len(str(exc)) < 500
    assert str(exc).endswith("…")


async def test_a_key_cut_by_the_truncation_is_still_redacted(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    server.behaviour = error(401, "x" * 290 + API_KEY)  # the cut would fall inside the key
    handler = await make_handler(api_key=API_KEY)
    exc = await fails(handler, job())
    assert API_KEY[:6] not in str(exc)
    server.behaviour = raw(f"not json {API_KEY}".encode())
    exc = await fails(handler, job())
    assert exc.error_code == "llm_bad_response"
    assert "not json ***" in str(exc)


@pytest.mark.parametrize(
    ("body", "content_type", "quoted"),
    [
        (b'{"error": "model \\"nope\\" not found"}', "application/json", 'model "nope" not found'),
        (b'{"object": "error", "message": "bad prompt"}', "application/json", "bad prompt"),
        (b'{"detail": "Not authenticated"}', "application/json", "Not authenticated"),
        (b"<html>502 Bad Gateway</html>", "text/html", "<html>502 Bad Gateway</html>"),
        (b"", "text/plain", "Service Unavailable"),
    ],
)
async def test_other_error_shapes_are_quoted(
    server: FakeOpenAI, make_handler: MakeHandler, body: bytes, content_type: str, quoted: str
) -> None:
    status = 503 if not body else 502
    server.behaviour = raw(body, status=status, content_type=content_type)
    handler = await make_handler()
    exc = await fails(handler, job())
    assert exc.error_code == f"llm_http_{status}"
    assert quoted in str(exc)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"Internal garbage \x00\xff", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": "x", "choices": []}', "no choices"),
        (b'{"id": "x"}', "no choices"),
        (completion(None), "no message content"),
        (b'{"choices": [{"index": 0, "finish_reason": "stop"}]}', "no message content"),
        (b'{"choices": [{"message": {"role": "assistant", "content": 3}}]}', "no message content"),
    ],
)
async def test_an_answer_that_is_not_a_completion_is_llm_bad_response(
    server: FakeOpenAI, make_handler: MakeHandler, body: bytes, why: str
) -> None:
    server.behaviour = raw(body)
    handler = await make_handler(api_key=API_KEY)
    exc = await fails(handler, job())
    assert exc.error_code == "llm_bad_response"
    assert why in str(exc)


@pytest.mark.parametrize(
    ("context", "why"),
    [
        (b"not json", "not a JSON document"),
        (b"[1]", "not a JSON object"),
        ({}, "no prompt and no messages"),
        ({"prompt": ""}, "no prompt and no messages"),
        ({"prompt": 3}, "no prompt and no messages"),
        ({"prompt": "hi", "messages": []}, "'messages' must be a non-empty list"),
        ({"messages": "hi"}, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "user"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "a"}, "b"]}, "messages[1]"),
        ({"messages": [{"role": "", "content": "a"}]}, "messages[0]"),
    ],
)
async def test_a_context_without_a_prompt_is_llm_bad_request(
    server: FakeOpenAI, make_handler: MakeHandler, context: Any, why: str
) -> None:
    handler = await make_handler()
    exc = await fails(handler, job(context=context))
    assert exc.error_code == "llm_bad_request"
    assert why in str(exc)
    assert server.requests == []  # no call made


async def test_a_slow_server_is_llm_timeout(server: FakeOpenAI, make_handler: MakeHandler) -> None:
    server.behaviour = slow(5.0)
    handler = await make_handler(timeout_s=0.2, api_key=API_KEY)
    started = time.monotonic()
    exc = await fails(handler, job())
    elapsed = time.monotonic() - started
    assert exc.error_code == "llm_timeout"
    assert "did not answer within 0.2 s (timeout_s)" in str(exc)
    assert server.base_url.removesuffix("/v1") in str(exc)
    assert 0.15 < elapsed < 2.0


async def test_the_job_deadline_caps_the_timeout(
    server: FakeOpenAI, make_handler: MakeHandler, clock: FakeClock
) -> None:
    server.behaviour = slow(5.0)
    handler = await make_handler(timeout_s=30.0)
    started = time.monotonic()
    exc = await fails(handler, job(deadline=clock.now() + 0.25))
    elapsed = time.monotonic() - started
    assert exc.error_code == "llm_timeout"
    assert "within 0.25 s (the job's deadline)" in str(exc)
    assert 0.2 < elapsed < 2.0


async def test_a_far_deadline_leaves_timeout_s_in_charge(
    server: FakeOpenAI, make_handler: MakeHandler, clock: FakeClock
) -> None:
    server.behaviour = slow(5.0)
    handler = await make_handler(timeout_s=0.2)
    exc = await fails(handler, job(deadline=clock.now() + 3600))
    assert "(timeout_s)" in str(exc)


async def test_a_passed_deadline_fails_without_a_call(
    server: FakeOpenAI, make_handler: MakeHandler, clock: FakeClock
) -> None:
    handler = await make_handler()
    exc = await fails(handler, job(deadline=clock.now() - 1.5))
    assert exc.error_code == "llm_timeout"
    assert "deadline passed 1.500 s ago" in str(exc)
    assert server.requests == []


async def test_a_deadline_in_time_succeeds(
    server: FakeOpenAI, make_handler: MakeHandler, clock: FakeClock
) -> None:
    handler = await make_handler(timeout_s=5.0)
    doc = json.loads(await handler(job("on time", deadline=clock.now() + 10)))
    assert doc["text"] == "on time"


async def test_a_closed_port_is_llm_unavailable() -> None:
    port = closed_port()
    config = LlmConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", api_key=API_KEY)
    async with LlmHandler(config) as handler:
        exc = await fails(handler, job())
    assert exc.error_code == "llm_unavailable"
    assert f"the LLM server at http://127.0.0.1:{port}/v1 is unavailable" in str(exc)


async def test_a_server_that_hangs_up_is_llm_unavailable(
    server: FakeOpenAI, make_handler: MakeHandler
) -> None:
    server.behaviour = hang_up
    handler = await make_handler()
    exc = await fails(handler, job())
    assert exc.error_code == "llm_unavailable"
    assert "disconnected" in str(exc)


async def test_credentials_in_the_base_url_stay_out_of_messages() -> None:
    port = closed_port()
    config = LlmConfig(base_url=f"http://user:{API_KEY}@127.0.0.1:{port}/v1", model="m")
    async with LlmHandler(config) as handler:
        exc = await fails(handler, job())
    assert exc.error_code == "llm_unavailable"
    assert f"http://127.0.0.1:{port}/v1" in str(exc)


async def test_a_handler_that_is_not_started_says_so() -> None:
    handler = LlmHandler(LlmConfig(base_url="http://127.0.0.1:9/v1", model="m"))
    exc = await fails(handler, job())
    assert exc.error_code == "llm_not_started"
    await handler.start()
    await handler.start()  # idempotent
    await handler.close()
    await handler.close()
    assert (await fails(handler, job())).error_code == "llm_not_started"


# --- configuration --------------------------------------------------------------------------


def test_from_env_defaults_to_a_local_ollama() -> None:
    config = LlmConfig.from_env({})
    assert config == LlmConfig(base_url="http://127.0.0.1:11434/v1", model="llama3.2")
    assert (config.api_key, config.timeout_s, config.max_tokens, config.temperature) == (
        "",
        60.0,
        None,
        None,
    )


def test_from_env_reads_every_variable() -> None:
    config = LlmConfig.from_env(
        {
            "CORTEX_LLM_BASE_URL": "http://vllm:8000/v1",
            "CORTEX_LLM_MODEL": "Qwen/Qwen2.5-0.5B-Instruct",
            "CORTEX_LLM_API_KEY": API_KEY,
            "CORTEX_LLM_TIMEOUT_S": "12.5",
            "CORTEX_LLM_MAX_TOKENS": "256",
            "CORTEX_LLM_TEMPERATURE": "0",
        }
    )
    assert config == LlmConfig(
        base_url="http://vllm:8000/v1",
        model="Qwen/Qwen2.5-0.5B-Instruct",
        api_key=API_KEY,
        timeout_s=12.5,
        max_tokens=256,
        temperature=0.0,
    )
    assert API_KEY not in repr(config)


def test_from_env_treats_blank_as_unset() -> None:
    assert sorted(ENV_VARS.values()) == [
        "CORTEX_LLM_API_KEY",
        "CORTEX_LLM_BASE_URL",
        "CORTEX_LLM_MAX_TOKENS",
        "CORTEX_LLM_MODEL",
        "CORTEX_LLM_TEMPERATURE",
        "CORTEX_LLM_TIMEOUT_S",
    ]
    assert LlmConfig.from_env(dict.fromkeys(ENV_VARS.values(), " ")) == LlmConfig.from_env({})


@pytest.mark.parametrize(
    ("var", "value", "why"),
    [
        ("CORTEX_LLM_TIMEOUT_S", "soon", "expected a number"),
        ("CORTEX_LLM_TIMEOUT_S", "0", "positive number of seconds"),
        ("CORTEX_LLM_TIMEOUT_S", "-1", "positive number of seconds"),
        ("CORTEX_LLM_TIMEOUT_S", "nan", "positive number of seconds"),
        ("CORTEX_LLM_MAX_TOKENS", "1.5", "expected an integer"),
        ("CORTEX_LLM_MAX_TOKENS", "0", "positive integer"),
        ("CORTEX_LLM_TEMPERATURE", "hot", "expected a number"),
        ("CORTEX_LLM_TEMPERATURE", "-0.1", ">= 0"),
        ("CORTEX_LLM_TEMPERATURE", "inf", ">= 0"),
        ("CORTEX_LLM_BASE_URL", "localhost:11434", "http:// or https:// URL"),
        ("CORTEX_LLM_BASE_URL", "ftp://models/v1", "http:// or https:// URL"),
    ],
)
def test_from_env_names_the_bad_variable(var: str, value: str, why: str) -> None:
    with pytest.raises(ValueError, match=var) as info:
        LlmConfig.from_env({var: value})
    assert why in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("base_url", "nope"), ("model", " "), ("timeout_s", 0), ("max_tokens", True)],
)
def test_a_bad_config_names_the_field(field: str, value: object) -> None:
    settings: dict[str, Any] = {"base_url": "http://h/v1", "model": "m", field: value}
    with pytest.raises(ValueError, match=f"LlmConfig.{field}"):
        LlmConfig(**settings)


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_LLM_MODEL", "from-the-environment")
    assert LlmConfig.from_env().model == "from-the-environment"
