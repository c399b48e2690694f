"""The gateway's access configuration: API keys (environment or file) and the rate limit."""

from __future__ import annotations

import logging
from pathlib import Path

from cortex_core.access import Gatekeeper, RateLimit, parse_api_keys
from cortex_core.errors import ConfigError
from cortex_core.ports import Clock

log = logging.getLogger("cortex.app")

NO_AUTH_BANNER = (
    "!!! AUTH IS OFF (--no-auth / CORTEX_NO_AUTH): anyone who can reach this port can submit, "
    "read and cancel every job. Development only: configure CORTEX_API_KEYS or "
    "CORTEX_API_KEYS_FILE for anything else. !!!"
)


def build_gatekeeper(
    *,
    api_keys: str,
    api_keys_file: str | None,
    no_auth: bool,
    rate_limit_per_s: float,
    rate_limit_burst: int,
    clock: Clock,
) -> Gatekeeper:
    """Keys from ``api_keys`` and ``api_keys_file`` together. None at all is an error unless
    ``no_auth`` says so explicitly; keys *and* ``no_auth`` is an error too (which was meant?)."""
    keys = parse_api_keys(api_keys) if api_keys.strip() else {}
    if api_keys_file:
        try:
            text = Path(api_keys_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                "CORTEX_API_KEYS_FILE", f"cannot read {api_keys_file}: {exc}"
            ) from exc
        for key, tenant in parse_api_keys(text, source=api_keys_file).items():
            if keys.get(key, tenant) != tenant:
                raise ConfigError(api_keys_file, "an API key is given two different tenants")
            keys[key] = tenant
    if keys and no_auth:
        raise ConfigError("no_auth", "API keys are configured and --no-auth is given: pick one")
    if not keys and not no_auth:
        raise ConfigError(
            "CORTEX_API_KEYS",
            "no API keys configured: set CORTEX_API_KEYS=key=tenant,... or CORTEX_API_KEYS_FILE, "
            "or pass --no-auth (development only)",
        )
    limit = RateLimit(rate_limit_per_s, rate_limit_burst) if rate_limit_per_s > 0 else None
    if no_auth:
        log.warning("auth_disabled", extra={"component": "gateway", "detail": NO_AUTH_BANNER})
    return Gatekeeper(keys=keys or None, clock=clock, rate_limit=limit)
