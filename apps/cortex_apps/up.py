"""``cortex up``: all of Cortex in one process, on in-memory adapters."""

from __future__ import annotations

from collections.abc import Mapping

from litestar import Litestar

from cortex_adapters.http import Gateway, create_app
from cortex_adapters.telemetry import Tracing
from cortex_apps.containers import DEFAULTS, EmbeddedContainer
from cortex_apps.runtime import Periodic, lifespan, with_drain
from cortex_core.ports import Lifecycle


def build_container(overrides: Mapping[str, object] | None = None) -> EmbeddedContainer:
    container = EmbeddedContainer()
    container.config.from_dict({**DEFAULTS, **(overrides or {})})
    return container


def build_app(container: EmbeddedContainer, *, with_grpc: bool = True) -> Litestar:
    """The gateway app; its lifespan starts and stops everything else, in dependency order.
    It carries the front door's drain (``with_drain``), for the server to call as it begins to
    shut down.

    Configuration is resolved here, before anything listens, so a bad file stops the boot.
    """
    services = container.services
    services.routing()
    container.policy()  # the policy file is validated before anything listens
    gateway = Gateway(
        frontdoor=services.frontdoor(),
        gatekeeper=services.gatekeeper(),
        clock=container.clock(),
        registry=services.registry(),
        stale_after_s=container.config.stale_after_s(),
        metrics=container.metrics(),
    )
    tracing = Tracing(
        service="cortex-up",
        instance=container.config.process_name(),
        endpoint=container.config.otlp_endpoint(),
    )
    components: list[Lifecycle] = [] if not with_grpc else [services.cortex_api()]
    app = create_app(
        gateway,
        lifespan=[
            lifespan(
                lambda: [
                    tracing,
                    container.bus(),
                    container.memory(),
                    container.jobs(),
                    services.routing(),
                    services.registry(),
                    container.safety(),
                    services.scheduler(),
                    Periodic(
                        services.scheduler().sweep,
                        container.config.sweep_interval_s(),
                        "scheduler-sweep",
                    ),
                    services.echo_worker(),
                    services.watch(),
                    *components,
                ]
            )
        ],
    )
    return with_drain(app, services.frontdoor().drain)
