"""In-memory ``WorkerRegistry``: the last heartbeat of each worker."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cortex_core.messages import Heartbeat
from cortex_core.ports import Clock
from cortex_core.scoring import WorkerState


class InMemoryWorkerRegistry:
    def __init__(self, *, clock: Clock, forget_after_s: float = 300.0) -> None:
        """Workers silent for ``forget_after_s`` are dropped from the registry altogether."""
        self._clock = clock
        self._forget_after_s = forget_after_s
        self._workers: dict[str, WorkerState] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def record(self, heartbeat: Heartbeat, seen_at: float) -> None:
        self._workers[heartbeat.worker_id] = WorkerState.from_heartbeat(heartbeat, seen_at)

    async def reserve(self, worker_id: str) -> None:
        self._adjust(worker_id, +1)

    async def release(self, worker_id: str) -> None:
        self._adjust(worker_id, -1)

    def _adjust(self, worker_id: str, delta: int) -> None:
        state = self._workers.get(worker_id)
        if state is not None:
            active = max(state.active_jobs + delta, 0)
            self._workers[worker_id] = dataclasses.replace(state, active_jobs=active)

    async def workers(self, pool: str | None = None) -> Sequence[WorkerState]:
        horizon = self._clock.now() - self._forget_after_s
        gone = [wid for wid, w in self._workers.items() if w.last_seen < horizon]
        for wid in gone:
            del self._workers[wid]
        return [w for w in self._workers.values() if pool is None or w.pool == pool]
