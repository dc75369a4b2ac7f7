"""Process logs: one structlog pipeline for every line a trilha process prints.

Two kinds of line go through it, both leaving as DESIGN §5 wire objects
(``{timestamp, level, executionId, nodeId?, nodeType?, message, context:
{institutionId, conversationId, contactId, duration?, error?, metadata?}}``):

* process events, written as structlog calls with a fixed event name and
  fields, never f-strings::

      log = structlog.get_logger("trilha.worker")
      log.critical("store.unavailable", workerId=worker_id, error=str(exc))

  ``executionId``, ``nodeId``, ``nodeType``, the identity fields, ``duration``
  and ``error`` land where the wire puts them; every other field goes into
  ``context.metadata``;
* an execution's trail, echoed by :func:`echo_trail` once the store has
  committed it, so stdout tells the same story as ``trilha logs``.

Levels are filtered twice, cheaply: the bound logger drops calls below the
lowest level any institution asks for, and a processor applies the level of the
line's institution (``[logging.institutions]``) or the global one. Everything is
masked on the way out (:mod:`trilha.observability.masking`). Lines go to stdout
(JSON, or one readable line each when a terminal is attached) and optionally to
a size-rotated file of JSON lines; stdlib records under the ``trilha`` logger
(and the PostgreSQL driver's warnings, :data:`LIBRARIES`) take the same road.

Until :func:`configure` runs (a library embedding the engine, the tests),
:func:`echo_trail` does nothing and structlog keeps its own defaults.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import orjson
import structlog
from structlog.types import EventDict, WrappedLogger

from trilha.config import LoggingConfig
from trilha.core.execution import LogRecord, iso
from trilha.errors import ConfigError
from trilha.observability import tracing
from trilha.observability.masking import mask_text, mask_value, masked_record
from trilha.observability.terminal import escaped_json, visible
from trilha.observability.trail import IDENTITY_KEYS, Identity, console_line, level_rank, wire

__all__ = [
    "Throttle",
    "configure",
    "echo_trail",
    "get_logger",
    "render_json",
    "reset",
    "throttle_loop_errors",
    "to_wire",
]

#: the wire's level names as stdlib numbers (OFF: above everything)
_NUMBERS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "CRITICAL": 50, "OFF": 100}
#: structlog method names (and stdlib level names) in wire spelling
_WIRE_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARN",
    "warn": "WARN",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
    "fatal": "CRITICAL",
}
_METHODS = {"DEBUG": "debug", "INFO": "info", "WARN": "warning", "ERROR": "error"}
_PLACED = {"executionId", "nodeId", "nodeType", "duration", "error", *IDENTITY_KEYS}
_WIRE_KEY = "_trilha_wire"
#: the rank of OFF: above every level (``level_rank`` of a name it does not know)
_OFF = level_rank("OFF")
_ANSI = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[36m",
    "WARN": "\x1b[33m",
    "ERROR": "\x1b[1;31m",
    "CRITICAL": "\x1b[1;37;41m",
}


@dataclass(slots=True)
class _Levels:
    """The configured thresholds, as :func:`trail.level_rank` ranks (0 DEBUG ... 5 OFF)."""

    default: int
    institutions: dict[str, int] = field(default_factory=dict)

    def of(self, institution_id: str | None) -> int:
        if institution_id is None or not self.institutions:
            return self.default
        return self.institutions.get(institution_id, self.default)


_levels: _Levels | None = None


def get_logger(name: str) -> Any:
    """A structlog logger under ``trilha``'s handlers (``name`` like ``trilha.worker``)."""
    return structlog.get_logger(name)


# the wire object ---------------------------------------------------------------------------


def _error(value: Any, exc_info: Any) -> dict[str, Any]:
    """``error`` as the wire's ``{type, message, stack}``, from a field or exc_info."""
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        kind, exc, tb = exc_info
        if kind is not None:
            stack = "".join(traceback.format_exception(kind, exc, tb))
            return {"type": kind.__name__, "message": str(exc), "stack": stack}
    if isinstance(value, Mapping):
        return {
            "type": value.get("type"),
            "message": None if value.get("message") is None else str(value.get("message")),
            "stack": value.get("stack"),
        }
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value), "stack": None}
    return {"type": None, "message": None if value is None else str(value), "stack": None}


