"""The in-process ``SafetyChecker``: the core's policy evaluated in this process.

Given a ``ReloadingPolicy`` it evaluates whatever policy is in force at each check, so it follows
the file as it changes; ``start()``/``close()`` start and stop the reloading.
"""

from __future__ import annotations

import logging

from cortex_adapters.config.policy import ReloadingPolicy
from cortex_core.policy import Decision, Policy, SafetyDecision, SafetyRequest, default_policy
from cortex_core.ports import Metrics

log = logging.getLogger("cortex.safety")

ERROR_RULE_ID = "error"
"""The ``rule_id`` of the DENY given when evaluation itself failed (the checker fails closed)."""


class InProcessSafetyChecker:
    def __init__(
        self, policy: Policy | ReloadingPolicy | None = None, *, metrics: Metrics | None = None
    ) -> None:
        self._reloading = policy if isinstance(policy, ReloadingPolicy) else None
        self._policy = policy if isinstance(policy, Policy) else default_policy()
        self._metrics = metrics

    @property
    def policy(self) -> Policy:
        """The policy the next check evaluates."""
        return self._reloading.current if self._reloading is not None else self._policy

    async def start(self) -> None:
        if self._reloading is not None:
            await self._reloading.start()

    async def close(self) -> None:
        if self._reloading is not None:
            await self._reloading.close()

    async def check(self, request: SafetyRequest) -> SafetyDecision:
        try:
            decision = self.policy.evaluate(request)
        except Exception as exc:  # the port fails closed: an error is a DENY, never an exception
            log.exception(
                "safety_check_failed",
                extra={"component": "safety", "job_id": request.job_id, "topic": request.topic},
            )
            decision = SafetyDecision(
                decision=Decision.DENY,
                reason=f"safety check failed: {type(exc).__name__}",
                rule_id=ERROR_RULE_ID,
            )
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
        if self._metrics is not None:
            self._metrics.inc_safety_decision(decision.rule_id, decision.decision.value)
        return decision
