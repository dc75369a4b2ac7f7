"""An execution's stored trail as people and programs read it (DESIGN §5).

Pure functions, no I/O: a stored :class:`~trilha.core.execution.LogRecord` plus
the execution's identity becomes the wire object of DESIGN §5::

    {timestamp, level, executionId, nodeId?, nodeType?, message,
     context: {institutionId, conversationId, contactId, duration?, error?, metadata?}}

``duration`` comes from the record's ``duration`` (seconds), ``error`` is
always ``{type, message, stack}``, and every other context field goes into
``metadata``. ``trilha logs`` prints these objects as JSON lines, or as one
readable console line each (:func:`render`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from trilha.core.execution import Execution, LogRecord, iso
from trilha.errors import ConfigError
from trilha.observability.masking import mask_value

#: the wire's levels, least severe first
LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARN", "ERROR", "CRITICAL")
_RANK = {name: rank for rank, name in enumerate(LEVELS)}
_ALIASES = {"WARNING": "WARN", "FATAL": "CRITICAL"}
_STYLES = {
    "DEBUG": "dim",
    "INFO": "cyan",
    "WARN": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold white on red",
}
#: the execution's identity: on every wire line, never repeated in ``metadata``
IDENTITY_KEYS: tuple[str, ...] = ("institutionId", "conversationId", "contactId")
_ERROR_KEYS = ("type", "message", "stack")


# levels -------------------------------------------------------------------------------------


def normalize_level(name: str) -> str:
    """The wire spelling of a level: upper case, ``WARNING`` as ``WARN``; an unknown
    name is returned upper-cased."""
    upper = name.strip().upper()
    return _ALIASES.get(upper, upper)


def parse_level(name: str) -> str:
    """A level a user typed (case-insensitive, ``WARNING`` accepted), in wire spelling;
    :class:`ConfigError` if it is not one of :data:`LEVELS`."""
    level = normalize_level(name)
    if level not in _RANK:
        raise ConfigError(f"unknown log level {name!r}: expected one of {', '.join(LEVELS)}")
    return level


def level_rank(name: str) -> int:
    """Severity order (``DEBUG`` 0 … ``CRITICAL`` 4). A level the trail cannot place
    ranks above ``CRITICAL``: a minimum level never hides what it cannot classify."""
    return _RANK.get(normalize_level(name), len(LEVELS))


def at_least(level: str, minimum: str) -> bool:
    """Whether a line of ``level`` passes the ``minimum`` level filter."""
    return level_rank(level) >= level_rank(minimum)


# identity -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """Who an execution belongs to; ``None`` where it is not known."""

    institution_id: str | None = None
    conversation_id: str | None = None
    contact_id: str | None = None

    @classmethod
    def of(cls, execution: Execution) -> Identity:
        """The identity the execution row holds."""
        return cls(execution.institution_id, execution.conversation_id, execution.contact_id)

    @classmethod
    def from_records(cls, records: Iterable[LogRecord]) -> Identity:
        """The identity the trail itself holds (``execution.started`` carries it), for
        when the execution row cannot be read; the first value of each field wins."""
        found: dict[str, str] = {}
        for record in records:
            for key in IDENTITY_KEYS:
                value = record.context.get(key)
                if key not in found and isinstance(value, str):
                    found[key] = value
            if len(found) == len(IDENTITY_KEYS):
                break
        return cls(found.get("institutionId"), found.get("conversationId"), found.get("contactId"))

    def wire(self) -> dict[str, str | None]:
        return {
            "institutionId": self.institution_id,
            "conversationId": self.conversation_id,
            "contactId": self.contact_id,
        }


# the wire object ----------------------------------------------------------------------------


def wire_error(value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored ``error`` as the wire's ``{type, message, stack}``, and what else it
    carried (``code``, ``details``, ...; empty values dropped) for ``metadata``."""
    if isinstance(value, Mapping):
        message = value.get("message")
        error = {
            "type": value.get("type"),
            "message": None if message is None else str(message),
            "stack": value.get("stack"),
        }
        extra = {
            str(k): v
            for k, v in value.items()
            if k not in _ERROR_KEYS and v is not None and v != {} and v != []
        }
        return error, extra
    return {"type": None, "message": str(value), "stack": None}, {}


