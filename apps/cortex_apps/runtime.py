"""Running components: start in order, stop in reverse, and stop gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from litestar import Litestar

from cortex_core.ports import Lifecycle

log = logging.getLogger("cortex.app")

_DRAIN = "cortex.drain"
"""Where an app keeps its drain callback (``with_drain``), in its ``state``."""


@contextlib.asynccontextmanager
async def running(components: Sequence[Lifecycle]) -> AsyncIterator[None]:
    """Start ``components`` in order; on exit close the started ones in reverse order.

    Order them so that what is closed first stops taking work first: workers and the scheduler
    after the bus and stores, so that they are closed (and drained) before the bus drains.
    """
    started: list[Lifecycle] = []
    try:
        for component in components:
            await component.start()
            started.append(component)
        yield
    finally:
        for component in reversed(started):
            try:
                await component.close()
            except Exception:
                log.exception("close_failed", extra={"component": type(component).__name__})


class Periodic:
    """Calls ``action`` every ``interval_s`` while started (the scheduler's sweep, say).

    A failing call is logged and the next one still comes; ``close()`` waits for a call in
    progress to finish.
    """

    def __init__(self, action: Callable[[], Awaitable[None]], interval_s: float, name: str) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._action = action
        self._interval_s = interval_s
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
                return
            try:
                await self._action()
            except Exception:
                log.exception("periodic_failed", extra={"component": self._name})

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None


def lifespan(
    components: Callable[[], Sequence[Lifecycle]],
) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """A Litestar lifespan that runs ``components()`` for as long as the app is up."""

    @contextlib.asynccontextmanager
    async def _lifespan(_: Litestar) -> AsyncIterator[None]:
        async with running(components()):
            log.info("ready", extra={"component": "app"})
            yield

    return _lifespan


def with_drain(app: Litestar, drain: Callable[[], object]) -> Litestar:
    """``app``, carrying ``drain``: what its HTTP server calls as it begins to shut down,
    before it waits for the requests in flight (``FrontDoor.drain``: long polls answer now
    instead of holding the shutdown up to their ``wait_s``)."""
    app.state[_DRAIN] = drain
    return app


def drain(app: Litestar) -> None:
    """Call the drain callback ``app`` carries (``with_drain``), if any. A failing one is
    logged: the shutdown goes on all the same."""
    callback = app.state.get(_DRAIN)
    if callback is None:
        return
    try:
        callback()
    except Exception:
        log.exception("drain_failed", extra={"component": "app"})


async def serve_until_signalled(
    components: Sequence[Lifecycle], ready: str | Callable[[], str]
) -> None:
    """Run ``components`` until SIGTERM or SIGINT, then shut them down gracefully.

    ``ready`` is printed once everything has started (a callable is asked then, so it can
    report, say, the port a server actually bound).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(components):
        print(ready() if callable(ready) else ready, flush=True)
        await stop.wait()
        log.info("stopping", extra={"component": "app"})
