"""Memory-fabric pointers: ``redis://ctx:<job_id>`` and ``redis://res:<job_id>``.

A pointer names a key in the memory fabric; the scheme is the fabric's protocol, and the
in-memory store uses the same form so that pointers mean the same thing in every mode.
A worker follows only the pointer of its own job (``check_context_ptr``): a crafted pointer
to any other key is refused.
"""

from __future__ import annotations

import re

from cortex_core.errors import PointerError

SCHEME = "redis://"
CONTEXT_PREFIX = "ctx:"
RESULT_PREFIX = "res:"
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_valid_job_id(job_id: str) -> bool:
    return _JOB_ID.fullmatch(job_id) is not None


def _require_job_id(job_id: str) -> str:
    if not is_valid_job_id(job_id):
        raise PointerError(f"invalid job id {job_id!r}: 1-128 of letters, digits, '_' or '-'")
    return job_id


def context_key(job_id: str) -> str:
    return CONTEXT_PREFIX + _require_job_id(job_id)


def result_key(job_id: str) -> str:
    return RESULT_PREFIX + _require_job_id(job_id)


def context_ptr(job_id: str) -> str:
    return SCHEME + context_key(job_id)


def result_ptr(job_id: str) -> str:
    return SCHEME + result_key(job_id)


def check_context_ptr(pointer: str, job_id: str) -> None:
    """Raise ``PointerError`` unless ``pointer`` is exactly this job's context pointer."""
    if pointer != context_ptr(job_id):
        raise PointerError(f"context_ptr {pointer!r} is not {context_ptr(job_id)!r}")
