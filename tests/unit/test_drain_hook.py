"""The HTTP server drains its app as it begins to shut down (``cortex gateway``, ``cortex up``):
before uvicorn waits for the requests in flight, so that a long poll answers instead of
holding the exit up (tests/e2e/test_gateway_drain.py sends the real SIGTERM)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import httpx
import pytest
import uvicorn
from litestar import Litestar, get
from litestar.handlers import HTTPRouteHandler

from cortex_apps.cli import _Server
from cortex_apps.runtime import drain, with_drain


def _app(*handlers: HTTPRouteHandler) -> Litestar:
    return Litestar(list(handlers), logging_config=None)  # keep the test's logging as it is


def test_drain_calls_what_the_app_carries() -> None:
    calls: list[str] = []
    app = with_drain(_app(), lambda: calls.append("drained"))
    drain(app)
    assert calls == ["drained"]
    drain(_app())  # an app without one: nothing to do


def test_a_failing_drain_is_logged_and_the_shutdown_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="cortex.app"):
        drain(with_drain(_app(), broken))
    assert [r.getMessage() for r in caplog.records] == ["drain_failed"]


async def test_the_server_drains_before_it_waits_for_requests_in_flight() -> None:
    released = asyncio.Event()

    @get("/poll")
    async def poll() -> str:
        await released.wait()  # a long poll: only the drain ends it
        return "answered"

    app = with_drain(_app(poll), released.set)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_config=None)
    server = _Server(config, app, "test", no_auth=False)
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        request = asyncio.create_task(http.get("/poll"))
        await asyncio.sleep(0.2)
        assert not request.done()
        began = time.monotonic()
        server.should_exit = True  # what SIGTERM does (uvicorn's handle_exit)
        response = await asyncio.wait_for(request, 5)
        await asyncio.wait_for(serving, 5)
    assert (response.status_code, response.text) == (200, "answered")
    assert time.monotonic() - began < 2.0


def test_serve_http_hands_the_app_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from cortex_apps import cli

    seen: list[Litestar] = []

    def run(self: _Server) -> None:
        seen.append(self.app)

    monkeypatch.setattr(_Server, "run", run)
    app = _app()
    args = argparse.Namespace(host="127.0.0.1", port=0, log_level="info")
    cli._serve_http(app, args, "test", no_auth=False)
    assert seen == [app]
