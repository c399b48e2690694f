"""The LLM worker: a job's prompt goes to an OpenAI-compatible chat-completions endpoint.

Ollama, vLLM and the llama.cpp server all speak it: ``POST {base_url}/chat/completions`` with
``{"model", "messages", "stream": false, "max_tokens"?, "temperature"?}``. The handler sends one
request per job and never streams or retries; a retry is the scheduler's decision.

What a job controls:

- **The messages.** The context's ``"prompt"`` becomes one user message. A context that carries
  a ``"messages"`` list of ``{"role", "content"}`` objects (a conversation) is sent as it is,
  and its ``"prompt"`` is then ignored. A label ``llm.system`` puts a system message first.
- **The model.** The job's ``adapter_id`` names the model (``"llama3.2:1b"``, a vLLM LoRA
  adapter's name …); an empty ``adapter_id`` means the configured ``model``. The safety policy
  can already match on ``adapter_id``, so it also decides which models a job may use.
- **The timeout.** The HTTP call gets ``timeout_s`` in total, or less: what is left of the
  job's ``deadline`` when one is set. A deadline that has already passed fails the job without
  a call.

The result document is JSON: ``{"text", "model", "finish_reason", "usage", "id",
"latency_ms"}``. ``model`` is the one the server says answered; ``usage`` is the server's
token counts as it sent them (``null`` when it sent none).

A failure raises an ``LlmError`` whose ``error_code`` becomes the job's: ``llm_timeout``,
``llm_unavailable``, ``llm_http_<status>``, ``llm_bad_response`` or ``llm_bad_request``. The
API key never appears in a message, a log record or the config's ``repr``: the server's own
error text is redacted before it is quoted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from cortex_adapters.system import SystemClock
from cortex_adapters.worker.runtime import JobContext
from cortex_core.bus_protocol import TOPIC_CHAT_LLM
from cortex_core.ports import Clock

__all__ = [
    "ENV_VARS",
    "POOL",
    "SYSTEM_LABEL",
    "TOPICS",
    "LlmBadRequest",
    "LlmBadResponse",
    "LlmConfig",
    "LlmError",
    "LlmHandler",
    "LlmHttpError",
    "LlmNotStarted",
    "LlmTimeout",
    "LlmUnavailable",
]

POOL = "chat-llm"
TOPICS = (TOPIC_CHAT_LLM,)
SYSTEM_LABEL = "llm.system"
"""A job label whose value becomes the first message, with role ``system``."""

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"  # Ollama's OpenAI-compatible API
DEFAULT_MODEL = "llama3.2"
MAX_QUOTED_CHARS = 300
"""How much of a server's error text an error message quotes."""

ENV_VARS: Mapping[str, str] = {
    "base_url": "CORTEX_LLM_BASE_URL",
    "model": "CORTEX_LLM_MODEL",
    "api_key": "CORTEX_LLM_API_KEY",
    "timeout_s": "CORTEX_LLM_TIMEOUT_S",
    "max_tokens": "CORTEX_LLM_MAX_TOKENS",
    "temperature": "CORTEX_LLM_TEMPERATURE",
}
"""Each ``LlmConfig`` field's environment variable."""

log = logging.getLogger("cortex.worker.llm")


# --- errors ---------------------------------------------------------------------------------


class LlmError(Exception):
    """A failed LLM call. ``error_code`` becomes the FAILED job's ``error_code``."""

    error_code: str = "llm_error"


class LlmTimeout(LlmError):
    error_code = "llm_timeout"


class LlmUnavailable(LlmError):
    """The server could not be reached, or dropped the connection."""

    error_code = "llm_unavailable"


class LlmHttpError(LlmError):
    """A non-2xx answer; ``error_code`` is ``llm_http_<status>``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = f"llm_http_{status}"


class LlmBadResponse(LlmError):
    """A 2xx answer that is not a chat completion: not JSON, no choices, no content."""

    error_code = "llm_bad_response"


class LlmBadRequest(LlmError):
    """The job's context has no usable prompt or messages: no call is made."""

    error_code = "llm_bad_request"


class LlmNotStarted(LlmError):
    """The handler was called before ``start()`` or after ``close()``."""

    error_code = "llm_not_started"