def to_wire(event: MutableMapping[str, Any], level: str, logger_name: str | None) -> dict[str, Any]:
    """A structlog event (``event`` is the message, the rest are fields) as the masked
    DESIGN §5 wire object."""
    fields = dict(event)
    message = str(fields.pop("event", ""))
    exc_info = fields.pop("exc_info", None)
    for meta in ("_record", "_from_structlog", "level", "timestamp", "logger"):
        fields.pop(meta, None)
    context: dict[str, Any] = {key: fields.pop(key, None) for key in IDENTITY_KEYS}
    duration = fields.pop("duration", None)
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        context["duration"] = duration
    error = fields.pop("error", None)
    if error is not None or exc_info:
        context["error"] = _error(error, exc_info)
    line: dict[str, Any] = {
        "timestamp": iso(time.time()),
        "level": level,
        "executionId": fields.pop("executionId", None),
    }
    for key in ("nodeId", "nodeType"):
        value = fields.pop(key, None)
        if value is not None:
            line[key] = value
    line["message"] = message
    if logger_name:
        fields["logger"] = logger_name
    if fields:
        context["metadata"] = fields
    line["context"] = context
    masked: dict[str, Any] = mask_value(line)
    return masked


# processors --------------------------------------------------------------------------------


def _level_of(method_name: str) -> str:
    return _WIRE_LEVELS.get(method_name.lower(), method_name.upper())


def _by_institution(_: WrappedLogger, method_name: str, event: EventDict) -> EventDict:
    """Drop a line below its institution's level (or the global one)."""
    levels = _levels
    if levels is None or _WIRE_KEY in event:
        return event  # trail lines were filtered by echo_trail already
    if level_rank(_level_of(method_name)) < levels.of(event.get("institutionId")):
        raise structlog.DropEvent
    return event


def _shape(logger: WrappedLogger, method_name: str, event: EventDict) -> EventDict:
    """Turn the event into its wire object (trail lines come ready-made)."""
    ready = event.pop(_WIRE_KEY, None)
    if ready is not None:
        shaped: dict[str, Any] = ready
        return _traced(shaped)
    return _traced(to_wire(event, _level_of(method_name), getattr(logger, "name", None)))


def _traced(line: dict[str, Any]) -> dict[str, Any]:
    """The line with ``trace_id`` and ``span_id`` (OpenTelemetry's names for them in a
    log record) when a span is current, so a log store and a trace store meet on them."""
    if tracing.active:
        ids = tracing.current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
    return line


def _finish(_: WrappedLogger, __: str, event: EventDict) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Hand the finished wire object to the sinks as one argument."""
    return (event,), {}


def render_json(line: Mapping[str, Any]) -> str:
    """One JSON line; characters a terminal would obey (C1, bidi overrides) escaped, as
    a person may read the log with ``cat`` or ``tail`` (orjson escapes only C0)."""
    return escaped_json(orjson.dumps(line, default=str).decode())


def _render_console(color: bool) -> Callable[[Mapping[str, Any]], str]:
    def render(line: Mapping[str, Any]) -> str:
        # the line is for a person at a terminal: a contact's text in it is shown, never
        # obeyed (the colour codes below are added after, and are the only ones)
        text = visible(console_line(line))
        start = _ANSI.get(str(line.get("level", ""))) if color else None
        if start is None:
            return text
        # colour the level word only: the rest stays readable when copied
        head, sep, tail = text.partition(" ")
        lvl, sep2, rest = tail.partition(" ")
        return f"\x1b[2m{head}\x1b[0m{sep}{start}{lvl}\x1b[0m{sep2}{rest}"

    return render


# sinks -------------------------------------------------------------------------------------


class _Sinks:
    """structlog's logger: writes each finished wire object to every destination,
    rendered as that destination wants it (JSON lines, or the console form)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: list[tuple[Callable[[Mapping[str, Any]], str], TextIO]] = []
        self._files: list[logging.Handler] = []

    def add_stream(self, render: Callable[[Mapping[str, Any]], str], stream: TextIO) -> None:
        self._streams.append((render, stream))

    def add_file(self, handler: logging.Handler) -> None:
        self._files.append(handler)

    def write(self, line: Mapping[str, Any]) -> None:
        as_json: str | None = None
        with self._lock:
            for render, stream in self._streams:
                if render is render_json:
                    as_json = as_json or render_json(line)
                    text = as_json
                else:
                    text = render(line)
                try:
                    stream.write(text + "\n")
                    stream.flush()  # a log shipper or a test reading the pipe sees it now
                except (OSError, ValueError):
                    pass  # a closed stdout must not take the worker down
        for handler in self._files:  # the handler rotates the file under its own lock
            handler.handle(logging.makeLogRecord({"msg": as_json or render_json(line)}))

    def close(self) -> None:
        for handler in self._files:
            handler.close()


class _Named:
    """What structlog wraps: the sinks, and the logger's name for the line's metadata."""

    __slots__ = ("_sinks", "name")

    def __init__(self, sinks: _Sinks, name: str | None) -> None:
        self._sinks = sinks
        self.name = name

    def write(self, line: Mapping[str, Any]) -> None:
        self._sinks.write(line)

    msg = debug = info = warning = warn = error = critical = exception = fatal = write


