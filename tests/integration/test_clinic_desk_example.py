"""examples/clinic_desk.json (with its sub-flow examples/satisfaction.json) end to end
through the real engine and store, configured by examples/trilha.toml: its
``[[triggers]]`` entry starts the flow, its ``[calendars.clinica]`` says when a person
may take the conversation, and the fake clock moves through reminders and closed hours.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from trilha.config import load_config
from trilha.core.execution import Execution, InboundMessage
from trilha.core.hold import held
from trilha.core.states import ExecutionStatus, Outcome
from trilha.core.triggers import TriggerSet
from trilha.engine.operator import Operator

Harness = Any
S = ExecutionStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INSTITUTION = "acme"  # the institution of examples/trilha.toml's trigger and calendar
CONVERSATION = "wa:5511987654321"

#: Monday 2027-01-18, 10:00 in São Paulo: the front desk is open
MONDAY_MORNING = datetime(2027, 1, 18, 13, 0, tzinfo=UTC).timestamp()
#: Friday 2027-01-15, 19:00 in São Paulo: closed until Saturday 08:00
FRIDAY_EVENING = datetime(2027, 1, 15, 22, 0, tzinfo=UTC).timestamp()
SATURDAY_OPENING = datetime(2027, 1, 16, 11, 0, tzinfo=UTC).timestamp()

#: the menu as a plain text (the transcript's and the memory channel's rendering)
MENU = (
    "Clínica Sorriso\n\nOlá! Sou a assistente da Clínica Sorriso. Como posso ajudar?"
    "\n\n1. Horários\n2. Endereço\n3. Falar com a recepção"
    "\n\nEscreva *atendente* a qualquer momento"
)
TO_DESK = "Vou te passar para a nossa recepção. Um momento, por favor."
SURVEY = "Antes de ir: de 1 a 5, como foi o seu atendimento?"
REMINDER = "Ainda está por aí? É só tocar numa das opções acima."


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture
def desk(make_harness: Any) -> Harness:
    """A harness configured by examples/trilha.toml, the clinic desk and its sub-flow
    published."""
    return make_harness(config=load_config(EXAMPLES / "trilha.toml"))


async def at(h: Harness, when: float) -> None:
    h.clock.advance(when - h.clock.now())


async def transcript(h: Harness, execution_id: str) -> list[tuple[str, str]]:
    return [(t.sender, t.text) for t in await h.store.transcript(execution_id)]


async def triggered(h: Harness, text: str) -> Execution:
    """The contact's first message, matched against examples/trilha.toml's triggers for
    acme the way the API matches it, starts the flow its trigger names."""
    await h.publish(example("satisfaction"))
    await h.publish(example("clinic_desk"))
    triggers = TriggerSet(h.engine.config.triggers_of(INSTITUTION))
    match = triggers.match(text)
    assert match is not None and match.trigger.flow_id == "clinic_desk"
    message = InboundMessage(
        id=0,
        institution_id=INSTITUTION,
        conversation_id=CONVERSATION,
        message_id="wamid.1",
        contact_id="5511987654321",
        text=text,
        received_at=h.clock.now(),
    )
    ex, result = await h.engine.start_triggered("clinic_desk", message, match)
    assert ex is not None and result.status == "accepted"
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "menu"
    return ex


async def agent_says(h: Harness, message_id: str, text: str) -> None:
    await h.store.record_agent_message(
        institution_id=INSTITUTION,
        conversation_id=CONVERSATION,
        message_id=message_id,
        agent_id="ana",
        text=text,
        content=None,
        now=h.clock.now(),
    )
    await h.settle()


def test_the_config_starts_the_desk_on_its_keywords() -> None:
    """examples/trilha.toml: 'oi' and 'menu' (whole words, any case or accent) start
    clinic_desk for acme, nothing else starts anything; the clinic's calendar is acme's."""
    config = load_config(EXAMPLES / "trilha.toml")
    triggers = TriggerSet(config.triggers_of(INSTITUTION))
    for text in ("Oi, bom dia!", "MENU", "quero ver o menu"):
        match = triggers.match(text)
        assert match is not None and match.trigger.flow_id == "clinic_desk", text
    assert triggers.match("oito horas") is None
    assert config.triggers_of("beta") == []
    calendar = config.calendars["clinica"]
    assert calendar.serves(INSTITUTION) and not calendar.serves("beta")


async def test_happy_path_interrupt_handoff_handback_survey_thanks(desk: Harness) -> None:
    """'Oi' starts the desk; 'atendente' typed at the menu goes to a person (the clinic is
    open); a person answers and hands back; the satisfaction sub-flow asks for a score and
    the contact is thanked with it."""
    h = desk
    await at(h, MONDAY_MORNING)
    ex = await triggered(h, "Oi, bom dia!")

    await h.engine.send(ex.id, "Quero falar com um ATENDENTE")
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert held(ex) and ex.current_node_id == "desk"
    assert ex.due_at == pytest.approx(h.clock.now() + 900)  # returnAfterSeconds
    [handoff] = await h.store.handoffs(ex.id)
    assert (handoff.queue, handoff.mode) == ("recepcao", "wait")
    interrupted = [r for r in await h.store.logs(ex.id) if r.message == "execution.interrupted"]
    assert interrupted[0].context["keyword"] == "atendente"

    h.clock.advance(60)
    await agent_says(h, "desk-1", "Oi! Aqui é a Ana, da recepção. Já remarquei sua consulta.")
    back = await Operator(h.store, h.engine).handback(ex.id, actor="key:ana", reason="resolvido")
    assert back.current_node_id == "survey"
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask"  # in the sub-flow

    ex = await h.reply(ex.id, "5")
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert ex.flow_id == "clinic_desk" and ex.variables["score"] == 5
    assert await transcript(h, ex.id) == [
        ("contact", "Oi, bom dia!"),
        ("bot", MENU),
        ("contact", "Quero falar com um ATENDENTE"),
        ("bot", TO_DESK),
        ("agent", "Oi! Aqui é a Ana, da recepção. Já remarquei sua consulta."),
        ("bot", SURVEY),
        ("contact", "5"),
        ("bot", "Obrigado pela nota 5! A Clínica Sorriso agradece o contato."),
    ]
    assert h.channel.duplicates == 0


async def test_a_survey_left_unanswered_still_thanks(desk: Harness) -> None:
    """Two answers that are not a score end the sub-flow without one: the contact is
    thanked without a score."""
    h = desk
    await at(h, MONDAY_MORNING)
    ex = await triggered(h, "menu")
    ex = await h.reply(ex.id, "Falar com a recepção")  # the button's title
    assert held(ex)
    await Operator(h.store, h.engine).handback(ex.id)
    await h.settle(ex.id)
    ex = await h.reply(ex.id, "ótimo")
    ex = await h.reply(ex.id, "nota dez")
    assert ex.status is S.COMPLETED and ex.variables["score"] is None
    assert (
        h.channel.texts(ex.id)[-1] == "Obrigado pelo contato! A Clínica Sorriso fica à disposição."
    )


async def test_the_menu_reminds_a_quiet_contact_once(desk: Harness) -> None:
    """Ten quiet minutes after the menu the contact is reminded, once; a tap afterwards is
    answered as usual."""
    h = desk
    await at(h, MONDAY_MORNING)
    ex = await triggered(h, "oi")
    h.clock.advance(599)
    await h.settle(ex.id)
    assert h.channel.texts(ex.id) == [MENU]
    h.clock.advance(1)
    await h.settle(ex.id)
    assert h.channel.texts(ex.id) == [MENU, REMINDER]
    h.clock.advance(1_800)  # still before the hour's input timeout
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "menu"
    assert h.channel.texts(ex.id) == [MENU, REMINDER]

    ex = await h.reply(ex.id, "Horários")
    assert ex.status is S.COMPLETED and ex.variables["choice"] == "horarios"
    assert h.channel.texts(ex.id)[-1].startswith("Atendemos de segunda a sexta")


async def test_closed_hours_wait_for_the_opening_then_a_person(desk: Harness) -> None:
    """On Friday evening 'humano' finds the desk closed: the contact is told when it
    opens, the conversation waits in the store until Saturday 08:00, then goes to a
    person."""
    h = desk
    await at(h, FRIDAY_EVENING)
    ex = await triggered(h, "Oi")
    ex = await h.reply(ex.id, "humano")
    assert ex.status is S.WAITING_DELAY and ex.current_node_id == "wait_open"
    assert ex.due_at == SATURDAY_OPENING
    assert h.channel.texts(ex.id)[-1] == (
        "A recepção está fechada agora. Abrimos 16/01 às 08:00: assim que abrirmos,"
        " uma pessoa da equipe fala com você por aqui."
    )
    assert await h.store.handoffs(ex.id) == []

    await at(h, SATURDAY_OPENING - 1)
    await h.settle(ex.id)
    assert (await h.get(ex.id)).status is S.WAITING_DELAY
    await at(h, SATURDAY_OPENING)
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert held(ex) and ex.current_node_id == "desk"
    assert h.channel.texts(ex.id)[-1] == TO_DESK
    assert [hd.queue for hd in await h.store.handoffs(ex.id)] == ["recepcao"]


async def test_nobody_answering_ends_with_an_apology(desk: Harness) -> None:
    """No person answers within returnAfterSeconds: the bot takes the conversation back
    and apologises."""
    h = desk
    await at(h, MONDAY_MORNING)
    ex = await triggered(h, "oi")
    ex = await h.reply(ex.id, "atendente")
    assert held(ex)
    h.clock.advance(900)
    await h.settle(ex.id)
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED
    assert h.channel.texts(ex.id)[-1].startswith("Desculpe, nossa equipe não conseguiu")
