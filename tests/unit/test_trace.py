"""The trail reader and the story comparison on hand-made records
(``trilha.observability.trace``); real engines and stores are in
``tests/integration/test_full_trace.py``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from trilha.core.execution import (
    Checkpoint,
    Execution,
    LogRecord,
    OutboundMessage,
    TranscriptEntry,
    Transition,
    dumps,
)
from trilha.core.states import ExecutionStatus, Outcome
from trilha.observability.trace import TrailIncomplete, read_trace, story_problems, trail_lines

S = ExecutionStatus
T = 1_800_000_000.0
WHO = {"institutionId": "inst", "conversationId": "conv", "contactId": "contact"}


def log(level: str, message: str, node: str | None = None, **context: Any) -> LogRecord:
    return LogRecord("ex-1", level, message, T, node, "message" if node else None, context)


def started() -> LogRecord:
    return log("INFO", "execution.started", flowId="f", flowVersion=1, actor="api", **WHO)


def changed(source: str, target: str, reason: str) -> LogRecord:
    return log("INFO", "execution.state_changed", **{"from": source, "to": target}, reason=reason)


def operator(operation: str, source: str, target: str, reason: str | None) -> LogRecord:
    context = {"operation": operation, "actor": "ops:ana", "reason": reason}
    return log("INFO", f"operator.{operation}", **context, **{"from": source, "to": target})


STEP = [
    log("DEBUG", "node.entered", "hi", attempt=1),
    log("INFO", "message.queued", "hi", idempotencyKey="k1", text="Olá"),
    log("DEBUG", "node.left", "hi", duration=0.5, outcome="ok"),
]
END = [
    changed("running", "completed", "reached the end"),
    log(
        "INFO",
        "execution.ended",
        status="completed",
        outcome="completed",
        reason="reached the end",
        durationSeconds=1.0,
    ),
]


def execution(**changes: Any) -> Execution:
    ex = Execution("ex-1", "inst", "conv", "contact", "f", 1, S.COMPLETED, None, {}, T, T + 1)
    return replace(ex, outcome=Outcome.COMPLETED, ended_at=T + 1, **changes)


def checkpoint(state: str = dumps({"flow": ["f", 1]})) -> Checkpoint:
    return Checkpoint("ex-1", 1, "hi", "message", S.RUNNING, state, "", T, 0.5)


def history(*middle: Transition) -> list[Transition]:
    return [
        Transition("ex-1", None, S.RUNNING, "started", T, "api"),
        *middle,
        Transition("ex-1", S.RUNNING, S.COMPLETED, "reached the end", T + 1),
    ]


OUTBOX = [OutboundMessage("k1", "ex-1", "inst", "conv", "contact", "default", "Olá", T, 1)]
TRANSCRIPT = [TranscriptEntry("bot", "Olá", T)]


def test_a_whole_story_has_no_problems() -> None:
    trace = read_trace(trail_lines([started(), *STEP, *END]))
    assert [(n.node_id, n.duration, n.outcome) for n in trace.nodes] == [("hi", 0.5, "ok")]
    assert trace.state_changes[0].actor == "api"
    problems = story_problems(trace, execution(), [checkpoint()], history(), OUTBOX, TRANSCRIPT)
    assert problems == []


def test_a_refusal_is_a_value_error_that_names_the_line() -> None:
    """Line numbers count from 1 in the message, as a reader of ``trilha logs`` counts."""
    with pytest.raises(ValueError, match=r"at line 2 \(node\.left, node 'hi', ") as refused:
        read_trace(trail_lines([started(), STEP[2]]))
    assert isinstance(refused.value, TrailIncomplete)
    assert refused.value.what == "left a node not entered" and refused.value.index == 1
    assert refused.value.line is not None and refused.value.line["message"] == "node.left"


def test_an_unknown_state_and_a_line_without_context_are_refusals() -> None:
    """Malformed lines are an incomplete trail, never a KeyError or the enum's error."""
    with pytest.raises(TrailIncomplete, match="an unknown state"):
        read_trace(trail_lines([started(), changed("running", "exploded", "why not")]))
    lines = trail_lines([started(), *STEP])
    del lines[2]["context"]
    with pytest.raises(TrailIncomplete, match="a line without its context"):
        read_trace(lines)


