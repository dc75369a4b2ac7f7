"""A person takes the conversation over (a ``handoff`` in ``wait`` mode) and hands it back,
through the engine over a real SQLite store, with the desk a real HTTP server."""

from __future__ import annotations

from typing import Any

import pytest

from trilha.channels.desk import HandoffDesk
from trilha.channels.memory import MemoryChannel
from trilha.core.hold import held
from trilha.core.invariants import Records, check
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.operator import Operator
from trilha.engine.worker import Worker
from trilha.errors import ConfigError, FlowError, IllegalTransition, NotHeld
from trilha.observability.trace import trace_problems

Harness = Any

#: ask -> to_desk (a person holds it) -> survey (satisfaction) -> bye
FLOW = {
    "id": "care",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "What is wrong?", "variable": "issue",
         "next": "to_desk"},
        {"id": "to_desk", "type": "handoff", "mode": "wait", "queue": "support",
         "reason": "about {{issue}}", "text": "Connecting you to a person.",
         "returnAfterSeconds": 600, "onReturnTimeout": "sorry", "next": "survey"},
        {"id": "survey", "type": "question", "text": "How did we do, 1 to 5?",
         "variable": "score", "validate": {"kind": "number", "min": 1, "max": 5},
         "next": "bye"},
        {"id": "sorry", "type": "message", "text": "Nobody could answer now, sorry.",
         "next": "survey"},
        {"id": "bye", "type": "end", "text": "Thanks! Score {{score}}."},
    ],
}  # fmt: skip

INSTITUTION = "inst-1"


async def _agent(store: Any, clock: Any, message_id: str, text: str, **kw: Any) -> Any:
    return await store.record_agent_message(
        institution_id=kw.pop("institution_id", INSTITUTION),
        conversation_id=kw.pop("conversation_id", "conv-1"),
        message_id=message_id,
        agent_id=kw.pop("agent_id", "ana"),
        text=text,
        content=kw.pop("content", None),
        now=clock.now(),
    )


async def _held_execution(harness: Harness, **variables: Any) -> Any:
    await harness.publish(FLOW)
    ex = await harness.start("care", variables=variables)
    await harness.settle()
    ex = await harness.reply(ex.id, "my card was blocked")
    assert held(ex)
    return ex


def _no_errors(violations: list[Any]) -> None:
    assert [v for v in violations if v.severity == "error"] == []


async def _check(harness: Harness, execution_id: str) -> list[Any]:
    """The invariants' findings; and the trail alone tells the whole story (the same
    states, steps and messages both ways as the rest of the store)."""
    store = harness.store
    assert await trace_problems(store, execution_id) == []
    records = Records(
        execution=await store.get_execution(execution_id),
        transitions=await store.transitions(execution_id),
        checkpoints=await store.checkpoints(execution_id),
        outbox=await store.outbox_for(execution_id),
        inbox=await store.inbox_for(execution_id),
        logs=await store.logs(execution_id),
    )
    return check(records, now=harness.clock.now())


async def test_a_wait_handoff_pauses_for_a_person_and_keeps_the_contact_unanswered(
    harness: Harness,
) -> None:
    """The execution is paused waiting for `human` (no pausedFrom: not an operator's
    pause), the contact's messages are stored in order and held (applied, never answered
    by the bot), and the transcript shows them after the bot's handoff message."""
    ex = await _held_execution(harness)
    assert ex.waiting_for == "human" and ex.paused_from is None
    assert ex.current_node_id == "to_desk"
    assert ex.node_state["hold"]["queue"] == "support"
    assert ex.node_state["hold"]["reason"] == "about my card was blocked"
    assert ex.due_at == ex.wake_at == pytest.approx(harness.clock.now() + 600)
    said_before = harness.channel.texts(ex.id)
    assert said_before[-1] == "Connecting you to a person."

    for text in ("hello?", "is anyone there", "please"):
        harness.clock.advance(1)
        await harness.engine.send(ex.id, text)
        await harness.settle()
    after = await harness.get(ex.id)
    assert held(after) and after.step_seq == ex.step_seq  # nothing ran
    assert harness.channel.texts(ex.id) == said_before  # the bot said nothing
    inbox = await harness.store.inbox_for(ex.id)
    held_rows = [m for m in inbox if m.held_at is not None]
    assert [m.text for m in held_rows] == ["hello?", "is anyone there", "please"]
    assert all(m.applied_at is not None for m in held_rows)
    transcript = [(t.sender, t.text) for t in await harness.store.transcript(ex.id)]
    assert transcript == [
        ("bot", "What is wrong?"),
        ("contact", "my card was blocked"),
        ("bot", "Connecting you to a person."),
        ("contact", "hello?"),
        ("contact", "is anyone there"),
        ("contact", "please"),
    ]
    logs = [r.message for r in await harness.store.logs(ex.id)]
    assert "handoff.holding" in logs and logs.count("message.held") == 3
    handoffs = await harness.store.handoffs(ex.id)
    assert [(h.queue, h.mode) for h in handoffs] == [("support", "wait")]
    _no_errors(await _check(harness, ex.id))


