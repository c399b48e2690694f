"""The REST gateway."""

from cortex_adapters.http.app import Gateway, Probe, create_app

__all__ = ["Gateway", "Probe", "create_app"]
