"""The trail's wire objects, level filter and console line (``trilha.observability.trail``)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from trilha.core.execution import LogRecord
from trilha.errors import ConfigError
from trilha.observability import trail
from trilha.observability.trail import Identity

AT = datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC).timestamp()
WHO = Identity("inst-1", "conv-1", "contact-1")
TOP_KEYS = {"timestamp", "level", "executionId", "nodeId", "nodeType", "message", "context"}
CONTEXT_KEYS = {"institutionId", "conversationId", "contactId", "duration", "error", "metadata"}


def record(
    level: str = "INFO",
    message: str = "node.left",
    context: dict[str, Any] | None = None,
    *,
    node_id: str | None = "ask_name",
    node_type: str | None = "question",
) -> LogRecord:
    return LogRecord("ex-1", level, message, AT, node_id, node_type, context or {})


def test_wire_has_the_design_shape() -> None:
    """A node line maps to DESIGN §5: ISO-8601 UTC ms timestamp, ids, and a context."""
    line = trail.wire(record("DEBUG", "node.left", {"duration": 0.0123, "outcome": "ok"}), WHO)
    assert line == {
        "timestamp": "2025-03-04T05:06:07.891Z",
        "level": "DEBUG",
        "executionId": "ex-1",
        "nodeId": "ask_name",
        "nodeType": "question",
        "message": "node.left",
        "context": {
            "institutionId": "inst-1",
            "conversationId": "conv-1",
            "contactId": "contact-1",
            "duration": 0.0123,
            "metadata": {"outcome": "ok"},
        },
    }
    assert list(line) == ["timestamp", "level", "executionId", "nodeId", "nodeType", "message",
                          "context"]  # fmt: skip
    json.dumps(line)  # serialisable as is


def test_wire_leaves_out_absent_optional_fields() -> None:
    """No node, duration, error or metadata: those keys are absent, the identity is not."""
    line = trail.wire(record(node_id=None, node_type=None), WHO)
    assert set(line) == TOP_KEYS - {"nodeId", "nodeType"}
    assert line["context"] == {
        "institutionId": "inst-1",
        "conversationId": "conv-1",
        "contactId": "contact-1",
    }


def test_wire_error_is_type_message_stack_and_extras_go_to_metadata() -> None:
    """A stored error becomes {type, message, stack}; its code/details land in metadata."""
    error: dict[str, Any] = {
        "type": "NodeTimeout",
        "message": "took too long",
        "code": "node_timeout",
        "details": {},
        "stack": None,
    }
    line = trail.wire(record("WARN", "node.retry_scheduled", {"error": error, "attempt": 2}), WHO)
    ctx = line["context"]
    assert ctx["error"] == {"type": "NodeTimeout", "message": "took too long", "stack": None}
    assert ctx["metadata"] == {"attempt": 2, "errorDetails": {"code": "node_timeout"}}
    assert set(ctx) <= CONTEXT_KEYS


def test_wire_error_given_as_text() -> None:
    """An error stored as a plain string still has the {type, message, stack} shape."""
    line = trail.wire(record("WARN", "flow.jump_target_missing", {"error": "no flow 'x'"}), WHO)
    assert line["context"]["error"] == {"type": None, "message": "no flow 'x'", "stack": None}
    assert "metadata" not in line["context"]


def test_identity_falls_back_to_the_record_context_and_leaves_metadata() -> None:
    """Without the execution row, the identity comes from the record; it is not metadata."""
    ctx = {
        "institutionId": "i",
        "conversationId": "c",
        "contactId": "k",
        "flowId": "onboarding",
    }
    line = trail.wire(record(message="execution.started", context=ctx))
    assert line["context"] == {
        "institutionId": "i",
        "conversationId": "c",
        "contactId": "k",
        "metadata": {"flowId": "onboarding"},
    }
    partial = trail.wire(record(context=ctx), Identity("row-inst", None, None))
    assert partial["context"]["institutionId"] == "row-inst"
    assert partial["context"]["conversationId"] == "c"
    assert trail.wire(record())["context"]["contactId"] is None


def test_identity_from_records_takes_the_first_values() -> None:
    """The trail's own identity: the first record that carries each field wins."""
    records = [
        record(context={"reason": "x"}),
        record(context={"institutionId": "i", "conversationId": "c", "contactId": "k"}),
        record(context={"institutionId": "other"}),
    ]
    assert Identity.from_records(records) == Identity("i", "c", "k")
    assert Identity.from_records([]) == Identity()


