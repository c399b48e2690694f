"""``OneAfterAnother``: the ``Concurrency`` port's contract, one awaitable after the other.

The default of the core's services, for callers that give them no event loop's way of running
two things at once (tests, and anything embedding the core without one). The apps give them
``cortex_adapters.system.AsyncioConcurrency``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import TypeVar

_A = TypeVar("_A")
_B = TypeVar("_B")


class OneAfterAnother:
    async def both(self, first: Awaitable[_A], second: Awaitable[_B]) -> tuple[_A, _B]:
        try:
            a = await first
        except Exception:
            # The second still runs to its end, as it would have alongside the first; the first
            # error is the one raised.
            with contextlib.suppress(Exception):
                await second
            raise
        except BaseException:  # cancelled: the second is not started at all
            close = getattr(second, "close", None)
            if close is not None:  # a coroutine never awaited: say so quietly, by closing it
                close()
            raise
        return a, await second
