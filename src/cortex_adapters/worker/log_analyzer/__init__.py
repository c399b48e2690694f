"""The log analyzer worker: formats, levels, error signatures, timeline and anomalies of a log.

A job on ``job.log.analyze`` carries the log in its context, as ``"prompt"`` text or as a
``"lines"`` list; the result document is ``analyze``'s report as JSON. ``analyze`` is pure: it
reads no clock (RFC 3164's year-less timestamps are dated with its ``now`` argument), and any
line it cannot read is counted as malformed, never raised. ADR 0008 describes the formats,
the signature masks and the anomaly rule.
"""

from cortex_adapters.worker.log_analyzer._formats import FORMATS
from cortex_adapters.worker.log_analyzer._handler import (
    POOL,
    TOP_LABEL,
    TOPICS,
    InvalidLogJob,
    log_analyzer_handler,
    make_log_analyzer_handler,
    read_log,
)
from cortex_adapters.worker.log_analyzer._levels import LEVELS
from cortex_adapters.worker.log_analyzer._report import AnalysisCancelled, Report, analyze
from cortex_adapters.worker.log_analyzer._signature import signature
from cortex_core.bus_protocol import TOPIC_LOG_ANALYZE

__all__ = [
    "FORMATS",
    "LEVELS",
    "POOL",
    "TOPICS",
    "TOPIC_LOG_ANALYZE",
    "TOP_LABEL",
    "AnalysisCancelled",
    "InvalidLogJob",
    "Report",
    "analyze",
    "log_analyzer_handler",
    "make_log_analyzer_handler",
    "read_log",
    "signature",
]
