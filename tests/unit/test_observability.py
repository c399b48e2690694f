"""What the scheduler counts and times, pool loads, the OpenTelemetry ``Metrics`` as Prometheus
shows it, the log formats, and trace context on the in-memory bus."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator

import pytest
from opentelemetry import trace
from prometheus_client.parser import text_string_to_metric_families

from cortex_adapters.telemetry import OtelMetrics
from cortex_adapters.telemetry.tracing import consuming, current_trace_id, producing
from cortex_apps.logs import CortexJsonFormatter, KeyValueFormatter, use_json
from cortex_core.bus_protocol import SUBJECT_JOB_SUBMIT
from cortex_core.messages import BusPacket, JobRequest, JobStatus
from cortex_core.pointers import context_ptr
from cortex_core.policy import Decision, Policy
from cortex_core.scoring import PoolLoad, WorkerState, pool_loads
from tests.unit.test_scheduler import Harness, make_harness

TRACE = "ab" * 16


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await make_harness()
    yield harness
    await harness.scheduler.close()
    await harness.bus.close()


# -- the scheduler's observations ----------------------------------------------------------


async def test_a_completed_job_records_its_queue_wait_run_time_and_end_to_end(h: Harness) -> None:
    await h.heartbeat("w1")
    await h.submit("j1")  # the bus-level submit is adopted "now": created at the clock's time
    h.clock.advance(0.25)
    await h.result("j1")
    assert h.metrics.observations("queue_wait", topic="job.echo") == [0.0]
    assert h.metrics.observations("run_time", topic="job.echo") == [0.25]
    assert h.metrics.observations("end_to_end", topic="job.echo", status="COMPLETED") == [0.25]
    assert h.metrics.value("jobs_completed", topic="job.echo", status="COMPLETED") == 1


async def test_a_waiting_job_records_how_long_it_waited_for_a_worker(h: Harness) -> None:
    await h.submit("j1")  # no worker yet: it waits
    h.clock.advance(2.0)
    await h.heartbeat("w1")
    assert h.metrics.observations("queue_wait", topic="job.echo") == [2.0]
    assert h.metrics.value("jobs_dispatched", topic="job.echo") == 1


async def test_a_denied_job_counts_as_ended_denied_with_its_end_to_end() -> None:
    deny_all = Policy.from_document(
        {"policy": {"rules": [], "default": {"decision": Decision.DENY.value, "reason": "closed"}}}
    )
    h = await make_harness(policy=deny_all)
    try:
        await h.submit("j1")
        assert h.metrics.value("safety_denied", topic="job.echo") == 1
        assert h.metrics.observations("end_to_end", topic="job.echo", status="DENIED") == [0.0]
        assert h.metrics.observations("queue_wait", topic="job.echo") == []
    finally:
        await h.scheduler.close()
        await h.bus.close()


async def test_the_sweep_reports_every_routed_pool_and_its_live_workers(h: Harness) -> None:
    await h.heartbeat("w1", active=1, max_jobs=2)
    await h.heartbeat("w2", active=0, max_jobs=2)
    await h.scheduler.sweep()
    assert h.metrics.pools == {
        "chat-llm": PoolLoad("chat-llm", 0, 0, 0),
        "echo": PoolLoad("echo", 2, 4, 1),
    }
    h.clock.advance(60)  # both go stale
    await h.scheduler.sweep()
    assert h.metrics.pools["echo"] == PoolLoad("echo", 0, 0, 0)


def _worker(wid: str, pool: str, active: int, slots: int, seen: float) -> WorkerState:
    return WorkerState(
        worker_id=wid,
        pool=pool,
        max_parallel_jobs=slots,
        active_jobs=active,
        cpu_load=0.0,
        gpu_utilization=0.0,
        last_seen=seen,
    )


def test_pool_loads_count_fresh_workers_only_and_cap_busy_at_slots() -> None:
    workers = [
        _worker("a", "echo", 5, 4, seen=100.0),  # reports more than its slots (reserved)
        _worker("b", "echo", 1, 4, seen=80.0),  # stale at now=100 with stale_after=15
        _worker("c", "gpu", 0, 1, seen=99.0),  # a pool the routing table doesn't name
    ]
    loads = pool_loads(workers, ["echo", "log"], now=100.0, stale_after=15.0)
    assert loads == [
        PoolLoad("echo", 1, 4, 4),
        PoolLoad("gpu", 1, 1, 0),
        PoolLoad("log", 0, 0, 0),
    ]
    assert [p.utilization for p in loads] == [1.0, 0.0, 0.0]


# -- OtelMetrics as Prometheus shows it ----------------------------------------------------


def _samples(m: OtelMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = m.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_otel_metrics_expose_the_plan_names_with_their_labels() -> None:
    m = OtelMetrics("test")
    m.inc_jobs_received("job.echo")
    m.inc_jobs_received("job.echo")
    m.inc_jobs_dispatched("job.echo")
    m.inc_jobs_completed("job.echo", JobStatus.COMPLETED)
    m.inc_safety_denied("job.x")
    m.inc_safety_decision("deny-x", "DENY")
    m.inc_packets_dropped("undecodable")
    m.inc_bus_event("reconnected")
    m.observe_request("GET", "/v1/jobs/{job_id}", 404, 0.002)
    s = _samples(m)

    def at(name: str, **labels: str) -> float:
        return s[(name, frozenset(labels.items()))]

    assert at("cortex_jobs_received_total", topic="job.echo") == 2
    assert at("cortex_jobs_dispatched_total", topic="job.echo") == 1
    assert at("cortex_jobs_completed_total", topic="job.echo", status="COMPLETED") == 1
    assert at("cortex_safety_denied_total", topic="job.x") == 1
    assert at("cortex_safety_decisions_total", rule_id="deny-x", decision="DENY") == 1
    assert at("cortex_packets_dropped_total", reason="undecodable") == 1
    assert at("cortex_bus_events_total", event="reconnected") == 1
    labels = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "404"}
    assert at("cortex_http_requests_total", **labels) == 1
    assert at("cortex_http_request_duration_seconds_count", **labels) == 1


def test_latency_histograms_have_buckets_in_seconds() -> None:
    m = OtelMetrics("test")
    m.observe_queue_wait("job.echo", 0.003)
    m.observe_run_time("job.echo", 2.0)
    m.observe_end_to_end("job.echo", "COMPLETED", 42.0)
    m.observe_execution("echo", "COMPLETED", 0.0004)
    s = _samples(m)

    def bucket(name: str, le: str, **labels: str) -> float:
        return s[(f"{name}_bucket", frozenset({**labels, "le": le}.items()))]

    echo = {"topic": "job.echo"}
    assert bucket("cortex_job_queue_wait_seconds", "0.0025", **echo) == 0
    assert bucket("cortex_job_queue_wait_seconds", "0.005", **echo) == 1
    assert bucket("cortex_job_run_seconds", "1.0", **echo) == 0
    assert bucket("cortex_job_run_seconds", "2.5", **echo) == 1
    done = {**echo, "status": "COMPLETED"}
    assert bucket("cortex_job_end_to_end_seconds", "30.0", **done) == 0
    assert bucket("cortex_job_end_to_end_seconds", "60.0", **done) == 1
    assert bucket("cortex_worker_execution_seconds", "0.0005", pool="echo", status="COMPLETED")
    assert (
        s[
            (
                "cortex_worker_executions_total",
                frozenset({"pool": "echo", "status": "COMPLETED"}.items()),
            )
        ]
        == 1
    )


def test_pool_gauges_follow_the_latest_loads_and_drop_gone_pools() -> None:
    m = OtelMetrics("test")
    m.set_pool_loads([PoolLoad("echo", 2, 8, 6), PoolLoad("log", 0, 0, 0)])
    s = _samples(m)
    assert s[("cortex_pool_workers", frozenset({("pool", "echo")}))] == 2
    assert s[("cortex_pool_utilization", frozenset({("pool", "echo")}))] == 0.75
    assert s[("cortex_pool_workers", frozenset({("pool", "log")}))] == 0
    m.set_pool_loads([PoolLoad("echo", 1, 4, 0)])
    s = _samples(m)
    assert s[("cortex_pool_slots", frozenset({("pool", "echo")}))] == 4
    assert ("cortex_pool_workers", frozenset({("pool", "log")})) not in s


def test_two_instances_do_not_share_series() -> None:
    a, b = OtelMetrics("a"), OtelMetrics("b")
    a.inc_jobs_received("job.echo")
    assert ("cortex_jobs_received_total", frozenset({("topic", "job.echo")})) not in _samples(b)


# -- logs ----------------------------------------------------------------------------------


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "cortex.scheduler", logging.INFO, __file__, 1, "job_finished", None, None
    )
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_json_lines_carry_the_event_and_every_field_including_nulls() -> None:
    line = CortexJsonFormatter().format(
        _record(
            component="scheduler",
            trace_id=TRACE,
            job_id="j1",
            topic="job.echo",
            worker_id=None,
            state=JobStatus.COMPLETED,
        )
    )
    record = json.loads(line)
    assert record["event"] == "job_finished"
    assert record["level"] == "INFO"
    assert (record["component"], record["trace_id"], record["job_id"]) == ("scheduler", TRACE, "j1")
    assert record["worker_id"] is None
    assert record["state"] == "COMPLETED"
    assert record["timestamp"].endswith("+00:00")


def test_a_line_without_a_trace_id_takes_the_active_spans() -> None:
    record = _record(component="bus")
    assert "trace_id" not in json.loads(CortexJsonFormatter().format(record))
    with consuming(
        "job.echo", BusPacket(trace_id=TRACE, sender_id="s", created_at=0.0, payload=None), None
    ):  # type: ignore[arg-type]
        assert json.loads(CortexJsonFormatter().format(record))["trace_id"] == TRACE
        assert f"trace_id={TRACE}" in KeyValueFormatter().format(record)


def test_console_lines_leave_out_empty_fields() -> None:
    line = KeyValueFormatter().format(_record(component="scheduler", job_id="j1", worker_id=None))
    assert "[SCHEDULER] job_finished job_id=j1" in line
    assert "worker_id" not in line


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_json_unless_the_stream_is_a_terminal() -> None:
    assert use_json("auto", io.StringIO())
    assert not use_json("auto", _Tty())
    assert use_json("json", _Tty())
    assert not use_json("console", io.StringIO())
    with pytest.raises(ValueError, match="log format"):
        use_json("xml")


# -- trace context -------------------------------------------------------------------------


def _submit(trace_id: str) -> BusPacket:
    request = JobRequest(job_id="j1", topic="job.echo", context_ptr=context_ptr("j1"))
    return BusPacket(trace_id=trace_id, sender_id="s", created_at=0.0, payload=request)


def test_publish_headers_carry_the_packets_trace_without_a_tracer() -> None:
    with producing(SUBJECT_JOB_SUBMIT, _submit(TRACE)) as headers:
        version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01")
    assert int(span_id, 16) != 0
    with producing(SUBJECT_JOB_SUBMIT, _submit("")) as headers:
        assert headers == {}


def test_a_consumer_continues_the_publishers_trace() -> None:
    with producing(SUBJECT_JOB_SUBMIT, _submit(TRACE)) as headers:
        pass
    with consuming(SUBJECT_JOB_SUBMIT, _submit("cd" * 16), headers):
        # The header wins over the packet's field: it carries the publisher's span.
        assert current_trace_id() == TRACE
    with consuming(SUBJECT_JOB_SUBMIT, _submit("cd" * 16), None):
        assert current_trace_id() == "cd" * 16
    with consuming(SUBJECT_JOB_SUBMIT, _submit(""), None) as span:
        assert span is trace.INVALID_SPAN
        assert current_trace_id() is None
