"""Signals through the engine over a real SQLite store: a ``wait_event`` node waits for an
event from outside, takes a signal sent before or after it got there, applies a repeated
``signalId`` once, times out to ``onTimeout`` or ends, and refuses what it cannot keep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from trilha.config import Config, EngineConfig
from trilha.core.budget import json_bytes
from trilha.core.flow import load_flow
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.operator import Operator
from trilha.engine.signals import send_signal
from trilha.errors import (
    ConfigError,
    ExecutionEnded,
    ExecutionNotFound,
    FlowValidationError,
    LimitExceeded,
)
from trilha.observability.checker import check_execution

S = ExecutionStatus
Harness = Any

TIMEOUT_MESSAGE = "Sorry, this is taking too long. We will get back to you."


def flow(flow_id: str, *nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": flow_id, "start": nodes[0]["id"], "nodes": list(nodes), **extra}


def payment_flow(**wait: Any) -> dict[str, Any]:
    """Ask to pay, wait for ``payment.confirmed``, thank with the amount from the payload."""
    return flow(
        "pay",
        {"id": "ask", "type": "message", "text": "Pay with the link, please.", "next": "wait"},
        {
            "id": "wait",
            "type": "wait_event",
            "event": "payment.confirmed",
            "saveAs": "payment",
            "inputTimeoutSeconds": 3600,
            "next": "thanks",
            **wait,
        },
        {"id": "thanks", "type": "end", "text": "Paid {{payment.amount}}, thank you!"},
        {"id": "late", "type": "end", "text": "The link expired."},
    )


async def bot_texts(h: Harness, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def trail(h: Harness, execution_id: str, prefix: str = "signal.") -> list[tuple[str, Any]]:
    return [
        (line.message, line.context)
        for line in await h.store.logs(execution_id)
        if line.message.startswith(prefix)
    ]


async def no_violations(h: Harness, execution_id: str) -> None:
    found = await check_execution(h.store, execution_id, now=h.clock.now(), grace=60)
    assert found == [], found


async def test_a_signal_wakes_the_waiting_execution(harness: Harness) -> None:
    """The execution waits (waiting_input, event:payment.confirmed, due in 3600 s); the
    signal wakes it, its payload lands in saveAs, and the step's input records it."""
    await harness.publish(payment_flow())
    ex = await harness.start("pay")
    await harness.settle()
    waiting = await harness.get(ex.id)
    assert waiting.status is S.WAITING_INPUT
    assert waiting.waiting_for == "event:payment.confirmed"
    assert waiting.due_at == waiting.wake_at == harness.clock.now() + 3600
    assert waiting.node_state == {"event": "payment.confirmed", "dueAt": waiting.due_at}
    await no_violations(harness, ex.id)

    harness.clock.advance(60)
    payload = {"amount": "R$ 10,00", "provider": {"id": "pix-1"}}
    result = await send_signal(
        harness.engine, ex.id, "payment.confirmed", signal_id="pay-1", payload=payload
    )
    assert result.status == "accepted" and result.signal.pending
    assert (await harness.get(ex.id)).wake_at == harness.clock.now()  # due now
    await harness.settle()

    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED and done.outcome is Outcome.COMPLETED
    assert done.variables["payment"] == payload
    assert await bot_texts(harness, ex.id) == [
        "Pay with the link, please.",
        "Paid R$ 10,00, thank you!",
    ]
    steps = [c for c in await harness.store.checkpoints(ex.id) if c.node_id == "wait"]
    assert [(c.input, c.output) for c in steps] == [
        (None, {"waitingFor": "event:payment.confirmed"}),
        (
            {"event": "payment.confirmed", "signalId": "pay-1", "payload": payload},
            {"event": "payment.confirmed", "signalId": "pay-1"},
        ),
    ]
    (signal,) = await harness.store.signals_for(ex.id)
    assert signal.consumed_step == steps[1].seq and signal.consumed_at == harness.clock.now()
    size = json_bytes(payload)
    received = {"event": "payment.confirmed", "signalId": "pay-1", "payloadBytes": size}
    assert await trail(harness, ex.id) == [
        ("signal.received", received),
        ("signal.applied", {"event": "payment.confirmed", "signalId": "pay-1"}),
    ]
    history = [t.reason for t in await harness.store.transitions(ex.id)]
    assert "waiting for event 'payment.confirmed' at 'wait'" in history
    assert "signal 'payment.confirmed' received" in history
    # not a contact message: the transcript holds what the bot and the contact said
    assert all(t.sender == "bot" for t in await harness.store.transcript(ex.id))
    await no_violations(harness, ex.id)


