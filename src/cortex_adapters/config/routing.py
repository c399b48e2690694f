"""Read a routing file (YAML) into the core's ``RoutingTable``."""

from __future__ import annotations

from pathlib import Path

import yaml

from cortex_core.errors import ConfigError
from cortex_core.routing import RoutingTable

DEFAULT_ROUTING_FILE = Path(__file__).with_name("routing.yaml")


def load_routing(path: str | Path | None = None) -> RoutingTable:
    """Load and validate ``path`` (the shipped default when None). Errors name file and field."""
    file = Path(path) if path is not None else DEFAULT_ROUTING_FILE
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(file), f"cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), f"not valid YAML: {exc}") from exc
    try:
        return RoutingTable.from_document(doc)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc.path}", exc.problem) from exc
