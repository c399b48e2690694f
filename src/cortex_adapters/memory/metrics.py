"""In-memory ``Metrics``: counters and observations you can read back, for the embedded mode's
tests and any test that checks what was counted (``OtelMetrics`` is the Prometheus one)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from cortex_core.scoring import PoolLoad

_Key = tuple[str, tuple[tuple[str, str], ...]]


class InMemoryMetrics:
    def __init__(self) -> None:
        self._counts: Counter[_Key] = Counter()
        self._observed: defaultdict[_Key, list[float]] = defaultdict(list)
        self.pools: dict[str, PoolLoad] = {}
        """The last ``set_pool_loads``, by pool."""

    @staticmethod
    def _key(name: str, labels: dict[str, str]) -> _Key:
        return (name, tuple(sorted(labels.items())))

    def _inc(self, name: str, **labels: str) -> None:
        self._counts[self._key(name, labels)] += 1

    def _observe(self, name: str, seconds: float, **labels: str) -> None:
        self._observed[self._key(name, labels)].append(seconds)

    def value(self, name: str, **labels: str) -> int:
        """The counter ``name`` with exactly these labels (0 if it never moved)."""
        return self._counts[self._key(name, labels)]

    def total(self, name: str) -> int:
        return sum(n for (metric, _), n in self._counts.items() if metric == name)

    def observations(self, name: str, **labels: str) -> list[float]:
        """What the histogram ``name`` observed with exactly these labels, in order."""
        return list(self._observed.get(self._key(name, labels), ()))

    def inc_jobs_received(self, topic: str) -> None:
        self._inc("jobs_received", topic=topic)

    def inc_jobs_dispatched(self, topic: str) -> None:
        self._inc("jobs_dispatched", topic=topic)

    def inc_jobs_completed(self, topic: str, status: str) -> None:
        self._inc("jobs_completed", topic=topic, status=str(status))

    def inc_safety_denied(self, topic: str) -> None:
        self._inc("safety_denied", topic=topic)

    def inc_packets_dropped(self, reason: str) -> None:
        self._inc("packets_dropped", reason=reason)

    def inc_bus_event(self, event: str) -> None:
        self._inc("bus_events", event=event)

    def inc_safety_decision(self, rule_id: str, decision: str) -> None:
        self._inc("safety_decisions", rule_id=rule_id, decision=str(decision))

    def observe_queue_wait(self, topic: str, seconds: float) -> None:
        self._observe("queue_wait", seconds, topic=topic)

    def observe_run_time(self, topic: str, seconds: float) -> None:
        self._observe("run_time", seconds, topic=topic)

    def observe_end_to_end(self, topic: str, status: str, seconds: float) -> None:
        self._observe("end_to_end", seconds, topic=topic, status=str(status))

    def observe_execution(self, pool: str, status: str, seconds: float) -> None:
        self._observe("execution", seconds, pool=pool, status=str(status))

    def set_pool_loads(self, loads: Sequence[PoolLoad]) -> None:
        self.pools = {load.pool: load for load in loads}
