"""The ``Concurrency`` port: the asyncio adapter and the core's one-after-another default hold
the same contract; only the asyncio one overlaps the two waits."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from cortex_adapters.system import AsyncioConcurrency
from cortex_core.concurrency import OneAfterAnother
from cortex_core.ports import Concurrency


@pytest.fixture(params=["asyncio", "one-after-another"])
def concurrency(request: pytest.FixtureRequest) -> Concurrency:
    return AsyncioConcurrency() if request.param == "asyncio" else OneAfterAnother()


async def value(v: object, log: list[str], name: str) -> object:
    await asyncio.sleep(0)
    log.append(name)
    return v


async def fail(exc: Exception, log: list[str], name: str) -> object:
    await asyncio.sleep(0)
    log.append(name)
    raise exc


async def test_both_results_in_argument_order(concurrency: Concurrency) -> None:
    log: list[str] = []
    assert await concurrency.both(value(1, log, "a"), value("two", log, "b")) == (1, "two")
    assert sorted(log) == ["a", "b"]


async def test_the_first_error_is_raised_once_both_are_done(concurrency: Concurrency) -> None:
    log: list[str] = []
    with pytest.raises(KeyError):
        await concurrency.both(fail(KeyError("first"), log, "a"), fail(ValueError(), log, "b"))
    assert sorted(log) == ["a", "b"]  # the second ran to its end too
    log.clear()
    with pytest.raises(ValueError, match="second"):
        await concurrency.both(value(1, log, "a"), fail(ValueError("second"), log, "b"))
    log.clear()
    with pytest.raises(ValueError, match="first"):
        await concurrency.both(fail(ValueError("first"), log, "a"), value(2, log, "b"))
    assert sorted(log) == ["a", "b"]


def waiting_on_each_other() -> tuple[Coroutine[Any, Any, str], Coroutine[Any, Any, str]]:
    """Two waits, each until the other has started: only waits that overlap end."""
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def a() -> str:
        a_started.set()
        await b_started.wait()
        return "a"

    async def b() -> str:
        b_started.set()
        await a_started.wait()
        return "b"

    return a(), b()


async def test_asyncio_waits_on_both_at_once() -> None:
    async with asyncio.timeout(2):
        assert await AsyncioConcurrency().both(*waiting_on_each_other()) == ("a", "b")


async def test_one_after_another_does_not() -> None:
    first, second = waiting_on_each_other()
    with pytest.raises(TimeoutError):  # the first waits for ever
        async with asyncio.timeout(0.2):
            await OneAfterAnother().both(first, second)
    second.close()  # never started


async def test_cancelled_while_waiting_leaves_nothing_running(concurrency: Concurrency) -> None:
    started: list[str] = []

    async def forever(name: str) -> None:
        started.append(name)
        await asyncio.Event().wait()

    second = forever("b")
    task = asyncio.create_task(concurrency.both(forever("a"), second))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # asyncio had both going and cancelled both; one after the other never started the
    # second, and closed it (no "never awaited" warning).
    assert started == (["a", "b"] if isinstance(concurrency, AsyncioConcurrency) else ["a"])
    assert second.cr_frame is None  # finished or closed: not left suspended
