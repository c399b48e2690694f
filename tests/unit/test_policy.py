from __future__ import annotations

import copy
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from cortex_core.errors import ConfigError
from cortex_core.messages import Priority
from cortex_core.policy import (
    Decision,
    Policy,
    PolicyExplanation,
    Rule,
    RuleEvaluation,
    SafetyDecision,
    SafetyRequest,
    default_policy,
)


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


FULL_RULE = Rule(
    id="r",
    decision=Decision.DENY,
    reason="batch gpu jobs of tenant a with mid-sized prompts",
    topic="job.*",
    tenants=frozenset({"a"}),
    priorities=frozenset({Priority.BATCH}),
    adapter_ids=frozenset({"gpu"}),
    labels={"env": "prod"},
    min_prompt_bytes=100,
    max_prompt_bytes=1000,
)
FULL_REQUEST: dict[str, Any] = {
    "tenant_id": "a",
    "priority": Priority.BATCH,
    "adapter_id": "gpu",
    "labels": {"env": "prod", "x": "y"},
    "prompt_bytes": 500,
}


def test_a_request_meeting_every_criterion_matches() -> None:
    assert FULL_RULE.matches(req("job.echo", **FULL_REQUEST))
    assert Policy((FULL_RULE,)).evaluate(req("job.echo", **FULL_REQUEST)).rule_id == "r"


@pytest.mark.parametrize(
    ("topic", "change", "why"),
    [
        ("sys.destroy", {}, "topic 'sys.destroy' does not match 'job.*'"),
        ("job.echo", {"tenant_id": "b"}, "tenant 'b' is not one of ['a']"),
        ("job.echo", {"priority": Priority.INTERACTIVE}, "priority 'interactive' is not one of"),
        ("job.echo", {"adapter_id": "cpu"}, "adapter_id 'cpu' is not one of ['gpu']"),
        ("job.echo", {"labels": {"env": "dev"}}, "label 'env' is 'dev', not 'prod'"),
        ("job.echo", {"labels": {}}, "label 'env' is missing (wanted 'prod')"),
        ("job.echo", {"prompt_bytes": 99}, "prompt_bytes 99 is below min_prompt_bytes 100"),
        ("job.echo", {"prompt_bytes": 1001}, "prompt_bytes 1001 is above max_prompt_bytes 1000"),
    ],
)
def test_each_criterion_alone_can_fail_the_match(
    topic: str, change: dict[str, Any], why: str
) -> None:
    request = req(topic, **{**FULL_REQUEST, **change})
    assert not FULL_RULE.matches(request)
    assert Policy((FULL_RULE,)).evaluate(request).rule_id == "default"
    evaluation = FULL_RULE.explain(request)
    assert not evaluation.matched
    assert evaluation.why.startswith(why)


@pytest.mark.parametrize(
    ("size", "matches"), [(99, False), (100, True), (1000, True), (1001, False)]
)
def test_prompt_size_bounds_are_inclusive(size: int, matches: bool) -> None:
    assert FULL_RULE.matches(req("job.echo", **{**FULL_REQUEST, "prompt_bytes": size})) is matches


def test_one_sided_prompt_bounds() -> None:
    big = Rule(id="big", decision=Decision.DENY, reason="big", min_prompt_bytes=1 << 20)
    small = Rule(id="small", decision=Decision.ALLOW, reason="small", max_prompt_bytes=0)
    assert big.matches(req(prompt_bytes=1 << 20))
    assert not big.matches(req(prompt_bytes=(1 << 20) - 1))
    assert small.matches(req(prompt_bytes=0))
    assert not small.matches(req(prompt_bytes=1))


def test_globs_are_case_sensitive_and_literal_topics_match_exactly() -> None:
    glob = Rule(id="g", decision=Decision.DENY, reason="r", topic="job.chat.?lm")
    assert glob.matches(req("job.chat.llm"))
    assert not glob.matches(req("job.chat.LLM"))
    assert not glob.matches(req("job.chat.xllm"))
    literal = Rule(id="l", decision=Decision.DENY, reason="r", topic="sys.destroy")
    assert literal.matches(req("sys.destroy"))
    assert not literal.matches(req("sys.destroyed"))
    brackets = Rule(id="b", decision=Decision.DENY, reason="r", topic="job.[ab]*")
    assert brackets.matches(req("job.alpha"))
    assert not brackets.matches(req("job.gamma"))


def test_a_rule_with_no_criteria_matches_everything() -> None:
    rule = Rule(id="all", decision=Decision.REQUIRE_APPROVAL, reason="ask")
    assert rule.matches(req("anything", prompt_bytes=10**9))
    assert rule.explain(req()).why == "matched: the rule has no criteria"


