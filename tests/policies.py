"""Safety policies the end-to-end tests write to a file and start Cortex with."""

FORBIDDEN_TOPIC_POLICY = """\
policy:
  default: {decision: ALLOW, reason: "no rule matched; default allow"}
  rules:
    - id: deny-forbidden
      decision: DENY
      reason: "topic job.forbidden is forbidden"
      topic: "job.forbidden"
"""
"""Everything is allowed except topic ``job.forbidden`` (rule ``deny-forbidden``)."""
