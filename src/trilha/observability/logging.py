"""Process log lines, one JSON object each (DESIGN §5), on the standard library.

A small stand-in until structlog arrives. Events are names with fields, never
f-strings::

    log = logging.getLogger("trilha.worker")
    log.critical("store.unavailable", extra=fields(workerId=worker_id, error=str(exc)))

prints ``{"timestamp": ..., "level": "CRITICAL", "message": "store.unavailable",
"logger": "trilha.worker", "context": {"workerId": ..., "error": ...}}``; an
``executionId`` field is lifted to the top level, as in the store's trail.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

from trilha.core.execution import iso
from trilha.observability.masking import mask_value

#: the wire spells WARNING as WARN (DESIGN §5)
_LEVEL_NAMES = {"WARNING": "WARN"}


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra=`` of a log call: the event's fields, under one attribute."""
    return {"fields": values}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, in the shape of DESIGN §5."""

    def format(self, record: logging.LogRecord) -> str:
        context: dict[str, Any] = dict(getattr(record, "fields", {}))
        line: dict[str, Any] = {
            "timestamp": iso(record.created),
            "level": _LEVEL_NAMES.get(record.levelname, record.levelname),
        }
        if "executionId" in context:
            line["executionId"] = context.pop("executionId")
        line["message"] = record.getMessage()
        line["logger"] = record.name
        if record.exc_info:
            context["error"] = self.formatException(record.exc_info)
        if context:
            line["context"] = context
        return json.dumps(mask_value(line), ensure_ascii=False, default=str)


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send the ``trilha`` loggers' lines to ``stream`` (stderr) as JSON; idempotent."""
    logger = logging.getLogger("trilha")
    for handler in list(logger.handlers):
        if isinstance(handler.formatter, JsonFormatter):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
