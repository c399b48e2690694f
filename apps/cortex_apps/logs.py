"""Log output for the apps: one line per event, ``[COMPONENT] event key=value …``.

The core and adapters log an event name with structured ``extra`` fields (``component``,
``trace_id``, ``job_id``, …); this formatter prints them. JSON output comes with observability.
"""

from __future__ import annotations

import logging

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {
            k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        }
        default = "http" if record.name.startswith("uvicorn") else record.name.rsplit(".", 1)[-1]
        component = str(fields.pop("component", default)).upper()
        parts = [self.formatTime(record), record.levelname, f"[{component}]", record.getMessage()]
        parts += [f"{k}={v}" for k, v in fields.items() if v is not None and v != ""]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
