"""The safety policy model: ordered rules, the first match wins.

Evaluation is pure; the ``SafetyChecker`` port decides where it runs (in process, or in the
Safety Kernel service). ``default_policy()`` denies topic ``sys.destroy`` and allows the rest.

``Policy.from_document`` validates the parsed shape of a policy file (reading the file is an
adapter's job)::

    policy:
      default: {decision: ALLOW, reason: "no rule matched; default allow"}
      rules:
        - id: deny-sys-destroy
          decision: DENY            # ALLOW | DENY | REQUIRE_APPROVAL
          reason: "topic sys.destroy is forbidden"
          topic: "sys.destroy"      # a glob; every match field is optional
          tenants: [acme]
          priorities: [batch]       # interactive | batch
          adapter_ids: [gpu]
          labels: {env: prod}
          min_prompt_bytes: 0       # inclusive bounds on the job's prompt size
          max_prompt_bytes: 65536

``evaluate`` is on the per-job hot path, so everything that can be is prepared once, when a
``Rule`` or ``Policy`` is built: globs are compiled to regexes, and a policy remembers, per topic,
which rules can match it at all (a bounded cache), so a request is checked only against those.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import translate
from functools import lru_cache, partial
from operator import eq
from types import MappingProxyType

from cortex_core.bus_protocol import TOPIC_SYS_DESTROY
from cortex_core.errors import ConfigError
from cortex_core.jobs import JobSpec
from cortex_core.messages import JobRequest, Priority

DEFAULT_RULE_ID = "default"
"""The ``rule_id`` of the decision taken when no rule matches; no rule may use it."""

_TOPIC_CACHE_SIZE = 1024
"""Distinct topics a policy remembers candidate rules for (topics come from clients: bounded)."""

_GLOB_CHARS = frozenset("*?[")


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

    @classmethod
    def for_request(cls, request: JobRequest) -> SafetyRequest:
        """What a submit packet says of its job; the same as ``for_job`` of the spec it was
        made from (``JobSpec.to_request``)."""
        return cls(
            job_id=request.job_id,
            topic=request.topic,
            tenant_id=request.tenant_id,
            priority=request.priority,
            adapter_id=request.adapter_id,
            labels=request.labels,
            prompt_bytes=request.prompt_bytes,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SafetyDecision:
    decision: Decision
    reason: str
    rule_id: str

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


@dataclass(frozen=True, slots=True)
class RuleEvaluation:
    """One rule checked against one request, and why it did or did not match, in words."""

    rule_id: str
    matched: bool
    why: str


@dataclass(frozen=True, slots=True)
class PolicyExplanation:
    """The decision, and every rule checked on the way to it, in order (up to the match)."""

    decision: SafetyDecision
    evaluations: tuple[RuleEvaluation, ...]


def _topic_matcher(glob: str) -> Callable[[str], bool]:
    """``fnmatchcase(topic, glob)``, prepared once: string equality when there is no glob."""
    if _GLOB_CHARS.isdisjoint(glob):
        return partial(eq, glob)
    match = re.compile(translate(glob)).match
    return lambda topic: match(topic) is not None


def _always(_: str) -> bool:
    return True


def _listed(values: frozenset[str] | frozenset[Priority]) -> str:
    return "[" + ", ".join(repr(str(v)) for v in sorted(values)) + "]"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Matches when every criterion given matches; criteria left as ``None`` match anything."""

    id: str
    decision: Decision
    reason: str
    topic: str | None = None
    """A glob (``fnmatchcase``): ``sys.*``, ``job.chat.?lm``."""
    tenants: frozenset[str] | None = None
    priorities: frozenset[Priority] | None = None
    adapter_ids: frozenset[str] | None = None
    labels: Mapping[str, str] | None = None
    """Every given label must be present with this value."""
    min_prompt_bytes: int | None = None
    """Inclusive lower bound on ``SafetyRequest.prompt_bytes``."""
    max_prompt_bytes: int | None = None
    """Inclusive upper bound on ``SafetyRequest.prompt_bytes``."""

    _topic_matches: Callable[[str], bool] = field(init=False, repr=False, compare=False)
    _label_items: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _decided: SafetyDecision = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Sets and mappings given as any iterable/mapping are frozen here, so a rule is immutable
        # and two rules built from equal inputs compare equal.
        for name in ("tenants", "priorities", "adapter_ids"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset(value))
        if self.labels is not None:
            object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        matcher = _always if self.topic is None else _topic_matcher(self.topic)
        object.__setattr__(self, "_topic_matches", matcher)
        object.__setattr__(self, "_label_items", tuple((self.labels or {}).items()))
        decided = SafetyDecision(decision=self.decision, reason=self.reason, rule_id=self.id)
        object.__setattr__(self, "_decided", decided)

    def matches(self, req: SafetyRequest) -> bool:
        return self._topic_matches(req.topic) and self._matches_beyond_topic(req)

    def _matches_beyond_topic(self, req: SafetyRequest) -> bool:
        if self.tenants is not None and req.tenant_id not in self.tenants:
            return False
        if self.priorities is not None and req.priority not in self.priorities:
            return False
        if self.adapter_ids is not None and req.adapter_id not in self.adapter_ids:
            return False
        if self._label_items:
            labels = req.labels
            for key, value in self._label_items:
                if labels.get(key) != value:
                    return False
        if self.min_prompt_bytes is not None and req.prompt_bytes < self.min_prompt_bytes:
            return False
        return self.max_prompt_bytes is None or req.prompt_bytes <= self.max_prompt_bytes

    def decide(self) -> SafetyDecision:
        return self._decided

    def explain(self, req: SafetyRequest) -> RuleEvaluation:
        """Check ``req`` criterion by criterion; ``why`` names the first that fails, or all that
        matched. Agrees with ``matches`` (slower: for people, not for the hot path)."""
        met: list[str] = []

        def fail(why: str) -> RuleEvaluation:
            return RuleEvaluation(self.id, False, why)

        if self.topic is not None:
            if not self._topic_matches(req.topic):
                return fail(f"topic {req.topic!r} does not match {self.topic!r}")
            met.append(f"topic {req.topic!r} matches {self.topic!r}")
        for what, got, allowed in (
            ("tenant", req.tenant_id, self.tenants),
            ("priority", req.priority, self.priorities),
            ("adapter_id", req.adapter_id, self.adapter_ids),
        ):
            if allowed is None:
                continue
            if got not in allowed:
                return fail(f"{what} {str(got)!r} is not one of {_listed(allowed)}")
            met.append(f"{what} {str(got)!r} is one of {_listed(allowed)}")
        for key, value in self._label_items:
            got_label = req.labels.get(key)
            if got_label is None:
                return fail(f"label {key!r} is missing (wanted {value!r})")
            if got_label != value:
                return fail(f"label {key!r} is {got_label!r}, not {value!r}")
            met.append(f"label {key!r} is {value!r}")
        size = req.prompt_bytes
        if self.min_prompt_bytes is not None:
            if size < self.min_prompt_bytes:
                return fail(
                    f"prompt_bytes {size} is below min_prompt_bytes {self.min_prompt_bytes}"
                )
            met.append(f"prompt_bytes {size} >= min_prompt_bytes {self.min_prompt_bytes}")
        if self.max_prompt_bytes is not None:
            if size > self.max_prompt_bytes:
                return fail(
                    f"prompt_bytes {size} is above max_prompt_bytes {self.max_prompt_bytes}"
                )
            met.append(f"prompt_bytes {size} <= max_prompt_bytes {self.max_prompt_bytes}")
        if not met:
            return RuleEvaluation(self.id, True, "matched: the rule has no criteria")
        return RuleEvaluation(self.id, True, "matched: " + ", ".join(met))


