"""The 24-hour customer-service window and answers, through the engine over a real SQLite
store with a fake clock: inside the window a node says its content (its template kept
beside it), outside it a node sends its template or fails with ``outside_window`` and
takes its fallback; the window is read once per turn and never on a channel without
one; each message names the contact's message it answers (``reply_to``), and the
webhook channel posts it as ``replyTo``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trilha.channels.memory import MemoryChannel
from trilha.channels.webhook import WebhookChannel
from trilha.config import Config
from trilha.core.execution import Execution, InboundMessage, OutboundMessage
from trilha.core.flow import load_flow
from trilha.core.states import ExecutionStatus, Outcome
from trilha.core.triggers import Trigger, TriggerSet
from trilha.engine.clock import FakeClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker
from trilha.processors.registry import Processors
from trilha.store.sqlite import SQLiteStore

S = ExecutionStatus
Harness = Any
HOUR = 3600.0
DAY = 24 * HOUR

TEMPLATE = {
    "name": "appointment_reminder",
    "language": "pt_BR",
    "components": [
        {
            "type": "header",
            "parameters": [
                {"type": "document", "document": {"link": "{{doc}}", "filename": "guia.pdf"}}
            ],
        },
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "{{contact.name}}"},
                {
                    "type": "currency",
                    "currency": {
                        "fallback_value": "R$ {{price}}",
                        "code": "BRL",
                        "amount_1000": "{{ price * 1000 }}",
                    },
                },
                {"type": "date_time", "date_time": {"fallback_value": "{{when}}"}},
            ],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": 0,
            "parameters": [{"type": "payload", "payload": "confirm:{{booking}}"}],
        },
    ],
}

RENDERED = {
    "name": "appointment_reminder",
    "language": {"code": "pt_BR"},
    "components": [
        {
            "type": "header",
            "parameters": [
                {
                    "type": "document",
                    "document": {"link": "https://clinic.test/guia.pdf", "filename": "guia.pdf"},
                }
            ],
        },
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Ana"},
                {
                    "type": "currency",
                    "currency": {"fallback_value": "R$ 150", "code": "BRL", "amount_1000": 150000},
                },
                {"type": "date_time", "date_time": {"fallback_value": "12/03 às 14:30"}},
            ],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": 0,
            "parameters": [{"type": "payload", "payload": "confirm:b-7"}],
        },
    ],
}

START = {
    "contact": {"name": "Ana"},
    "doc": "https://clinic.test/guia.pdf",
    "price": 150,
    "when": "12/03 às 14:30",
    "booking": "b-7",
}


def reminder_flow(delay_seconds: float) -> dict[str, Any]:
    """Ask, acknowledge, wait ``delay_seconds``, then remind (with a template) and nudge
    (without one, falling back to a person's desk)."""
    return {
        "id": "reminder",
        "start": "ask",
        "nodes": [
            {
                "id": "ask",
                "type": "question",
                "text": "Quer um lembrete?",
                "variable": "wants",
                "next": "ok",
            },
            {"id": "ok", "type": "message", "text": "Combinado, {{contact.name}}!", "next": "wait"},
            {"id": "wait", "type": "delay", "seconds": delay_seconds, "next": "remind"},
            {
                "id": "remind",
                "type": "message",
                "text": "Sua consulta é {{when}}, {{contact.name}}.",
                "template": TEMPLATE,
                "next": "nudge",
            },
            {
                "id": "nudge",
                "type": "message",
                "text": "Responda SIM para confirmar.",
                "fallback": {"next": "desk"},
                "next": "bye",
            },
            {"id": "bye", "type": "end"},
            {"id": "desk", "type": "handoff", "queue": "recepcao"},
        ],
    }


class WindowChannel(MemoryChannel):
    """A memory channel with WhatsApp's window (what the WhatsApp channel declares)."""

    name = "window"
    window_seconds: float | None = DAY


class CountingStore(SQLiteStore):
    """The real SQLite store, counting how often the engine asks when the contact last
    wrote (the reply path must not pay for a window it does not have)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.window_reads = 0

    async def last_inbound_at(self, institution_id: str, conversation_id: str) -> float | None:
        self.window_reads += 1
        return await super().last_inbound_at(institution_id, conversation_id)


@pytest.fixture
async def counting_store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    store = CountingStore(tmp_path / "window.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@dataclass
class WindowHarness:
    """An engine wired as ``trilha serve`` wires it to its channel (what it renders, its
    window), over the counting store and the fake clock, driven by hand."""

    store: CountingStore
    engine: Engine
    worker: Worker
    channel: Any
    clock: FakeClock

    async def publish(self, flow: dict[str, Any]) -> None:
        await self.engine.publish(load_flow(flow, self.engine.processors.node_types))

    async def start(self, flow_id: str, conversation: str = "conv-1", **kwargs: Any) -> Execution:
        return await self.engine.start(
            flow_id,
            institution_id="inst-1",
            conversation_id=conversation,
            contact_id="contact-1",
            **kwargs,
        )

    async def settle(self, execution_id: str | None = None) -> None:
        await self.worker.run_until_idle(execution_id)

    async def reply(self, execution_id: str, text: str) -> Execution:
        await self.engine.send(execution_id, text)
        await self.settle(execution_id)
        return await self.store.get_execution(execution_id)

    async def get(self, execution_id: str) -> Execution:
        return await self.store.get_execution(execution_id)


@pytest.fixture
def make_window_harness(
    counting_store: CountingStore, clock: FakeClock
) -> Callable[..., WindowHarness]:
    def make(channel: Any = None) -> WindowHarness:
        chosen = channel or WindowChannel()
        engine = Engine(
            counting_store,
            processors=Processors.from_entry_points(),
            config=Config(),
            clock=clock,
            renders=chosen.renders,
            window_seconds=chosen.window_seconds,
        )
        dispatcher = Dispatcher(counting_store, chosen, clock=clock)
        return WindowHarness(counting_store, engine, Worker(engine, dispatcher), chosen, clock)

    return make


def sent(h: Harness, execution_id: str) -> list[OutboundMessage]:
    return [m for m in h.channel.messages if m.execution_id == execution_id]


async def triggered(h: Harness, flow_id: str, message_id: str = "wamid.oi") -> Execution:
    """``flow_id`` started by the contact's "oi" through the institution's default trigger."""
    match = TriggerSet([Trigger(default=True, flow_id=flow_id)]).match("oi")
    assert match is not None
    message = InboundMessage(
        id=0,
        institution_id="inst-1",
        conversation_id="wa:100:5511",
        message_id=message_id,
        contact_id="5511",
        text="oi",
        received_at=h.clock.now(),
    )
    ex, _ = await h.engine.start_triggered(flow_id, message, match, variables=START)
    assert ex is not None
    return ex


async def _asked_and_answered(h: Harness, delay_seconds: float) -> str:
    """The flow started by the contact's "oi", asked, answered (message ``wamid.reply``),
    acknowledged; the execution now waits on its delay."""
    await h.publish(reminder_flow(delay_seconds))
    ex = await triggered(h, "reminder")
    await h.settle()
    h.clock.advance(60)
    await h.engine.send(ex.id, "sim", message_id="wamid.reply")
    await h.settle(ex.id)
    assert (await h.get(ex.id)).status is S.WAITING_DELAY
    return ex.id


async def test_inside_the_window_the_content_goes_with_its_template(
    make_window_harness: Callable[..., Any],
) -> None:
    """23 hours after the contact wrote: both messages are said as written; the one with
    a template carries it, rendered, for the channel to fall back to on Meta's 131047."""
    h = make_window_harness()
    ex_id = await _asked_and_answered(h, 23 * HOUR)
    h.clock.advance(23 * HOUR)
    await h.settle(ex_id)
    ex = await h.get(ex_id)
    assert ex.status is S.COMPLETED and ex.error is None
    ask, ok, remind, nudge = sent(h, ex_id)
    assert (ask.text, ask.content) == ("Quer um lembrete?", None)
    assert ok.text == "Combinado, Ana!"
    assert remind.text == "Sua consulta é 12/03 às 14:30, Ana."
    assert remind.content == {
        "type": "text",
        "text": "Sua consulta é 12/03 às 14:30, Ana.",
        "template": RENDERED,
    }
    assert (nudge.text, nudge.content) == ("Responda SIM para confirmar.", None)


async def test_outside_the_window_a_template_is_sent_and_the_rest_falls_back(
    make_window_harness: Callable[..., Any],
) -> None:
    """25 hours after the contact wrote: the node with a template sends it (its text is
    the plain fallback); the node without one fails with kind outside_window and takes
    its fallback, and the trail says why."""
    h = make_window_harness()
    ex_id = await _asked_and_answered(h, 25 * HOUR)
    h.clock.advance(25 * HOUR)
    await h.settle(ex_id)
    ex = await h.get(ex_id)
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert ex.error is not None and ex.error["kind"] == "outside_window"
    assert ex.error["nodeId"] == "nudge"
    assert "25.0 h ago" in ex.error["message"] and "no template" in ex.error["message"]
    remind = sent(h, ex_id)[-1]
    assert remind.text == "Sua consulta é 12/03 às 14:30, Ana."
    assert remind.content == {
        "type": "template",
        "template": RENDERED,
        "text": "Sua consulta é 12/03 às 14:30, Ana.",
    }
    assert "Responda SIM para confirmar." not in h.channel.texts(ex_id)
    steps = {c.node_id: c for c in await h.store.checkpoints(ex_id)}
    assert steps["nudge"].error is not None and steps["nudge"].error["kind"] == "outside_window"
    assert steps["nudge"].attempt == 1  # never retried: only the contact can reopen it
    logs = await h.store.logs(ex_id)
    [failed] = [r for r in logs if r.message == "node.failed"]
    assert failed.node_id == "nudge" and failed.context["error"]["kind"] == "outside_window"
    [changed] = [r for r in logs if r.message == "message.degraded" and r.node_id == "remind"]
    assert "template 'appointment_reminder' sent instead" in changed.context["changes"][0]
    handoffs = await h.store.handoffs(ex_id)
    assert [x.queue for x in handoffs] == ["recepcao"]


async def test_without_a_fallback_the_flows_chain_decides(
    make_window_harness: Callable[..., Any],
) -> None:
    """A contact who never wrote (the platform started the execution): a message with no
    template and no fallback fails the execution like any node failure that cannot be
    retried, with the error kind on the execution."""
    h = make_window_harness()
    await h.publish(
        {
            "id": "cold",
            "start": "hi",
            "nodes": [
                {"id": "hi", "type": "message", "text": "Oi!", "next": "bye"},
                {"id": "bye", "type": "end"},
            ],
        }
    )
    ex = await h.start("cold")
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.FAILED
    assert ex.meta["firstError"]["kind"] == "outside_window"
    assert "has not written in this conversation" in ex.meta["firstError"]["message"]
    assert "Oi!" not in h.channel.texts(ex.id)


async def test_a_triggers_message_opens_the_window_and_is_answered(
    make_window_harness: Callable[..., Any],
) -> None:
    """A contact's message that starts a flow through a trigger: the first turn says its
    messages freely, each naming that message as the one it answers; a later reply is
    the one the next turn's messages answer; a turn with no reply answers none."""
    h = make_window_harness()
    await h.publish(reminder_flow(2 * HOUR))
    ex = await triggered(h, "reminder")
    await h.settle()
    [ask] = sent(h, ex.id)
    assert (ask.text, ask.reply_to) == ("Quer um lembrete?", "wamid.oi")
    h.clock.advance(60)
    await h.engine.send(ex.id, "sim", message_id="wamid.sim")
    await h.settle(ex.id)
    ok = sent(h, ex.id)[-1]
    assert (ok.text, ok.reply_to) == ("Combinado, Ana!", "wamid.sim")
    h.clock.advance(2 * HOUR)
    await h.settle(ex.id)
    remind, nudge = sent(h, ex.id)[-2:]
    assert remind.reply_to is None and nudge.reply_to is None  # woken by a timer
    assert remind.content is not None and remind.content["type"] == "text"
    stored = [m.reply_to for m in await h.store.outbox_for(ex.id)]
    assert stored == ["wamid.oi", "wamid.sim", None, None]


async def test_the_window_is_read_once_per_turn_and_never_without_one(
    make_window_harness: Callable[..., Any], counting_store: CountingStore
) -> None:
    """A turn woken by the contact's message knows the window is open without asking; a
    turn woken by a timer asks once for all its nodes; a channel without a window never
    asks."""
    h = make_window_harness()
    ex_id = await _asked_and_answered(h, 23 * HOUR)
    # the first turn (no message yet) asked once; the reply's turn did not ask at all
    assert counting_store.window_reads == 1
    h.clock.advance(23 * HOUR)
    await h.settle(ex_id)
    assert counting_store.window_reads == 2  # two speaking nodes, one read
    plain = make_window_harness(MemoryChannel())
    assert plain.engine.window_seconds is None
    await plain.publish(reminder_flow(25 * HOUR))
    ex = await plain.start("reminder", conversation="conv-2", variables=START)
    await plain.settle()
    await plain.reply(ex.id, "sim")
    plain.clock.advance(25 * HOUR)
    await plain.settle(ex.id)
    done = await plain.get(ex.id)
    assert done.status is S.COMPLETED and done.error is None
    assert counting_store.window_reads == 2
    last = [m for m in plain.channel.messages if m.execution_id == ex.id][-2]
    assert last.content is None  # no window: the template is not even carried along


async def test_a_reminder_outside_the_window(make_window_harness: Callable[..., Any]) -> None:
    """A question's reminder with a template is sent as the template once the window
    closed; one without a template is left unsaid (the trail's step says why) and the
    question keeps waiting for the reply that would open the window again."""
    h = make_window_harness()
    await h.publish(
        {
            "id": "survey",
            "start": "ask",
            "settings": {"inputTimeoutSeconds": 3 * DAY},
            "nodes": [
                {
                    "id": "ask",
                    "type": "question",
                    "text": "Como foi a consulta?",
                    "variable": "rating",
                    "reminders": [
                        {"afterSeconds": 25 * HOUR, "text": "Ainda está aí?"},
                        {
                            "afterSeconds": 49 * HOUR,
                            "text": "Sua opinião importa",
                            "template": {"name": "survey_nudge", "language": "pt_BR"},
                        },
                    ],
                    "next": "bye",
                },
                {"id": "bye", "type": "end", "text": "Obrigado!"},
            ],
        }
    )
    ex = await triggered(h, "survey")
    h.clock.advance(1)
    await h.settle()
    # the contact's "oi" started it: the question is inside the window
    assert h.channel.texts(ex.id) == ["Como foi a consulta?"]
    h.clock.advance(25 * HOUR)
    await h.settle(ex.id)
    assert h.channel.texts(ex.id) == ["Como foi a consulta?"]
    waiting = await h.get(ex.id)
    assert waiting.status is S.WAITING_INPUT and waiting.error is None
    [step] = [c for c in await h.store.checkpoints(ex.id) if (c.output or {}).get("reminder") == 1]
    assert step.output["notSaid"].startswith("outside_window: the contact last wrote")
    h.clock.advance(24 * HOUR)
    await h.settle(ex.id)
    nudge = sent(h, ex.id)[-1]
    assert nudge.content == {
        "type": "template",
        "template": {"name": "survey_nudge", "language": {"code": "pt_BR"}},
        "text": "Sua opinião importa",
    }
    # the contact answers: the window is open again, the goodbye is said as written
    done = await h.reply(ex.id, "ótima")
    assert done.status is S.COMPLETED and done.variables["rating"] == "ótima"
    bye = sent(h, ex.id)[-1]
    assert (bye.text, bye.content) == ("Obrigado!", None)


async def test_the_webhook_posts_reply_to(
    make_window_harness: Callable[..., Any], http_server: Any
) -> None:
    """The webhook channel's body names the answered message as ``replyTo`` (null for a
    message that answers none)."""
    http_server.route("POST", "/messages", body={"ok": True})
    channel = WebhookChannel(http_server.url + "/messages")
    h = make_window_harness(channel)
    try:
        assert h.engine.window_seconds is None
        await h.publish(reminder_flow(60))
        ex = await h.start("reminder", variables=START)
        await h.settle()
        await h.engine.send(ex.id, "sim", message_id="wamid.sim")
        await h.settle(ex.id)
    finally:
        await channel.aclose()
    bodies = [r["body"] for r in http_server.requests]
    assert [(b["text"], b["replyTo"]) for b in bodies] == [
        ("Quer um lembrete?", None),
        ("Combinado, Ana!", "wamid.sim"),
    ]


async def test_the_window_is_the_stores_across_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    """A process that waited on a delay and stopped: the next process, on the same SQLite
    file, knows when the contact last wrote (from the store, not from memory) and sends
    the template once the window closed."""
    path = tmp_path / "restart.db"

    async def process() -> WindowHarness:
        store = CountingStore(path)
        await store.open()
        channel = WindowChannel()
        engine = Engine(
            store,
            processors=Processors.from_entry_points(),
            config=Config(),
            clock=clock,
            window_seconds=channel.window_seconds,
        )
        worker = Worker(engine, Dispatcher(store, channel, clock=clock))
        return WindowHarness(store, engine, worker, channel, clock)

    first = await process()
    ex_id = await _asked_and_answered(first, 30 * HOUR)
    await first.store.close()
    clock.advance(30 * HOUR)
    second = await process()
    try:
        await second.settle(ex_id)
        remind = sent(second, ex_id)[0]
        assert remind.content is not None and remind.content["type"] == "template"
        assert second.store.window_reads == 1
        ex = await second.get(ex_id)
        assert ex.error is not None and ex.error["kind"] == "outside_window"
    finally:
        await second.store.close()


async def test_a_question_sent_as_a_template_takes_its_buttons_reply(
    make_window_harness: Callable[..., Any],
) -> None:
    """A choice question asked outside the window goes as its template and keeps the
    options its buttons offered: the template's quick-reply payload (a button's id)
    answers it as a press of that button would, and opens the window again."""
    h = make_window_harness()
    await h.publish(
        {
            "id": "confirm",
            "start": "wait",
            "nodes": [
                {"id": "wait", "type": "delay", "seconds": 30 * HOUR, "next": "ask"},
                {
                    "id": "ask",
                    "type": "question",
                    "text": "Confirma a consulta?",
                    "buttons": [{"id": "yes", "title": "Sim"}, {"id": "no", "title": "Não"}],
                    "variable": "answer",
                    "validate": {"kind": "choice"},
                    "template": {
                        "name": "confirm_visit",
                        "language": "pt_BR",
                        "components": [
                            {
                                "type": "button",
                                "sub_type": "quick_reply",
                                "index": i,
                                "parameters": [{"type": "payload", "payload": payload}],
                            }
                            for i, payload in enumerate(("yes", "no"))
                        ],
                    },
                    "next": "bye",
                },
                {"id": "bye", "type": "end", "text": "Resposta: {{answer}}"},
            ],
        }
    )
    ex = await triggered(h, "confirm")
    await h.settle()
    h.clock.advance(30 * HOUR)
    await h.settle(ex.id)
    asked = sent(h, ex.id)[-1]
    assert asked.content is not None and asked.content["type"] == "template"
    assert asked.content["options"] == [{"id": "yes", "title": "Sim"}, {"id": "no", "title": "Não"}]
    await h.engine.send(
        ex.id, "Sim", message_id="wamid.btn", content={"type": "button", "replyId": "yes"}
    )
    await h.settle(ex.id)
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.variables["answer"] == "yes"
    bye = sent(h, ex.id)[-1]
    assert (bye.text, bye.content, bye.reply_to) == ("Resposta: yes", None, "wamid.btn")
