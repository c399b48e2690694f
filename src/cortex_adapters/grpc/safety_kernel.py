"""The Safety Kernel as a gRPC service: ``cortex.v1.SafetyKernel`` on a ``grpc.aio`` server.

* ``Check`` evaluates the policy *current at that call* (``ReloadingPolicy.current`` or any
  callable returning a ``Policy``), so a reloaded policy file takes effect without a restart.
  Every decision is logged (job_id, topic, rule_id, decision) and counted
  (``Metrics.inc_safety_decision``).
* ``CheckBatch`` decides many requests in one call, in order, each exactly as ``Check`` would
  (logged, counted, and traced as a SERVER span child of the trace context the request
  carries). A request in it that can't be evaluated gets its own ``invalid_request`` answer;
  the others are still decided. The scheduler's checks travel this way under load (docs/adr/0014).
* ``Explain`` answers what ``Check`` would decide and every rule's verdict, for tooling.
* A request the policy can't evaluate (no ``job_id``, no ``topic``, an unknown ``priority``,
  undecodable bytes) gets ``INVALID_ARGUMENT`` naming the field; a policy that raises gets
  ``INTERNAL``. Clients fail closed on both.
* The standard health service (``grpc.health.v1.Health``: SERVING for ``""`` and
  ``cortex.v1.SafetyKernel`` while up, NOT_SERVING while closing) and server reflection
  (``grpcurl -plaintext HOST:PORT list``) are served alongside.

grpcio serves the generic handlers; the codecs are in ``_safety_wire`` (docs/adr/0002, 0007).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

import grpc
from opentelemetry.trace import Span

from cortex_adapters.grpc._safety_wire import (
    CHECK_BATCH_METHOD,
    CHECK_METHOD,
    SERVICE_NAME,
    CheckCodecName,
    InvalidRequest,
    check_codec,
    decode_check_batch,
    encode_batch_decisions,
    encode_explanation,
)
from cortex_adapters.grpc._serving import Serving, serve
from cortex_adapters.telemetry.tracing import current_trace_id, grpc_server_span
from cortex_core.policy import Policy, SafetyDecision, SafetyRequest
from cortex_core.ports import Metrics

# Registers cortex/v1/safety.proto in protobuf's default descriptor pool: reflection serves it.
from cortex_proto._wire.cortex.v1 import safety_pb2 as _safety_pb2  # noqa: F401

_T = TypeVar("_T")

log = logging.getLogger("cortex.safety_kernel")

DEFAULT_ADDRESS = "127.0.0.1:50051"


class CurrentPolicy(Protocol):
    """Anything that holds the policy in force, such as ``ReloadingPolicy``."""

    @property
    def current(self) -> Policy: ...


PolicySource = Policy | CurrentPolicy | Callable[[], Policy]


class SafetyKernelBindError(RuntimeError):
    """The kernel could not listen on its address."""


def _policy_getter(source: PolicySource) -> Callable[[], Policy]:
    if isinstance(source, Policy):
        return lambda: source
    if callable(source):
        return source
    return lambda: source.current


def _client_target(address: str, port: int) -> str:
    host = address.rpartition(":")[0]
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)
    return f"{host}:{port}"


class SafetyKernelServer:
    """``start()`` binds and serves; ``close()`` stops. Port 0 binds a free port (``port``)."""

    def __init__(
        self,
        *,
        policy: PolicySource,
        address: str = DEFAULT_ADDRESS,
        metrics: Metrics | None = None,
        check_codec_name: CheckCodecName = "upb",
    ) -> None:
        self._policy = _policy_getter(policy)
        self._address = address
        self._metrics = metrics
        self._codec = check_codec(check_codec_name)
        self._serving: Serving | None = None
        self._port: int | None = None
        self._checks = 0
        self._batches = 0
        self._explains = 0

    @property
    def address(self) -> str:
        """The address as configured (``host:port``; the port may be 0)."""
        return self._address

    @property
    def port(self) -> int:
        """The port actually bound; only after ``start()``."""
        if self._port is None:
            raise RuntimeError("the safety kernel has not been started")
        return self._port

    @property
    def target(self) -> str:
        """``host:port`` a client on this host can dial (a wildcard host becomes loopback)."""
        return _client_target(self._address, self.port)

    @property
    def checks_served(self) -> int:
        """Requests to decide that reached this server, alone (``Check``) or in a batch,
        invalid ones included."""
        return self._checks

    @property
    def batches_served(self) -> int:
        """``CheckBatch`` calls that reached this server."""
        return self._batches

    @property
    def explains_served(self) -> int:
        return self._explains

    async def start(self) -> None:
        if self._serving is not None:
            return
        serving = await serve(
            handler=self._handler(),
            service_name=SERVICE_NAME,
            address=self._address,
            bind_error=SafetyKernelBindError,
            what="the safety kernel",
        )
        self._serving, self._port = serving, serving.port
        log.info(
            "safety_kernel_started",
            extra={
                "component": "safety-kernel",
                "address": self._address,
                "port": serving.port,
                "codec": self._codec.name,
            },
        )

    async def close(self, grace: float | None = 1.0) -> None:
        """Report NOT_SERVING, let calls in flight finish for ``grace`` seconds, stop."""
        serving, self._serving = self._serving, None
        if serving is None:
            return
        await serving.stop(grace)
        log.info(
            "safety_kernel_stopped",
            extra={"component": "safety-kernel", "address": self._address, "port": self._port},
        )

    # -- handlers ----------------------------------------------------------------------

    def _handler(self) -> grpc.GenericRpcHandler[bytes, bytes]:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Check": grpc.unary_unary_rpc_method_handler(self._check),
                "CheckBatch": grpc.unary_unary_rpc_method_handler(self._check_batch),
                "Explain": grpc.unary_unary_rpc_method_handler(self._explain),
            },
        )

    async def _decode(
        self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> SafetyRequest:
        try:
            return self._codec.decode_request(data)
        except InvalidRequest as exc:
            _log_invalid(exc, context)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def _evaluate(
        self,
        how: Callable[[Policy, SafetyRequest], _T],
        request: SafetyRequest,
        context: grpc.aio.ServicerContext[bytes, bytes],
        policy: Policy | None = None,
    ) -> _T:
        """``how(policy, request)``, the current policy by default; a policy that raises is
        INTERNAL, and logged."""
        try:
            return how(self._policy() if policy is None else policy, request)
        except Exception:
            log.exception(
                "safety_policy_failed",
                extra={"component": "safety-kernel", "job_id": request.job_id},
            )
            await context.abort(grpc.StatusCode.INTERNAL, "policy evaluation failed")

    async def _check(self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        with grpc_server_span(CHECK_METHOD, context.invocation_metadata()) as span:
            return await self._check_traced(data, context, span)

    async def _check_traced(
        self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes], span: Span
    ) -> bytes:
        self._checks += 1
        request = await self._decode(data, context)
        decision = await self._decide(request, context, span)
        return self._codec.encode_decision(decision)

    async def _check_batch(
        self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        self._batches += 1
        try:
            items = decode_check_batch(data)
        except InvalidRequest as exc:
            _log_invalid(exc, context)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        policy = self._policy()  # one policy for the whole batch, even across a reload
        answers: list[SafetyDecision | InvalidRequest] = []
        for request, trace in items:
            self._checks += 1
            with grpc_server_span(
                CHECK_BATCH_METHOD, trace.items(), batch_size=str(len(items))
            ) as span:
                if isinstance(request, InvalidRequest):
                    _log_invalid(request, context)
                    answers.append(request)
                else:
                    answers.append(await self._decide(request, context, span, policy))
        return encode_batch_decisions(answers)

    async def _decide(
        self,
        request: SafetyRequest,
        context: grpc.aio.ServicerContext[bytes, bytes],
        span: Span,
        policy: Policy | None = None,
    ) -> SafetyDecision:
        """Evaluate one request; log and count the decision, and put it on ``span``."""
        span.set_attributes({"cortex.job_id": request.job_id, "cortex.topic": request.topic})
        decision = await self._evaluate(Policy.evaluate, request, context, policy)
        span.set_attributes(
            {"cortex.rule_id": decision.rule_id, "cortex.decision": decision.decision.value}
        )
        log.info(
            "safety_decision",
            extra={
                "component": "safety-kernel",
                "trace_id": current_trace_id(),
                "job_id": request.job_id,
                "topic": request.topic,
                "worker_id": None,  # not chosen yet: the check comes before the dispatch
                "tenant_id": request.tenant_id,
                "rule_id": decision.rule_id,
                "decision": decision.decision.value,
            },
        )
        if self._metrics is not None:
            self._metrics.inc_safety_decision(decision.rule_id, decision.decision.value)
        return decision

    async def _explain(self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self._explains += 1
        request = await self._decode(data, context)
        explanation = await self._evaluate(Policy.explain, request, context)
        log.info(
            "safety_explained",
            extra={
                "component": "safety-kernel",
                "job_id": request.job_id,
                "topic": request.topic,
                "rule_id": explanation.decision.rule_id,
                "decision": explanation.decision.decision.value,
            },
        )
        return encode_explanation(explanation)


def _log_invalid(exc: InvalidRequest, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
    log.warning(
        "safety_request_invalid",
        extra={"component": "safety-kernel", "error": str(exc), "peer": context.peer()},
    )
