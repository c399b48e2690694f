"""Who may call the front door, and how often: API keys → tenants, and a rate limit per key.

Pure: the adapters (REST and gRPC) pass the key they received and the core answers with the
tenant, or raises ``Unauthenticated`` / ``RateLimited``. Keys are held as SHA-256 digests, so a
lookup takes the same time whatever the key shares with a real one, and the process never
keeps the keys themselves after it starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cortex_core.bus_protocol import is_valid_token
from cortex_core.errors import ConfigError, RateLimited, Unauthenticated
from cortex_core.ports import Clock

NO_AUTH_TENANT = ""
"""The tenant of every job when auth is off (development mode)."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per API key: ``rate_per_s`` requests a second on average, bursts of up to
    ``burst`` at once."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0:
            raise ConfigError("rate_limit.rate_per_s", f"must be positive, not {self.rate_per_s}")
        if self.burst < 1:
            raise ConfigError("rate_limit.burst", f"must be at least 1, not {self.burst}")


def parse_api_keys(text: str, *, source: str = "CORTEX_API_KEYS") -> dict[str, str]:
    """``key1=tenant-a,key2=tenant-b`` (commas or newlines; ``#`` starts a comment line) into
    ``{key: tenant}``. ``ConfigError`` naming the entry for anything malformed."""
    keys: dict[str, str] = {}
    entries = [e.strip() for line in text.splitlines() for e in line.split(",")]
    for n, entry in enumerate(e for e in entries if e and not e.startswith("#")):
        key, sep, tenant = (part.strip() for part in entry.partition("="))
        where = f"{source}[{n}]"
        if not sep or not key or not tenant:
            raise ConfigError(where, "expected <api-key>=<tenant>")
        if len(key) < 8:
            raise ConfigError(where, "an API key must be at least 8 characters")
        if not is_valid_token(tenant):
            raise ConfigError(where, f"tenant {tenant!r}: letters, digits, '_' or '-' only")
        if key in keys:
            raise ConfigError(where, "this API key is listed twice")
        keys[key] = tenant
    return keys


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Gatekeeper:
    """Authenticates a request's API key and applies the key's rate limit.

    ``keys`` None turns auth off: every request is tenant ``NO_AUTH_TENANT`` (the no-auth
    development mode, which the app announces loudly). An empty mapping is refused: it would
    lock everyone out, which is never what a configuration meant.
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, str] | None,
        clock: Clock,
        rate_limit: RateLimit | None = None,
    ) -> None:
        if keys is not None and not keys:
            raise ConfigError("api_keys", "no API keys given; leave auth off explicitly instead")
        self._tenants = None if keys is None else {_digest(k): t for k, t in keys.items()}
        self._clock = clock
        self._limit = rate_limit
        self._buckets: dict[bytes, tuple[float, float]] = {}
        """Per key digest: (tokens left, when they were counted)."""

    @property
    def auth_enabled(self) -> bool:
        return self._tenants is not None

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(self._tenants.values()) if self._tenants is not None else frozenset()

    def admit(self, api_key: str | None) -> str:
        """The tenant of ``api_key``, after charging one request to it."""
        if self._tenants is None:
            digest = b""
            tenant = NO_AUTH_TENANT
        else:
            if not api_key:
                raise Unauthenticated("missing API key: send it in the X-API-Key header")
            digest = _digest(api_key)
            found = self._tenants.get(digest)
            if found is None:
                raise Unauthenticated("unknown API key")
            tenant = found
        if self._limit is not None:
            self._charge(digest, self._limit)
        return tenant

    def _charge(self, digest: bytes, limit: RateLimit) -> None:
        now = self._clock.now()
        tokens, at = self._buckets.get(digest, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + max(now - at, 0.0) * limit.rate_per_s)
        if tokens < 1.0:
            self._buckets[digest] = (tokens, now)
            raise RateLimited((1.0 - tokens) / limit.rate_per_s)
        self._buckets[digest] = (tokens - 1.0, now)
