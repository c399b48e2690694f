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
SUBJECT_JOB_DONE = "sys.job.done"
"""Scheduler/gateway → gateways: a ``JobResult`` notice that a job reached a terminal state
(fan-out, core NATS, at most once), which wakes clients waiting on it (``JobWatch``)."""
SUBJECT_HEARTBEAT_PREFIX = "sys.heartbeat"
SUBJECT_HEARTBEAT_ALL = f"{SUBJECT_HEARTBEAT_PREFIX}.*"
"""What a scheduler subscribes to: every worker's heartbeat (plain subscription, fan-out)."""
WORKER_SUBJECT_PREFIX = "worker"
WORKER_SUBJECT_SUFFIX = "jobs"
JOB_SUBJECT_PREFIX = "job"
TOPIC_ECHO = f"{JOB_SUBJECT_PREFIX}.echo"
"""The echo pool's topic, and the front door's default topic."""
TOPIC_LOG_ANALYZE = f"{JOB_SUBJECT_PREFIX}.log.analyze"
"""The log analyzer's topic (pool ``log``)."""
TOPIC_CHAT_LLM = f"{JOB_SUBJECT_PREFIX}.chat.llm"
"""The LLM worker's topic (pool ``chat-llm``)."""
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


_JOB_TOPIC = re.compile(r"job\.[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})?")


def is_job_topic(topic: str) -> bool:
    """A topic a client may submit to: ``job.<pool>[.<kind>]``, each part 1-64 of letters,
    digits, ``_`` or ``-``."""
    return _JOB_TOPIC.fullmatch(topic) is not None


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


# -- Durability: which subjects a broker must persist ------------------------------------------

DURABLE_SUBJECTS: tuple[str, ...] = (
    SUBJECT_JOB_SUBMIT,
    SUBJECT_JOB_RESULT,
    SUBJECT_JOB_CANCEL,
    f"{JOB_SUBJECT_PREFIX}.>",
    f"{WORKER_SUBJECT_PREFIX}.*.{WORKER_SUBJECT_SUFFIX}",
)
"""The job subjects (as subscription patterns): submit, result, cancel, the pool topics
``job.>`` and the workers' own ``worker.*.jobs``. A durable bus stores these and delivers them
at least once; every other subject (heartbeats) is at-most-once."""


def is_durable_subject(subject: str) -> bool:
    """Whether a literal subject is one of ``DURABLE_SUBJECTS``."""
    return any(subject_matches(pattern, subject) for pattern in DURABLE_SUBJECTS)


def subjects_overlap(a: str, b: str) -> bool:
    """Whether some literal subject matches both patterns (``*`` and trailing ``>`` allowed)."""
    a_tokens, b_tokens = a.split("."), b.split(".")
    for x, y in zip(a_tokens, b_tokens, strict=False):
        if x == ">" or y == ">":
            return True  # the other has a token here, so one or more tokens match from here on
        if x != "*" and y != "*" and x != y:
            return False
    return len(a_tokens) == len(b_tokens)


def subject_within(pattern: str, filter_: str) -> bool:
    """Whether every subject matching ``pattern`` also matches ``filter_``."""
    p_tokens, f_tokens = pattern.split("."), filter_.split(".")
    for i, f in enumerate(f_tokens):
        if f == ">":
            return i == len(f_tokens) - 1 and len(p_tokens) > i
        if i >= len(p_tokens):
            return False
        p = p_tokens[i]
        if p == ">" or (f != "*" and (p == "*" or p != f)):
            return False
    return len(p_tokens) == len(f_tokens)


def durable_coverage(pattern: str) -> tuple[bool, bool]:
    """``(some, all)``: whether some / every subject matching ``pattern`` is durable.

    ``all`` is conservative: it is True only when one of ``DURABLE_SUBJECTS`` covers the whole
    pattern, so a bus may treat a pattern as mixed (both transports) when it is not.
    """
    some = any(subjects_overlap(pattern, d) for d in DURABLE_SUBJECTS)
    every = some and any(subject_within(pattern, d) for d in DURABLE_SUBJECTS)
    return some, every