_DEFAULT_DECISION = SafetyDecision(
    decision=Decision.ALLOW, reason="no rule matched; default allow", rule_id=DEFAULT_RULE_ID
)


def _candidates_by_topic(
    rules: tuple[Rule, ...],
) -> Callable[[str], tuple[Rule, ...]]:
    """topic → the rules whose topic criterion it meets, in order (memoized, bounded).

    Each distinct glob is tried once per topic, however many rules share it.
    """
    globs = {rule.topic: rule._topic_matches for rule in rules if rule.topic is not None}

    @lru_cache(maxsize=_TOPIC_CACHE_SIZE)
    def candidates(topic: str) -> tuple[Rule, ...]:
        met = {glob for glob, matches in globs.items() if matches(topic)}
        return tuple(rule for rule in rules if rule.topic is None or rule.topic in met)

    return candidates


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]
    default: SafetyDecision = _DEFAULT_DECISION

    _candidates: Callable[[str], tuple[Rule, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))  # a list given by mistake, frozen
        object.__setattr__(self, "_candidates", _candidates_by_topic(self.rules))

    def evaluate(self, req: SafetyRequest) -> SafetyDecision:
        """The decision of the first rule that matches ``req``; ``default`` when none does."""
        for rule in self._candidates(req.topic):
            if rule._matches_beyond_topic(req):
                return rule._decided
        return self.default

    def explain(self, req: SafetyRequest) -> PolicyExplanation:
        """``evaluate``, with the reason each rule up to the deciding one matched or not."""
        evaluations: list[RuleEvaluation] = []
        for rule in self.rules:
            evaluation = rule.explain(req)
            evaluations.append(evaluation)
            if evaluation.matched:
                return PolicyExplanation(rule.decide(), tuple(evaluations))
        return PolicyExplanation(self.default, tuple(evaluations))

    @classmethod
    def from_document(cls, doc: object) -> Policy:
        """Validate a parsed policy document; errors name the rule and field
        (``policy.rules[2] (deny-big).max_prompt_bytes``)."""
        top = _mapping(doc, "<document>")
        _no_unknown(top, {"policy"}, "")
        if "policy" not in top:
            raise ConfigError("policy", "a 'policy' mapping is required")
        body = _mapping(top["policy"], "policy")
        _no_unknown(body, {"rules", "default"}, "policy")
        default = _DEFAULT_DECISION
        if "default" in body:
            default = _default_decision(body["default"], "policy.default")
        rules_doc = body.get("rules")
        if not isinstance(rules_doc, list):
            raise ConfigError("policy.rules", "a list of rules is required (it may be empty)")
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for i, rule_doc in enumerate(rules_doc):
            rule = _rule(rule_doc, i)
            if rule.id in seen:
                raise ConfigError(
                    f"policy.rules[{i}] ({rule.id}).id",
                    f"{rule.id!r} is already the id of policy.rules[{seen[rule.id]}]",
                )
            seen[rule.id] = i
            rules.append(rule)
        return cls(tuple(rules), default)