async def test_a_person_speaks_and_hands_back_to_the_survey(harness: Harness) -> None:
    """Agent messages go out through the outbox once per messageId, marked `agent` in the
    transcript; the handback resumes at the handoff's next with the variables merged, and
    the satisfaction question waits for a new reply (the held ones are not its answer)."""
    ex = await _held_execution(harness)
    harness.clock.advance(5)
    await harness.engine.send(ex.id, "hello?")
    await harness.settle()

    harness.clock.advance(5)
    first = await _agent(harness.store, harness.clock, "m-1", "Hi, I am Ana. Unblocking now.")
    assert first.status == "accepted" and first.message.agent_id == "ana"
    again = await _agent(harness.store, harness.clock, "m-1", "a different text")
    assert again.status == "duplicate" and again.message == first.message
    await harness.settle()
    delivered = [m for m in harness.channel.messages if m.agent_id is not None]
    assert [(m.text, m.agent_id) for m in delivered] == [("Hi, I am Ana. Unblocking now.", "ana")]
    answered = await harness.get(ex.id)
    assert answered.due_at is None and answered.wake_at is None  # a person answered

    operator = Operator(harness.store, harness.engine)
    back = await operator.handback(
        ex.id, variables={"ticket.id": "T-9"}, actor="key:abc", reason="solved"
    )
    assert back.status.value == "running" and back.current_node_id == "survey"
    assert back.variables["ticket"] == {"id": "T-9"}
    await harness.settle()
    now = await harness.get(ex.id)
    assert now.status.value == "waiting_input" and now.current_node_id == "survey"
    assert harness.channel.texts(ex.id)[-1] == "How did we do, 1 to 5?"
    done = await harness.reply(ex.id, "5")
    assert done.status.value == "completed" and done.variables["score"] == 5
    assert harness.channel.texts(ex.id)[-1] == "Thanks! Score 5."

    transcript = [(t.sender, t.text, t.agent_id) for t in await harness.store.transcript(ex.id)]
    assert transcript == [
        ("bot", "What is wrong?", None),
        ("contact", "my card was blocked", None),
        ("bot", "Connecting you to a person.", None),
        ("contact", "hello?", None),
        ("agent", "Hi, I am Ana. Unblocking now.", "ana"),
        ("bot", "How did we do, 1 to 5?", None),
        ("contact", "5", None),
        ("bot", "Thanks! Score 5.", None),
    ]
    history = await harness.store.transitions(ex.id)
    hand = [t for t in history if t.actor == "key:abc"]
    assert [(t.source.value if t.source else None, t.target.value) for t in hand] == [
        ("paused", "running")
    ]
    assert "solved" in hand[0].reason and "'survey'" in hand[0].reason
    audit = [r for r in await harness.store.logs(ex.id) if r.message == "operator.handback"]
    assert audit[0].context["toNode"] == "survey" and audit[0].context["set"] == ["ticket.id"]
    _no_errors(await _check(harness, ex.id))


async def test_handback_refusals(harness: Harness) -> None:
    """A node not in the flow, a value past its bound, resume/advance of a held
    conversation, and a handback or agent message when nobody holds it are refused."""
    ex = await _held_execution(harness)
    operator = Operator(harness.store, harness.engine)
    with pytest.raises(FlowError, match="no node 'nowhere'"):
        await operator.handback(ex.id, "nowhere")
    with pytest.raises(ConfigError, match="max_value_bytes"):
        await operator.handback(ex.id, variables={"blob": "x" * 70_000})
    with pytest.raises(ConfigError, match="variable path"):
        await operator.handback(ex.id, variables={"a..b": 1})
    with pytest.raises(IllegalTransition, match="hand it back"):
        await operator.resume(ex.id)
    with pytest.raises(IllegalTransition, match="hand it back"):
        await operator.advance(ex.id, "survey")
    assert held(await harness.get(ex.id))  # nothing changed

    back = await operator.handback(ex.id, "sorry")
    assert back.current_node_id == "sorry"
    with pytest.raises(IllegalTransition, match="only a conversation a person holds"):
        await operator.handback(ex.id)
    with pytest.raises(NotHeld, match="no person holds conversation 'conv-1'"):
        await _agent(harness.store, harness.clock, "m-late", "too late")
    # an operator's pause is not a person's hold
    await harness.settle()
    await operator.pause(ex.id)
    with pytest.raises(NotHeld, match="paused by an operator"):
        await _agent(harness.store, harness.clock, "m-later", "still too late")
    with pytest.raises(IllegalTransition, match="paused by an operator"):
        await operator.handback(ex.id)


