"""Conversations that start themselves and keywords that work anywhere, through the engine
over a real SQLite store: a trigger's start keeps its message as ``sys.trigger``, an
interrupting trigger replaces a running execution, a flow's interrupts take a reply to
their node, and a burst of messages is taken as one reply after its window, across a
restart too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trilha.channels.memory import MemoryChannel
from trilha.config import Config
from trilha.core.execution import InboundMessage
from trilha.core.flow import load_flow
from trilha.core.invariants import Records, check
from trilha.core.states import ExecutionStatus, Outcome
from trilha.core.triggers import Trigger, TriggerSet
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker
from trilha.errors import AccessDenied
from trilha.processors.registry import Processors
from trilha.store.sqlite import SQLiteStore

S = ExecutionStatus
Harness = Any

CLINIC = {
    "id": "clinic",
    "start": "hello",
    "interrupts": [
        {"keywords": ["atendente", "falar com humano"], "goTo": "to_desk"},
        {"keywords": ["menu"], "goTo": "ask"},
    ],
    "nodes": [
        {
            "id": "hello",
            "type": "message",
            "text": "Você disse: {{sys.trigger.text}} ({{sys.trigger.keyword}})",
            "next": "ask",
        },
        {"id": "ask", "type": "question", "text": "Seu nome?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "end", "text": "Tchau {{name}}"},
        {"id": "to_desk", "type": "handoff", "queue": "desk", "text": "Chamando alguém."},
    ],
}


def burst_flow(debounce_ms: int, **settings: Any) -> dict[str, Any]:
    return {
        "id": "burst",
        "start": "ask",
        "settings": {"debounceMs": debounce_ms, **settings},
        "interrupts": [{"keywords": ["atendente"], "goTo": "to_desk"}],
        "nodes": [
            {"id": "ask", "type": "question", "text": "Conte", "variable": "said", "next": "bye"},
            {"id": "bye", "type": "end", "text": "ok"},
            {"id": "to_desk", "type": "handoff", "queue": "desk"},
        ],
    }


def message(
    h: Harness,
    text: str,
    message_id: str = "wamid.1",
    *,
    conversation: str = "conv-1",
    institution: str = "inst-1",
    content: dict[str, Any] | None = None,
) -> InboundMessage:
    return InboundMessage(
        id=0,
        institution_id=institution,
        conversation_id=conversation,
        message_id=message_id,
        contact_id="contact-1",
        text=text,
        received_at=h.clock.now(),
        content=content,
    )


TRIGGERS = TriggerSet(
    [
        Trigger(keywords=["oi", "menu"], flow_id="clinic"),
        Trigger(keywords=["recomeçar"], flow_id="clinic", interrupt=True),
        Trigger(default=True, flow_id="clinic"),
    ]
)


async def transcript(h: Harness, execution_id: str) -> list[tuple[str, str]]:
    return [(t.sender, t.text) for t in await h.store.transcript(execution_id)]


async def violations(h: Harness, execution_id: str) -> list[str]:
    store = h.store
    records = Records(
        await store.get_execution(execution_id),
        await store.transitions(execution_id),
        await store.checkpoints(execution_id),
        await store.outbox_for(execution_id),
        await store.inbox_for(execution_id),
        await store.logs(execution_id),
    )
    return [f"{v.rule}: {v.detail}" for v in check(records, now=h.clock.now())]


async def test_a_trigger_starts_its_flow_with_the_message_as_sys_trigger(harness: Harness) -> None:
    """The message that matched is the execution's sys.trigger, opens the transcript, and is
    not the answer to the first question: the question is asked and waits."""
    await harness.publish(CLINIC)
    match = TRIGGERS.match("Oi, tudo bem?")
    assert match is not None and match.keyword == "oi"
    ex, result = await harness.engine.start_triggered(
        "clinic", message(harness, "Oi, tudo bem?"), match
    )
    assert ex is not None and result.status == "accepted"
    assert result.message.execution_id == ex.id
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask"
    assert "name" not in ex.variables
    assert ex.meta["trigger"] == {
        "messageId": "wamid.1",
        "text": "Oi, tudo bem?",
        "type": "text",
        "keyword": "oi",
    }
    assert await transcript(harness, ex.id) == [
        ("contact", "Oi, tudo bem?"),
        ("bot", "Você disse: Oi, tudo bem? (oi)"),
        ("bot", "Seu nome?"),
    ]
    logs = await harness.store.logs(ex.id)
    [line] = [r for r in logs if r.message == "execution.triggered"]
    assert line.context["trigger"]["flowId"] == "clinic" and line.context["messageId"] == "wamid.1"
    # the next message is the answer
    ex = await harness.reply(ex.id, "Ana")
    assert ex.status is S.COMPLETED and ex.variables["name"] == "Ana"
    assert await violations(harness, ex.id) == []


async def test_the_same_message_twice_starts_one_execution(harness: Harness) -> None:
    """A platform's retry of the message finds it stored: nothing else starts."""
    await harness.publish(CLINIC)
    match = TRIGGERS.match("menu")
    assert match is not None
    first, _ = await harness.engine.start_triggered("clinic", message(harness, "menu"), match)
    again, duplicate = await harness.engine.start_triggered(
        "clinic", message(harness, "menu"), match
    )
    assert first is not None and again is None
    assert duplicate.status == "duplicate" and duplicate.message.execution_id == first.id
    listed = await harness.store.list_executions()
    assert [e.id for e in listed] == [first.id]


