"""The bus protocol, v1: every subject and queue-group name Cortex uses.

This module is the only place a subject or queue name is spelled out; everything else calls
these constants and functions. ``docs/BUS_PROTOCOL.md`` describes the semantics.
"""

from __future__ import annotations

import re

PROTOCOL_VERSION = 1
"""``BusPacket.protocol_version`` written by this code. Schemas only grow by appending fields."""

SUBJECT_JOB_SUBMIT = "sys.job.submit"
"""Gateway → scheduler: a new ``JobRequest``."""
SUBJECT_JOB_RESULT = "sys.job.result"
"""Worker → scheduler: a ``JobResult``."""
SUBJECT_JOB_CANCEL = "sys.job.cancel"
"""Scheduler/gateway → workers: a ``JobCancel`` (fan-out)."""
SUBJECT_HEARTBEAT_PREFIX = "sys.heartbeat"
SUBJECT_HEARTBEAT_ALL = f"{SUBJECT_HEARTBEAT_PREFIX}.*"
"""What a scheduler subscribes to: every worker's heartbeat (plain subscription, fan-out)."""
WORKER_SUBJECT_PREFIX = "worker"
WORKER_SUBJECT_SUFFIX = "jobs"
JOB_SUBJECT_PREFIX = "job"
TOPIC_ECHO = f"{JOB_SUBJECT_PREFIX}.echo"
"""The echo pool's topic, and the front door's default topic."""
TOPIC_SYS_DESTROY = "sys.destroy"
"""Never dispatched: the default safety policy denies it."""

QUEUE_SCHEDULER = "cortex-scheduler"
"""Queue group of every scheduler replica on ``sys.job.submit`` and ``sys.job.result``."""
WORKER_QUEUE_PREFIX = "workers-"

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_TOPIC = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
MAX_TOKEN_LENGTH = 128
MAX_TOPIC_LENGTH = 255


def is_valid_token(token: str) -> bool:
    """One subject token: letters, digits, ``_`` and ``-``; no dots, wildcards or spaces."""
    return len(token) <= MAX_TOKEN_LENGTH and _TOKEN.fullmatch(token) is not None


def is_valid_topic(topic: str) -> bool:
    """A literal subject (no wildcards): dot-separated valid tokens."""
    return len(topic) <= MAX_TOPIC_LENGTH and _TOPIC.fullmatch(topic) is not None


def _require_token(kind: str, token: str) -> str:
    if not is_valid_token(token):
        raise ValueError(f"invalid {kind} {token!r}: use letters, digits, '_' or '-'")
    return token


def heartbeat_subject(worker_id: str) -> str:
    """``sys.heartbeat.<worker-id>``."""
    return f"{SUBJECT_HEARTBEAT_PREFIX}.{_require_token('worker id', worker_id)}"


def worker_subject(worker_id: str) -> str:
    """``worker.<worker-id>.jobs``: the subject of one worker, for least-loaded dispatch."""
    return (
        f"{WORKER_SUBJECT_PREFIX}.{_require_token('worker id', worker_id)}.{WORKER_SUBJECT_SUFFIX}"
    )


def pool_queue(pool: str) -> str:
    """``workers-<pool>``: the queue group a pool's workers share on their topics."""
    return f"{WORKER_QUEUE_PREFIX}{_require_token('pool', pool)}"


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` matches one token, a trailing ``>`` one or more."""
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for i, p in enumerate(p_tokens):
        if p == ">":
            return i == len(p_tokens) - 1 and len(s_tokens) > i
        if i >= len(s_tokens) or (p != "*" and p != s_tokens[i]):
            return False
    return len(p_tokens) == len(s_tokens)