async def test_a_wait_handoff_without_next_needs_a_node_named(harness: Harness) -> None:
    """With no `next`, a handback must name its node (a warning at publish says so)."""
    await harness.publish(
        {
            "id": "bare",
            "start": "desk",
            "nodes": [
                {"id": "desk", "type": "handoff", "mode": "wait", "queue": "q"},
                {"id": "bye", "type": "end", "text": "Bye."},
            ],
        }
    )
    ex = await harness.start("bare")
    await harness.settle()
    operator = Operator(harness.store, harness.engine)
    with pytest.raises(FlowError, match="has no next: name the node"):
        await operator.handback(ex.id)
    await operator.handback(ex.id, "bye")
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status.value == "completed" and harness.channel.texts(ex.id) == ["Bye."]


async def test_return_after_seconds_hands_back_by_itself(harness: Harness) -> None:
    """No agent message within returnAfterSeconds: the bot takes the conversation back at
    onReturnTimeout; a contact message meanwhile does not stop the clock."""
    ex = await _held_execution(harness)
    harness.clock.advance(300)
    await harness.engine.send(ex.id, "hello?")
    await harness.settle()
    assert held(await harness.get(ex.id))
    harness.clock.advance(301)
    await harness.settle()
    back = await harness.get(ex.id)
    assert back.status.value == "waiting_input" and back.current_node_id == "survey"
    assert harness.channel.texts(ex.id)[-2:] == [
        "Nobody could answer now, sorry.",
        "How did we do, 1 to 5?",
    ]
    returned = [r for r in await harness.store.logs(ex.id) if r.message == "handoff.returned"]
    assert returned[0].context == {
        "reason": "timeout",
        "queue": "support",
        "fromNode": "to_desk",
        "toNode": "sorry",
    }
    # the held "hello?" was not taken as the survey's answer
    assert back.variables.get("score") is None
    _no_errors(await _check(harness, ex.id))


async def test_an_agent_message_cancels_the_return(harness: Harness) -> None:
    """A person answered in time: past returnAfterSeconds the conversation stays theirs."""
    ex = await _held_execution(harness)
    harness.clock.advance(100)
    await _agent(harness.store, harness.clock, "m-1", "On it.")
    harness.clock.advance(10_000)
    await harness.settle()
    still = await harness.get(ex.id)
    assert held(still) and still.due_at is None and still.wake_at is None
    logs = [r.message for r in await harness.store.logs(ex.id)]
    assert "handoff.answered" in logs and "handoff.returned" not in logs
    _no_errors(await _check(harness, ex.id))


async def test_an_agent_message_wins_over_a_return_claimed_at_the_same_time(
    harness: Harness,
) -> None:
    """A worker claims the execution for its return deadline; an agent message lands
    before its commit: the fence refuses the return, and the person keeps it."""
    ex = await _held_execution(harness)
    harness.clock.advance(601)
    (claimed,) = await harness.engine.claim(execution_id=ex.id)
    await _agent(harness.store, harness.clock, "m-1", "Here now!")
    await harness.engine.advance(claimed)
    still = await harness.get(ex.id)
    assert held(still) and still.wake_at is None
    assert "handoff.returned" not in [r.message for r in await harness.store.logs(ex.id)]
    await harness.settle()
    assert held(await harness.get(ex.id))


