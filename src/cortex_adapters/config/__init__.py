"""Configuration files: reading YAML and handing the parsed documents to the core's validators."""

from cortex_adapters.config.routing import DEFAULT_ROUTING_FILE, load_routing

__all__ = ["DEFAULT_ROUTING_FILE", "load_routing"]