# --- configuration --------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A finite int or float as a float; None for anything else (bools included)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _problem(name: str, value: object, shown: str | None = None) -> str | None:
    """What is wrong with a config field's value (shown as ``shown``), or None."""
    shown = repr(value) if shown is None else shown
    if name == "base_url":
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"expected an http:// or https:// URL, got {shown}"
    elif name == "model":
        if not str(value).strip():
            return "must not be empty"
    elif name == "timeout_s":
        n = _number(value)
        if n is None or n <= 0:
            return f"expected a positive number of seconds, got {shown}"
    elif name == "max_tokens":
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            return f"expected a positive integer, got {shown}"
    elif name == "temperature":
        n = _number(value)
        if value is not None and (n is None or n < 0):
            return f"expected a number >= 0, got {shown}"
    return None


@dataclass(frozen=True, slots=True)
class LlmConfig:
    base_url: str
    """Up to and including the API version: ``http://127.0.0.1:11434/v1``."""
    model: str
    """The model a job gets when its ``adapter_id`` is empty."""
    api_key: str = field(default="", repr=False)
    """Sent as ``Authorization: Bearer …`` when set. Never logged, never in ``repr``."""
    timeout_s: float = 60.0
    """The whole HTTP call, connect to last byte; the job's deadline can only shorten it."""
    max_tokens: int | None = None
    temperature: float | None = None

    def __post_init__(self) -> None:
        for name in ("base_url", "model", "timeout_s", "max_tokens", "temperature"):
            problem = _problem(name, getattr(self, name))
            if problem is not None:
                raise ValueError(f"LlmConfig.{name}: {problem}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LlmConfig:
        """Read ``CORTEX_LLM_*`` (``ENV_VARS``); an unset or blank variable means the default.

        A bad value raises ``ValueError`` naming the variable.
        """
        env = os.environ if env is None else env

        def raw(name: str) -> str | None:
            value = env.get(ENV_VARS[name], "").strip()
            return value or None

        def number(name: str, kind: type[int] | type[float]) -> int | float | None:
            text = raw(name)
            if text is None:
                return None
            try:
                value: int | float = kind(text)
            except ValueError:
                noun = "an integer" if kind is int else "a number"
                raise ValueError(f"{ENV_VARS[name]}: expected {noun}, got {text!r}") from None
            return value

        values: dict[str, Any] = {
            "base_url": raw("base_url") or DEFAULT_BASE_URL,
            "model": raw("model") or DEFAULT_MODEL,
            "api_key": raw("api_key") or "",
            "max_tokens": number("max_tokens", int),
            "temperature": number("temperature", float),
        }
        timeout_s = number("timeout_s", float)
        if timeout_s is not None:
            values["timeout_s"] = timeout_s
        for name, value in values.items():
            text = raw(name)  # quote what the variable says, not what it parsed to
            problem = _problem(name, value, None if text is None else repr(text))
            if problem is not None:
                raise ValueError(f"{ENV_VARS[name]}: {problem}")
        return cls(**values)


# --- the handler ----------------------------------------------------------------------------


def _truncate(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _display_url(url: str) -> str:
    """The URL without any ``user:password@``: safe to put in a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _messages(job: JobContext) -> list[dict[str, str]]:
    try:
        doc = json.loads(job.context)
    except ValueError:
        raise LlmBadRequest("the job's context is not a JSON document") from None
    if not isinstance(doc, dict):
        raise LlmBadRequest("the job's context is not a JSON object")
    messages: list[dict[str, str]]
    if "messages" in doc:
        given = doc["messages"]
        if not isinstance(given, list) or not given:
            raise LlmBadRequest("the context's 'messages' must be a non-empty list")
        messages = []
        for i, m in enumerate(given):
            if not (
                isinstance(m, dict)
                and isinstance(m.get("role"), str)
                and m["role"]
                and isinstance(m.get("content"), str)
            ):
                raise LlmBadRequest(
                    f"the context's messages[{i}] must be an object with string 'role' and "
                    "'content'"
                )
            messages.append({"role": m["role"], "content": m["content"]})
    else:
        prompt = doc.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise LlmBadRequest("the job's context has no prompt and no messages")
        messages = [{"role": "user", "content": prompt}]
    system = job.request.labels.get(SYSTEM_LABEL)
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _server_error_text(response: httpx.Response) -> str:
    """The server's own explanation: OpenAI's ``error.message``, or what else it sent."""
    try:
        doc = json.loads(response.content)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for candidate in (error, doc.get("message"), doc.get("detail")):
            if isinstance(candidate, str):
                return candidate  # Ollama's native shape, vLLM's older one, FastAPI's
    text = response.content.decode("utf-8", "replace").strip()
    return text or response.reason_phrase


def _completion(body: bytes, model: str, redact: Callable[[str], str]) -> dict[str, Any]:
    """The fields of the result document that come from a 2xx body."""
    try:
        doc = json.loads(body)
    except ValueError:
        quoted = _truncate(redact(body.decode("utf-8", "replace")))
        raise LlmBadResponse(f"the LLM server's answer is not JSON: {quoted!r}") from None
    if not isinstance(doc, dict):
        raise LlmBadResponse("the LLM server's answer is not a JSON object")
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LlmBadResponse("the LLM server's answer has no choices")
    choice = choices[0]
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise LlmBadResponse("the LLM server's answer has no message content in choices[0]")
    finish = choice.get("finish_reason")
    usage = doc.get("usage")
    answered_by = doc.get("model")
    completion_id = doc.get("id")
    return {
        "text": content,
        "model": answered_by if isinstance(answered_by, str) and answered_by else model,
        "finish_reason": finish if isinstance(finish, str) else None,
        "usage": usage if isinstance(usage, dict) else None,
        "id": completion_id if isinstance(completion_id, str) else None,
    }


class LlmHandler:
    """A worker handler (``async (JobContext) -> bytes``) backed by one pooled HTTP client.

    ``start()`` opens the client and ``close()`` closes it; ``async with`` does both.
    """

    def __init__(self, config: LlmConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._client: httpx.AsyncClient | None = None
        self._where = _display_url(config.base_url)

    async def start(self) -> None:
        if self._client is not None:
            return
        headers = {"Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        self._client = httpx.AsyncClient(
            base_url=self.config.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.config.timeout_s),
            follow_redirects=False,
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> LlmHandler:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _redact(self, text: str) -> str:
        key = self.config.api_key
        return text.replace(key, "***") if key else text

    async def __call__(self, job: JobContext) -> bytes:
        request = job.request
        model = request.adapter_id or self.config.model
        extra = {
            "component": "llm-worker",
            "job_id": request.job_id,
            "trace_id": job.trace_id,
            "worker_id": job.worker_id,
            "model": model,
        }
        try:
            document = await self._complete(job, model)
        except LlmError as exc:
            log.warning("llm_failed", extra={**extra, "error_code": exc.error_code})
            raise
        log.info(
            "llm_done",
            extra={**extra, "latency_ms": document["latency_ms"], "usage": document["usage"]},
        )
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    def _timeout(self, job: JobContext) -> tuple[float, str]:
        """The call's total timeout, and what set it."""
        timeout, why = self.config.timeout_s, "timeout_s"
        deadline = job.request.deadline
        if deadline is not None:
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                raise LlmTimeout(
                    f"the job's deadline passed {-remaining:.3f} s ago; the LLM was not called"
                )
            if remaining < timeout:
                timeout, why = remaining, "the job's deadline"
        return timeout, why

    async def _complete(self, job: JobContext, model: str) -> dict[str, Any]:
        client = self._client
        if client is None:
            raise LlmNotStarted("the LLM handler is not started (call start() first)")
        messages = _messages(job)
        timeout, why = self._timeout(job)
        payload: dict[str, Any] = {"model": model, "messages": messages, "stream": False}
        if self.config.max_tokens is not None:
            payload["max_tokens"] = self.config.max_tokens
        if self.config.temperature is not None:
            payload["temperature"] = self.config.temperature
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):  # the total; httpx's timeout is per phase
                response = await client.post(
                    "/chat/completions", json=payload, timeout=httpx.Timeout(timeout)
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise LlmTimeout(
                f"the LLM server at {self._where} did not answer within {timeout:.3g} s ({why})"
            ) from exc
        except httpx.TransportError as exc:
            raise LlmUnavailable(
                f"the LLM server at {self._where} is unavailable: "
                f"{_truncate(self._redact(str(exc) or type(exc).__name__))}"
            ) from exc
        except httpx.DecodingError as exc:
            raise LlmBadResponse(
                f"the LLM server's answer could not be decoded: {_truncate(self._redact(str(exc)))}"
            ) from exc
        latency_ms = int((time.perf_counter() - started) * 1000)
        if not response.is_success:
            detail = _truncate(self._redact(_server_error_text(response)))  # redact first
            message = f"the LLM server answered HTTP {response.status_code} for model {model!r}"
            retry_after = response.headers.get("retry-after")
            if retry_after:
                message += f" (retry after {_truncate(retry_after, 40)})"
            raise LlmHttpError(response.status_code, f"{message}: {detail}")
        document = _completion(response.content, model, self._redact)
        document["latency_ms"] = latency_ms
        return document