#: libraries whose stdlib records join the process log, from this level up. The
#: PostgreSQL driver's pool warns at every reconnection attempt while the store is
#: away (trilha says that once per outage: store.unavailable), with a traceback that
#: must not reach stderr bare: its errors are kept, its warnings dropped
LIBRARIES = {"asyncpg": logging.ERROR}


class _Bridge(logging.Handler):
    """Plain stdlib records under the ``trilha`` logger (a plugin's, a library's): shaped
    like ours and written to the same sinks."""

    def __init__(self, sinks: _Sinks) -> None:
        super().__init__()
        self._sinks = sinks

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event: dict[str, Any] = {"event": record.getMessage()}
            if record.exc_info:
                event["exc_info"] = record.exc_info
            self._sinks.write(_traced(to_wire(event, _level_of(record.levelname), record.name)))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


# configuration -----------------------------------------------------------------------------


_sinks: _Sinks | None = None


def configure(config: LoggingConfig | None = None, *, stream: TextIO | None = None) -> None:
    """Route every ``trilha`` log line through the pipeline described above; idempotent.

    ``stream`` defaults to stdout. The stored trail is not configured here (the
    engine filters what it stores by ``store_level``)."""
    global _levels, _sinks, _trail
    config = config or LoggingConfig()
    default = level_rank(config.level)
    institutions = {inst: level_rank(lvl) for inst, lvl in config.institutions.items()}
    lowest = min([_NUMBERS[lvl] for lvl in (config.level, *config.institutions.values())])
    out = stream if stream is not None else sys.stdout
    console = config.format == "console" or (config.format == "auto" and _is_tty(out))
    sinks = _Sinks()
    sinks.add_stream(_render_console(_is_tty(out)) if console else render_json, out)
    if config.file:
        sinks.add_file(_file_handler(config))
    _detach()
    root = logging.getLogger("trilha")
    root.addHandler(_Bridge(sinks))
    root.setLevel(lowest)  # OFF: 100, above CRITICAL
    root.propagate = False
    for name, floor in LIBRARIES.items():
        library = logging.getLogger(name)
        library.addHandler(_Bridge(sinks))
        library.setLevel(max(lowest, floor))
        library.propagate = False
    structlog.configure(
        processors=[_by_institution, _shape, _finish],
        logger_factory=lambda *args: _Named(sinks, args[0] if args else None),
        wrapper_class=structlog.make_filtering_bound_logger(min(lowest, logging.CRITICAL)),
        # process events are few; not caching lets a reconfiguration reach loggers
        # modules made at import time
        cache_logger_on_first_use=False,
    )
    _sinks = sinks
    _trail = structlog.get_logger("trilha.trail").bind()  # built now: the hot path
    _levels = _Levels(default, institutions)


def reset() -> None:
    """Undo :func:`configure`: no echo, no ``trilha`` handlers, structlog's defaults."""
    global _levels, _trail
    _levels = None
    _detach()
    for name in ("trilha", *LIBRARIES):
        logger = logging.getLogger(name)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    structlog.reset_defaults()
    _trail = structlog.get_logger("trilha.trail")


def _detach() -> None:
    global _sinks
    for name in ("trilha", *LIBRARIES):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old, _Bridge):
                logger.removeHandler(old)
    if _sinks is not None:
        _sinks.close()
        _sinks = None


def file_handlers() -> list[logging.Handler]:
    """The handlers writing this process's log files (``[logging] file``), for an erasure
    to rewrite a file under the handler's own lock (:mod:`trilha.observability.log_erasure`)."""
    return list(_sinks._files) if _sinks is not None else []