async def test_the_default_trigger_keeps_a_rich_message(harness: Harness) -> None:
    """A photo matches no keyword: the default trigger starts, sys.trigger says its type."""
    await harness.publish(CLINIC)
    content = {"type": "media", "media": {"kind": "image", "url": "https://x.test/a.jpg"}}
    match = TRIGGERS.match("")
    assert match is not None and match.keyword is None and match.trigger.default
    ex, _ = await harness.engine.start_triggered(
        "clinic", message(harness, "[image]", content=content), match
    )
    assert ex is not None
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.meta["trigger"]["type"] == "media" and ex.meta["trigger"]["keyword"] is None
    assert harness.channel.texts(ex.id)[0] == "Você disse: [image] ()"


async def test_an_interrupting_trigger_replaces_the_running_execution(harness: Harness) -> None:
    """The old execution is cancelled with a reason naming the keyword, its trail ends; the
    new one starts with the message as its trigger."""
    await harness.publish(CLINIC)
    old = await harness.start("clinic")
    await harness.settle()
    assert (await harness.get(old.id)).status is S.WAITING_INPUT
    match = TRIGGERS.interrupt("quero RECOMEÇAR")
    assert match is not None and match.trigger.interrupt
    assert TRIGGERS.interrupt("oi") is None  # keywords of other triggers do not interrupt
    new, _ = await harness.engine.start_triggered(
        "clinic", message(harness, "quero RECOMEÇAR", "wamid.9"), match, replacing=old
    )
    assert new is not None
    old_now = await harness.get(old.id)
    assert old_now.status is S.CANCELLED and old_now.outcome is Outcome.CANCELLED
    [last] = (await harness.store.transitions(old.id))[-1:]
    assert new.id in last.reason and "'recomeçar'" in last.reason
    ended = [r for r in await harness.store.logs(old.id) if r.message == "execution.ended"]
    assert ended and new.id in ended[0].context["reason"]
    lines = [r for r in await harness.store.logs(new.id) if r.message == "execution.triggered"]
    assert lines[0].context["replaced"] == old.id
    await harness.settle()
    assert (await harness.get(new.id)).current_node_id == "ask"


async def test_a_trigger_never_starts_another_institutions_flow(harness: Harness) -> None:
    """A flow stored as another institution's is refused, whatever the trigger names."""
    await harness.publish(dict(CLINIC, id="beta/clinic"))
    match = TRIGGERS.match("oi")
    assert match is not None
    with pytest.raises(AccessDenied):
        await harness.engine.start_triggered(
            "beta/clinic", message(harness, "oi", institution="acme"), match
        )
    assert await harness.store.list_executions() == []


