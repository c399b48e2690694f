"""Log output for the apps: one line per event, as JSON or as readable console lines.

The core and adapters log an event name with structured ``extra`` fields (``component``,
``trace_id``, ``job_id``, ``topic``, ``worker_id``, …). ``--log-format`` (``CORTEX_LOG_FORMAT``)
picks how they are printed:

* ``json``: one JSON object per line, ``{"timestamp", "level", "component", "event", …fields}``
  (python-json-logger); a job event's ``worker_id`` is ``null`` until the job is dispatched;
* ``console``: ``<time> <LEVEL> [COMPONENT] event key=value …``;
* ``auto`` (the default): JSON unless stderr is a terminal.

A line logged inside a span with no ``trace_id`` of its own gets the span's.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from cortex_adapters.telemetry.tracing import current_trace_id

LOG_FORMATS = ("auto", "json", "console")

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _component(record: logging.LogRecord) -> str:
    if record.name.startswith("uvicorn"):
        return "http"
    return record.name.rsplit(".", 1)[-1]


class KeyValueFormatter(logging.Formatter):
    """``<time> <LEVEL> [COMPONENT] event key=value …`` (fields that are None are left out)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        }
        component = str(fields.pop("component", _component(record))).upper()
        if fields.get("trace_id") is None and (tid := current_trace_id()) is not None:
            fields["trace_id"] = tid
        parts = [self.formatTime(record), record.levelname, f"[{component}]", record.getMessage()]
        parts += [f"{k}={v}" for k, v in fields.items() if v is not None and v != ""]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class CortexJsonFormatter(JsonFormatter):
    """One JSON object per line: ``timestamp``, ``level``, ``component``, ``event``, then the
    record's fields as logged."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(message)s",
            rename_fields={"levelname": "level", "message": "event"},
            timestamp=True,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data.setdefault("component", _component(record))
        if log_data.get("trace_id") is None and (tid := current_trace_id()) is not None:
            log_data["trace_id"] = tid
        log_data.pop("color_message", None)  # uvicorn's copy of the message, with ANSI colours


def use_json(log_format: str, stream: Any = None) -> bool:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    if log_format == "auto":
        stream = sys.stderr if stream is None else stream
        return not (hasattr(stream, "isatty") and stream.isatty())
    return log_format == "json"


def configure(level: str, log_format: str = "auto") -> None:
    handler = logging.StreamHandler()
    formatter: logging.Formatter = (
        CortexJsonFormatter() if use_json(log_format, handler.stream) else KeyValueFormatter()
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
