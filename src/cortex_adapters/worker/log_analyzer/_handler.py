"""The worker handler: read the log from the job's context, analyse it off the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from cortex_adapters.worker.log_analyzer._report import MAX_TOP, analyze
from cortex_adapters.worker.runtime import Handler, JobContext
from cortex_core.bus_protocol import TOPIC_LOG_ANALYZE
from cortex_core.ports import Clock

POOL = "log"
TOPICS = (TOPIC_LOG_ANALYZE,)
TOP_LABEL = "log.top"
"""A job label: how many error signatures to report (0..1000; 10 without it)."""
DEFAULT_TOP = 10


class InvalidLogJob(ValueError):
    """The job's context or labels do not describe a log to analyse."""

    error_code = "log_invalid_job"


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def read_log(context: bytes) -> list[str]:
    """The log lines in a context document: ``"lines"`` (a list of strings) or ``"prompt"``
    (text, split at ``\\n``; a final newline ends the last line). Raises ``InvalidLogJob``."""
    try:
        doc = json.loads(context)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidLogJob(f"the context is not a JSON document: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidLogJob(f"the context must be a JSON object, not {_kind(doc)}")
    prompt, lines = doc.get("prompt"), doc.get("lines")
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidLogJob(f"the context's 'prompt' must be a string, not {_kind(prompt)}")
    if lines is not None:
        if not isinstance(lines, list):
            raise InvalidLogJob(
                f"the context's 'lines' must be a list of strings, not {_kind(lines)}"
            )
        for index, line in enumerate(lines):
            if not isinstance(line, str):
                raise InvalidLogJob(
                    f"the context's 'lines' must be a list of strings; "
                    f"item {index} is {_kind(line)}"
                )
        if prompt:
            raise InvalidLogJob(
                "the context has both 'prompt' and 'lines': send the log in one of them"
            )
        return lines
    if prompt is None:
        raise InvalidLogJob(
            "the context has no log: send it as 'prompt' (text) or 'lines' (a list of strings)"
        )
    split = prompt.split("\n")
    if split[-1] == "":
        split.pop()
    return split


def top_from_labels(labels: Mapping[str, str]) -> int:
    raw = labels.get(TOP_LABEL)
    if raw is None:
        return DEFAULT_TOP
    try:
        top = int(raw)
    except ValueError:
        top = -1
    if not 0 <= top <= MAX_TOP:
        raise InvalidLogJob(f"label {TOP_LABEL} must be an integer from 0 to {MAX_TOP}: {raw!r}")
    return top


def _run(context: bytes, top: int, now: datetime, stop: threading.Event) -> bytes:
    report = analyze(read_log(context), top=top, now=now, should_stop=stop.is_set)
    return json.dumps(report, ensure_ascii=False, separators=(",", ":")).encode()


async def _handle(job: JobContext, now: float) -> bytes:
    top = top_from_labels(job.request.labels)
    stop = threading.Event()
    try:
        # A thread keeps the event loop (heartbeats, cancels) responsive during a long log.
        return await asyncio.to_thread(
            _run, job.context, top, datetime.fromtimestamp(now, UTC), stop
        )
    except asyncio.CancelledError:
        stop.set()  # the thread gives up at its next check
        raise


async def log_analyzer_handler(job: JobContext) -> bytes:
    """Analyse the job's log; the result document is the report, as JSON.

    RFC 3164 timestamps, which carry no year, are dated against the system clock; use
    ``make_log_analyzer_handler(clock)`` to inject one.
    """
    return await _handle(job, time.time())


def make_log_analyzer_handler(clock: Clock) -> Handler:
    """``log_analyzer_handler`` reading ``clock`` instead of the system clock."""

    async def handler(job: JobContext) -> bytes:
        return await _handle(job, clock.now())

    return handler
