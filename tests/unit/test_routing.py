from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given

from cortex_adapters.config import load_routing
from cortex_core.errors import ConfigError
from cortex_core.routing import RoutingTable

DOC = {
    "routing": {
        "pools": {"echo": {"topics": ["job.echo"]}, "chat-llm": {"topics": ["job.chat.llm"]}}
    }
}


def test_topics_map_to_their_pool() -> None:
    table = RoutingTable.from_document(DOC)
    assert table.pool_for("job.echo") == "echo"
    assert table.pool_for("job.chat.llm") == "chat-llm"
    assert table.pool_for("job.unknown") is None
    assert table.topics_for("echo") == ("job.echo",)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "<document>"),
        ({"routing": None}, "routing"),
        ({"routing": {"pools": {}}}, "routing.pools"),
        ({"routing": {"pools": {"bad pool": {"topics": ["job.x"]}}}}, "routing.pools.bad pool"),
        ({"routing": {"pools": {"echo": {"topics": []}}}}, "routing.pools.echo.topics"),
        (
            {"routing": {"pools": {"echo": {"topics": ["job.echo", "job.*"]}}}},
            "routing.pools.echo.topics[1]",
        ),
        (
            {"routing": {"pools": {"echo": {"topics": ["job.echo"], "topix": 1}}}},
            "routing.pools.echo.topix",
        ),
        (
            {"routing": {"pools": {"a": {"topics": ["job.x"]}, "b": {"topics": ["job.x"]}}}},
            "routing.pools.b.topics[0]",
        ),
    ],
)
def test_invalid_documents_name_the_field(doc: object, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        RoutingTable.from_document(doc)
    assert err.value.path == field


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True),
        st.from_regex(r"job\.[a-z]{1,6}", fullmatch=True),
        min_size=1,
    )
)
def test_every_routed_topic_resolves_to_its_pool(topic_to_pool: dict[str, str]) -> None:
    pools: dict[str, list[str]] = {}
    for pool, topic in topic_to_pool.items():
        pools.setdefault(pool, [])
        if all(topic not in t for t in pools.values()):
            pools[pool].append(topic)
    pools = {p: t for p, t in pools.items() if t}
    table = RoutingTable.from_pools({p: tuple(t) for p, t in pools.items()})
    for pool, topics in pools.items():
        for topic in topics:
            assert table.pool_for(topic) == pool


def test_the_shipped_routing_file_loads() -> None:
    table = load_routing()
    assert table.pool_for("job.echo") == "echo"


def test_a_broken_file_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text("routing:\n  pools:\n    echo:\n      topics: [42]\n")
    with pytest.raises(ConfigError, match=r"routing\.yaml: routing\.pools\.echo\.topics\[0\]"):
        load_routing(bad)
    bad.write_text("routing: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_routing(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_routing(tmp_path / "missing.yaml")


async def test_a_reloaded_routing_file_routes_new_jobs(tmp_path: Path) -> None:
    from cortex_adapters.codec import ProtobufCodec
    from cortex_adapters.config import ReloadingRouting
    from cortex_adapters.memory import (
        InMemoryBus,
        InMemoryJobStore,
        InMemoryMetrics,
        InMemoryWorkerRegistry,
        InProcessSafetyChecker,
    )
    from cortex_core.bus_protocol import SUBJECT_JOB_SUBMIT
    from cortex_core.messages import BusPacket, JobRequest, JobStatus
    from cortex_core.scheduler import Scheduler
    from tests.fakes import FakeClock

    file = tmp_path / "routing.yaml"
    file.write_text('routing:\n  pools:\n    echo: {topics: ["job.echo"]}\n')
    routing = ReloadingRouting(file, interval_s=60)
    clock, bus, jobs = (
        FakeClock(),
        InMemoryBus(codec=ProtobufCodec(), strict=True),
        InMemoryJobStore(),
    )
    scheduler = Scheduler(
        bus=bus,
        jobs=jobs,
        safety=InProcessSafetyChecker(),
        registry=InMemoryWorkerRegistry(clock=clock),
        routing=routing,
        metrics=InMemoryMetrics(),
        clock=clock,
    )
    await scheduler.start()

    async def submit(job_id: str) -> JobStatus:
        request = JobRequest(job_id=job_id, topic="job.new", context_ptr=f"redis://ctx:{job_id}")
        await bus.publish(
            SUBJECT_JOB_SUBMIT,
            BusPacket(trace_id="", sender_id="t", created_at=0.0, payload=request),
        )
        await bus.settle()
        job = await jobs.get(job_id)
        assert job is not None
        return job.status

    assert await submit("before") is JobStatus.FAILED  # no_pool_for_topic
    file.write_text(
        'routing:\n  pools:\n    echo: {topics: ["job.echo"]}\n    new: {topics: ["job.new"]}\n'
    )
    assert await routing.reload()
    assert await submit("after") is JobStatus.PENDING  # routed to pool "new"; waits for a worker
    assert scheduler.waiting("new") == ("after",)
    file.write_text("routing: [broken\n")
    assert not await routing.reload()  # the last good table stays in force
    assert await submit("still") is JobStatus.PENDING
    await scheduler.close()
    await bus.close()
