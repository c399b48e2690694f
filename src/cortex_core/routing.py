"""Topic → pool routing, from the parsed shape of ``routing.yaml``::

    routing:
      pools:
        echo:
          topics: ["job.echo"]

Reading the file is an adapter's job; this module validates the parsed document and answers
``pool_for(topic)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cortex_core.bus_protocol import is_valid_token, is_valid_topic
from cortex_core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RoutingTable:
    pools: Mapping[str, tuple[str, ...]]
    _by_topic: Mapping[str, str]

    @classmethod
    def from_pools(cls, pools: Mapping[str, tuple[str, ...]]) -> RoutingTable:
        return cls.from_document(
            {"routing": {"pools": {p: {"topics": list(t)} for p, t in pools.items()}}}
        )

    @classmethod
    def from_document(cls, doc: object) -> RoutingTable:
        """Validate a parsed routing document; errors name the field (``routing.pools.x``)."""
        routing = _mapping(doc, "<document>").get("routing")
        pools_doc = _mapping(routing, "routing").get("pools")
        pools_map = _mapping(pools_doc, "routing.pools")
        if not pools_map:
            raise ConfigError("routing.pools", "at least one pool is required")
        pools: dict[str, tuple[str, ...]] = {}
        by_topic: dict[str, str] = {}
        for pool, body in pools_map.items():
            where = f"routing.pools.{pool}"
            if not isinstance(pool, str) or not is_valid_token(pool):
                raise ConfigError(where, "a pool name is letters, digits, '_' or '-'")
            body_map = _mapping(body, where)
            unknown = set(body_map) - {"topics"}
            if unknown:
                raise ConfigError(f"{where}.{sorted(map(str, unknown))[0]}", "unknown field")
            topics = body_map.get("topics")
            if not isinstance(topics, list) or not topics:
                raise ConfigError(f"{where}.topics", "a non-empty list of topics is required")
            for i, topic in enumerate(topics):
                t_where = f"{where}.topics[{i}]"
                if not isinstance(topic, str) or not is_valid_topic(topic):
                    raise ConfigError(t_where, f"{topic!r} is not a topic like 'job.echo'")
                if topic in by_topic:
                    raise ConfigError(
                        t_where, f"{topic!r} is already routed to pool {by_topic[topic]!r}"
                    )
                by_topic[topic] = pool
            pools[pool] = tuple(topics)
        return cls(pools, by_topic)

    def pool_for(self, topic: str) -> str | None:
        return self._by_topic.get(topic)

    def topics_for(self, pool: str) -> tuple[str, ...]:
        return self.pools.get(pool, ())


def _mapping(value: object, where: str) -> Mapping[object, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"expected a mapping, got {type(value).__name__}")
    return value


class RoutingSource(Protocol):
    """Where the routing in force comes from: a file that is reloaded when it changes, say."""

    @property
    def current(self) -> RoutingTable: ...