def test_operator_changes_compare_with_their_stored_reasons() -> None:
    """The trail carries the operator's own words, the history ``"<what>: <words>"``;
    an advance that left the state as it was is no change at all."""
    trail = [
        started(),
        *STEP,
        operator("pause", "running", "paused", "checking"),
        operator("resume", "paused", "running", None),
        operator("advance", "running", "running", None),
        *END,
    ]
    trace = read_trace(trail_lines(trail))
    moves = [(c.source, c.target, c.actor, c.operation) for c in trace.state_changes[1:3]]
    assert moves == [
        ("running", "paused", "ops:ana", "pause"),
        ("paused", "running", "ops:ana", "resume"),
    ]
    stored = history(
        Transition("ex-1", S.RUNNING, S.PAUSED, "paused by an operator: checking", T, "ops:ana"),
        Transition("ex-1", S.PAUSED, S.RUNNING, "resumed by an operator", T, "ops:ana"),
    )
    args = (execution(), [checkpoint()], stored, OUTBOX, TRANSCRIPT)
    assert story_problems(trace, *args) == []
    stored[1] = replace(stored[1], reason="paused by an operator")
    problems = story_problems(trace, execution(), [checkpoint()], stored, OUTBOX, TRANSCRIPT)
    assert len(problems) == 1 and problems[0].startswith("state changes: ")
    assert "#2 differs" in problems[0]


def test_problems_say_what_they_are_about() -> None:
    """A different row, checkpoints that no longer tell the flow, a lost outbox message:
    one problem each, prefixed with what it is about."""
    trace = read_trace(trail_lines([started(), *STEP, *END]))
    problems = story_problems(
        trace,
        execution(contact_id="someone-else"),
        [checkpoint(state="{garbage")],
        history(),
        [],
        TRANSCRIPT,
    )
    # the damaged checkpoint tells no flow version (the damage itself is the invariant
    # checker's finding): the trail names one the checkpoints no longer show
    assert [p.split(":")[0] for p in problems] == ["identity", "flows", "bot messages"]
    assert "checkpoints []" in problems[1]
    assert problems[2].endswith("store nothing")


def test_deliveries_are_told_after_the_end_that_queued_them() -> None:
    """The dispatcher delivers an execution's last message after its end: its lines
    (at their own levels) are part of the story; nothing else is, and a delivery line
    must name its message."""
    delivered = [
        log("WARN", "message.delivery_failed", idempotencyKey="k1", attempt=1, status=503),
        log("ERROR", "message.dead", idempotencyKey="k1", attempts=1),
        log("INFO", "message.redriven", idempotencyKey="k1", actor="key:k"),
        log("INFO", "message.delivered", idempotencyKey="k1"),
        log("INFO", "message.status", idempotencyKey="k1", status="read"),  # a receipt
    ]
    trace = read_trace(trail_lines([started(), *STEP, *END, *delivered]))
    problems = story_problems(trace, execution(), [checkpoint()], history(), OUTBOX, TRANSCRIPT)
    assert problems == []
    with pytest.raises(TrailIncomplete, match=r"message\.dead logged at WARN"):
        read_trace(
            trail_lines([started(), *STEP, *END, log("WARN", "message.dead", idempotencyKey="k1")])
        )
    with pytest.raises(TrailIncomplete, match="a delivery without its message"):
        read_trace(trail_lines([started(), *STEP, *END, log("INFO", "message.delivered")]))
    with pytest.raises(TrailIncomplete, match="a line after the execution ended"):
        read_trace(
            trail_lines(
                [
                    started(),
                    *STEP,
                    *END,
                    log("INFO", "message.queued", idempotencyKey="k2", text="x"),
                ]
            )
        )
