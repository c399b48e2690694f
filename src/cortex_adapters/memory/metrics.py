"""In-memory ``Metrics``: counters you can read back (the Prometheus adapter comes later)."""

from __future__ import annotations

from collections import Counter


class InMemoryMetrics:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

    def _inc(self, name: str, **labels: str) -> None:
        self._counts[(name, tuple(sorted(labels.items())))] += 1

    def value(self, name: str, **labels: str) -> int:
        """The counter ``name`` with exactly these labels (0 if it never moved)."""
        return self._counts[(name, tuple(sorted(labels.items())))]

    def total(self, name: str) -> int:
        return sum(n for (metric, _), n in self._counts.items() if metric == name)

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