def test_require_approval_is_a_decision_with_its_reason_and_rule() -> None:
    policy = Policy(
        (
            Rule(
                id="ask-big",
                decision=Decision.REQUIRE_APPROVAL,
                reason="prompts over 1 KiB need approval",
                min_prompt_bytes=1025,
            ),
        )
    )
    decision = policy.evaluate(req(prompt_bytes=2048))
    assert decision == SafetyDecision(
        decision=Decision.REQUIRE_APPROVAL,
        reason="prompts over 1 KiB need approval",
        rule_id="ask-big",
    )
    assert not decision.allowed
    assert policy.evaluate(req(prompt_bytes=1024)).allowed


def test_explain_lists_each_rule_checked_up_to_the_match() -> None:
    policy = Policy(
        (
            Rule(id="deny-sys", decision=Decision.DENY, reason="no sys", topic="sys.*"),
            Rule(id="vip", decision=Decision.ALLOW, reason="vip", tenants=frozenset({"vip"})),
            Rule(id="destroy", decision=Decision.DENY, reason="no destroy", topic="sys.destroy"),
            Rule(id="never-reached", decision=Decision.DENY, reason="x"),
        )
    )
    explanation = policy.explain(req("job.echo", tenant_id="vip", priority=Priority.BATCH))
    assert explanation == PolicyExplanation(
        decision=SafetyDecision(decision=Decision.ALLOW, reason="vip", rule_id="vip"),
        evaluations=(
            RuleEvaluation("deny-sys", False, "topic 'job.echo' does not match 'sys.*'"),
            RuleEvaluation("vip", True, "matched: tenant 'vip' is one of ['vip']"),
        ),
    )
    destroy = policy.explain(req("sys.destroy"))
    assert destroy.decision.rule_id == "deny-sys"
    assert destroy.evaluations == (
        RuleEvaluation("deny-sys", True, "matched: topic 'sys.destroy' matches 'sys.*'"),
    )


def test_explain_with_no_match_gives_the_default_and_every_reason() -> None:
    policy = Policy(
        (
            Rule(id="destroy", decision=Decision.DENY, reason="no", topic="sys.destroy"),
            Rule(
                id="big-batch",
                decision=Decision.DENY,
                reason="no",
                priorities=frozenset({Priority.BATCH}),
                max_prompt_bytes=10,
            ),
        ),
        default=SafetyDecision(decision=Decision.DENY, reason="closed", rule_id="default"),
    )
    explanation = policy.explain(req("job.echo", priority=Priority.BATCH, prompt_bytes=11))
    assert explanation.decision == policy.default
    assert [(e.rule_id, e.matched, e.why) for e in explanation.evaluations] == [
        ("destroy", False, "topic 'job.echo' does not match 'sys.destroy'"),
        ("big-batch", False, "prompt_bytes 11 is above max_prompt_bytes 10"),
    ]


def test_explain_of_a_full_match_names_every_criterion() -> None:
    why = FULL_RULE.explain(req("job.echo", **FULL_REQUEST)).why
    assert why == (
        "matched: topic 'job.echo' matches 'job.*', tenant 'a' is one of ['a'], "
        "priority 'batch' is one of ['batch'], adapter_id 'gpu' is one of ['gpu'], "
        "label 'env' is 'prod', prompt_bytes 500 >= min_prompt_bytes 100, "
        "prompt_bytes 500 <= max_prompt_bytes 1000"
    )


def test_rules_freeze_what_they_are_given() -> None:
    labels = {"env": "prod"}
    rule = Rule(
        id="r",
        decision=Decision.DENY,
        reason="r",
        tenants={"a"},  # type: ignore[arg-type]
        labels=labels,
    )
    labels["env"] = "dev"
    assert rule.tenants == frozenset({"a"})
    assert rule.labels == {"env": "prod"}
    assert rule.matches(req(tenant_id="a", labels={"env": "prod"}))
    assert not rule.matches(req(tenant_id="a", labels={"env": "dev"}))


# -- from_document ---------------------------------------------------------------------------

DOC: dict[str, Any] = {
    "policy": {
        "default": {"decision": "DENY", "reason": "closed by default"},
        "rules": [
            {"id": "deny-sys", "decision": "DENY", "reason": "no sys", "topic": "sys.*"},
            {
                "id": "ask-big",
                "decision": "REQUIRE_APPROVAL",
                "reason": "big prompts need a person",
                "tenants": ["acme", "globex"],
                "priorities": ["batch", "interactive"],
                "adapter_ids": ["gpu", ""],
                "labels": {"env": "prod"},
                "min_prompt_bytes": 1024,
                "max_prompt_bytes": 1024,
            },
            {"id": "allow-rest", "decision": "ALLOW", "reason": "fine"},
        ],
    }
}