async def test_a_signal_sent_before_the_node_is_kept_for_it(harness: Harness) -> None:
    """A signal that comes while the execution waits for a reply is kept (it does not
    wake it) and consumed when the execution gets to its wait_event node, in one turn."""
    await harness.publish(
        flow(
            "order",
            {"id": "name", "type": "question", "text": "Name?", "variable": "name", "next": "w"},
            {"id": "w", "type": "wait_event", "event": "paid", "saveAs": "order", "next": "e"},
            {"id": "e", "type": "end", "text": "{{name}}: order {{order.id}} paid"},
        )
    )
    ex = await harness.start("order")
    await harness.settle()
    asked = await harness.get(ex.id)
    assert asked.waiting_for == "input"
    await send_signal(harness.engine, ex.id, "paid", signal_id="s1", payload={"id": 7})
    assert (await harness.get(ex.id)).wake_at == asked.wake_at  # not woken: not waited for
    assert [s.pending for s in await harness.store.signals_for(ex.id)] == [True]

    done = await harness.reply(ex.id, "Ana")
    assert done.status is S.COMPLETED
    assert done.variables["order"] == {"id": 7}
    assert (await bot_texts(harness, ex.id))[-1] == "Ana: order 7 paid"
    # taken on entering the node: the node never waited
    waits = [t.reason for t in await harness.store.transitions(ex.id)]
    assert not any("waiting for event" in w for w in waits)
    await no_violations(harness, ex.id)


async def test_a_signal_sent_before_the_first_step(harness: Harness) -> None:
    """An execution just started (nothing ran yet) keeps a signal for its wait_event node."""
    await harness.publish(payment_flow())
    ex = await harness.start("pay")
    await send_signal(harness.engine, ex.id, "payment.confirmed", payload={"amount": 5})
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED and done.variables["payment"] == {"amount": 5}


async def test_a_repeated_signal_id_is_applied_once(harness: Harness) -> None:
    """The same signalId again (even with another payload) answers the first signal and
    stores nothing: a second wait for the event keeps waiting; after the end a repeat is
    still a duplicate, not an error."""
    await harness.publish(
        flow(
            "twice",
            {"id": "w1", "type": "wait_event", "event": "tick", "saveAs": "a", "next": "w2"},
            {"id": "w2", "type": "wait_event", "event": "tick", "saveAs": "b", "next": "e"},
            {"id": "e", "type": "end"},
        )
    )
    ex = await harness.start("twice")
    await harness.settle()
    first = await send_signal(harness.engine, ex.id, "tick", signal_id="t-1", payload=1)
    again = await send_signal(harness.engine, ex.id, "tick", signal_id="t-1", payload=2)
    assert (first.status, again.status) == ("accepted", "duplicate")
    assert again.signal == first.signal and again.signal.payload == 1
    await harness.settle()
    mid = await harness.get(ex.id)
    assert mid.status is S.WAITING_INPUT and mid.current_node_id == "w2"
    assert mid.variables["a"] == 1 and "b" not in mid.variables
    late = await send_signal(harness.engine, ex.id, "tick", signal_id="t-1", payload=3)
    assert late.status == "duplicate" and late.signal.consumed_step is not None
    await harness.settle()
    assert (await harness.get(ex.id)).current_node_id == "w2"

    await send_signal(harness.engine, ex.id, "tick", signal_id="t-2", payload=2)
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED and (done.variables["a"], done.variables["b"]) == (1, 2)
    after = await send_signal(harness.engine, ex.id, "tick", signal_id="t-2", payload=9)
    assert after.status == "duplicate" and after.signal.payload == 2
    assert len(await harness.store.signals_for(ex.id)) == 2
    assert [m for m, _ in await trail(harness, ex.id)].count("signal.applied") == 2