# -------------------------------------------------------------------------- flow interrupts


async def test_an_interrupt_takes_the_reply_to_its_node(harness: Harness) -> None:
    """A reply holding a keyword goes to goTo before the question reads it: it is consumed
    (not saved as the answer) and the trail says which keyword."""
    await harness.publish(CLINIC)
    ex = await harness.start("clinic")
    await harness.settle()
    ex = await harness.reply(ex.id, "Quero falar com um ATENDENTE, por favor")
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert "name" not in ex.variables
    steps = await harness.store.checkpoints(ex.id)
    interrupted = [c for c in steps if isinstance(c.output, dict) and "interrupted" in c.output]
    assert [(c.node_id, c.output["interrupted"]) for c in interrupted] == [
        ("ask", {"keyword": "atendente", "goTo": "to_desk"})
    ]
    assert interrupted[0].input["text"] == "Quero falar com um ATENDENTE, por favor"
    lines = [r for r in await harness.store.logs(ex.id) if r.message == "execution.interrupted"]
    assert lines[0].context["goTo"] == "to_desk" and lines[0].node_id == "ask"
    assert harness.channel.texts(ex.id)[-1] == "Chamando alguém."
    assert await violations(harness, ex.id) == []


async def test_keywords_match_whole_words_and_phrases_only(harness: Harness) -> None:
    """'atendentes' is an answer, not the keyword; a phrase matches its words in a row; an
    interrupt to the question asks it again."""
    await harness.publish(CLINIC)
    ex = await harness.start("clinic")
    await harness.settle()
    ex = await harness.reply(ex.id, "menu")
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask"
    assert harness.channel.texts(ex.id).count("Seu nome?") == 2
    ex = await harness.reply(ex.id, "Atendentes")
    assert ex.status is S.COMPLETED and ex.variables["name"] == "Atendentes"
    other = await harness.start("clinic", conversation="conv-2")
    await harness.settle()
    other = await harness.reply(other.id, "humano, falar com?")
    assert other.variables.get("name") == "humano, falar com?"


# ---------------------------------------------------------------------------------- bursts


async def say(h: Harness, execution_id: str, text: str, message_id: str, **kw: Any) -> None:
    await h.engine.send(execution_id, text, message_id=message_id, **kw)


async def test_a_burst_is_one_reply_after_the_window(harness: Harness) -> None:
    """Messages within the window wait (durably: the execution's wake time) and are then
    taken as one reply, joined by newlines; each message is applied by that one step."""
    await harness.publish(burst_flow(2_000))
    ex = await harness.start("burst")
    await harness.settle()
    await say(harness, ex.id, "oi", "m1")
    await harness.settle()
    harness.clock.advance(1.0)
    await say(harness, ex.id, "queria marcar", "m2")
    await harness.settle()
    waiting = await harness.get(ex.id)
    assert waiting.status is S.WAITING_INPUT and "said" not in waiting.variables
    assert waiting.wake_at == pytest.approx(harness.clock.now() + 2.0)
    assert waiting.lease_owner is None
    waits = [r for r in await harness.store.logs(ex.id) if r.message == "message.burst_waiting"]
    assert [r.context["messages"] for r in waits] == [1, 2]
    assert await violations(harness, ex.id) == []
    harness.clock.advance(1.5)
    await say(harness, ex.id, "uma consulta", "m3")
    await harness.settle()
    assert "said" not in (await harness.get(ex.id)).variables
    harness.clock.advance(2.01)
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED
    assert done.variables["said"] == "oi\nqueria marcar\numa consulta"
    inbox = await harness.store.inbox_for(ex.id)
    assert all(m.applied_at is not None for m in inbox) and len(inbox) == 3
    [step] = [c for c in await harness.store.checkpoints(ex.id) if c.input]
    assert step.input["messageId"] == "m3" and step.input["burst"] == ["m1", "m2"]
    assert [t for t in await transcript(harness, ex.id) if t[0] == "contact"] == [
        ("contact", "oi"),
        ("contact", "queria marcar"),
        ("contact", "uma consulta"),
    ]
    assert await violations(harness, ex.id) == []


