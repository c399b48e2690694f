"""The in-process ``SafetyChecker``: the core's policy evaluated in this process."""

from __future__ import annotations

import logging

from cortex_core.policy import Policy, SafetyDecision, SafetyRequest, default_policy

log = logging.getLogger("cortex.safety")


class InProcessSafetyChecker:
    def __init__(self, policy: Policy | None = None) -> None:
        self._policy = policy or default_policy()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def check(self, request: SafetyRequest) -> SafetyDecision:
        decision = self._policy.evaluate(request)
        log.info(
            "safety_decision",
            extra={
                "component": "safety",
                "job_id": request.job_id,
                "topic": request.topic,
                "rule_id": decision.rule_id,
                "decision": decision.decision.value,
            },
        )
        return decision
