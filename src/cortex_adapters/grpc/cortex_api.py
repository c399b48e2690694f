"""The front door over gRPC: ``cortex.v1.CortexApi`` on a ``grpc.aio`` server.

* ``SubmitJob`` and ``GetJobStatus`` are thin: authenticate the ``x-api-key`` metadata with the
  ``Gatekeeper`` (which also charges the key's rate limit), decode the betterproto2 message,
  call the core's ``FrontDoor`` with the caller's tenant, encode the answer.
* Every error the core raises becomes a status code (``grpc_error``): ``InvalidField`` and
  ``PayloadTooLarge`` are INVALID_ARGUMENT with details ``<field>: <message>``, ``JobNotFound``
  NOT_FOUND (another tenant's job too), ``Unauthenticated`` UNAUTHENTICATED, ``RateLimited``
  RESOURCE_EXHAUSTED with trailing metadata ``retry-after`` (whole seconds, rounded up),
  ``Unavailable`` UNAVAILABLE, ``JobConflict`` / ``ResultNotReady`` FAILED_PRECONDITION.
  Anything else is INTERNAL, logged with its traceback; the server goes on serving.
* A request larger than ``max_request_bytes`` is refused by grpc itself (RESOURCE_EXHAUSTED)
  before it is read into memory. The default fits the largest request the ``SubmitLimits``
  allow (every character four UTF-8 bytes), so a request under the limits always reaches the
  validator and a request over them gets the precise INVALID_ARGUMENT.
* The standard health service (SERVING for ``""`` and ``cortex.v1.CortexApi`` while up,
  NOT_SERVING while closing) and server reflection are served alongside, as for the Safety
  Kernel (docs/adr/0002, 0007).

grpcio serves generic handlers on bytes; the messages are betterproto2's (``cortex_proto``),
decoded here so that undecodable bytes are INVALID_ARGUMENT, not a grpc-level INTERNAL.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar, cast

import betterproto2
import grpc

from cortex_adapters.grpc._serving import Serving, serve
from cortex_adapters.telemetry.tracing import grpc_server_span
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
from cortex_core.frontdoor import DEFAULT_TOPIC, FrontDoor, SubmitJob, SubmitLimits
from cortex_core.jobs import Job
from cortex_core.messages import Priority
from cortex_proto._wire.cortex.v1 import api_pb2 as _api_pb2  # noqa: F401  # reflection
from cortex_proto.cortex import v1

log = logging.getLogger("cortex.api.grpc")

SERVICE_NAME = "cortex.v1.CortexApi"
SUBMIT_JOB_METHOD = f"/{SERVICE_NAME}/SubmitJob"
GET_JOB_STATUS_METHOD = f"/{SERVICE_NAME}/GetJobStatus"
DEFAULT_ADDRESS = "127.0.0.1:50052"
API_KEY_METADATA = "x-api-key"
RETRY_AFTER_METADATA = "retry-after"

_M = TypeVar("_M", bound=betterproto2.Message)

_REQUEST_OVERHEAD_BYTES = 64 * 1024
"""Room for tags, lengths and the short fields on top of the largest prompt and labels."""


def max_request_bytes_for(limits: SubmitLimits) -> int:
    """The largest ``SubmitJobRequest`` the limits allow, at four UTF-8 bytes a character,
    plus some overhead: with the default limits about 4.1 MiB."""
    label_chars = limits.max_labels * (limits.max_label_key_chars + limits.max_label_value_chars)
    chars = (
        limits.max_prompt_chars
        + label_chars
        + limits.max_adapter_id_chars
        + limits.max_idempotency_key_chars
    )
    return 4 * chars + _REQUEST_OVERHEAD_BYTES


class CortexApiBindError(RuntimeError):
    """The server could not listen on its address."""


# -- status codes ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class GrpcError:
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str], ...] = ()


def grpc_error(exc: Exception) -> GrpcError | None:
    """The status a core error becomes on the wire; None for an unexpected exception (which
    the server answers INTERNAL, and logs)."""
    code = grpc.StatusCode
    if isinstance(exc, InvalidField):
        return GrpcError(code.INVALID_ARGUMENT, f"{exc.field}: {exc}")
    if isinstance(exc, PayloadTooLarge):
        return GrpcError(code.INVALID_ARGUMENT, f"prompt: {exc}")
    if isinstance(exc, JobNotFound):
        return GrpcError(code.NOT_FOUND, str(exc))
    if isinstance(exc, Unauthenticated):
        return GrpcError(code.UNAUTHENTICATED, str(exc))
    if isinstance(exc, RateLimited):
        seconds = max(1, math.ceil(exc.retry_after_s))
        return GrpcError(code.RESOURCE_EXHAUSTED, str(exc), ((RETRY_AFTER_METADATA, str(seconds)),))
    if isinstance(exc, Unavailable):
        return GrpcError(code.UNAVAILABLE, str(exc))
    if isinstance(exc, JobConflict | ResultNotReady):
        return GrpcError(code.FAILED_PRECONDITION, str(exc))
    return None


# -- the server --------------------------------------------------------------------------


def _client_target(address: str, port: int) -> str:
    host = address.rpartition(":")[0]
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)
    return f"{host}:{port}"


def _priority(text: str) -> Priority:
    if not text:
        return Priority.INTERACTIVE
    try:
        return Priority(text)
    except ValueError:
        allowed = " or ".join(repr(p.value) for p in Priority)
        raise InvalidField("priority", f"priority must be {allowed}, not {text[:40]!r}") from None


_PYTHON_TYPES: dict[str, type] = {
    betterproto2.TYPE_STRING: str,
    betterproto2.TYPE_BYTES: bytes,
    betterproto2.TYPE_DOUBLE: float,
    betterproto2.TYPE_FLOAT: float,
    betterproto2.TYPE_BOOL: bool,
    **dict.fromkeys(
        (
            betterproto2.TYPE_INT32,
            betterproto2.TYPE_INT64,
            betterproto2.TYPE_UINT32,
            betterproto2.TYPE_UINT64,
            betterproto2.TYPE_SINT32,
            betterproto2.TYPE_SINT64,
            betterproto2.TYPE_FIXED32,
            betterproto2.TYPE_FIXED64,
            betterproto2.TYPE_SFIXED32,
            betterproto2.TYPE_SFIXED64,
        ),
        int,
    ),
}


def _is(value: object, proto_type: str) -> bool:
    return type(value) is _PYTHON_TYPES.get(proto_type)


def _decode(cls: type[_M], data: bytes) -> _M:
    """The message in ``data``; ``InvalidField`` if it is not one.

    betterproto2's parser is lenient: a field sent with the wrong wire type comes out with
    the wrong Python type (an ``int`` prompt), or None. Such a field is refused here by name,
    so the core only ever sees the types the ``.proto`` declares."""
    try:
        msg = cls.FromString(data)
    except Exception as exc:  # betterproto2 raises whatever its parser hit
        raise InvalidField(cls.__name__, f"not a valid {cls.__name__}: {exc}") from None
    for f in dataclasses.fields(cast(Any, msg)):
        meta: betterproto2.FieldMetadata = f.metadata["betterproto"]
        value = getattr(msg, f.name)
        if meta.map_meta is not None:
            key_meta, value_meta = meta.map_meta
            ok = isinstance(value, dict) and all(
                _is(k, key_meta.proto_type) and _is(v, value_meta.proto_type)
                for k, v in value.items()
            )
        else:
            ok = (meta.optional and value is None) or _is(value, meta.proto_type)
        if not ok:
            raise InvalidField(f.name, f"{f.name} does not have the type {cls.__name__} declares")
    return msg


def _status_response(job: Job) -> v1.GetJobStatusResponse:
    return v1.GetJobStatusResponse(
        job_id=job.job_id,
        status=job.status.value,
        result_ptr=job.result_ptr or "",
        worker_id=job.worker_id or "",
        attempts=job.attempts,
        reason=job.reason or "",
        trace_id=job.spec.trace_id,
    )


Context: TypeAlias = "grpc.aio.ServicerContext[bytes, bytes]"


class CortexApiServer:
    """``start()`` binds and serves; ``close()`` stops. Port 0 binds a free port (``port``)."""

    def __init__(
        self,
        *,
        frontdoor: FrontDoor,
        gatekeeper: Gatekeeper,
        address: str = DEFAULT_ADDRESS,
        max_request_bytes: int | None = None,
    ) -> None:
        self._frontdoor = frontdoor
        self._gatekeeper = gatekeeper
        self._address = address
        self.max_request_bytes = (
            max_request_bytes
            if max_request_bytes is not None
            else max_request_bytes_for(frontdoor.limits)
        )
        self._serving: Serving | None = None
        self._port: int | None = None

    @property
    def address(self) -> str:
        """The address as configured (``host:port``; the port may be 0)."""
        return self._address

    @property
    def port(self) -> int:
        """The port actually bound; only after ``start()``."""
        if self._port is None:
            raise RuntimeError("the CortexApi server has not been started")
        return self._port

    @property
    def target(self) -> str:
        """``host:port`` a client on this host can dial (a wildcard host becomes loopback)."""
        return _client_target(self._address, self.port)

    async def start(self) -> None:
        if self._serving is not None:
            return
        serving = await serve(
            handler=self._handler(),
            service_name=SERVICE_NAME,
            address=self._address,
            bind_error=CortexApiBindError,
            what="the CortexApi server",
            options=[("grpc.max_receive_message_length", self.max_request_bytes)],
        )
        self._serving, self._port = serving, serving.port
        log.info(
            "grpc_api_started",
            extra={"component": "gateway", "address": self._address, "port": serving.port},
        )

    async def close(self, grace: float | None = 1.0) -> None:
        """Report NOT_SERVING, let calls in flight finish for ``grace`` seconds, stop."""
        serving, self._serving = self._serving, None
        if serving is None:
            return
        await serving.stop(grace)
        log.info(
            "grpc_api_stopped",
            extra={"component": "gateway", "address": self._address, "port": self._port},
        )

    # -- handlers ----------------------------------------------------------------------

    def _handler(self) -> grpc.GenericRpcHandler[bytes, bytes]:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "SubmitJob": grpc.unary_unary_rpc_method_handler(self._submit_job),
                "GetJobStatus": grpc.unary_unary_rpc_method_handler(self._get_job_status),
            },
        )

    async def _submit_job(self, data: bytes, context: Context) -> bytes:
        return await self._serve("SubmitJob", data, context, self._submit)

    async def _get_job_status(self, data: bytes, context: Context) -> bytes:
        return await self._serve("GetJobStatus", data, context, self._status)

    async def _submit(self, data: bytes, tenant: str) -> bytes:
        req = _decode(v1.SubmitJobRequest, data)
        submitted = await self._frontdoor.submit(
            SubmitJob(
                prompt=req.prompt,
                topic=req.topic or DEFAULT_TOPIC,
                adapter_id=req.adapter_id,
                priority=_priority(req.priority),
                labels=dict(req.labels),
                tenant_id=tenant,
                idempotency_key=req.idempotency_key,
                timeout_s=req.timeout_s,
            )
        )
        return v1.SubmitJobResponse(
            job_id=submitted.job_id, trace_id=submitted.trace_id
        ).SerializeToString()

    async def _status(self, data: bytes, tenant: str) -> bytes:
        req = _decode(v1.GetJobStatusRequest, data)
        job = await self._frontdoor.status(req.job_id, tenant)
        return _status_response(job).SerializeToString()

    async def _serve(
        self,
        method: str,
        data: bytes,
        context: Context,
        work: Callable[[bytes, str], Awaitable[bytes]],
    ) -> bytes:
        """Authenticate, do ``work(data, tenant)``, and turn any error into a status.

        The call is a server span, child of the caller's trace context if it sent one: a job
        submitted in it takes its trace id, as over REST."""
        try:
            with grpc_server_span(f"/{SERVICE_NAME}/{method}", context.invocation_metadata()):
                tenant = self._gatekeeper.admit(_api_key(context))
                return await work(data, tenant)
        except Exception as exc:
            error = grpc_error(exc)
            if error is None:
                log.exception(
                    "grpc_api_internal_error",
                    extra={"component": "gateway", "method": method, "peer": context.peer()},
                )
                error = GrpcError(grpc.StatusCode.INTERNAL, f"internal error in {method}")
            else:
                log.info(
                    "grpc_api_refused",
                    extra={
                        "component": "gateway",
                        "method": method,
                        "code": error.code.name,
                        "error": error.details,
                    },
                )
            await context.abort(
                error.code, error.details, trailing_metadata=error.trailing_metadata
            )


def _api_key(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == API_KEY_METADATA:
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None
