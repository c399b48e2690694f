"""API keys → tenants, and the per-key token bucket, with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cortex_core.access import NO_AUTH_TENANT, Gatekeeper, RateLimit, parse_api_keys
from cortex_core.errors import ConfigError, RateLimited, Unauthenticated
from tests.fakes import FakeClock

KEYS = {"key-aaaaaaaa": "tenant-a", "key-bbbbbbbb": "tenant-b"}


def test_parse_api_keys_reads_pairs_commas_newlines_and_comments() -> None:
    text = "key-aaaaaaaa=tenant-a, key-bbbbbbbb = tenant-b\n# a comment\n\nkey-cccccccc=tenant-a"
    assert parse_api_keys(text) == {
        "key-aaaaaaaa": "tenant-a",
        "key-bbbbbbbb": "tenant-b",
        "key-cccccccc": "tenant-a",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("key-aaaaaaaa", "expected <api-key>=<tenant>"),
        ("=tenant-a", "expected <api-key>=<tenant>"),
        ("short=tenant-a", "at least 8 characters"),
        ("key-aaaaaaaa=bad tenant", "letters, digits"),
        ("key-aaaaaaaa=a,key-aaaaaaaa=b", "listed twice"),
    ],
)
def test_parse_api_keys_names_the_bad_entry(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        parse_api_keys(text)
    assert info.value.path.startswith("CORTEX_API_KEYS[")


def test_a_known_key_gives_its_tenant_and_others_are_refused() -> None:
    gate = Gatekeeper(keys=KEYS, clock=FakeClock())
    assert gate.auth_enabled
    assert gate.admit("key-aaaaaaaa") == "tenant-a"
    assert gate.admit("key-bbbbbbbb") == "tenant-b"
    with pytest.raises(Unauthenticated, match="missing API key"):
        gate.admit(None)
    with pytest.raises(Unauthenticated, match="missing API key"):
        gate.admit("")
    with pytest.raises(Unauthenticated, match="unknown API key"):
        gate.admit("key-aaaaaaaX")


def test_without_keys_auth_is_off_and_every_caller_is_one_tenant() -> None:
    gate = Gatekeeper(keys=None, clock=FakeClock())
    assert not gate.auth_enabled
    assert gate.admit(None) == gate.admit("anything") == NO_AUTH_TENANT


def test_an_empty_key_set_is_refused_rather_than_locking_everyone_out() -> None:
    with pytest.raises(ConfigError, match="no API keys"):
        Gatekeeper(keys={}, clock=FakeClock())


def test_the_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    gate = Gatekeeper(keys=KEYS, clock=clock, rate_limit=RateLimit(rate_per_s=2.0, burst=3))
    for _ in range(3):
        gate.admit("key-aaaaaaaa")
    with pytest.raises(RateLimited) as info:
        gate.admit("key-aaaaaaaa")
    assert info.value.retry_after_s == pytest.approx(0.5)
    assert gate.admit("key-bbbbbbbb") == "tenant-b"  # each key has its own bucket
    clock.advance(0.5)
    gate.admit("key-aaaaaaaa")  # one token back after 1/rate seconds
    with pytest.raises(RateLimited):
        gate.admit("key-aaaaaaaa")
    clock.advance(100)
    for _ in range(3):  # refilled, but never past the burst
        gate.admit("key-aaaaaaaa")
    with pytest.raises(RateLimited):
        gate.admit("key-aaaaaaaa")


@given(st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=60))
def test_admitted_requests_never_exceed_burst_plus_rate_times_elapsed(gaps: list[float]) -> None:
    clock = FakeClock()
    limit = RateLimit(rate_per_s=5.0, burst=4)
    gate = Gatekeeper(keys=KEYS, clock=clock, rate_limit=limit)
    admitted = 0
    elapsed = 0.0
    for gap in gaps:
        clock.advance(gap)
        elapsed += gap
        try:
            gate.admit("key-aaaaaaaa")
            admitted += 1
        except RateLimited as exc:
            retry_after = exc.retry_after_s
            assert 0 < retry_after <= 1 / limit.rate_per_s + 1e-9
        assert admitted <= limit.burst + limit.rate_per_s * elapsed + 1e-9


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_rate_limit_must_be_positive(rate: float, burst: int) -> None:
    with pytest.raises(ConfigError):
        RateLimit(rate_per_s=rate, burst=burst)
