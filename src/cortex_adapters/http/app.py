"""The REST gateway (Litestar): thin controllers over the core's ``FrontDoor``.

Every error is JSON ``{"error": <code>, "message": <text>, "field": <name>?}``: 400 for a bad
body (naming the field), 404 for an unknown job, 409 for a result that isn't there.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import msgspec
from litestar import Controller, Litestar, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from cortex_core.bus_protocol import MAX_TOPIC_LENGTH, is_valid_topic
from cortex_core.errors import JobNotFound, PayloadTooLarge, ResultNotReady
from cortex_core.frontdoor import DEFAULT_TOPIC, FrontDoor, SubmitJob
from cortex_core.jobs import Job
from cortex_core.messages import Priority

MAX_PROMPT_CHARS = 1_000_000


class SubmitJobBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PROMPT_CHARS)]
    topic: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOPIC_LENGTH)] = DEFAULT_TOPIC
    adapter_id: str | None = None
    priority: Priority = Priority.INTERACTIVE
    labels: dict[str, str] | None = None


class SubmitJobAccepted(msgspec.Struct):
    job_id: str
    trace_id: str


class JobView(msgspec.Struct):
    job_id: str
    trace_id: str
    topic: str
    status: str
    result_ptr: str | None
    reason: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, job: Job) -> JobView:
        return cls(
            job_id=job.job_id,
            trace_id=job.spec.trace_id,
            topic=job.spec.topic,
            status=job.status.value,
            result_ptr=job.result_ptr,
            reason=job.reason,
            created_at=_iso(job.spec.created_at),
            updated_at=_iso(job.updated_at),
        )


class ErrorBody(msgspec.Struct, omit_defaults=True):
    error: str
    message: str
    field: str | None = None
    status: str | None = None


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat(timespec="milliseconds")


def _error(status_code: int, body: ErrorBody) -> Response[ErrorBody]:
    return Response(body, status_code=status_code)


class InvalidField(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class JobsController(Controller):
    path = "/v1/jobs"

    @post("/", status_code=HTTP_202_ACCEPTED, summary="Submit a job")
    async def submit(
        self, data: JSONBody[SubmitJobBody], frontdoor: NamedDependency[FrontDoor]
    ) -> SubmitJobAccepted:
        if not is_valid_topic(data.topic):
            raise InvalidField(
                "topic",
                "a topic is dot-separated words of letters, digits, '_' or '-', e.g. job.echo",
            )
        submitted = await frontdoor.submit(
            SubmitJob(
                prompt=data.prompt,
                topic=data.topic,
                adapter_id=data.adapter_id or "",
                priority=data.priority,
                labels=data.labels or {},
            )
        )
        return SubmitJobAccepted(job_id=submitted.job_id, trace_id=submitted.trace_id)

    @get("/{job_id:str}", summary="A job's status")
    async def status(self, job_id: FromPath[str], frontdoor: NamedDependency[FrontDoor]) -> JobView:
        return JobView.of(await frontdoor.status(job_id))

    @get("/{job_id:str}/result", summary="A finished job's result document")
    async def result(
        self, job_id: FromPath[str], frontdoor: NamedDependency[FrontDoor]
    ) -> Response[bytes]:
        _, data = await frontdoor.result(job_id)
        return Response(data, media_type="application/json")


@get("/healthz", summary="Liveness", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


_BACKTICK_NAME = re.compile(r"field `([^`]+)`")


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    message = str(first.get("message") or exc.detail)
    key = str(first.get("key") or "body")
    if key == "data":  # the body as a whole: the field is named inside the message
        named = _BACKTICK_NAME.search(message)
        key = named.group(1) if named else "body"
    return _error(400, ErrorBody(error="invalid_request", message=message, field=key))


def _on_invalid_field(_: Request[Any, Any, Any], exc: InvalidField) -> Response[ErrorBody]:
    return _error(400, ErrorBody(error="invalid_request", message=str(exc), field=exc.field))


def _on_not_found(_: Request[Any, Any, Any], exc: JobNotFound) -> Response[ErrorBody]:
    return _error(404, ErrorBody(error="not_found", message=str(exc)))


def _on_not_ready(_: Request[Any, Any, Any], exc: ResultNotReady) -> Response[ErrorBody]:
    return _error(409, ErrorBody(error="result_not_ready", message=str(exc), status=exc.status))


def _on_too_large(_: Request[Any, Any, Any], exc: PayloadTooLarge) -> Response[ErrorBody]:
    return _error(413, ErrorBody(error="payload_too_large", message=str(exc), field="prompt"))


def _on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    code = exc.status_code
    name = {404: "not_found", 405: "method_not_allowed"}.get(
        code, "invalid_request" if code < 500 else "internal"
    )
    field = "body" if code == 400 else None
    return _error(code, ErrorBody(error=name, message=str(exc.detail), field=field))


Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


def create_app(
    frontdoor: FrontDoor, *, lifespan: Sequence[Lifespan] = (), debug: bool = False
) -> Litestar:
    return Litestar(
        route_handlers=[JobsController, healthz],
        dependencies={
            "frontdoor": Provide(lambda: frontdoor, use_cache=True, sync_to_thread=False)
        },
        exception_handlers={
            ValidationException: _on_validation,
            InvalidField: _on_invalid_field,
            JobNotFound: _on_not_found,
            ResultNotReady: _on_not_ready,
            PayloadTooLarge: _on_too_large,
            HTTPException: _on_http,
        },
        lifespan=list(lifespan),
        openapi_config=OpenAPIConfig(title="Cortex API", version="1"),
        debug=debug,
        logging_config=None,  # the app that runs this configures logging
    )
