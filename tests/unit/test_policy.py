from __future__ import annotations

from cortex_core.messages import Priority
from cortex_core.policy import Decision, Policy, Rule, SafetyRequest, default_policy


def req(topic: str = "job.echo", **kw: object) -> SafetyRequest:
    return SafetyRequest(job_id="j1", topic=topic, **kw)  # type: ignore[arg-type]


def test_default_policy_denies_sys_destroy_and_allows_the_rest() -> None:
    policy = default_policy()
    denied = policy.evaluate(req("sys.destroy"))
    assert denied.decision is Decision.DENY
    assert denied.reason
    assert denied.rule_id == "deny-sys-destroy"
    allowed = policy.evaluate(req("job.echo"))
    assert allowed.allowed
    assert allowed.rule_id == "default"


def test_first_matching_rule_wins() -> None:
    policy = Policy(
        rules=(
            Rule(id="allow-vip", decision=Decision.ALLOW, reason="vip", tenants=frozenset({"vip"})),
            Rule(id="deny-chat", decision=Decision.DENY, reason="no chat", topic="job.chat.*"),
        )
    )
    assert policy.evaluate(req("job.chat.llm", tenant_id="vip")).rule_id == "allow-vip"
    assert policy.evaluate(req("job.chat.llm", tenant_id="other")).rule_id == "deny-chat"
    assert policy.evaluate(req("job.echo", tenant_id="other")).rule_id == "default"


def test_every_given_criterion_must_match() -> None:
    rule = Rule(
        id="r",
        decision=Decision.DENY,
        reason="batch gpu jobs of tenant a",
        topic="job.*",
        tenants=frozenset({"a"}),
        priorities=frozenset({Priority.BATCH}),
        adapter_ids=frozenset({"gpu"}),
        labels={"env": "prod"},
    )
    full = {
        "tenant_id": "a",
        "priority": Priority.BATCH,
        "adapter_id": "gpu",
        "labels": {"env": "prod", "x": "y"},
    }
    assert rule.matches(req("job.echo", **full))
    for key, wrong in [
        ("tenant_id", "b"),
        ("priority", Priority.INTERACTIVE),
        ("adapter_id", "cpu"),
        ("labels", {"env": "dev"}),
    ]:
        assert not rule.matches(req("job.echo", **{**full, key: wrong}))
    assert not rule.matches(req("sys.destroy", **full))
