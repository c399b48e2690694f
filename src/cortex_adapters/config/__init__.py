"""Configuration files: reading YAML and handing the parsed documents to the core's validators."""

from cortex_adapters.config.policy import DEFAULT_POLICY_FILE, ReloadingPolicy, load_policy
from cortex_adapters.config.routing import DEFAULT_ROUTING_FILE, ReloadingRouting, load_routing

__all__ = [
    "DEFAULT_POLICY_FILE",
    "DEFAULT_ROUTING_FILE",
    "ReloadingPolicy",
    "ReloadingRouting",
    "load_policy",
    "load_routing",
]