def wire(
    record: LogRecord, identity: Identity | None = None, *, mask: bool = True
) -> dict[str, Any]:
    """The DESIGN §5 wire object of one stored trail line.

    The identity fields come from ``identity`` (the execution row), falling back to
    what the record's own context holds; ``nodeId``/``nodeType`` are left out when
    the record has none, as are ``duration``, ``error`` and an empty ``metadata``.
    ``mask=False`` is for a caller that masked ``record`` and ``identity`` itself."""
    ident = (identity or Identity()).wire()
    context: dict[str, Any] = {
        key: ident[key] if ident[key] is not None else record.context.get(key)
        for key in IDENTITY_KEYS
    }
    metadata: dict[str, Any] = {}
    for key, value in record.context.items():
        if key in IDENTITY_KEYS:
            continue
        if key == "duration" and isinstance(value, int | float) and not isinstance(value, bool):
            context["duration"] = value
        elif key == "error" and value is not None:
            context["error"], extra = wire_error(value)
            if extra:
                metadata["errorDetails"] = extra
        else:
            metadata[key] = value
    if metadata:
        context["metadata"] = metadata
    line: dict[str, Any] = {
        "timestamp": iso(record.at),
        "level": normalize_level(record.level),
        "executionId": record.execution_id,
    }
    if record.node_id is not None:
        line["nodeId"] = record.node_id
    if record.node_type is not None:
        line["nodeType"] = record.node_type
    line["message"] = record.message
    line["context"] = context
    if not mask:  # the caller masked the record and the identity already
        return line
    # masked again on the way out: rows written before masking existed, or by other
    # writers, never show personal data on a terminal or in a log shipper
    masked: dict[str, Any] = mask_value(line)
    return masked


def lines(
    records: Iterable[LogRecord], identity: Identity | None = None, *, minimum: str = "DEBUG"
) -> list[dict[str, Any]]:
    """The wire objects of ``records`` at or above ``minimum``, in the given order."""
    return [wire(r, identity) for r in records if at_least(r.level, minimum)]


# the console line ---------------------------------------------------------------------------


def _token(value: Any) -> str:
    """A value as one shell-like word: bare when it is a plain word, else JSON."""
    if isinstance(value, str):
        if value and value.isprintable() and not any(c.isspace() or c in "\"'=" for c in value):
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _duration(seconds: float) -> str:
    """Seconds for people: ``0.0312ms``, ``12.3ms``, ``250ms``, ``1.234s``."""
    ms = seconds * 1000
    if ms < 100:
        return f"{ms:.3g}ms"
    return f"{ms:.0f}ms" if seconds < 1 else f"{seconds:.3f}s"


def render(line: Mapping[str, Any]) -> Text:
    """One wire object as ``HH:MM:SS.mmm LEVEL node message key=value ...`` (UTC time),
    styled by level. A :class:`~rich.text.Text`, never markup: log text that looks
    like ``[red]`` prints as it is."""
    context: Mapping[str, Any] = line.get("context") or {}
    timestamp = str(line.get("timestamp") or "")
    clock = timestamp[11:23] if len(timestamp) >= 23 else timestamp or "-"
    level = str(line.get("level", "?"))
    pairs: list[tuple[str, str]] = []
    duration = context.get("duration")
    if isinstance(duration, int | float):
        pairs.append(("duration", _duration(float(duration))))
    for key, value in (context.get("metadata") or {}).items():
        pairs.append((_token(str(key)), _token(value)))
    error = context.get("error")
    if isinstance(error, Mapping):
        kind, message = error.get("type"), error.get("message")
        pairs.append(("error", _token(f"{kind}: {message}" if kind else str(message))))
    text = Text.assemble(
        (clock, "dim"),
        " ",
        (level.ljust(5), _STYLES.get(level, "bold magenta")),
        " ",
        (_token(line.get("nodeId") or "-"), "magenta"),
        " ",
        (_token(line.get("message", "")), "bold"),
    )
    for key, value in pairs:
        text.append(" ")
        text.append(f"{key}=", style="dim")
        text.append(value)
    return text


def console_line(line: Mapping[str, Any]) -> str:
    """:func:`render` as plain text."""
    return render(line).plain