async def test_an_interrupt_keyword_anywhere_in_a_burst_interrupts(harness: Harness) -> None:
    """The burst is checked as one reply: a keyword in any of its lines interrupts."""
    await harness.publish(burst_flow(1_000))
    ex = await harness.start("burst")
    await harness.settle()
    await say(harness, ex.id, "oi", "m1")
    await say(harness, ex.id, "chama um atendente", "m2")
    await harness.settle()
    harness.clock.advance(1.01)
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.outcome is Outcome.ESCALATED and "said" not in done.variables


async def test_a_button_is_taken_at_once_and_closes_the_burst(harness: Harness) -> None:
    """Only typed texts wait for the window: a tapped button ends the burst before it and
    is a reply of its own."""
    flow = burst_flow(5_000)
    flow["nodes"][1] = {
        "id": "bye",
        "type": "question",
        "text": "Mais?",
        "variable": "more",
        "next": "end",
    }
    flow["nodes"].append({"id": "end", "type": "end"})
    await harness.publish(flow)
    ex = await harness.start("burst")
    await harness.settle()
    await say(harness, ex.id, "oi", "m1")
    await say(harness, ex.id, "tudo bem", "m2")
    button = {"type": "button", "replyId": "yes", "text": "Sim"}
    await say(harness, ex.id, "Sim", "m3", content=button)
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.variables == {"said": "oi\ntudo bem", "more": "Sim"}
    assert done.status is S.COMPLETED


async def test_the_window_never_outlasts_the_input_timeout(harness: Harness) -> None:
    """Messages that came before the timeout are taken when it comes, window or not."""
    await harness.publish(burst_flow(60_000, inputTimeoutSeconds=10))
    ex = await harness.start("burst")
    await harness.settle()
    harness.clock.advance(8)
    await say(harness, ex.id, "oi", "m1")
    await harness.settle()
    waiting = await harness.get(ex.id)
    assert waiting.wake_at == waiting.due_at
    harness.clock.advance(2.5)
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED and done.variables["said"] == "oi"


async def test_a_burst_survives_a_restart(tmp_path: Path, clock: Any) -> None:
    """The process stops during the window; a new one on the same file takes the burst
    when the window passes: nothing lost, nothing taken twice."""
    path = tmp_path / "restart.db"

    def engine(store: SQLiteStore, worker_id: str) -> tuple[Engine, Worker]:
        made = Engine(
            store,
            processors=Processors.from_entry_points(),
            config=Config(),
            clock=clock,
            worker_id=worker_id,
        )
        return made, Worker(made, Dispatcher(store, MemoryChannel(), clock=clock))

    first = SQLiteStore(path)
    await first.open()
    eng, worker = engine(first, "w1")
    await eng.publish(load_flow(burst_flow(3_000)))
    ex = await eng.start("burst", institution_id="i", conversation_id="c", contact_id="k")
    await worker.run_until_idle()
    await eng.send(ex.id, "bom dia", message_id="m1")
    clock.advance(0.5)
    await eng.send(ex.id, "sou a Ana", message_id="m2")
    await worker.run_until_idle()
    assert "said" not in (await first.get_execution(ex.id)).variables
    await first.close()

    clock.advance(3.0)
    second = SQLiteStore(path)
    await second.open()
    try:
        _, worker2 = engine(second, "w2")
        await worker2.run_until_idle()
        done = await second.get_execution(ex.id)
        assert done.status is S.COMPLETED
        assert done.variables["said"] == "bom dia\nsou a Ana"
        steps = [c for c in await second.checkpoints(ex.id) if c.input]
        assert len(steps) == 1
    finally:
        await second.close()
