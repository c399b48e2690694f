"""The REST gateway."""

from cortex_adapters.http.app import create_app

__all__ = ["create_app"]