async def test_replies_waiting_when_the_hold_begins_are_the_persons(harness: Harness) -> None:
    """Two quick replies: the first answers the question that leads to the handoff, the
    second (not yet applied) is held with the hold's commit, never the survey's answer."""
    await harness.publish(FLOW)
    ex = await harness.start("care")
    await harness.settle()
    await harness.engine.send(ex.id, "blocked card")
    await harness.engine.send(ex.id, "3")
    await harness.settle()
    now = await harness.get(ex.id)
    assert held(now)
    inbox = await harness.store.inbox_for(ex.id)
    assert [(m.text, m.held_at is not None) for m in inbox] == [
        ("blocked card", False),
        ("3", True),
    ]
    await Operator(harness.store, harness.engine).handback(ex.id)
    await harness.settle()
    survey = await harness.get(ex.id)
    assert survey.status.value == "waiting_input" and "score" not in survey.variables
    _no_errors(await _check(harness, ex.id))


async def test_the_desk_hears_the_handoff_then_each_contact_message_once(
    harness: Harness, http_server: Any
) -> None:
    """The notice carries queue, reason, mode, the variables (credentials masked, the
    contact's data kept), the transcript and the handback URL; then each held message
    is forwarded once, in order, a failed POST retried with the same key."""
    http_server.route("POST", "/desk", body={"ok": True})
    desk = HandoffDesk(http_server.url + "/desk", public_url="https://trilha.example")
    dispatcher = Dispatcher(harness.store, harness.channel, clock=harness.clock, desk=desk)
    worker = Worker(harness.engine, dispatcher)
    try:
        await harness.publish(FLOW)
        ex = await harness.start(
            "care",
            variables={"cpf": "123.456.789-09", "crm": {"apiToken": "s3cret", "plan": "gold"}},
            conversation="conv/7",
        )
        await worker.run_until_idle()
        http_server.fail_first("POST", "/desk", 1, status=500)
        await harness.engine.send(ex.id, "my card")
        await worker.run_until_idle()
        for text in ("one", "two"):
            harness.clock.advance(1)
            await harness.engine.send(ex.id, text)
        await worker.run_until_idle()  # the notice failed: nothing overtakes it
        assert [r["body"]["type"] for r in http_server.requests] == ["handoff"]
        harness.clock.advance(10)
        await worker.run_until_idle()
        harness.clock.advance(10)
        await harness.engine.send(ex.id, "three")
        await worker.run_until_idle()
        harness.clock.advance(60)
        await worker.run_until_idle()  # nothing left to send
    finally:
        await desk.aclose()
    bodies = [r["body"] for r in http_server.requests]
    assert [b["type"] for b in bodies] == ["handoff", "handoff", "message", "message", "message"]
    notice = bodies[1]
    assert notice["queue"] == "support" and notice["reason"] == "about my card"
    assert notice["mode"] == "wait" and notice["executionId"] == ex.id
    assert notice["variables"]["cpf"] == "123.456.789-09"
    assert notice["variables"]["crm"] == {"apiToken": "[masked]", "plan": "gold"}
    assert notice["handbackUrl"] == "https://trilha.example/v1/conversations/conv%2F7/handback"
    assert notice["agentMessagesUrl"].endswith("/v1/conversations/conv%2F7/agent-messages")
    assert [(t["from"], t["text"]) for t in notice["transcript"]][:3] == [
        ("bot", "What is wrong?"),
        ("contact", "my card"),
        ("bot", "Connecting you to a person."),
    ]
    keys = [r["headers"]["Idempotency-Key"] for r in http_server.requests]
    assert keys[0] == keys[1]  # the notice retried with its key
    assert [b["text"] for b in bodies[2:]] == ["one", "two", "three"]
    assert len(set(keys[1:])) == 4  # one key per message, each sent once
    assert all(b["conversationId"] == "conv/7" for b in bodies)


async def test_an_end_handoff_tells_the_desk_without_handback(
    harness: Harness, http_server: Any
) -> None:
    """`mode: end` stays today's handoff: the execution ends escalated; the notice has
    the transcript and variables but no handback URL."""
    http_server.route("POST", "/desk", body={"ok": True})
    await harness.publish(
        {
            "id": "h",
            "start": "x",
            "nodes": [{"id": "x", "type": "handoff", "queue": "vip", "text": "A person."}],
        }
    )
    ex = await harness.start("h", variables={"name": "Ana"})
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status.value == "completed" and done.outcome and done.outcome.value == "escalated"
    desk = HandoffDesk(http_server.url + "/desk")
    try:
        await Dispatcher(harness.store, MemoryChannel(), clock=harness.clock, desk=desk).run_once()
    finally:
        await desk.aclose()
    (body,) = [r["body"] for r in http_server.requests]
    assert body["mode"] == "end" and body["handbackUrl"] is None
    assert body["variables"] == {"name": "Ana"}
    assert [t["text"] for t in body["transcript"]] == ["A person."]