async def test_two_pending_signals_are_taken_in_order_in_one_turn(harness: Harness) -> None:
    """A loop through a wait_event node takes the pending signals oldest first, each once,
    although the first one's consumption is not committed when the second is read."""
    await harness.publish(
        flow(
            "loop",
            {"id": "w", "type": "wait_event", "event": "item", "saveAs": "item", "next": "add"},
            {
                "id": "add",
                "type": "set",
                "expressions": {"items": "items + item"},
                "next": "more",
            },
            {
                "id": "more",
                "type": "condition",
                "branches": [{"when": "len(items) < 3", "next": "w"}],
                "default": "e",
            },
            {"id": "e", "type": "end", "text": "{{items}}"},
        )
    )
    ex = await harness.start("loop", variables={"items": ""})
    for n in ("a", "b"):
        await send_signal(harness.engine, ex.id, "item", signal_id=n, payload=n)
    await harness.settle()
    waiting = await harness.get(ex.id)
    assert waiting.variables["items"] == "ab" and waiting.waiting_for == "event:item"
    await send_signal(harness.engine, ex.id, "item", signal_id="c", payload="c")
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED and done.variables["items"] == "abc"
    steps = sorted(s.consumed_step or 0 for s in await harness.store.signals_for(ex.id))
    assert len(set(steps)) == 3


async def test_timeout_follows_on_timeout(harness: Harness) -> None:
    """No signal within inputTimeoutSeconds: onTimeout is followed; a late signal is
    kept (nothing waits for it) and the execution has ended its way."""
    await harness.publish(payment_flow(onTimeout="late"))
    ex = await harness.start("pay")
    await harness.settle()
    harness.clock.advance(3599)
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.WAITING_INPUT
    harness.clock.advance(1)
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED and done.current_node_id == "late"
    assert (await bot_texts(harness, ex.id))[-1] == "The link expired."
    history = [t.reason for t in await harness.store.transitions(ex.id)]
    assert "no signal 'payment.confirmed' in time; following onTimeout" in history
    with pytest.raises(ExecutionEnded, match="it takes no more signals"):
        await send_signal(harness.engine, ex.id, "payment.confirmed", payload={})


async def test_timeout_without_on_timeout_ends_as_a_question_does(harness: Harness) -> None:
    """Without onTimeout the execution ends ``timeout`` after the flow's timeoutMessage;
    the default wait is the flow's inputTimeoutSeconds."""
    wait = flow(
        "w",
        {"id": "w", "type": "wait_event", "event": "approved", "next": "e"},
        {"id": "e", "type": "end"},
        settings={"inputTimeoutSeconds": 120},
    )
    await harness.publish(wait)
    ex = await harness.start("w")
    await harness.settle()
    assert (await harness.get(ex.id)).due_at == harness.clock.now() + 120
    harness.clock.advance(121)
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.TIMEOUT and done.outcome is Outcome.TIMEOUT
    assert done.error is not None and done.error["message"] == "no signal 'approved' in time"
    assert await bot_texts(harness, ex.id) == [TIMEOUT_MESSAGE]
    await no_violations(harness, ex.id)


