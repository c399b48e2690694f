from __future__ import annotations

import pytest

from cortex_apps.settings import ENV_VARS, Settings, instance_name
from cortex_core.bus_protocol import is_valid_token
from cortex_core.errors import ConfigError
from cortex_core.scheduler import DispatchMode


def test_defaults_point_at_loopback() -> None:
    s = Settings.load(env={})
    assert (s.nats_url, s.redis_url) == ("nats://127.0.0.1:4222", "redis://127.0.0.1:6379/0")
    assert s.bus_durable is True


def test_environment_then_flags() -> None:
    env = {
        "NATS_URL": "nats://n:1",
        "REDIS_URL": "redis://r:2/1",
        "CORTEX_BUS_DURABLE": "false",
        "CORTEX_ACK_WAIT_S": "2.5",
        "CORTEX_MAX_PARALLEL_JOBS": "7",
        "CORTEX_DISPATCH_MODE": "worker",
    }
    s = Settings.load(env=env, overrides={"redis_url": "redis://flag:3/0", "nats_url": None})
    assert s.nats_url == "nats://n:1"  # a flag not given leaves the environment's value
    assert s.redis_url == "redis://flag:3/0"
    assert (s.bus_durable, s.ack_wait_s, s.max_parallel_jobs) == (False, 2.5, 7)
    assert s.dispatch_mode is DispatchMode.WORKER


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("CORTEX_BUS_DURABLE", "maybe"),
        ("CORTEX_ACK_WAIT_S", "soon"),
        ("CORTEX_DISPATCH_MODE", "random"),
    ],
)
def test_bad_values_name_the_variable(var: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.load(env={var: raw})


def test_every_setting_has_an_environment_variable() -> None:
    assert set(ENV_VARS) == set(Settings.__dataclass_fields__)


def test_instance_names_are_valid_subject_tokens() -> None:
    assert is_valid_token(instance_name("echo"))
