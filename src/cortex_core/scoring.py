"""Least-loaded scoring over worker heartbeats.

A worker's score is a weighted sum of its slot utilisation (``active_jobs /
max_parallel_jobs``), its ``cpu_load`` and its ``gpu_utilization``, each in ``[0, 1]``;
lower is better. A worker whose last heartbeat is stale, or whose slots are all taken, is
never a candidate. Ties break on ``worker_id``, so the choice is deterministic. One pass
over the pool: O(n), no sorting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cortex_core.messages import Heartbeat

NO_WORKERS = "no_workers"
POOL_AT_CAPACITY = "pool_at_capacity"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerState:
    """What the registry knows of one worker: its last heartbeat and when it arrived."""

    worker_id: str
    pool: str
    max_parallel_jobs: int
    active_jobs: int
    cpu_load: float
    gpu_utilization: float
    last_seen: float
    region: str = ""
    type: str = ""
    capabilities: tuple[str, ...] = ()

    @classmethod
    def from_heartbeat(cls, hb: Heartbeat, seen_at: float) -> WorkerState:
        return cls(
            worker_id=hb.worker_id,
            pool=hb.pool,
            max_parallel_jobs=hb.max_parallel_jobs,
            active_jobs=hb.active_jobs,
            cpu_load=hb.cpu_load,
            gpu_utilization=hb.gpu_utilization,
            last_seen=seen_at,
            region=hb.region,
            type=hb.type,
            capabilities=hb.capabilities,
        )

    def is_fresh(self, now: float, stale_after: float) -> bool:
        return now - self.last_seen <= stale_after

    @property
    def has_capacity(self) -> bool:
        return self.max_parallel_jobs > 0 and self.active_jobs < self.max_parallel_jobs


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringWeights:
    slots: float = 1.0
    cpu: float = 0.5
    gpu: float = 0.5


def _unit(x: float) -> float:
    """Clamp to [0, 1]; a NaN (a broken gauge) counts as fully loaded."""
    if math.isnan(x):
        return 1.0
    return min(max(x, 0.0), 1.0)


def score(worker: WorkerState, weights: ScoringWeights = ScoringWeights()) -> float:
    slots = worker.active_jobs / worker.max_parallel_jobs if worker.max_parallel_jobs > 0 else 1.0
    return (
        weights.slots * _unit(slots)
        + weights.cpu * _unit(worker.cpu_load)
        + weights.gpu * _unit(worker.gpu_utilization)
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen worker, or why there is none (``no_workers`` / ``pool_at_capacity``)."""

    worker: WorkerState | None
    reason: str | None = None


def pick_worker(
    workers: Iterable[WorkerState],
    *,
    now: float,
    stale_after: float,
    weights: ScoringWeights = ScoringWeights(),
) -> Selection:
    best: WorkerState | None = None
    best_key: tuple[float, str] | None = None
    any_fresh = False
    for w in workers:
        if not w.is_fresh(now, stale_after):
            continue
        any_fresh = True
        if not w.has_capacity:
            continue
        key = (score(w, weights), w.worker_id)
        if best_key is None or key < best_key:
            best, best_key = w, key
    if best is not None:
        return Selection(best)
    return Selection(None, POOL_AT_CAPACITY if any_fresh else NO_WORKERS)


@dataclass(frozen=True, slots=True)
class PoolLoad:
    """One pool as the scheduler sees it: live workers, their slots, and the slots in use."""

    pool: str
    workers: int
    slots: int
    busy: int

    @property
    def utilization(self) -> float:
        """Busy slots over all slots (0 for a pool with none)."""
        return self.busy / self.slots if self.slots else 0.0


def pool_loads(
    workers: Sequence[WorkerState], pools: Iterable[str], *, now: float, stale_after: float
) -> list[PoolLoad]:
    """Every pool in ``pools`` (the routing table's, so an empty one shows as 0 workers) and any
    other pool a live worker serves: its fresh workers, their slots and the slots in use."""
    loads = {pool: [0, 0, 0] for pool in pools}
    for w in workers:
        if w.is_fresh(now, stale_after):
            load = loads.setdefault(w.pool, [0, 0, 0])
            load[0] += 1
            load[1] += w.max_parallel_jobs
            load[2] += min(w.active_jobs, w.max_parallel_jobs)
    return [PoolLoad(pool, *counts) for pool, counts in sorted(loads.items())]