def test_stored_warning_is_spelled_warn() -> None:
    """A stored WARNING (or lower-case) level is put on the wire as WARN."""
    assert trail.wire(record("warning"), WHO)["level"] == "WARN"


@pytest.mark.parametrize(
    ("typed", "level"),
    [("debug", "DEBUG"), ("Info", "INFO"), ("WARNING", "WARN"), ("warn", "WARN"),
     ("error", "ERROR"), ("CRITICAL", "CRITICAL")],
)  # fmt: skip
def test_parse_level_accepts_any_case_and_warning(typed: str, level: str) -> None:
    """Levels are case-insensitive and WARNING means WARN."""
    assert trail.parse_level(typed) == level


def test_parse_level_rejects_unknown_names() -> None:
    """An unknown level is a configuration error naming the valid ones."""
    with pytest.raises(ConfigError, match="DEBUG, INFO, WARN, ERROR, CRITICAL"):
        trail.parse_level("verbose")


def test_level_filter_keeps_the_minimum_and_above_in_order() -> None:
    """DEBUG < INFO < WARN < ERROR < CRITICAL; lines at or above the minimum stay, in order."""
    records = [
        record(level, f"m{i}")
        for i, level in enumerate(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "DEBUG"])
    ]
    assert [x["message"] for x in trail.lines(records, WHO)] == [f"m{i}" for i in range(6)]
    assert [x["message"] for x in trail.lines(records, WHO, minimum="INFO")] == [
        "m1",
        "m2",
        "m3",
        "m4",
    ]
    assert [x["level"] for x in trail.lines(records, WHO, minimum="WARN")] == [
        "WARN",
        "ERROR",
        "CRITICAL",
    ]
    assert [x["message"] for x in trail.lines(records, WHO, minimum="CRITICAL")] == ["m4"]


def test_unknown_stored_level_is_never_filtered_out() -> None:
    """A level the trail cannot classify passes every minimum rather than vanish."""
    assert trail.at_least("NOTICE", "CRITICAL")
    assert not trail.at_least("ERROR", "CRITICAL")


def test_console_line_reads_time_level_node_message_fields() -> None:
    """The console line is HH:MM:SS.mmm LEVEL node message key=value ... (UTC)."""
    line = trail.wire(record("DEBUG", "node.left", {"duration": 0.0123, "outcome": "ok"}), WHO)
    assert (
        trail.console_line(line)
        == "05:06:07.891 DEBUG ask_name node.left duration=12.3ms outcome=ok"
    )


def test_console_line_quotes_spaces_and_shows_errors() -> None:
    """Values with spaces are quoted, structures are compact JSON, errors read type: message."""
    ctx = {
        "reason": "waiting for a reply",
        "attempt": 2,
        "error": {"type": "NodeTimeout", "message": "took 5s", "stack": "Traceback..."},
        "extra": {"a": [1, 2]},
    }
    text = trail.console_line(trail.wire(record("WARN", "node.retry_scheduled", ctx), WHO))
    assert text == (
        '05:06:07.891 WARN  ask_name node.retry_scheduled reason="waiting for a reply" attempt=2'
        ' extra={"a":[1,2]} error="NodeTimeout: took 5s"'
    )
    assert "Traceback" not in text  # one line: the stack is in --json only


def test_console_line_without_node_and_with_long_duration() -> None:
    """No node prints as '-'; durations of a second or more print in seconds."""
    line = trail.wire(record(context={"duration": 2.5}, node_id=None), WHO)
    assert trail.console_line(line) == "05:06:07.891 INFO  - node.left duration=2.500s"


def test_console_line_stays_one_line() -> None:
    """Newlines inside values are escaped, never printed."""
    line = trail.wire(record(context={"text": "a\nb"}), WHO)
    assert "\n" not in trail.console_line(line)


def test_render_never_interprets_markup_from_log_text() -> None:
    """Log text that looks like rich markup prints literally, styled only by level."""
    ctx = {"text": "[red]boom[/red]", "note": "[bold]x[/]"}
    rendered = trail.render(trail.wire(record("ERROR", "[blink]msg", ctx, node_id="[n]"), WHO))
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, color_system="truecolor", width=200).print(rendered)
    plain = Console(file=io.StringIO(), width=200)
    with plain.capture() as captured:
        plain.print(rendered)
    assert captured.get().strip() == (
        "05:06:07.891 ERROR [n] [blink]msg text=[red]boom[/red] note=[bold]x[/]"
    )
    assert "\x1b[31m" in buffer.getvalue() or "\x1b[1;31m" in buffer.getvalue()
