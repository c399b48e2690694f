"""``GrpcSafetyChecker``: the ``SafetyChecker`` port over gRPC to the Safety Kernel, failing closed.

* **Deadline.** Every ``Check`` has a deadline of ``timeout_s`` and does not wait for the
  channel to become ready: while the kernel is unreachable a call fails fast.
* **Fail closed.** Any error (unreachable, deadline exceeded, a status, an unusable answer)
  becomes ``DENY "safety kernel unavailable"`` (rule ``kernel-unavailable``), logged and
  counted; ``check`` never raises. An ``INVALID_ARGUMENT`` is the one exception: the kernel is
  up and refused *this* request, so it is ``DENY`` with the kernel's reason (rule
  ``kernel-invalid-request``) and does not count against the breaker.
* **Circuit breaker.** After ``failure_threshold`` consecutive failures the breaker opens and
  every check is denied at once, with no network call and no deadline to wait out, for
  ``reset_after_s``; then one probe goes through (half-open): success closes the breaker,
  failure opens it again. The breaker reads a monotonic clock (injectable).
* **Reconnecting.** The channel reconnects by itself, with its backoff capped near
  ``reset_after_s`` (gRPC's default grows to 120 s). A half-open probe on a channel that is
  not READY gets a fresh channel with its own subchannel, so a kernel restarted on the same
  address is picked up by the first probe instead of after the old channel's backoff.
  Keepalive pings every 20 s notice a peer that vanished without closing the connection.

* **Batching.** Checks asked for in the same turn of the event loop (a busy scheduler admits
  many jobs at once) go out together as one ``CheckBatch`` call, up to ``max_batch`` of them,
  each request with its own trace context; a check asked for alone goes out as a plain
  ``Check``. Each check still has its own decision, deadline, breaker accounting and CLIENT
  span, exactly as if it had gone alone: a failed batch fails each of its checks closed. A
  kernel without ``CheckBatch`` (UNIMPLEMENTED, an older release) is sent plain ``Check``
  calls from then on. ``batch=False`` sends every check alone.

Only this adapter's own denials are counted in ``Metrics.inc_safety_decision``; the kernel
counts the decisions it makes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc

from cortex_adapters.grpc._breaker import BreakerState, CircuitBreaker
from cortex_adapters.grpc._safety_wire import (
    CHECK_BATCH_METHOD,
    CHECK_METHOD,
    EXPLAIN_METHOD,
    CheckCodecName,
    InvalidRequest,
    check_codec,
    decode_batch_decisions,
    decode_explanation,
    encode_check_batch,
)
from cortex_adapters.telemetry.tracing import grpc_client_span
from cortex_core.policy import Decision, PolicyExplanation, SafetyDecision, SafetyRequest
from cortex_core.ports import Metrics

log = logging.getLogger("cortex.safety_client")

UNAVAILABLE_REASON = "safety kernel unavailable"
UNAVAILABLE_RULE = "kernel-unavailable"
INVALID_REQUEST_RULE = "kernel-invalid-request"


DEFAULT_MAX_BATCH = 256


class SafetyKernelError(RuntimeError):
    """``explain`` could not get an answer from the kernel."""


class _Pending:
    """A check waiting for its batch to go out: its request, trace context and answer."""

    __slots__ = ("answer", "metadata", "request")

    def __init__(self, request: SafetyRequest, metadata: tuple[tuple[str, str], ...]) -> None:
        self.request = request
        self.metadata = metadata
        self.answer: asyncio.Future[SafetyDecision] = asyncio.get_running_loop().create_future()

    def settle(self, outcome: SafetyDecision | BaseException) -> None:
        if self.answer.done():  # its caller was cancelled
            return
        if isinstance(outcome, BaseException):
            self.answer.set_exception(outcome)
        else:
            self.answer.set_result(outcome)


class GrpcSafetyChecker:
    def __init__(
        self,
        *,
        address: str,
        timeout_s: float = 0.25,
        failure_threshold: int = 3,
        reset_after_s: float = 2.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        check_codec_name: CheckCodecName = "upb",
        batch: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._address = address
        self._timeout_s = timeout_s
        self._reset_after_s = reset_after_s
        self._metrics = metrics
        self._codec = check_codec(check_codec_name)
        self._breaker = CircuitBreaker(
            failure_threshold=failure_threshold, reset_after_s=reset_after_s, clock=clock
        )
        self._channel: grpc.aio.Channel | None = None
        self._check_rpc: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] | None = None
        self._batch_rpc: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._rpc_calls = 0
        self._short_circuited = 0
        self._batching = batch
        self._max_batch = max_batch
        self._queued: list[_Pending] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._batches_sent = 0

    @property
    def address(self) -> str:
        return self._address

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    @property
    def rpc_calls(self) -> int:
        """Checks actually sent to the network, alone or in a batch (the breaker's refusals
        are not)."""
        return self._rpc_calls

    @property
    def batches_sent(self) -> int:
        """``CheckBatch`` calls sent (each carried two or more checks)."""
        return self._batches_sent

    @property
    def short_circuited(self) -> int:
        """Checks the open breaker denied without a network call."""
        return self._short_circuited

    async def start(self) -> None:
        if self._channel is None:
            self._open_channel()

    async def close(self) -> None:
        if self._sending:  # batches on the wire: let them answer their checks
            await asyncio.gather(*self._sending, return_exceptions=True)
        channel, self._channel, self._check_rpc = self._channel, None, None
        self._batch_rpc = None
        if channel is not None:
            await channel.close(None)
        if self._retiring:  # channels replaced by half-open probes, still closing
            await asyncio.gather(*self._retiring)

    # -- checks ------------------------------------------------------------------------

    async def check(self, request: SafetyRequest) -> SafetyDecision:
        if not self._breaker.acquire():
            self._short_circuited += 1
            return self._fail_closed(request, "circuit_open")
        if self._breaker.state is BreakerState.HALF_OPEN:
            log.info("safety_breaker_probing", extra=self._fields(request))
            self._refresh_channel_if_failing()
        self._rpc_calls += 1
        try:
            if self._check_rpc is None:
                raise RuntimeError("GrpcSafetyChecker is not started")
            with grpc_client_span(
                CHECK_METHOD, job_id=request.job_id, topic=request.topic
            ) as metadata:
                if self._batching:
                    decision = await self._queue(request, metadata)
                else:
                    decision = await self._check_alone(request, metadata)
        except asyncio.CancelledError:
            self._breaker.abandon()
            raise
        except InvalidRequest as exc:  # refused in a batch: the kernel is up
            return self._rejected(request, str(exc))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.INVALID_ARGUMENT:
                return self._rejected(request, exc.details() or "")
            return self._failed(request, f"{exc.code().name}: {exc.details()}")
        except Exception as exc:  # anything else is a failure too: fail closed, never raise
            return self._failed(request, f"{type(exc).__name__}: {exc}")
        self._succeeded(request)
        return decision

    async def _check_alone(
        self, request: SafetyRequest, metadata: tuple[tuple[str, str], ...]
    ) -> SafetyDecision:
        """One plain ``Check`` call."""
        if self._check_rpc is None:
            raise RuntimeError("GrpcSafetyChecker is closed")
        data = await self._check_rpc(
            self._codec.encode_request(request),
            timeout=self._timeout_s,
            wait_for_ready=False,
            metadata=metadata,
        )
        return self._codec.decode_decision(data)

    async def _queue(
        self, request: SafetyRequest, metadata: tuple[tuple[str, str], ...]
    ) -> SafetyDecision:
        """Wait for the answer to ``request``, sent with the others asked for in this turn of
        the event loop once the turn ends."""
        pending = _Pending(request, metadata)
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append(pending)
        return await pending.answer

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), self._max_batch):
            task = asyncio.create_task(
                self._send(queued[start : start + self._max_batch]), name="safety-check-batch"
            )
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        """Answer every check of ``batch``: its decision, or the exception its call ended in.
        Runs in a task of its own, so a cancelled caller cancels no one else's check."""
        live = [p for p in batch if not p.answer.done()]
        if len(live) > 1 and self._batching:
            try:
                answers = await self._check_batch(live)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                    for p in live:
                        p.settle(exc)
                    return
                self._batching = False  # an older kernel: plain Checks from now on
                log.warning(
                    "safety_kernel_without_check_batch",
                    extra={"component": "safety-client", "address": self._address},
                )
            except Exception as exc:
                for p in live:
                    p.settle(exc)
                return
            else:
                for p, answer in zip(live, answers, strict=True):
                    p.settle(answer)
                return
        await asyncio.gather(*(self._answer_alone(p) for p in live))

    async def _answer_alone(self, pending: _Pending) -> None:
        try:
            pending.settle(await self._check_alone(pending.request, pending.metadata))
        except Exception as exc:
            pending.settle(exc)

    async def _check_batch(self, batch: list[_Pending]) -> list[SafetyDecision | InvalidRequest]:
        """One ``CheckBatch`` call for two or more checks."""
        if self._batch_rpc is None:
            raise RuntimeError("GrpcSafetyChecker is closed")
        self._batches_sent += 1
        data = await self._batch_rpc(
            encode_check_batch([(p.request, dict(p.metadata)) for p in batch]),
            timeout=self._timeout_s,
            wait_for_ready=False,
        )
        return decode_batch_decisions(data, len(batch))

    async def explain(self, request: SafetyRequest, *, timeout_s: float = 2.0) -> PolicyExplanation:
        """Every rule's verdict for ``request``. Tooling, not the hot path: raises
        ``SafetyKernelError`` when the kernel can't answer, and ignores the breaker."""
        if self._channel is None:
            raise SafetyKernelError("GrpcSafetyChecker is not started")
        rpc = self._channel.unary_unary(EXPLAIN_METHOD, None, None)
        try:
            data = await rpc(self._codec.encode_request(request), timeout=timeout_s)
            return decode_explanation(data)
        except grpc.aio.AioRpcError as exc:
            raise SafetyKernelError(
                f"safety kernel at {self._address}: {exc.code().name}: {exc.details()}"
            ) from exc
        except ValueError as exc:
            raise SafetyKernelError(f"safety kernel at {self._address}: {exc}") from exc

    # -- breaker and fail-closed paths -------------------------------------------------

    def _rejected(self, request: SafetyRequest, why: str) -> SafetyDecision:
        """The kernel is up and refused *this* request: DENY with its reason, and the breaker
        counts it as a success."""
        self._succeeded(request)
        return self._deny(
            request,
            reason=f"safety kernel rejected the request: {why}",
            rule_id=INVALID_REQUEST_RULE,
            cause="invalid_argument",
        )

    def _succeeded(self, request: SafetyRequest) -> None:
        before = self._breaker.state
        self._breaker.record_success()
        if before is not BreakerState.CLOSED:
            log.warning("safety_breaker_closed", extra=self._fields(request))

    def _failed(self, request: SafetyRequest, error: str) -> SafetyDecision:
        before = self._breaker.state
        self._breaker.record_failure()
        if before is not BreakerState.OPEN and self._breaker.state is BreakerState.OPEN:
            log.error(
                "safety_breaker_opened",
                extra={
                    **self._fields(request),
                    "error": error,
                    "failures": self._breaker.consecutive_failures,
                    "reset_after_s": self._reset_after_s,
                },
            )
        return self._fail_closed(request, "rpc_failed", error=error)

    def _fail_closed(self, request: SafetyRequest, cause: str, **extra: object) -> SafetyDecision:
        return self._deny(
            request, reason=UNAVAILABLE_REASON, rule_id=UNAVAILABLE_RULE, cause=cause, **extra
        )

    def _deny(
        self, request: SafetyRequest, *, reason: str, rule_id: str, cause: str, **extra: object
    ) -> SafetyDecision:
        decision = SafetyDecision(decision=Decision.DENY, reason=reason, rule_id=rule_id)
        log.warning(
            "safety_fail_closed",
            extra={
                **self._fields(request),
                "rule_id": rule_id,
                "decision": Decision.DENY.value,
                "cause": cause,
                **extra,
            },
        )
        if self._metrics is not None:
            self._metrics.inc_safety_decision(rule_id, Decision.DENY.value)
        return decision

    def _fields(self, request: SafetyRequest) -> dict[str, object]:
        return {
            "component": "safety-client",
            "address": self._address,
            "job_id": request.job_id,
            "topic": request.topic,
            "breaker": self._breaker.state.value,
        }

    # -- channel -----------------------------------------------------------------------

    def _channel_options(self) -> list[tuple[str, int]]:
        backoff_ms = max(100, int(self._reset_after_s * 1000))
        return [
            # Our own subchannels: a fresh channel must not inherit a shared subchannel's
            # backoff (grpc pools subchannels process-wide by default).
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.initial_reconnect_backoff_ms", min(1_000, backoff_ms)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def _open_channel(self) -> None:
        self._channel = grpc.aio.insecure_channel(self._address, options=self._channel_options())
        self._check_rpc = self._channel.unary_unary(CHECK_METHOD, None, None)
        self._batch_rpc = self._channel.unary_unary(CHECK_BATCH_METHOD, None, None)

    def _refresh_channel_if_failing(self) -> None:
        """A probe must dial now. A channel that is not READY may still be waiting out its
        reconnect backoff, and answers every call with its last failure until then (even when
        it reports IDLE), so the probe gets a fresh channel (with its own subchannel)."""
        old = self._channel
        if old is None or old.get_state() is grpc.ChannelConnectivity.READY:
            return
        self._open_channel()
        # Calls still on the old channel finish or time out; then it goes.
        task = asyncio.create_task(old.close(self._timeout_s), name="safety-channel-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
