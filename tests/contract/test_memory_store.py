from __future__ import annotations

import pytest

from cortex_core.errors import PayloadTooLarge, PointerError
from cortex_core.ports import MemoryStore
from tests.contract.fixtures_stores import MAX_VALUE_BYTES, TTL_S
from tests.fakes import FakeClock


async def test_pointer_round_trip(memory_store: MemoryStore) -> None:
    ctx = await memory_store.put_context("j1", b'{"prompt":"hi"}')
    res = await memory_store.put_result("j1", b'{"echo":"hi"}')
    assert (ctx, res) == ("redis://ctx:j1", "redis://res:j1")
    assert await memory_store.get_context("j1") == b'{"prompt":"hi"}'
    assert await memory_store.get_result("j1") == b'{"echo":"hi"}'
    assert await memory_store.get_context("j2") is None
    assert await memory_store.get_result("j2") is None


async def test_values_expire_after_the_ttl(memory_store: MemoryStore, clock: FakeClock) -> None:
    await memory_store.put_context("j1", b"x")
    clock.advance(TTL_S - 1)
    assert await memory_store.get_context("j1") == b"x"
    clock.advance(2)
    assert await memory_store.get_context("j1") is None


async def test_size_limit_is_a_clear_error(memory_store: MemoryStore) -> None:
    await memory_store.put_context("ok", b"x" * MAX_VALUE_BYTES)
    with pytest.raises(PayloadTooLarge, match=f"limit is {MAX_VALUE_BYTES} bytes"):
        await memory_store.put_context("big", b"x" * (MAX_VALUE_BYTES + 1))
    assert await memory_store.get_context("big") is None


@pytest.mark.parametrize("job_id", ["", "a:b", "../x", "x y", "*", "a" * 129])
async def test_keys_cannot_be_crafted(memory_store: MemoryStore, job_id: str) -> None:
    with pytest.raises(PointerError):
        await memory_store.put_context(job_id, b"x")
