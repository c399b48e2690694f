"""``Metrics`` on OpenTelemetry, read by Prometheus (docs/adr/0012).

Each ``OtelMetrics`` has its own ``MeterProvider`` and its own Prometheus ``CollectorRegistry``
(several can live in one process, as in the tests); ``exposition()`` renders it in the
Prometheus text format, for ``/metrics``. Instrument names follow OpenTelemetry's dotted style
and come out of the exporter as the Prometheus names below (counters gain ``_total``,
histograms in seconds gain ``_seconds``):

==========================================  ======================  ==========================
series                                      labels                  moved by
==========================================  ======================  ==========================
``cortex_jobs_received_total``              topic                   scheduler, per new job
``cortex_jobs_dispatched_total``            topic                   scheduler, per dispatch
``cortex_jobs_completed_total``             topic, status           any terminal state
``cortex_safety_denied_total``              topic                   scheduler, per DENY
``cortex_safety_decisions_total``           rule_id, decision       Safety Kernel (and the
                                                                    scheduler's fail-closed)
``cortex_job_queue_wait_seconds``           topic                   scheduler, at dispatch
``cortex_job_run_seconds``                  topic                   scheduler, at a result
``cortex_job_end_to_end_seconds``           topic, status           any terminal state
``cortex_worker_executions_total`` and      pool, status            each worker, per attempt
``cortex_worker_execution_seconds``
``cortex_pool_workers``                     pool                    scheduler's sweep (gauge)
``cortex_pool_slots``/``_busy_slots``       pool                    scheduler's sweep (gauge)
``cortex_pool_utilization``                 pool                    busy ÷ slots (gauge)
``cortex_bus_events_total``                 event                   every process on NATS
                                                                    (``reconnected``, …)
``cortex_packets_dropped_total``            reason                  bad input on the bus
``cortex_http_requests_total`` and          method, route, status   the REST gateway
``cortex_http_request_duration_seconds``
==========================================  ======================  ==========================

With them, the process's own ``process_*`` series (CPU seconds, resident memory, open file
descriptors, start time) and OpenTelemetry's ``target_info``.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)

from cortex_core.scoring import PoolLoad

LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
"""Seconds, from a sub-millisecond HTTP request to an hour-long job."""

CONTENT_TYPE = CONTENT_TYPE_LATEST


class OtelMetrics:
    """The ``Metrics`` port (and the gateway's request metrics) on OpenTelemetry."""

    content_type = CONTENT_TYPE

    def __init__(self, service: str = "cortex") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, start time
        self._reader = PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        self._provider = MeterProvider(
            metric_readers=[self._reader],
            resource=Resource.create({"service.name": service}),
        )
        meter = self._provider.get_meter("cortex")
        count = meter.create_counter
        self._received = count("cortex.jobs.received", description="New jobs, by topic")
        self._dispatched = count("cortex.jobs.dispatched", description="Dispatches, by topic")
        self._completed = count(
            "cortex.jobs.completed", description="Jobs that reached a terminal state"
        )
        self._denied = count("cortex.safety.denied", description="Jobs the safety policy denied")
        self._decisions = count("cortex.safety.decisions", description="Safety decisions")
        self._dropped = count("cortex.packets.dropped", description="Bus packets dropped")
        self._bus_events = count("cortex.bus.events", description="Bus connection events")
        self._executions = count(
            "cortex.worker.executions", description="Attempts a worker ran, by how they ended"
        )
        self._http_requests = count("cortex.http.requests", description="REST requests")

        def histogram(name: str, description: str):  # type: ignore[no-untyped-def]
            return meter.create_histogram(
                name,
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
            )

        self._queue_wait = histogram(
            "cortex.job.queue_wait", "Submit (or requeue) to dispatch, by topic"
        )
        self._run_time = histogram("cortex.job.run", "Dispatch to result, by topic")
        self._end_to_end = histogram("cortex.job.end_to_end", "Submit to a terminal state")
        self._execution_time = histogram(
            "cortex.worker.execution", "One attempt on a worker, by pool and status"
        )
        self._http_duration = histogram("cortex.http.request.duration", "REST request latency")

        self._pools: dict[str, PoolLoad] = {}

        def gauge(name: str, unit: str, description: str, value) -> None:  # type: ignore[no-untyped-def]
            def observe(_: CallbackOptions) -> list[Observation]:
                return [Observation(value(p), {"pool": p.pool}) for p in self._pools.values()]

            meter.create_observable_gauge(
                name, callbacks=[observe], unit=unit, description=description
            )

        gauge("cortex.pool.workers", "", "Live workers per pool", lambda p: p.workers)
        gauge("cortex.pool.slots", "", "Job slots of the live workers", lambda p: p.slots)
        gauge("cortex.pool.busy_slots", "", "Slots running a job", lambda p: p.busy)
        gauge("cortex.pool.utilization", "1", "Busy slots over slots", lambda p: p.utilization)

    def exposition(self) -> bytes:
        """Everything, in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self._provider.shutdown()

    # -- the Metrics port -------------------------------------------------------------------

    def inc_jobs_received(self, topic: str) -> None:
        self._received.add(1, {"topic": topic})

    def inc_jobs_dispatched(self, topic: str) -> None:
        self._dispatched.add(1, {"topic": topic})

    def inc_jobs_completed(self, topic: str, status: str) -> None:
        self._completed.add(1, {"topic": topic, "status": str(status)})

    def inc_safety_denied(self, topic: str) -> None:
        self._denied.add(1, {"topic": topic})

    def inc_packets_dropped(self, reason: str) -> None:
        self._dropped.add(1, {"reason": reason})

    def inc_safety_decision(self, rule_id: str, decision: str) -> None:
        self._decisions.add(1, {"rule_id": rule_id, "decision": str(decision)})

    def inc_bus_event(self, event: str) -> None:
        self._bus_events.add(1, {"event": event})

    def observe_queue_wait(self, topic: str, seconds: float) -> None:
        self._queue_wait.record(seconds, {"topic": topic})

    def observe_run_time(self, topic: str, seconds: float) -> None:
        self._run_time.record(seconds, {"topic": topic})

    def observe_end_to_end(self, topic: str, status: str, seconds: float) -> None:
        self._end_to_end.record(seconds, {"topic": topic, "status": str(status)})

    def observe_execution(self, pool: str, status: str, seconds: float) -> None:
        labels = {"pool": pool, "status": str(status)}
        self._executions.add(1, labels)
        self._execution_time.record(seconds, labels)

    def set_pool_loads(self, loads: Sequence[PoolLoad]) -> None:
        self._pools = {load.pool: load for load in loads}

    # -- the gateway's requests -------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = {"method": method, "route": route, "status": str(status)}
        self._http_requests.add(1, labels)
        self._http_duration.record(seconds, labels)


class NoMetrics:
    """Metrics switched off (``CORTEX_METRICS_ENABLED=false``): every call does nothing, and
    ``/metrics`` shows only the process's own series. For measuring what metrics cost."""

    content_type = CONTENT_TYPE

    def __init__(self, service: str = "cortex") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        pass

    def inc_jobs_received(self, topic: str) -> None:
        pass

    def inc_jobs_dispatched(self, topic: str) -> None:
        pass

    def inc_jobs_completed(self, topic: str, status: str) -> None:
        pass

    def inc_safety_denied(self, topic: str) -> None:
        pass

    def inc_packets_dropped(self, reason: str) -> None:
        pass

    def inc_safety_decision(self, rule_id: str, decision: str) -> None:
        pass

    def inc_bus_event(self, event: str) -> None:
        pass

    def observe_queue_wait(self, topic: str, seconds: float) -> None:
        pass

    def observe_run_time(self, topic: str, seconds: float) -> None:
        pass

    def observe_end_to_end(self, topic: str, status: str, seconds: float) -> None:
        pass

    def observe_execution(self, pool: str, status: str, seconds: float) -> None:
        pass

    def set_pool_loads(self, loads: Sequence[PoolLoad]) -> None:
        pass

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        pass


def make_metrics(service: str, enabled: bool = True) -> OtelMetrics | NoMetrics:
    return OtelMetrics(service) if enabled else NoMetrics(service)
