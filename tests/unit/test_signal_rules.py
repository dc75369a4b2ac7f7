"""Signals without a store: the event's name and the signal's bounds, the wait_event node's
model and processor, and the ``signals`` invariant of ``trilha check``."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from test_invariants import EID, T0, inbound, waiting, with_execution

from trilha.config import Config
from trilha.core.flow import WaitEventNode, load_flow
from trilha.core.invariants import Records, check
from trilha.core.signals import Signal, check_signal, event_problem, event_wait, waited_event
from trilha.core.states import ExecutionStatus
from trilha.errors import ConfigError, FlowValidationError, LimitExceeded
from trilha.processors.base import StepContext, WaitEvent
from trilha.processors.wait_event import WaitEventProcessor

S = ExecutionStatus


def test_the_wait_names_the_event_and_back() -> None:
    """``event:NAME`` is the wait of an event; any other wait is none."""
    assert event_wait("payment.confirmed") == "event:payment.confirmed"
    assert waited_event("event:payment.confirmed") == "payment.confirmed"
    assert [waited_event(w) for w in (None, "input", "timer", "events:x")] == [None] * 4


@pytest.mark.parametrize("event", ["payment.confirmed", "a", "A_b-c:d.9", "e" * 100])
def test_event_names_that_are_accepted(event: str) -> None:
    assert event_problem(event) is None


@pytest.mark.parametrize("event", ["", "e" * 101, "pay confirmed", "pagamento/ok", "ação", "a\n"])
def test_event_names_that_are_refused(event: str) -> None:
    problem = event_problem(event)
    assert problem is not None and "1 to 100 letters, digits" in problem


def test_check_signal_names_what_is_wrong() -> None:
    """The event, the id and the payload's size each refused with the field and why;
    what fits returns its size."""
    assert check_signal("ok", "id-1", {"a": 1}, max_bytes=64) == len('{"a":1}')
    with pytest.raises(ConfigError, match="not an event name") as bad_event:
        check_signal("no spaces", "id", None, max_bytes=64)
    assert bad_event.value.details["field"] == "event"
    for signal_id in ("", "x" * 201, "tab\there"):
        with pytest.raises(ConfigError, match="signalId must be 1 to 200") as bad_id:
            check_signal("ok", signal_id, None, max_bytes=64)
        assert bad_id.value.details["field"] == "signalId"
    with pytest.raises(LimitExceeded, match=r"payload is 71 bytes.*limit is 64") as big:
        check_signal("ok", "id", "x" * 69, max_bytes=64)
    assert big.value.details == {"kind": "limit", "limit": 64, "field": "payload"}
    with pytest.raises(LimitExceeded, match="64 bits"):
        check_signal("ok", "id", 2**70, max_bytes=64)


def pay_flow(**wait: Any) -> dict[str, Any]:
    node = {"id": "w", "type": "wait_event", "event": "payment.confirmed", "next": "e", **wait}
    return {"id": "f", "start": "w", "nodes": [node, {"id": "e", "type": "end"}, late()]}


def late() -> dict[str, Any]:
    return {"id": "late", "type": "end"}


def test_the_node_model_and_its_edges() -> None:
    """A wait_event node is a built-in type: onTimeout is an edge, saveAs a variable path."""
    flow = load_flow(pay_flow(saveAs="payment", inputTimeoutSeconds=60, onTimeout="late"))
    node = flow.node("w")
    assert isinstance(node, WaitEventNode)
    assert (node.event, node.save_as, node.input_timeout_seconds) == (
        "payment.confirmed",
        "payment",
        60,
    )
    assert dict(node.targets()) == {"next": "e", "onTimeout": "late"}
    assert flow.wire()["nodes"][0] == {
        "id": "w",
        "type": "wait_event",
        "event": "payment.confirmed",
        "saveAs": "payment",
        "inputTimeoutSeconds": 60.0,
        "onTimeout": "late",
        "next": "e",
    }


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"event": "a b"}, "nodes[0].event", "should match pattern"),
        ({"event": ""}, "nodes[0].event", "at least 1 character"),
        ({"saveAs": "1bad"}, "nodes[0].saveAs", "not a valid variable path"),
        ({"saveAs": "sys.x"}, "nodes[0].saveAs", "sys.* is read-only"),
        ({"inputTimeoutSeconds": 0}, "nodes[0].inputTimeoutSeconds", "greater than 0"),
        ({"inputTimeoutSeconds": 31 * 86_400}, "nodes[0].inputTimeoutSeconds", "less than"),
        ({"onTimeout": "nowhere"}, "nodes[0].onTimeout", "no node 'nowhere'"),
        ({"payload": 1}, "nodes[0].payload", "unknown field"),
    ],
)
def test_a_bad_node_names_its_field(change: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(FlowValidationError) as caught:
        load_flow(pay_flow(**change))
    found = {p.path: p.message for p in caught.value.problems}
    assert path in found and words in found[path], found


def context(node_state: dict[str, Any], signal: Signal | None = None) -> StepContext:
    flow = load_flow(pay_flow(saveAs="payment"))
    return StepContext(
        execution_id=EID,
        institution_id="inst-1",
        conversation_id="conv-1",
        contact_id="contact-1",
        flow=flow,
        variables={},
        node_state=node_state,
        now=T0,
        config=Config(),
        signal=signal,
    )


def a_signal(event: str = "payment.confirmed") -> Signal:
    return Signal(1, EID, "inst-1", event, "s-1", {"amount": 5}, T0 - 10)


async def test_the_processor_waits_then_takes_the_signal() -> None:
    """Without a signal it waits until now + the flow's input timeout (kept as node
    state: a second run keeps the first due time); with one it saves the payload."""
    node = load_flow(pay_flow(saveAs="payment")).node("w")
    assert isinstance(node, WaitEventNode)
    run = WaitEventProcessor().run
    first = await run(node, context({}))
    due = T0 + 86_400
    assert first.wait == WaitEvent("payment.confirmed", due)
    assert first.node_state == {"event": "payment.confirmed", "dueAt": due}
    assert not first.consumed_signal and first.variables == {}
    again = await run(node, dataclasses.replace(context(first.node_state or {}), now=T0 + 50))
    assert again.wait == WaitEvent("payment.confirmed", due)
    took = await run(node, context(first.node_state or {}, a_signal()))
    assert took.wait is None and took.consumed_signal
    assert took.variables == {"payment": {"amount": 5}}
    assert took.output == {"event": "payment.confirmed", "signalId": "s-1"}
    other = await run(node, context({}, a_signal("refund")))  # not its event: waits on
    assert other.wait is not None and not other.consumed_signal


def event_waiting(**fields: Any) -> Records:
    """Waiting for ``payment.confirmed`` for an hour at node ``w``."""
    fields.setdefault("waiting_for", "event:payment.confirmed")
    fields.setdefault("due_at", T0 + 3600)
    fields.setdefault("wake_at", T0 + 3600)
    return waiting(**fields)


def test_an_event_wait_is_a_named_wait() -> None:
    """waiting_input for event:NAME is sound; a reply pending meanwhile is not stranded
    (it waits for the next question)."""
    assert check(event_waiting(), now=T0 + 100) == []
    with_reply = dataclasses.replace(event_waiting(), inbox=[inbound(1, "m1")])
    assert check(with_reply, now=T0 + 100) == []


def test_a_pending_signal_of_the_event_waited_for_must_be_due() -> None:
    """A signal of the event waited for, pending while the execution is not due, is
    stranded; due now, held by a worker, or of another event, it is not."""
    stranded = dataclasses.replace(event_waiting(), signals=[a_signal()])
    (violation,) = check(stranded, now=T0 + 100)
    assert violation.rule == "signals" and violation.severity == "error"
    assert violation.detail == (
        "signal s-1 of event payment.confirmed waits to be applied but the execution is"
        " not due: the signal is stranded"
    )
    due = dataclasses.replace(event_waiting(wake_at=T0 + 90), signals=[a_signal()])
    assert check(due, now=T0 + 100) == []
    held = with_execution(stranded, lease_owner="w1", lease_expires_at=T0 + 130)
    assert check(held, now=T0 + 100) == []
    other = dataclasses.replace(event_waiting(), signals=[a_signal("refund")])
    assert check(other, now=T0 + 100) == []


def test_a_consumed_signal_is_the_input_of_its_step() -> None:
    """consumed_step must be a step whose input names the signal."""
    records = event_waiting()
    consumed = dataclasses.replace(a_signal(), consumed_at=T0 + 2, consumed_step=2)
    (violation,) = check(dataclasses.replace(records, signals=[consumed]), now=T0 + 100)
    assert violation.rule == "signals"
    assert "signal s-1 is marked consumed by step 2, which did not take it" in violation.detail
    took = dataclasses.replace(
        records.checkpoints[1],
        input={"event": "payment.confirmed", "signalId": "s-1", "payload": {"amount": 5}},
    )
    sound = dataclasses.replace(
        records, checkpoints=[records.checkpoints[0], took], signals=[consumed]
    )
    assert check(sound, now=T0 + 100) == []