async def test_what_cannot_be_kept_is_refused(
    make_harness: Callable[..., Harness],
) -> None:
    """A payload over max_value_bytes, a bad event name or signal id, one signal over
    max_pending_signals, an unknown execution or another institution's: refused, with
    the reason, and nothing stored."""
    h = make_harness(Config(engine=EngineConfig(max_value_bytes=100, max_pending_signals=2)))
    await h.publish(payment_flow())
    ex = await h.start("pay", institution_id="acme")
    await h.settle()
    with pytest.raises(LimitExceeded, match=r"payload is 1\d\d bytes.*limit is 100.*max_value"):
        await send_signal(h.engine, ex.id, "payment.confirmed", payload={"x": "y" * 100})
    with pytest.raises(ConfigError, match="is not an event name"):
        await send_signal(h.engine, ex.id, "payment confirmed", payload={})
    with pytest.raises(ConfigError, match="is not an event name"):
        await send_signal(h.engine, ex.id, "e" * 101, payload={})
    with pytest.raises(ConfigError, match="signalId must be 1 to 200 printable"):
        await send_signal(h.engine, ex.id, "payment.confirmed", signal_id="a\nb")
    with pytest.raises(ExecutionNotFound):
        await send_signal(h.engine, "nope", "payment.confirmed")
    with pytest.raises(ExecutionNotFound):
        await send_signal(h.engine, ex.id, "payment.confirmed", institution_id="beta")
    assert await h.store.signals_for(ex.id) == []

    for n in range(2):  # events nothing waits for: they stay pending, up to the bound
        await send_signal(h.engine, ex.id, "other", signal_id=f"o{n}")
    with pytest.raises(LimitExceeded, match=r"2 signals not consumed yet.*max_pending_signals"):
        await send_signal(h.engine, ex.id, "payment.confirmed", signal_id="p")
    again = await send_signal(h.engine, ex.id, "other", signal_id="o1")  # a repeat still answers
    assert again.status == "duplicate"
    waiting = await h.get(ex.id)
    assert waiting.status is S.WAITING_INPUT and waiting.wake_at == waiting.due_at


def test_a_bad_event_name_in_a_flow_is_refused(harness: Harness) -> None:
    """Publishing names the node's field and why: the event's pattern, the saveAs path."""
    bad = payment_flow(event="no spaces", saveAs="1x")
    with pytest.raises(FlowValidationError) as caught:
        load_flow(bad, harness.engine.processors.node_types)
    paths = {p.path for p in caught.value.problems}
    assert paths == {"nodes[1].event", "nodes[1].saveAs"}


async def test_other_events_and_replies_do_not_wake_it(harness: Harness) -> None:
    """While it waits for its event, a signal of another event and the contact's reply
    are kept, neither wakes it (no busy loop); the reply answers the next question."""
    await harness.publish(
        flow(
            "both",
            {"id": "w", "type": "wait_event", "event": "go", "next": "q"},
            {"id": "q", "type": "question", "text": "Rate us", "variable": "rate", "next": "e"},
            {"id": "e", "type": "end", "text": "rated {{rate}}"},
        )
    )
    ex = await harness.start("both")
    await harness.settle()
    waiting = await harness.get(ex.id)
    await send_signal(harness.engine, ex.id, "stop", signal_id="x")
    await harness.engine.send(ex.id, "5")
    await harness.settle()
    still = await harness.get(ex.id)
    assert still.status is S.WAITING_INPUT and still.wake_at == waiting.due_at
    assert still.step_seq == waiting.step_seq  # nothing ran
    await no_violations(harness, ex.id)

    await send_signal(harness.engine, ex.id, "go", signal_id="g")
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED and done.variables["rate"] == "5"
    assert [s.signal_id for s in await harness.store.signals_for(ex.id) if s.pending] == ["x"]


