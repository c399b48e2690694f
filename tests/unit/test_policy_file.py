"""The policy file: loading it, validating it, following it as it changes, and the in-process
checker that evaluates it."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from cortex_adapters.config import DEFAULT_POLICY_FILE, ReloadingPolicy, load_policy
from cortex_adapters.memory import InMemoryMetrics, InProcessSafetyChecker
from cortex_core.errors import ConfigError
from cortex_core.policy import Decision, Policy, Rule, SafetyRequest, default_policy

DENY_DESTROY = """\
policy:
  rules:
    - id: deny-sys-destroy
      decision: DENY
      reason: "topic sys.destroy is forbidden"
      topic: "sys.destroy"
"""

DENY_ECHO_TOO = """\
policy:
  rules:
    - id: deny-sys-destroy
      decision: DENY
      reason: "topic sys.destroy is forbidden"
      topic: "sys.destroy"
    - id: deny-echo
      decision: DENY
      reason: "echo is switched off"
      topic: "job.echo"
"""

BROKEN = """\
policy:
  rules:
    - id: deny-big
      decision: DENY
      reason: "too big"
      max_prompt_bytes: -5
"""


def req(topic: str, **kw: object) -> SafetyRequest:
    return SafetyRequest(job_id="j1", topic=topic, **kw)  # type: ignore[arg-type]


def write(path: Path, text: str) -> None:
    """Write, then move the mtime on: a same-size rewrite within one timestamp tick is what the
    content hash catches, but the tests should not depend on filesystem timestamp resolution."""
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def rewrite_keeping_stat(path: Path, text: str) -> None:
    """Same size, same mtime, same inode: what stat shows on a coarse-timestamp filesystem when a
    file is rewritten within one tick."""
    before = path.stat()
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    write(path, DENY_DESTROY)
    return path


# -- load_policy -----------------------------------------------------------------------------


def test_the_shipped_file_is_the_default_policy() -> None:
    assert DEFAULT_POLICY_FILE.name == "policy.yaml"
    assert load_policy() == default_policy()
    assert load_policy(DEFAULT_POLICY_FILE) == default_policy()


def test_a_file_loads_into_its_policy(policy_file: Path) -> None:
    write(policy_file, DENY_ECHO_TOO)
    policy = load_policy(str(policy_file))
    assert [r.id for r in policy.rules] == ["deny-sys-destroy", "deny-echo"]
    assert policy.evaluate(req("job.echo")).rule_id == "deny-echo"


def test_errors_name_the_file_the_rule_and_the_field(policy_file: Path) -> None:
    write(policy_file, BROKEN)
    with pytest.raises(ConfigError) as err:
        load_policy(policy_file)
    assert err.value.path == f"{policy_file}: policy.rules[0] (deny-big).max_prompt_bytes"
    assert err.value.problem == "must be a non-negative integer"
    assert str(err.value).startswith(str(policy_file))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("policy: [unclosed\n", "not valid YAML"),
        ("policy:\n  rules: []\n  rules: [{id: x}]\n", "found duplicate key 'rules'"),
        (
            "policy:\n  rules:\n    - {id: a, decision: ALLOW, decision: DENY, reason: r}\n",
            "found duplicate key 'decision'",
        ),
        ("policy:\n  rules: []\n", None),
        ("", "expected a mapping, got NoneType"),
    ],
)
def test_yaml_problems_are_config_errors(policy_file: Path, text: str, problem: str | None) -> None:
    write(policy_file, text)
    if problem is None:
        assert load_policy(policy_file).rules == ()
        return
    with pytest.raises(ConfigError, match=problem) as err:
        load_policy(policy_file)
    assert err.value.path.startswith(str(policy_file))


def test_merge_keys_are_not_duplicates(policy_file: Path) -> None:
    write(
        policy_file,
        "base: &base {decision: DENY, reason: shared}\n"
        "policy:\n  rules:\n    - {<<: *base, id: a, topic: 'sys.*', reason: own}\n"
        "extra: 1\n",
    )
    with pytest.raises(ConfigError, match="unknown field") as err:
        load_policy(policy_file)  # YAML merged fine; the policy rejects the extra top-level keys
    assert err.value.path == f"{policy_file}: base"


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path)  # a directory


# -- ReloadingPolicy -------------------------------------------------------------------------


def test_a_broken_file_fails_at_construction(policy_file: Path, tmp_path: Path) -> None:
    write(policy_file, BROKEN)
    with pytest.raises(ConfigError, match=r"policy\.rules\[0\] \(deny-big\)\.max_prompt_bytes"):
        ReloadingPolicy(policy_file)
    with pytest.raises(ConfigError, match="cannot read"):
        ReloadingPolicy(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="interval_s"):
        ReloadingPolicy(policy_file, interval_s=0)


def test_no_path_means_the_shipped_file() -> None:
    reloading = ReloadingPolicy()
    assert reloading.path == DEFAULT_POLICY_FILE
    assert reloading.current == default_policy()
    assert reloading.version == 1


async def test_an_edit_is_applied_on_reload(policy_file: Path) -> None:
    reloading = ReloadingPolicy(policy_file)
    first_loaded_at = reloading.loaded_at
    assert reloading.current.evaluate(req("job.echo")).allowed
    assert await reloading.reload() is False  # nothing changed
    assert reloading.version == 1

    write(policy_file, DENY_ECHO_TOO)
    assert await reloading.reload() is True
    assert reloading.version == 2
    assert reloading.loaded_at >= first_loaded_at
    assert reloading.current.evaluate(req("job.echo")).rule_id == "deny-echo"
    assert await reloading.reload() is False


async def test_touching_the_file_without_changing_it_is_not_a_reload(policy_file: Path) -> None:
    reloading = ReloadingPolicy(policy_file)
    write(policy_file, DENY_DESTROY)
    assert await reloading.reload() is False
    assert reloading.version == 1


async def test_a_broken_edit_keeps_the_last_good_policy_until_fixed(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cortex.safety")
    reloading = ReloadingPolicy(policy_file)
    good = reloading.current

    write(policy_file, BROKEN)
    assert await reloading.reload() is False
    assert reloading.current is good
    assert reloading.version == 1
    assert reloading.current.evaluate(req("sys.destroy")).decision is Decision.DENY
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == "policy_reload_rejected"
    assert warning.component == "safety"  # type: ignore[attr-defined]
    assert warning.path == str(policy_file)  # type: ignore[attr-defined]
    assert "(deny-big).max_prompt_bytes: must be a non-negative integer" in warning.error  # type: ignore[attr-defined]

    caplog.clear()
    assert await reloading.reload() is False  # the same broken file: not reported again
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]

    write(policy_file, DENY_ECHO_TOO)
    assert await reloading.reload() is True
    assert reloading.version == 2
    assert reloading.current.evaluate(req("job.echo")).rule_id == "deny-echo"
    [info] = [r for r in caplog.records if r.getMessage() == "policy_reloaded"]
    assert info.rules == 2  # type: ignore[attr-defined]
    assert info.version == 2  # type: ignore[attr-defined]


async def test_a_deleted_file_keeps_the_policy_and_is_picked_up_when_back(
    policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reloading = ReloadingPolicy(policy_file)
    os.remove(policy_file)
    assert await reloading.reload() is False
    assert reloading.current == default_policy()
    assert "cannot read" in caplog.records[-1].error  # type: ignore[attr-defined]
    write(policy_file, DENY_ECHO_TOO)
    assert await reloading.reload() is True


async def test_a_file_replaced_by_rename_is_followed(policy_file: Path, tmp_path: Path) -> None:
    reloading = ReloadingPolicy(policy_file)
    staged = tmp_path / "policy.yaml.new"
    write(staged, DENY_ECHO_TOO)
    staged.replace(policy_file)
    assert await reloading.reload() is True
    assert reloading.current.evaluate(req("job.echo")).rule_id == "deny-echo"


async def wait_for_version(
    reloading: ReloadingPolicy, version: int, timeout_s: float = 3.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while reloading.version < version:
        assert asyncio.get_running_loop().time() < deadline, f"still version {reloading.version}"
        await asyncio.sleep(0.01)


async def test_the_background_task_picks_up_changes(policy_file: Path) -> None:
    reloading = ReloadingPolicy(policy_file, interval_s=0.05)
    await reloading.start()
    await reloading.start()  # idempotent
    try:
        write(policy_file, DENY_ECHO_TOO)
        await wait_for_version(reloading, 2)
        assert reloading.current.evaluate(req("job.echo")).rule_id == "deny-echo"
        write(policy_file, BROKEN)
        await asyncio.sleep(0.2)
        assert reloading.version == 2
        write(policy_file, DENY_DESTROY)
        await wait_for_version(reloading, 3)
        assert reloading.current == default_policy()
    finally:
        await reloading.close()


async def test_a_rewrite_that_stat_cannot_see_is_caught_by_the_hash(policy_file: Path) -> None:
    reloading = ReloadingPolicy(policy_file, interval_s=0.05)
    rewrite_keeping_stat(policy_file, DENY_DESTROY.replace("forbidden", "FORBIDDEN"))
    await reloading.start()
    try:
        await wait_for_version(reloading, 2)
        assert reloading.current.evaluate(req("sys.destroy")).reason.endswith("FORBIDDEN")
    finally:
        await reloading.close()


async def test_close_stops_the_task(policy_file: Path) -> None:
    reloading = ReloadingPolicy(policy_file, interval_s=0.05)
    await reloading.start()
    tasks = {t for t in asyncio.all_tasks() if t.get_name().startswith("policy:")}
    assert len(tasks) == 1
    await reloading.close()
    assert all(t.done() for t in tasks)
    await reloading.close()  # idempotent

    write(policy_file, DENY_ECHO_TOO)
    await asyncio.sleep(0.2)
    assert reloading.version == 1  # nobody is polling
    assert await reloading.reload() is True  # an explicit check still works


# -- InProcessSafetyChecker ------------------------------------------------------------------


async def test_the_checker_with_no_arguments_uses_the_default_policy() -> None:
    checker = InProcessSafetyChecker()
    await checker.start()
    assert (await checker.check(req("sys.destroy"))).rule_id == "deny-sys-destroy"
    assert (await checker.check(req("job.echo"))).allowed
    await checker.close()


async def test_the_checker_logs_and_counts_decisions_by_rule(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cortex.safety")
    metrics = InMemoryMetrics()
    checker = InProcessSafetyChecker(default_policy(), metrics=metrics)
    for topic in ["sys.destroy", "job.echo", "job.echo"]:
        await checker.check(req(topic))
    assert metrics.value("safety_decisions", rule_id="deny-sys-destroy", decision="DENY") == 1
    assert metrics.value("safety_decisions", rule_id="default", decision="ALLOW") == 2
    logged = [
        (r.job_id, r.topic, r.rule_id, r.decision)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "safety_decision"
    ]
    assert logged[0] == ("j1", "sys.destroy", "deny-sys-destroy", "DENY")
    assert len(logged) == 3


async def test_the_checker_follows_a_reloading_policy(policy_file: Path) -> None:
    metrics = InMemoryMetrics()
    reloading = ReloadingPolicy(policy_file, interval_s=0.05)
    checker = InProcessSafetyChecker(reloading, metrics=metrics)
    await checker.start()
    try:
        assert (await checker.check(req("job.echo"))).allowed
        write(policy_file, DENY_ECHO_TOO)
        await wait_for_version(reloading, 2)  # started by the checker
        denied = await checker.check(req("job.echo"))
        assert denied.decision is Decision.DENY
        assert denied.rule_id == "deny-echo"
        assert checker.policy is reloading.current
    finally:
        await checker.close()
    assert metrics.value("safety_decisions", rule_id="default", decision="ALLOW") == 1
    assert metrics.value("safety_decisions", rule_id="deny-echo", decision="DENY") == 1


async def test_the_checker_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    metrics = InMemoryMetrics()
    policy = Policy((Rule(id="prod", decision=Decision.ALLOW, reason="r", labels={"env": "p"}),))
    checker = InProcessSafetyChecker(policy, metrics=metrics)
    bad = SafetyRequest(job_id="j1", topic="job.echo", labels=None)  # type: ignore[arg-type]
    decision = await checker.check(bad)
    assert decision.decision is Decision.DENY
    assert decision.rule_id == "error"
    assert metrics.value("safety_decisions", rule_id="error", decision="DENY") == 1
    assert any(r.getMessage() == "safety_check_failed" for r in caplog.records)
