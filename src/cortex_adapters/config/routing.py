"""Read a routing file (YAML) into the core's ``RoutingTable``, and follow it as it changes."""

from __future__ import annotations

import logging
from pathlib import Path

from cortex_adapters.config._files import ReloadingFile, parse_yaml, read_file
from cortex_core.routing import RoutingTable

DEFAULT_ROUTING_FILE = Path(__file__).with_name("routing.yaml")

log = logging.getLogger("cortex.routing")


def _parse(data: bytes, file: Path) -> RoutingTable:
    return parse_yaml(data, file, RoutingTable.from_document)


def load_routing(path: str | Path | None = None) -> RoutingTable:
    """Load and validate ``path`` (the shipped default when None). Errors name file and field."""
    file = Path(path) if path is not None else DEFAULT_ROUTING_FILE
    return _parse(read_file(file), file)


class ReloadingRouting(ReloadingFile[RoutingTable]):
    """The routing in a file (the shipped one when None), reloaded when the file changes: a
    scheduler routes each new job with the table in force; a broken edit changes nothing."""

    def __init__(self, path: str | Path | None = None, *, interval_s: float = 1.0) -> None:
        super().__init__(
            Path(path) if path is not None else DEFAULT_ROUTING_FILE,
            parse=_parse,
            interval_s=interval_s,
            kind="routing",
            logger=log,
            component="scheduler",
            describe=lambda table: {"pools": len(table.pools)},
        )