def default_policy() -> Policy:
    """What the shipped ``policy.yaml`` says: deny ``sys.destroy``, allow the rest."""
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


# -- validation ------------------------------------------------------------------------------

_MATCH_FIELDS = frozenset(
    {
        "topic",
        "tenants",
        "priorities",
        "adapter_ids",
        "labels",
        "min_prompt_bytes",
        "max_prompt_bytes",
    }
)
_RULE_FIELDS = frozenset({"id", "decision", "reason"}) | _MATCH_FIELDS
_DECISIONS = ", ".join(d.value for d in Decision)
_PRIORITY_VALUES = frozenset(p.value for p in Priority)
_PRIORITIES = ", ".join(p.value for p in Priority)


def _mapping(value: object, where: str) -> Mapping[object, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _no_unknown(doc: Mapping[object, object], known: frozenset[str] | set[str], where: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in known)
    if unknown:
        path = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(path, f"unknown field (expected one of: {', '.join(sorted(known))})")


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(where, "must be a non-empty string")
    return value


def _decision(value: object, where: str) -> Decision:
    if not isinstance(value, str) or value not in Decision.__members__:
        raise ConfigError(where, f"{value!r} is not a decision (one of: {_DECISIONS})")
    return Decision(value)


def _default_decision(value: object, where: str) -> SafetyDecision:
    doc = _mapping(value, where)
    _no_unknown(doc, {"decision", "reason"}, where)
    for required in ("decision", "reason"):
        if required not in doc:
            raise ConfigError(f"{where}.{required}", "is required")
    return SafetyDecision(
        decision=_decision(doc["decision"], f"{where}.decision"),
        reason=_text(doc["reason"], f"{where}.reason"),
        rule_id=DEFAULT_RULE_ID,
    )


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ConfigError(where, "must be a non-empty list of strings")
    for j, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{where}[{j}]", f"expected a string, got {type(item).__name__}")
    return value


def _bytes_bound(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(where, "must be a non-negative integer")
    return value


def _rule(value: object, i: int) -> Rule:
    where = f"policy.rules[{i}]"
    doc = _mapping(value, where)
    if "id" not in doc:
        raise ConfigError(f"{where}.id", "is required")
    rule_id = _text(doc["id"], f"{where}.id")
    if rule_id != rule_id.strip():
        raise ConfigError(f"{where}.id", f"{rule_id!r} has leading or trailing spaces")
    if rule_id == DEFAULT_RULE_ID:
        raise ConfigError(f"{where}.id", f"{rule_id!r} is reserved for the default decision")
    where = f"{where} ({rule_id})"
    _no_unknown(doc, _RULE_FIELDS, where)
    for required in ("decision", "reason"):
        if required not in doc:
            raise ConfigError(f"{where}.{required}", "is required")
    decision = _decision(doc["decision"], f"{where}.decision")
    reason = _text(doc["reason"], f"{where}.reason")
    low = _optional_bound(doc, "min_prompt_bytes", where)
    high = _optional_bound(doc, "max_prompt_bytes", where)
    if low is not None and high is not None and low > high:
        raise ConfigError(
            f"{where}.min_prompt_bytes",
            f"min_prompt_bytes {low} is greater than max_prompt_bytes {high}",
        )
    return Rule(
        id=rule_id,
        decision=decision,
        reason=reason,
        topic=_text(doc["topic"], f"{where}.topic") if "topic" in doc else None,
        tenants=_optional_strings(doc, "tenants", where),
        priorities=_optional_priorities(doc, where),
        adapter_ids=_optional_strings(doc, "adapter_ids", where),
        labels=_optional_labels(doc, where),
        min_prompt_bytes=low,
        max_prompt_bytes=high,
    )


def _optional_priorities(doc: Mapping[object, object], where: str) -> frozenset[Priority] | None:
    if "priorities" not in doc:
        return None
    names = _strings(doc["priorities"], f"{where}.priorities")
    for j, name in enumerate(names):
        if name not in _PRIORITY_VALUES:
            raise ConfigError(
                f"{where}.priorities[{j}]", f"{name!r} is not a priority (one of: {_PRIORITIES})"
            )
    return frozenset(Priority(n) for n in names)


def _optional_labels(doc: Mapping[object, object], where: str) -> dict[str, str] | None:
    if "labels" not in doc:
        return None
    labels: dict[str, str] = {}
    for key, label in _mapping(doc["labels"], f"{where}.labels").items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}.labels", f"label name {key!r} is not a non-empty string")
        if not isinstance(label, str):
            raise ConfigError(
                f"{where}.labels.{key}", f"expected a string, got {type(label).__name__} (quote it)"
            )
        labels[key] = label
    return labels


def _optional_strings(doc: Mapping[object, object], name: str, where: str) -> frozenset[str] | None:
    if name not in doc:
        return None
    return frozenset(_strings(doc[name], f"{where}.{name}"))


def _optional_bound(doc: Mapping[object, object], name: str, where: str) -> int | None:
    if name not in doc:
        return None
    return _bytes_bound(doc[name], f"{where}.{name}")
