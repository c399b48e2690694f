"""Least-loaded scoring invariants."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from cortex_core.scoring import NO_WORKERS, POOL_AT_CAPACITY, WorkerState, pick_worker, score

NOW = 1000.0
STALE_AFTER = 15.0

workers_st = st.builds(
    WorkerState,
    worker_id=st.text(alphabet="abcdef0123", min_size=1, max_size=4),
    pool=st.just("echo"),
    max_parallel_jobs=st.integers(0, 8),
    active_jobs=st.integers(0, 10),
    cpu_load=st.floats(allow_nan=True, allow_infinity=True),
    gpu_utilization=st.floats(-1, 2),
    last_seen=st.floats(NOW - 60, NOW + 5),
)
pools_st = st.lists(workers_st, max_size=30, unique_by=lambda w: w.worker_id)


def _candidate(w: WorkerState) -> bool:
    return (
        NOW - w.last_seen <= STALE_AFTER
        and w.max_parallel_jobs > 0
        and w.active_jobs < w.max_parallel_jobs
    )


@given(pools_st)
def test_never_picks_a_stale_or_full_worker(pool: list[WorkerState]) -> None:
    chosen = pick_worker(pool, now=NOW, stale_after=STALE_AFTER).worker
    assert chosen is None or _candidate(chosen)


@given(pools_st)
def test_picks_a_worker_with_the_minimal_score(pool: list[WorkerState]) -> None:
    chosen = pick_worker(pool, now=NOW, stale_after=STALE_AFTER).worker
    candidates = [w for w in pool if _candidate(w)]
    if not candidates:
        assert chosen is None
        return
    assert chosen is not None
    assert score(chosen) == min(score(w) for w in candidates)


@given(pools_st, st.randoms())
def test_ties_break_deterministically(pool: list[WorkerState], rnd: object) -> None:
    shuffled = list(pool)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a = pick_worker(pool, now=NOW, stale_after=STALE_AFTER).worker
    b = pick_worker(shuffled, now=NOW, stale_after=STALE_AFTER).worker
    assert (a and a.worker_id) == (b and b.worker_id)


@given(pools_st)
def test_reason_says_why_nobody_was_picked(pool: list[WorkerState]) -> None:
    selection = pick_worker(pool, now=NOW, stale_after=STALE_AFTER)
    fresh = [w for w in pool if NOW - w.last_seen <= STALE_AFTER]
    if selection.worker is not None:
        assert selection.reason is None
    elif fresh:
        assert selection.reason == POOL_AT_CAPACITY
    else:
        assert selection.reason == NO_WORKERS


def _w(wid: str, active: int, cpu: float = 0.0, max_jobs: int = 4) -> WorkerState:
    return WorkerState(
        worker_id=wid,
        pool="echo",
        max_parallel_jobs=max_jobs,
        active_jobs=active,
        cpu_load=cpu,
        gpu_utilization=0.0,
        last_seen=NOW,
    )


def test_prefers_free_slots_then_lower_cpu() -> None:
    assert pick_worker([_w("a", 3), _w("b", 1)], now=NOW, stale_after=STALE_AFTER).worker == _w(
        "b", 1
    )
    picked = pick_worker(
        [_w("a", 1, cpu=0.9), _w("b", 1, cpu=0.1)], now=NOW, stale_after=STALE_AFTER
    )
    assert picked.worker is not None
    assert picked.worker.worker_id == "b"
    tie = pick_worker([_w("b", 0), _w("a", 0)], now=NOW, stale_after=STALE_AFTER).worker
    assert tie is not None
    assert tie.worker_id == "a"