def _file_handler(config: LoggingConfig) -> logging.Handler:
    path = Path(str(config.file))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return logging.handlers.RotatingFileHandler(
            path,
            maxBytes=config.file_max_bytes,
            backupCount=config.file_backups,
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigError(f"logging.file: cannot open {path}: {exc.strerror or exc}") from exc


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# the trail's echo --------------------------------------------------------------------------


class Owned(Protocol):
    """Whose trail lines these are: an execution, or one of its outbound messages (the
    dispatcher's lines)."""

    @property
    def institution_id(self) -> str: ...

    @property
    def conversation_id(self) -> str: ...

    @property
    def contact_id(self) -> str: ...


def echo_trail(records: Iterable[LogRecord], execution: Owned) -> None:
    """Print the committed trail lines of ``execution`` that pass its institution's
    level. Called after the store committed them: stdout never tells of a step that
    did not happen."""
    levels = _levels
    if levels is None:
        return
    threshold = levels.of(execution.institution_id)
    if threshold >= _OFF:
        return
    identity: Identity | None = None
    for record in records:
        if level_rank(record.level) < threshold:
            continue
        if identity is None:  # masked once per call: a contact id may be a phone number
            identity = Identity(
                mask_text(execution.institution_id),
                mask_text(execution.conversation_id),
                mask_text(execution.contact_id),
            )
        line = wire(masked_record(record), identity, mask=False)
        method = _METHODS.get(line["level"], "critical")
        getattr(_trail, method)(record.message, **{_WIRE_KEY: line})


_trail: Any = structlog.get_logger("trilha.trail")


# repeated errors ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Repeats:
    shown_at: float
    suppressed: int = 0
    #: what the suppressed lines said, for the summary line that counts them
    fields: dict[str, Any] = field(default_factory=dict)


class Throttle:
    """At most one line per ``every`` seconds for each repeated error, the first one
    always shown in full.

    Why: an error raised in a tight loop floods the log; when the process runs out of
    file descriptors, asyncio's accept loop reports one error per pending connection
    and retries every second, and a server printed 238 MB in 40 s. Each line that does
    go out carries how many of its kind were held back since the previous one
    (``suppressed``), so nothing is silently lost. Pure: the caller passes the time.
    At most ``kinds`` kinds are remembered (the oldest is forgotten first)."""

    def __init__(self, every: float = 1.0, *, kinds: int = 1_024) -> None:
        self.every = every
        self.kinds = kinds
        self._seen: OrderedDict[Hashable, _Repeats] = OrderedDict()

    def admit(self, kind: Hashable, now: float, **fields: Any) -> int | None:
        """``None``: hold this line back. Else show it, saying the returned number of
        lines of its kind were held back before it."""
        seen = self._seen.get(kind)
        if seen is not None and now - seen.shown_at < self.every:
            seen.suppressed += 1
            seen.fields = fields
            return None
        self._seen[kind] = _Repeats(now)
        self._seen.move_to_end(kind)
        while len(self._seen) > self.kinds:
            self._seen.popitem(last=False)
        return 0 if seen is None else seen.suppressed

    def due(self, now: float) -> list[tuple[Hashable, int, dict[str, Any]]]:
        """The kinds with lines held back whose second is over: ``(kind, count, fields of
        the last one)``, each to be told in one summary line (which starts a new second)."""
        out = []
        for kind, seen in self._seen.items():
            if seen.suppressed and now - seen.shown_at >= self.every:
                out.append((kind, seen.suppressed, seen.fields))
                seen.shown_at, seen.suppressed, seen.fields = now, 0, {}
        return out

    def __contains__(self, kind: Hashable) -> bool:
        """Whether a line of this kind was seen (and is still remembered)."""
        return kind in self._seen

    @property
    def holding(self) -> bool:
        """Some lines are held back and not yet counted in a summary."""
        return any(seen.suppressed for seen in self._seen.values())


def throttle_loop_errors(
    loop: asyncio.AbstractEventLoop, throttle: Throttle | None = None
) -> Callable[[], None]:
    """Report the errors ``loop`` cannot hand to anyone (a failed ``accept()``, a
    callback that raised, a task's exception nobody read) as ``loop.error`` events
    through this pipeline, at most one line a second for each repeated error, with the
    count of those held back (a last summary line counts the ones held back at the end
    of a burst). Returns a function that puts the loop's previous handler back."""
    throttle = throttle or Throttle()
    log = get_logger("trilha.loop")
    previous = loop.get_exception_handler()
    flush: asyncio.TimerHandle | None = None

    def summarize() -> None:
        nonlocal flush
        flush = None
        for _, count, fields in throttle.due(loop.time()):
            log.error("loop.error", suppressed=count, repeated=True, **fields)
        if throttle.holding:
            flush = loop.call_later(throttle.every, summarize)

    def handle(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal flush
        exc = context.get("exception")
        detail = str(context.get("message") or "unhandled error in the event loop")
        # the kind: the exception (an accept's EMFILE, whatever the socket), else the text
        kind = (type(exc).__name__, str(exc)) if isinstance(exc, BaseException) else detail
        fields: dict[str, Any] = {"detail": detail}
        if isinstance(exc, BaseException):
            fields["error"] = {"type": type(exc).__name__, "message": str(exc), "stack": None}
        first = kind not in throttle
        held = throttle.admit(kind, loop.time(), **fields)
        if held is None:
            if flush is None:
                flush = loop.call_later(throttle.every, summarize)
            return
        if first and isinstance(exc, BaseException):
            # the stack once: the same error a second later would repeat it line for line
            fields.pop("error")
            log.error("loop.error", suppressed=held, exc_info=exc, **fields)
        else:
            log.error("loop.error", suppressed=held, **fields)

    loop.set_exception_handler(handle)

    def restore() -> None:
        if flush is not None:
            flush.cancel()
        loop.set_exception_handler(previous)

    return restore