async def test_pause_and_resume_keep_the_event_wait(harness: Harness) -> None:
    """A signal sent while paused is kept; resuming returns to the event wait and the
    store wakes it for the signal."""
    await harness.publish(payment_flow())
    ex = await harness.start("pay")
    await harness.settle()
    operator = Operator(harness.store, harness.engine)
    await operator.pause(ex.id)
    await send_signal(harness.engine, ex.id, "payment.confirmed", payload={"amount": 3})
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.PAUSED
    resumed = await operator.resume(ex.id)
    assert resumed.waiting_for == "event:payment.confirmed"
    assert resumed.wake_at == harness.clock.now()
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED and done.variables["payment"] == {"amount": 3}


async def test_resume_without_a_signal_waits_on(harness: Harness) -> None:
    """Resumed with nothing pending, it waits for its event until the same due time."""
    await harness.publish(payment_flow())
    ex = await harness.start("pay")
    await harness.settle()
    due = (await harness.get(ex.id)).due_at
    operator = Operator(harness.store, harness.engine)
    await operator.pause(ex.id)
    await operator.resume(ex.id)
    await harness.settle()
    again = await harness.get(ex.id)
    assert again.status is S.WAITING_INPUT and again.waiting_for == "event:payment.confirmed"
    assert again.due_at == again.wake_at == due
    await send_signal(harness.engine, ex.id, "payment.confirmed", payload={"amount": 1})
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.COMPLETED


async def test_a_worker_that_lost_its_lease_does_not_apply_the_signal(
    make_harness: Callable[..., Harness],
) -> None:
    """A worker reads the signal and runs the node after its lease lapsed and another
    worker claimed the execution: its commit is fenced off, the signal stays pending,
    and the new owner applies it, once."""
    first = make_harness(worker_id="w1")
    await first.publish(payment_flow())
    ex = await first.start("pay")
    await first.settle()
    paid = {"amount": 1}
    await send_signal(first.engine, ex.id, "payment.confirmed", signal_id="p", payload=paid)
    (late,) = await first.engine.claim(execution_id=ex.id)
    first.clock.advance(first.engine.config.engine.lease_seconds + 1)  # w1 stalls
    second = make_harness(worker_id="w2")
    (owner,) = await second.engine.claim(execution_id=ex.id)

    await first.engine.advance(late)  # runs the node with the signal; its commit is refused
    (signal,) = await second.store.signals_for(ex.id)
    assert signal.pending and (await second.get(ex.id)).status is S.WAITING_INPUT

    await second.engine.advance(owner)
    done = await second.get(ex.id)
    assert done.status is S.COMPLETED and done.variables["payment"] == {"amount": 1}
    (signal,) = await second.store.signals_for(ex.id)
    assert signal.consumed_step is not None
    assert [m for m, _ in await trail(second, ex.id)].count("signal.applied") == 1
    assert await bot_texts(second, ex.id) == ["Pay with the link, please.", "Paid 1, thank you!"]


async def test_a_payload_the_variables_cannot_hold_fails_the_node(
    make_harness: Callable[..., Harness],
) -> None:
    """A payload that fits max_value_bytes but would push the variables past
    max_state_bytes fails the node (kind limit) and takes its fallback; the signal is not
    consumed (it stays listed, pending)."""
    h = make_harness(Config(engine=EngineConfig(max_value_bytes=200, max_state_bytes=256)))
    await h.publish(payment_flow(fallback={"next": "late"}))
    ex = await h.start("pay", variables={"note": "n" * 120})
    await h.settle()
    await send_signal(h.engine, ex.id, "payment.confirmed", signal_id="big", payload="x" * 150)
    await h.settle()
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.current_node_id == "late"
    assert "payment" not in done.variables
    (failed,) = [c for c in await h.store.checkpoints(ex.id) if c.error is not None]
    assert failed.node_id == "wait" and "max_state_bytes" in failed.error["message"]
    assert [s.pending for s in await h.store.signals_for(ex.id)] == [True]
    assert [m for m, _ in await trail(h, ex.id)] == ["signal.received"]