def test_a_document_becomes_the_policy_it_describes() -> None:
    policy = Policy.from_document(DOC)
    assert policy == Policy(
        rules=(
            Rule(id="deny-sys", decision=Decision.DENY, reason="no sys", topic="sys.*"),
            Rule(
                id="ask-big",
                decision=Decision.REQUIRE_APPROVAL,
                reason="big prompts need a person",
                tenants=frozenset({"acme", "globex"}),
                priorities=frozenset({Priority.BATCH, Priority.INTERACTIVE}),
                adapter_ids=frozenset({"gpu", ""}),
                labels={"env": "prod"},
                min_prompt_bytes=1024,
                max_prompt_bytes=1024,
            ),
            Rule(id="allow-rest", decision=Decision.ALLOW, reason="fine"),
        ),
        default=SafetyDecision(
            decision=Decision.DENY, reason="closed by default", rule_id="default"
        ),
    )


def test_an_empty_rule_list_is_the_default_for_everything() -> None:
    policy = Policy.from_document({"policy": {"rules": []}})
    assert policy.rules == ()
    assert policy.evaluate(req("sys.destroy")) == Policy(()).default


def _with_rule(index: int, **changes: object) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    rule = doc["policy"]["rules"][index]
    for key, value in changes.items():
        if value is _DROP:
            rule.pop(key)
        else:
            rule[key] = value
    return doc


_DROP = object()


