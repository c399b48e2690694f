"""``cortex up``: all of Cortex in one process, on in-memory adapters."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from litestar import Litestar

from cortex_adapters.http import create_app
from cortex_apps.containers import DEFAULTS, EmbeddedContainer

log = logging.getLogger("cortex.up")


def build_container(overrides: Mapping[str, object] | None = None) -> EmbeddedContainer:
    container = EmbeddedContainer()
    container.config.from_dict({**DEFAULTS, **(overrides or {})})
    return container


def build_app(container: EmbeddedContainer) -> Litestar:
    """The gateway app; its lifespan starts and stops everything else, in dependency order.

    Configuration is resolved here, before anything listens, so a bad file stops the boot.
    """
    container.routing()

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        components: list[Any] = [
            container.bus(),
            container.memory(),
            container.jobs(),
            container.registry(),
            container.safety(),
            container.scheduler(),
            container.echo_worker(),
        ]
        started: list[Any] = []
        try:
            for component in components:
                await component.start()
                started.append(component)
            log.info("cortex_up_ready", extra={"component": "up"})
            yield
        finally:
            # Workers stop taking jobs and finish theirs, the scheduler stops, then the bus drains.
            for component in reversed(started):
                await component.close()

    return create_app(container.frontdoor(), lifespan=[lifespan])
