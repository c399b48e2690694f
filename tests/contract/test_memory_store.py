from __future__ import annotations

import pytest

from cortex_core.errors import PayloadTooLarge, PointerError
from tests.contract.fixtures_stores import MAX_VALUE_BYTES, MemoryStoreUnderTest


async def test_pointer_round_trip(memory_store: MemoryStoreUnderTest) -> None:
    store = memory_store.store
    ctx = await store.put_context("j1", b'{"prompt":"hi"}')
    res = await store.put_result("j1", b'{"echo":"hi"}')
    assert (ctx, res) == ("redis://ctx:j1", "redis://res:j1")
    assert await store.get_context("j1") == b'{"prompt":"hi"}'
    assert await store.get_result("j1") == b'{"echo":"hi"}'
    assert await store.get_context("j2") is None
    assert await store.get_result("j2") is None


async def test_contexts_and_results_are_apart(memory_store: MemoryStoreUnderTest) -> None:
    store = memory_store.store
    await store.put_context("j1", b"context")
    assert await store.get_result("j1") is None
    await store.put_result("j1", b"result")
    assert (await store.get_context("j1"), await store.get_result("j1")) == (b"context", b"result")


async def test_a_write_replaces_the_value(memory_store: MemoryStoreUnderTest) -> None:
    store = memory_store.store
    await store.put_result("j1", b"first")
    await store.put_result("j1", b"second")
    assert await store.get_result("j1") == b"second"


async def test_values_are_bytes_exactly(memory_store: MemoryStoreUnderTest) -> None:
    store = memory_store.store
    data = bytes(range(256)) + "é\x00".encode()
    await store.put_context("j1", data)
    await store.put_result("j1", b"")
    assert await store.get_context("j1") == data
    assert await store.get_result("j1") == b""


async def test_values_expire_after_the_ttl(memory_store: MemoryStoreUnderTest) -> None:
    store = memory_store.store
    await store.put_context("j1", b"x")
    await store.put_result("j1", b"y")
    await memory_store.almost_expire()
    assert await store.get_context("j1") == b"x"
    assert await store.get_result("j1") == b"y"
    await memory_store.expire()
    assert await store.get_context("j1") is None
    assert await store.get_result("j1") is None


async def test_size_limit_is_a_clear_error(memory_store: MemoryStoreUnderTest) -> None:
    store = memory_store.store
    await store.put_context("ok", b"x" * MAX_VALUE_BYTES)
    with pytest.raises(PayloadTooLarge, match=f"limit is {MAX_VALUE_BYTES} bytes"):
        await store.put_context("big", b"x" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(PayloadTooLarge, match=f"result is {MAX_VALUE_BYTES + 1} bytes"):
        await store.put_result("big", b"x" * (MAX_VALUE_BYTES + 1))
    assert await store.get_context("big") is None
    assert await store.get_result("big") is None


@pytest.mark.parametrize("job_id", ["", "a:b", "../x", "x y", "*", "a" * 129])
async def test_keys_cannot_be_crafted(memory_store: MemoryStoreUnderTest, job_id: str) -> None:
    store = memory_store.store
    with pytest.raises(PointerError):
        await store.put_context(job_id, b"x")
    with pytest.raises(PointerError):
        await store.put_result(job_id, b"x")
    with pytest.raises(PointerError):
        await store.get_context(job_id)