def _with_policy(**changes: object) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    for key, value in changes.items():
        if value is _DROP:
            doc["policy"].pop(key)
        else:
            doc["policy"][key] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "path", "problem"),
    [
        ([], "<document>", "expected a mapping"),
        ({}, "policy", "a 'policy' mapping is required"),
        ({"policy": None}, "policy", "expected a mapping, got NoneType"),
        ({"policy": {"rules": []}, "polcy": 1}, "polcy", "unknown field"),
        (_with_policy(rules=_DROP), "policy.rules", "a list of rules is required"),
        (_with_policy(rules={"a": 1}), "policy.rules", "a list of rules is required"),
        (_with_policy(extra=1), "policy.extra", "unknown field"),
        (_with_policy(default="ALLOW"), "policy.default", "expected a mapping"),
        (_with_policy(default={"decision": "MAYBE", "reason": "r"}), "policy.default.decision", ""),
        (_with_policy(default={"decision": "ALLOW"}), "policy.default.reason", "is required"),
        (
            _with_policy(default={"decision": "ALLOW", "reason": "r", "x": 1}),
            "policy.default.x",
            "",
        ),
        (_with_policy(rules=["deny"]), "policy.rules[0]", "expected a mapping, got str"),
        (_with_rule(1, id=_DROP), "policy.rules[1].id", "is required"),
        (_with_rule(1, id=""), "policy.rules[1].id", "must be a non-empty string"),
        (_with_rule(1, id=7), "policy.rules[1].id", "must be a non-empty string"),
        (_with_rule(1, id=" x"), "policy.rules[1].id", "leading or trailing spaces"),
        (_with_rule(1, id="default"), "policy.rules[1].id", "reserved for the default"),
        (_with_rule(2, id="deny-sys"), "policy.rules[2] (deny-sys).id", "already the id of "),
        (_with_rule(1, decision=_DROP), "policy.rules[1] (ask-big).decision", "is required"),
        (_with_rule(1, decision="allow"), "policy.rules[1] (ask-big).decision", "not a decision"),
        (_with_rule(1, decision=True), "policy.rules[1] (ask-big).decision", "not a decision"),
        (_with_rule(1, reason=_DROP), "policy.rules[1] (ask-big).reason", "is required"),
        (_with_rule(1, reason="  "), "policy.rules[1] (ask-big).reason", "non-empty string"),
        (_with_rule(1, topik="sys.*"), "policy.rules[1] (ask-big).topik", "unknown field"),
        (_with_rule(1, topic=["a"]), "policy.rules[1] (ask-big).topic", "non-empty string"),
        (_with_rule(1, tenants="acme"), "policy.rules[1] (ask-big).tenants", "non-empty list"),
        (_with_rule(1, tenants=[]), "policy.rules[1] (ask-big).tenants", "non-empty list"),
        (_with_rule(1, tenants=["a", 1]), "policy.rules[1] (ask-big).tenants[1]", "got int"),
        (_with_rule(1, priorities=["urgent"]), "policy.rules[1] (ask-big).priorities[0]", ""),
        (_with_rule(1, priorities="batch"), "policy.rules[1] (ask-big).priorities", "list"),
        (_with_rule(1, adapter_ids=[None]), "policy.rules[1] (ask-big).adapter_ids[0]", "got"),
        (_with_rule(1, labels=["env"]), "policy.rules[1] (ask-big).labels", "expected a mapping"),
        (_with_rule(1, labels={"env": 1}), "policy.rules[1] (ask-big).labels.env", "quote it"),
        (_with_rule(1, labels={1: "x"}), "policy.rules[1] (ask-big).labels", "label name 1"),
        (
            _with_rule(1, max_prompt_bytes=-1),
            "policy.rules[1] (ask-big).max_prompt_bytes",
            "must be a non-negative integer",
        ),
        (
            _with_rule(1, min_prompt_bytes="1k"),
            "policy.rules[1] (ask-big).min_prompt_bytes",
            "must be a non-negative integer",
        ),
        (
            _with_rule(1, min_prompt_bytes=1.5),
            "policy.rules[1] (ask-big).min_prompt_bytes",
            "must be a non-negative integer",
        ),
        (
            _with_rule(1, max_prompt_bytes=True),
            "policy.rules[1] (ask-big).max_prompt_bytes",
            "must be a non-negative integer",
        ),
        (
            _with_rule(1, min_prompt_bytes=2048),
            "policy.rules[1] (ask-big).min_prompt_bytes",
            "min_prompt_bytes 2048 is greater than max_prompt_bytes 1024",
        ),
    ],
)
def test_invalid_documents_name_the_rule_and_field(doc: object, path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        Policy.from_document(doc)
    assert err.value.path == path
    assert problem in err.value.problem


def test_the_problem_lists_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as err:
        Policy.from_document(_with_rule(1, decision="MAYBE"))
    assert err.value.problem == "'MAYBE' is not a decision (one of: ALLOW, DENY, REQUIRE_APPROVAL)"
    with pytest.raises(ConfigError) as err:
        Policy.from_document(_with_rule(1, priorities=["batch", "urgent"]))
    assert err.value.path == "policy.rules[1] (ask-big).priorities[1]"
    assert err.value.problem == "'urgent' is not a priority (one of: interactive, batch)"


# -- invariants --------------------------------------------------------------------------------

TOPICS = ["job.echo", "job.chat.llm", "sys.destroy", "job.x"]
GLOBS = [*TOPICS, "job.*", "*", "sys.*", "job.chat.?lm", "job.[ce]*"]
WORDS = ["a", "b", ""]


@st.composite
def rules(draw: st.DrawFn, index: int) -> Rule:
    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | strategy)

    low = maybe(st.integers(0, 100))
    high = maybe(st.integers(0, 100))
    if low is not None and high is not None and low > high:
        low, high = high, low
    return Rule(
        id=f"r{index}",
        decision=draw(st.sampled_from(Decision)),
        reason=f"reason {index}",
        topic=maybe(st.sampled_from(GLOBS)),
        tenants=maybe(st.frozensets(st.sampled_from(WORDS), min_size=1)),
        priorities=maybe(st.frozensets(st.sampled_from(Priority), min_size=1)),
        adapter_ids=maybe(st.frozensets(st.sampled_from(WORDS), min_size=1)),
        labels=maybe(st.dictionaries(st.sampled_from(["k", "m"]), st.sampled_from(WORDS))),
        min_prompt_bytes=low,
        max_prompt_bytes=high,
    )


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    n = draw(st.integers(0, 6))
    return Policy(tuple(draw(rules(i)) for i in range(n)))


requests = st.builds(
    SafetyRequest,
    job_id=st.just("j"),
    topic=st.sampled_from(TOPICS),
    tenant_id=st.sampled_from(WORDS),
    priority=st.sampled_from(Priority),
    adapter_id=st.sampled_from(WORDS),
    labels=st.dictionaries(st.sampled_from(["k", "m"]), st.sampled_from(WORDS)),
    prompt_bytes=st.integers(0, 120),
)


@given(policies(), st.lists(requests, min_size=1, max_size=5))
def test_evaluate_explain_and_a_plain_scan_agree(policy: Policy, reqs: list[SafetyRequest]) -> None:
    for request in reqs:  # several requests per policy: the per-topic cache is exercised
        decision = policy.evaluate(request)
        scan = next((r.decide() for r in policy.rules if r.matches(request)), policy.default)
        assert decision == scan
        explanation = policy.explain(request)
        assert explanation.decision == decision
        assert [e.rule_id for e in explanation.evaluations] == [
            r.id for r in policy.rules[: len(explanation.evaluations)]
        ]
        assert [e.matched for e in explanation.evaluations[:-1]] == [False] * (
            len(explanation.evaluations) - 1
        )
        for evaluation in explanation.evaluations:
            assert evaluation.why.startswith("matched: ") is evaluation.matched
