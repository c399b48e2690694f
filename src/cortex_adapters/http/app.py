"""The REST gateway (Litestar): thin controllers over the core's ``FrontDoor`` and ``Gatekeeper``.

Every error is JSON ``{"error": <code>, "message": <text>, "field": <name>?, "limit": <n>?,
"status": <job status>?}``: 400 for a bad request (naming the field, and the limit it broke),
401 without a valid API key, 404 for an unknown job (or another tenant's), 409 for an action
the job's state doesn't allow (with the state), 413 for a body or prompt that is too large,
429 past the key's rate limit (with ``Retry-After``), 503 when a dependency is down.

Every request is a server span (its trace context taken from the caller's ``traceparent``, if
any; a job submitted in it takes its trace id) and is counted and timed by route template and
status when the gateway has ``metrics``, which ``GET /metrics`` then shows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import msgspec
from litestar import Controller, Litestar, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from cortex_adapters.telemetry.tracing import TRACER
from cortex_core.access import Gatekeeper
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
from cortex_core.frontdoor import (
    DEFAULT_TOPIC,
    FrontDoor,
    JobPage,
    SubmitJob,
    Submitted,
    check_wait_s,
    parse_status_filter,
)
from cortex_core.jobs import Job
from cortex_core.messages import Priority
from cortex_core.ports import Clock, WorkerRegistry

API_KEY_HEADER = "X-API-Key"
DEFAULT_MAX_BODY_BYTES = 8 << 20
"""A prompt of 1,000,000 characters, escaped as JSON, fits; the memory fabric's own limit on
the context then answers 413 for what it can't hold."""


@dataclass(frozen=True, slots=True)
class Probe:
    """A dependency ``GET /readyz`` checks: ``ping()`` raises while it is unreachable."""

    name: str
    ping: Callable[[], Awaitable[None]]


class RequestMetrics(Protocol):
    """What the gateway records of each request, and shows on ``GET /metrics``."""

    content_type: str

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None: ...

    def exposition(self) -> bytes: ...


UNMATCHED_ROUTE = "<unmatched>"
"""The route label of a request no route matched (a 404): never the raw path, which would make
a new series per path."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Gateway:
    """What the REST gateway serves from."""

    frontdoor: FrontDoor
    gatekeeper: Gatekeeper
    clock: Clock
    registry: WorkerRegistry | None = None
    """The worker registry ``GET /v1/workers`` shows (fed by heartbeats)."""
    stale_after_s: float = 15.0
    probes: Sequence[Probe] = ()
    probe_timeout_s: float = 1.0
    events_poll_s: float = 0.1
    """How often ``GET /v1/jobs/{id}/events`` looks at the job."""
    events_keepalive_s: float = 15.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    metrics: RequestMetrics | None = None
    """This process's metrics: requests are recorded there, and ``GET /metrics`` shows them."""


# -- bodies --------------------------------------------------------------------------------


class SubmitJobBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Limits (checked with errors that name the field and the limit): prompt ≤ 1,000,000
    characters; topic ``job.<pool>[.<kind>]``; ≤ 32 labels, keys ≤ 64 and values ≤ 256
    characters; idempotency_key ≤ 128 characters; 0 < timeout_s ≤ 604800."""

    prompt: str
    topic: str = DEFAULT_TOPIC
    adapter_id: str | None = None
    priority: Priority = Priority.INTERACTIVE
    labels: dict[str, str] | None = None
    idempotency_key: str | None = None
    timeout_s: float | None = None


class ReasonBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: str | None = None


class SubmitJobAccepted(msgspec.Struct, omit_defaults=True):
    job_id: str
    trace_id: str
    retry_of: str | None = None


class JobView(msgspec.Struct):
    job_id: str
    trace_id: str
    topic: str
    status: str
    reason: str | None
    result_ptr: str | None
    worker_id: str | None
    """The worker of the last attempt."""
    attempts: int
    priority: str
    adapter_id: str
    labels: dict[str, str]
    timeout_s: float | None
    retry_of: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, job: Job) -> JobView:
        s = job.spec
        return cls(
            job_id=job.job_id,
            trace_id=s.trace_id,
            topic=s.topic,
            status=job.status.value,
            reason=job.reason,
            result_ptr=job.result_ptr,
            worker_id=job.worker_id,
            attempts=job.attempts,
            priority=s.priority.value,
            adapter_id=s.adapter_id,
            labels=dict(s.labels),
            timeout_s=s.timeout_s,
            retry_of=s.retry_of or None,
            created_at=_iso(s.created_at),
            updated_at=_iso(job.updated_at),
        )


NO_RESULT = msgspec.Raw(b"null")


class SubmitJobEnded(JobView):
    """``POST /v1/jobs?wait_s=`` once the job has ended within ``wait_s``: the job as
    ``GET /v1/jobs/{id}`` shows it, and its result document."""

    result: Annotated[
        msgspec.Raw,
        msgspec.Meta(
            description="The worker's result document as stored (any JSON value), as "
            "`GET /v1/jobs/{id}/result` gives it; null when the job ended without one (DENIED, "
            "CANCELLED, FAILED...), it has expired, or it is not JSON."
        ),
    ]
    """The stored bytes, embedded as they are: never decoded and encoded again. Not
    ``Raw | None``: the schema of that is ``oneOf: [{}, null]``, which a null breaks (it
    matches both); ``NO_RESULT`` is the null."""

    @classmethod
    def ended(cls, job: Job, result: msgspec.Raw) -> SubmitJobEnded:
        return cls(**msgspec.structs.asdict(JobView.of(job)), result=result)


class JobList(msgspec.Struct):
    jobs: list[JobView]
    next_cursor: str | None

    @classmethod
    def of(cls, page: JobPage) -> JobList:
        return cls(jobs=[JobView.of(j) for j in page.jobs], next_cursor=page.next_cursor)


class WorkerView(msgspec.Struct):
    worker_id: str
    pool: str
    active_jobs: int
    max_parallel_jobs: int
    load: float
    """active_jobs / max_parallel_jobs, as of the last heartbeat."""
    cpu_load: float
    gpu_utilization: float
    last_heartbeat: str
    seconds_since_heartbeat: float
    alive: bool
    """False once the worker has been silent past the staleness window."""


class WorkerList(msgspec.Struct):
    workers: list[WorkerView]


class ErrorBody(msgspec.Struct, omit_defaults=True):
    error: str
    message: str
    field: str | None = None
    limit: int | None = None
    status: str | None = None


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]


_ERROR_RESPONSES = {
    400: "Invalid request: the error names the field (and the limit it broke)",
    401: "Missing or unknown API key",
    404: "No such job (or another tenant's)",
    409: "The job's state does not allow this (the error carries the state)",
    413: "Body or prompt too large",
    429: "Past the API key's rate limit (see Retry-After)",
    503: "A dependency (NATS, Redis) is unavailable (see Retry-After)",
}
_ANY_ROUTE = (401, 429, 503)
"""What every authenticated route can answer."""


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    """The error responses a route documents in the OpenAPI schema, all ``ErrorBody`` as the
    exception handlers send them (Litestar's default 400 schema is another shape)."""
    return {
        code: ResponseSpec(ErrorBody, generate_examples=False, description=_ERROR_RESPONSES[code])
        for code in (*codes, *_ANY_ROUTE)
    }


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat(timespec="milliseconds")


# -- dependencies --------------------------------------------------------------------------


def _provide_tenant(gateway: Gateway) -> Callable[[Request[Any, Any, Any]], str]:
    def tenant(request: Request[Any, Any, Any]) -> str:
        return gateway.gatekeeper.admit(request.headers.get(API_KEY_HEADER))

    return tenant


def _provide_frontdoor(gateway: Gateway) -> Callable[[str], FrontDoor]:
    """The front door, handed out to an admitted caller only. Depending on ``tenant`` also puts
    the two in separate dependency batches: Litestar resolves a batch of several in an anyio
    task group, which cost about a tenth of the gateway's CPU per request."""

    def frontdoor(tenant: NamedDependency[str]) -> FrontDoor:
        return gateway.frontdoor

    return frontdoor


# -- routes --------------------------------------------------------------------------------


class JobsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        summary="Submit a job",
        description="With `wait_s` (0 < wait_s ≤ 60), waits up to that long for the job to "
        "end: one request from submit to result. 200 with the job and its result if it ended "
        "in time, else 202 as without `wait_s`. A bad `wait_s` is a 400 and submits nothing.",
        responses={
            HTTP_202_ACCEPTED: ResponseSpec(
                SubmitJobAccepted,
                generate_examples=False,
                description="Submitted (without `wait_s`, or the job has not ended within it)",
            ),
            HTTP_200_OK: ResponseSpec(
                SubmitJobEnded,
                generate_examples=False,
                description="Submitted, and ended within `wait_s`: the job and its result",
            ),
            **_errors(400, 413),
        },
    )
    async def submit(
        self,
        data: JSONBody[SubmitJobBody],
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
        wait_s: FromQuery[float | None] = None,
    ) -> Response[Any]:  # SubmitJobAccepted (202) or SubmitJobEnded (200): see responses=
        if wait_s is not None:
            check_wait_s(wait_s)  # before anything is submitted
        submitted = await frontdoor.submit(
            SubmitJob(
                prompt=data.prompt,
                topic=data.topic,
                adapter_id=data.adapter_id or "",
                priority=data.priority,
                labels=data.labels or {},
                tenant_id=tenant,
                idempotency_key=data.idempotency_key or "",
                timeout_s=data.timeout_s,
            )
        )
        if wait_s is None:
            return _accepted(submitted)
        return await _ended_or_accepted(frontdoor, submitted, tenant, wait_s)

    @get("/", summary="List jobs, newest first", responses=_errors(400))
    async def list_jobs(
        self,
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
        status: FromQuery[str | None] = None,
        topic: FromQuery[str | None] = None,
        limit: FromQuery[int] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> JobList:
        page = await frontdoor.list_jobs(
            tenant,
            status=parse_status_filter(status) if status else None,
            topic=topic or None,
            limit=limit,
            cursor=cursor or None,
        )
        return JobList.of(page)

    @get(
        "/{job_id:str}",
        summary="A job's status",
        description="With `wait_s` (0 < wait_s ≤ 60), waits up to that long for the job to "
        "end, and answers as soon as it has (or with its status when the time is up).",
        responses=_errors(400, 404),
    )
    async def status(
        self,
        job_id: FromPath[str],
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
        wait_s: FromQuery[float | None] = None,
    ) -> JobView:
        if wait_s is None:
            return JobView.of(await frontdoor.status(job_id, tenant))
        return JobView.of(await frontdoor.wait(job_id, tenant, wait_s))  # checks wait_s

    @get(
        "/{job_id:str}/result",
        summary="A finished job's result document",
        description="With `wait_s` (0 < wait_s ≤ 60), waits up to that long for the job to "
        "end first: one request from submit to result.",
        responses=_errors(400, 404, 409),
    )
    async def result(
        self,
        job_id: FromPath[str],
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
        wait_s: FromQuery[float | None] = None,
    ) -> Response[Any]:  # the worker's JSON document, as stored: any JSON value
        _, data = await frontdoor.result(job_id, tenant, wait_s)
        return Response(data, media_type="application/json")

    @post(
        "/{job_id:str}/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel a job",
        responses=_errors(400, 404, 409, 413),
    )
    async def cancel(
        self,
        job_id: FromPath[str],
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
        data: JSONBody[ReasonBody | None] = None,
    ) -> JobView:
        reason = (data.reason if data else None) or ""
        return JobView.of(await frontdoor.cancel(job_id, tenant, reason))

    @post(
        "/{job_id:str}/approve",
        status_code=HTTP_200_OK,
        summary="Approve a job",
        responses=_errors(404, 409),
    )
    async def approve(
        self,
        job_id: FromPath[str],
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
    ) -> JobView:
        return JobView.of(await frontdoor.approve(job_id, tenant))

    @post(
        "/{job_id:str}/reject",
        status_code=HTTP_200_OK,
        summary="Reject a job",
        responses=_errors(400, 404, 409, 413),
    )
    async def reject(
        self,
        job_id: FromPath[str],
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
        data: JSONBody[ReasonBody | None] = None,
    ) -> JobView:
        reason = (data.reason if data else None) or ""
        return JobView.of(await frontdoor.reject(job_id, tenant, reason))

    @get(
        "/{job_id:str}/events",
        summary="Server-Sent Events: the job's state changes",
        media_type="text/event-stream",  # what the schema says; ServerSentEvent sets its own
        responses=_errors(404),
    )
    async def events(
        self,
        job_id: FromPath[str],
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
        gateway: NamedDependency[Gateway],
    ) -> ServerSentEvent:
        first = await frontdoor.status(job_id, tenant)  # 404 before any stream starts
        return ServerSentEvent(_job_events(gateway, first, tenant))


async def _job_events(
    gateway: Gateway, first: Job, tenant: str
) -> AsyncIterator[ServerSentEventMessage]:
    """One ``status`` event per state change (id: the job's version), ending with the
    terminal one; a comment line keeps a quiet connection open. It ends early, after the
    job's current state, once the front door drains (the server is shutting down, and would
    otherwise wait for the stream to end); a client reconnects for more."""
    job: Job | None = first
    sent = 0
    quiet = 0.0
    while job is not None:
        if job.version != sent:
            sent = job.version
            quiet = 0.0
            view = msgspec.json.encode(JobView.of(job)).decode()
            yield ServerSentEventMessage(data=view, event="status", id=job.version)
            if job.is_terminal:
                return
        elif quiet >= gateway.events_keepalive_s:
            quiet = 0.0
            yield ServerSentEventMessage(comment="keep-alive", data=None)
        if gateway.frontdoor.draining:
            return
        await asyncio.sleep(gateway.events_poll_s)
        quiet += gateway.events_poll_s
        try:
            job = await gateway.frontdoor.status(first.job_id, tenant)
        except JobNotFound:
            return


class DeadLetterController(Controller):
    path = "/v1/dlq"
    tags = ["dead letters"]  # noqa: RUF012

    @get("/", summary="FAILED, TIMEOUT and DENIED jobs, newest first", responses=_errors(400))
    async def list_dead(
        self,
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
        limit: FromQuery[int] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> JobList:
        page = await frontdoor.dead_letters(tenant, limit=limit, cursor=cursor or None)
        return JobList.of(page)

    @post(
        "/{job_id:str}/retry",
        status_code=HTTP_202_ACCEPTED,
        summary="Submit a dead-lettered job again, as a new job linked to the old one",
        responses=_errors(404, 409),
    )
    async def retry(
        self,
        job_id: FromPath[str],
        frontdoor: NamedDependency[FrontDoor],
        tenant: NamedDependency[str],
    ) -> Response[SubmitJobAccepted]:
        return _accepted(await frontdoor.retry(job_id, tenant), retry_of=job_id)


def _accepted(submitted: Submitted, retry_of: str | None = None) -> Response[SubmitJobAccepted]:
    body = SubmitJobAccepted(
        job_id=submitted.job_id, trace_id=submitted.trace_id, retry_of=retry_of
    )
    return Response(body, status_code=HTTP_202_ACCEPTED, headers=_replayed(submitted))


async def _ended_or_accepted(
    frontdoor: FrontDoor, submitted: Submitted, tenant: str, wait_s: float
) -> Response[Any]:
    """200 with the job and its result if it ends within ``wait_s``, else 202 as without it.

    The job is submitted by now, so a dependency failing while waiting is a 202 as well, with
    the job id to follow up on: a 503 on a submit says that nothing was submitted."""
    try:
        job = await frontdoor.wait(submitted.job_id, tenant, wait_s)
        if not job.is_terminal:
            return _accepted(submitted)
        try:
            document: bytes | None = await frontdoor.result_of(job)
        except ResultNotReady:  # it ended without a result, or the result has expired
            document = None
    except Unavailable:
        return _accepted(submitted)
    body = SubmitJobEnded.ended(job, _embedded(document))
    return Response(body, status_code=HTTP_200_OK, headers=_replayed(submitted))


def _embedded(document: bytes | None) -> msgspec.Raw:
    """A stored result document to embed as it is, once found to be one JSON value (a scan, no
    decoding): a worker's handler may return any bytes, and one that is not JSON would break
    the whole body. ``NO_RESULT`` without one, or for one that is not JSON, which
    ``GET /v1/jobs/{id}/result`` still serves as stored."""
    if document is None:
        return NO_RESULT
    try:
        return msgspec.json.decode(document, type=msgspec.Raw)
    except msgspec.DecodeError:
        return NO_RESULT


def _replayed(submitted: Submitted) -> dict[str, str]:
    """``Idempotent-Replayed: true`` when an idempotency key gave back an earlier job."""
    return {} if submitted.created else {"Idempotent-Replayed": "true"}


@get(
    "/v1/workers",
    summary="The worker registry: pool, load and last heartbeat",
    tags=["workers"],
    responses=_errors(),
)
async def list_workers(
    gateway: NamedDependency[Gateway],
    tenant: NamedDependency[str],
    pool: FromQuery[str | None] = None,
) -> WorkerList:
    del tenant  # any authenticated caller may see the workers
    if gateway.registry is None:
        return WorkerList(workers=[])
    now = gateway.clock.now()
    workers = sorted(
        await gateway.registry.workers(pool or None), key=lambda w: (w.pool, w.worker_id)
    )
    return WorkerList(
        workers=[
            WorkerView(
                worker_id=w.worker_id,
                pool=w.pool,
                active_jobs=w.active_jobs,
                max_parallel_jobs=w.max_parallel_jobs,
                load=round(w.active_jobs / w.max_parallel_jobs, 4) if w.max_parallel_jobs else 1.0,
                cpu_load=w.cpu_load,
                gpu_utilization=w.gpu_utilization,
                last_heartbeat=_iso(w.last_seen),
                seconds_since_heartbeat=round(max(now - w.last_seen, 0.0), 3),
                alive=w.is_fresh(now, gateway.stale_after_s),
            )
            for w in workers
        ]
    )


@get("/metrics", include_in_schema=False)
async def metrics(gateway: NamedDependency[Gateway]) -> Response[bytes]:
    """Prometheus text format; 404 on a gateway built without metrics."""
    if gateway.metrics is None:
        raise HTTPException(status_code=404, detail="this gateway has no metrics")
    return Response(gateway.metrics.exposition(), media_type=gateway.metrics.content_type)


@get("/healthz", summary="Liveness: the process is up", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    summary="Readiness: NATS and Redis answer",
    tags=["health"],
    responses={503: ResponseSpec(Readiness, generate_examples=False, description="Not ready")},
)
async def readyz(gateway: NamedDependency[Gateway]) -> Response[Readiness]:
    async def check(probe: Probe) -> tuple[str, str]:
        try:
            async with asyncio.timeout(gateway.probe_timeout_s):
                await probe.ping()
        except Exception as exc:
            return probe.name, f"unavailable: {type(exc).__name__}: {exc}"[:300]
        return probe.name, "ok"

    checks = dict(await asyncio.gather(*(check(p) for p in gateway.probes)))
    ready = all(v == "ok" for v in checks.values())
    return Response(
        Readiness(status="ready" if ready else "unavailable", checks=checks),
        status_code=200 if ready else 503,
    )


# -- errors --------------------------------------------------------------------------------

_BACKTICK_NAME = re.compile(r"field `([^`]+)`")


def _error(
    status_code: int, body: ErrorBody, headers: dict[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(body, status_code=status_code, headers=headers)


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
    return _error(
        400, ErrorBody(error="invalid_request", message=str(exc), field=exc.field, limit=exc.limit)
    )


def _on_not_found(_: Request[Any, Any, Any], exc: JobNotFound) -> Response[ErrorBody]:
    return _error(404, ErrorBody(error="not_found", message=str(exc)))


def _on_not_ready(_: Request[Any, Any, Any], exc: ResultNotReady) -> Response[ErrorBody]:
    return _error(409, ErrorBody(error="result_not_ready", message=str(exc), status=exc.status))


def _on_conflict(_: Request[Any, Any, Any], exc: JobConflict) -> Response[ErrorBody]:
    return _error(409, ErrorBody(error="conflict", message=str(exc), status=exc.status))


def _on_too_large(_: Request[Any, Any, Any], exc: PayloadTooLarge) -> Response[ErrorBody]:
    body = ErrorBody(error="payload_too_large", message=str(exc), field="prompt", limit=exc.limit)
    return _error(413, body)


def _on_unauthenticated(_: Request[Any, Any, Any], exc: Unauthenticated) -> Response[ErrorBody]:
    body = ErrorBody(error="unauthenticated", message=str(exc), field=API_KEY_HEADER)
    return _error(401, body, {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'})


def _on_rate_limited(_: Request[Any, Any, Any], exc: RateLimited) -> Response[ErrorBody]:
    retry_after = str(max(1, math.ceil(exc.retry_after_s)))
    return _error(
        429, ErrorBody(error="rate_limited", message=str(exc)), {"Retry-After": retry_after}
    )


def _on_unavailable(_: Request[Any, Any, Any], exc: Unavailable) -> Response[ErrorBody]:
    return _error(503, ErrorBody(error="unavailable", message=str(exc)), {"Retry-After": "1"})


def _on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    code = exc.status_code
    name = {
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
    }.get(code, "invalid_request" if code < 500 else "internal")
    field = "body" if code in (400, 413) else None
    headers = dict(exc.headers) if exc.headers else None  # a 405's Allow, say
    return _error(code, ErrorBody(error=name, message=str(exc.detail), field=field), headers)


Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


def create_app(
    gateway: Gateway, *, lifespan: Sequence[Lifespan] = (), debug: bool = False
) -> Litestar:
    open_api = OpenAPIConfig(
        title="Cortex API",
        version="1",
        description="Submit jobs, follow them, and manage what the Safety Kernel holds back.",
        components=Components(
            security_schemes={
                "ApiKey": SecurityScheme(
                    type="apiKey", name=API_KEY_HEADER, security_scheme_in="header"
                )
            }
        ),
        security=[{"ApiKey": []}] if gateway.gatekeeper.auth_enabled else None,
    )
    app = Litestar(
        route_handlers=[
            JobsController,
            DeadLetterController,
            list_workers,
            healthz,
            readyz,
            metrics,
        ],
        dependencies={
            "frontdoor": Provide(_provide_frontdoor(gateway), sync_to_thread=False),
            "gateway": Provide(lambda: gateway, use_cache=True, sync_to_thread=False),
            "tenant": Provide(_provide_tenant(gateway), sync_to_thread=False),
        },
        exception_handlers={
            ValidationException: _on_validation,
            InvalidField: _on_invalid_field,
            JobNotFound: _on_not_found,
            ResultNotReady: _on_not_ready,
            JobConflict: _on_conflict,
            PayloadTooLarge: _on_too_large,
            Unauthenticated: _on_unauthenticated,
            RateLimited: _on_rate_limited,
            Unavailable: _on_unavailable,
            HTTPException: _on_http,
        },
        lifespan=list(lifespan),
        openapi_config=open_api,
        request_max_body_size=gateway.max_body_bytes,
        debug=debug,
        logging_config=None,  # the app that runs this configures logging
    )
    # Around the whole app, routing included: a 404 or 405 is traced and counted too.
    app.asgi_handler = _observed(app.asgi_handler, gateway.metrics)
    return app


def _observed(handler: ASGIApp, metrics: RequestMetrics | None) -> ASGIApp:
    """``handler`` inside a server span per HTTP request, recorded in ``metrics``."""

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await handler(scope, receive, send)
            return
        method: str = scope["method"]
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k in (b"traceparent", b"tracestate")
        }
        started = time.perf_counter()
        with TRACER.start_as_current_span(
            method, context=propagate.extract(carrier), kind=SpanKind.SERVER
        ) as span:
            try:
                await handler(scope, receive, send_observed)
            finally:
                route = scope.get("path_template") or UNMATCHED_ROUTE
                if span.is_recording():
                    span.update_name(f"{method} {route}")
                    span.set_attributes(
                        {
                            "http.request.method": method,
                            "http.route": route,
                            "http.response.status_code": status,
                        }
                    )
                if metrics is not None:
                    metrics.observe_request(method, route, status, time.perf_counter() - started)

    return observed
