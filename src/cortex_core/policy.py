"""The safety policy model: ordered rules, the first match wins.

Evaluation is pure; the ``SafetyChecker`` port decides where it runs (in process, or in the
Safety Kernel service). ``default_policy()`` denies topic ``sys.destroy`` and allows the rest.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from cortex_core.bus_protocol import TOPIC_SYS_DESTROY
from cortex_core.jobs import JobSpec
from cortex_core.messages import Priority


class Decision(enum.StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    REQUIRE_APPROVAL = "REQUIRE_APPROVAL"


@dataclass(frozen=True, slots=True, kw_only=True)
class SafetyRequest:
    """What the policy may look at: everything about a job except its payload."""

    job_id: str
    topic: str
    tenant_id: str = ""
    priority: Priority = Priority.INTERACTIVE
    adapter_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    prompt_bytes: int = 0

    @classmethod
    def for_job(cls, spec: JobSpec) -> SafetyRequest:
        return cls(
            job_id=spec.job_id,
            topic=spec.topic,
            tenant_id=spec.tenant_id,
            priority=spec.priority,
            adapter_id=spec.adapter_id,
            labels=spec.labels,
            prompt_bytes=spec.prompt_bytes,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SafetyDecision:
    decision: Decision
    reason: str
    rule_id: str

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Matches when every criterion given matches; criteria left as ``None`` match anything."""

    id: str
    decision: Decision
    reason: str
    topic: str | None = None
    """A glob: ``sys.*``, ``job.chat.?lm``."""
    tenants: frozenset[str] | None = None
    priorities: frozenset[Priority] | None = None
    adapter_ids: frozenset[str] | None = None
    labels: Mapping[str, str] | None = None
    """Every given label must be present with this value."""

    def matches(self, req: SafetyRequest) -> bool:
        return (
            (self.topic is None or fnmatchcase(req.topic, self.topic))
            and (self.tenants is None or req.tenant_id in self.tenants)
            and (self.priorities is None or req.priority in self.priorities)
            and (self.adapter_ids is None or req.adapter_id in self.adapter_ids)
            and (self.labels is None or all(req.labels.get(k) == v for k, v in self.labels.items()))
        )

    def decide(self) -> SafetyDecision:
        return SafetyDecision(decision=self.decision, reason=self.reason, rule_id=self.id)


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]
    default: SafetyDecision = SafetyDecision(
        decision=Decision.ALLOW, reason="no rule matched; default allow", rule_id="default"
    )

    def evaluate(self, req: SafetyRequest) -> SafetyDecision:
        for rule in self.rules:
            if rule.matches(req):
                return rule.decide()
        return self.default


def default_policy() -> Policy:
    return Policy(
        rules=(
            Rule(
                id="deny-sys-destroy",
                decision=Decision.DENY,
                reason="topic sys.destroy is forbidden",
                topic=TOPIC_SYS_DESTROY,
            ),
        )
    )
