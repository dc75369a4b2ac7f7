"""examples/clinic.json end to end through the real engine and store, against the real
booking stand-in (examples/booking_standin.py) on a free port of 127.0.0.1.

The contact taps buttons and list rows (replies carrying a ``replyId``), types their
titles, or answers by number; sends a photo of the insurance card, a text or a file of
the wrong type instead; speaks Portuguese or English; and meets a booking service that
is down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clinic_support import (  # tests/ is on sys.path
    CONFIG,
    EXAMPLE_BOOKING_URL,
    SLOTS,
    Standin,
    clinic_flow,
    slot_rows,
    standin,
)
from trilha.config import Config, DependencyConfig, load_config
from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus, Outcome
from trilha.inbound import InboundContent

Harness = Any
S = ExecutionStatus

PHONE = "+5511987654321"
PHOTO = {
    "kind": "image",
    "url": "https://media.example.com/cards/123.jpg",
    "mimeType": "image/jpeg",
}
PDF = {
    "kind": "document",
    "url": "https://media.example.com/cards/123.pdf",
    "mimeType": "application/pdf",
    "filename": "carteirinha.pdf",
}
MENU_PT = [
    {"id": "agendar", "title": "Agendar"},
    {"id": "onde_fica", "title": "Onde fica"},
    {"id": "atendente", "title": "Falar com atendente"},
]
MENU_EN = [
    {"id": "agendar", "title": "Book"},
    {"id": "onde_fica", "title": "Where we are"},
    {"id": "atendente", "title": "Talk to a person"},
]
PLACE_PT = {
    "latitude": -23.5558,
    "longitude": -46.6622,
    "name": "Clínica Sorriso",
    "address": "Rua Augusta, 1500, sala 42 - Consolação, São Paulo - SP",
}
CARD_AGAIN_PT = "Preciso de uma foto ou de um PDF da carteirinha. Pode enviar, por favor?"


@pytest.fixture
def booking() -> Iterator[Standin]:
    with standin() as running:
        yield running


@pytest.fixture
def clinic(make_harness: Callable[..., Harness], booking: Standin) -> Harness:
    """A harness whose configuration is examples/trilha.toml's, the booking dependency
    moved to the stand-in's port."""
    example = load_config(CONFIG)
    declared = example.dependencies["booking"]
    config = Config(dependencies={"booking": declared.model_copy(update={"base_url": booking.url})})
    return make_harness(config=config)


async def drive(h: Harness, execution_id: str) -> Execution:
    """Settle, moving the fake clock over timers (retry backoff) until the execution
    ends or waits for the contact."""
    for _ in range(50):
        await h.settle(execution_id)
        ex: Execution = await h.get(execution_id)
        if ex.status.terminal or ex.status is S.WAITING_INPUT:
            return ex
        due = ex.wake_at if ex.wake_at is not None else ex.due_at
        if due is None:
            return ex
        h.clock.advance(max(0.0, due - h.clock.now()))
    raise AssertionError(f"execution {execution_id} did not come to rest")


async def send(h: Harness, execution_id: str, text: str | None = None, **body: Any) -> Execution:
    """The contact's message given as the API's body (``type``, ``text``, ``replyId``,
    ``media``, ``language``), checked and stored as the API stores it: its plain text
    and, for a tap, a file or a stated language, its structured content."""
    message = InboundContent.model_validate(body if text is None else {"text": text, **body})
    await h.engine.send(execution_id, message.plain_text(), content=message.content())
    return await drive(h, execution_id)


async def tap(h: Harness, execution_id: str, kind: str, reply_id: str, title: str) -> Execution:
    return await send(h, execution_id, title, type=kind, replyId=reply_id)


async def upload(h: Harness, execution_id: str, media: dict[str, Any]) -> Execution:
    return await send(h, execution_id, type="media", media=media)


async def begin(h: Harness, **contact: Any) -> Execution:
    await h.publish(clinic_flow())
    ex = await h.start("clinic", variables={"contact": contact} if contact else None)
    ex = await drive(h, ex.id)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "welcome"
    return ex


def said(h: Harness, execution_id: str) -> list[tuple[str, dict[str, Any] | None]]:
    """What the bot sent, in order: each message's text and structured content."""
    return [(m.text, m.content) for m in h.channel.messages if m.execution_id == execution_id]


async def assert_booked(
    h: Harness, ex: Execution, booking: Standin, slot: dict[str, str], card: Any
) -> None:
    """The stand-in booked ``slot`` once for the contact, with the card sent (or none)."""
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED, ex.error
    assert len(booking.state.bookings) == 1
    made = booking.state.bookings[0]
    assert made["slot"] == slot
    assert made["insuranceCard"] == card
    assert ex.variables["slot_id"] == slot["id"]
    assert ex.variables["slot"] == slot
    assert ex.variables["booking"]["protocol"] == made["protocol"] == "CLN-1001"
    assert slot["id"] not in booking.state.free
    assert await h.store.handoffs(ex.id) == []
    assert h.channel.duplicates == 0


# ----------------------------------------------------------------------------- happy paths


async def test_booking_by_tapping_buttons_and_rows(clinic: Harness, booking: Standin) -> None:
    """Tapping 'Agendar' and a row of the list built from the stand-in's slots, then
    sending a photo, books that slot, confirms it with the contact's name and shows
    where the clinic is."""
    h = clinic
    ex = await begin(h, name="Maria Silva", phone=PHONE)
    [(text, menu)] = said(h, ex.id)
    assert menu == {
        "type": "buttons",
        "header": "Clínica Sorriso",
        "text": "Olá! Sou a assistente virtual da Clínica Sorriso. Como posso ajudar?",
        "footer": "Atendimento de segunda a sexta, das 8h às 18h",
        "buttons": MENU_PT,
    }
    assert "1. Agendar\n2. Onde fica\n3. Falar com atendente" in text

    ex = await tap(h, ex.id, "button", "agendar", "Agendar")
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask_slot"
    assert ex.variables["slots"] == SLOTS
    listed = said(h, ex.id)[-1][1]
    assert listed == {
        "type": "list",
        "text": "Maria Silva, estes são os próximos horários livres. Qual você prefere?",
        "list": {
            "button": "Ver horários",
            "sections": [{"title": "Próximos horários", "rows": slot_rows(SLOTS)}],
        },
    }

    ex = await tap(h, ex.id, "list", SLOTS[1]["id"], SLOTS[1]["label"])
    assert ex.current_node_id == "ask_card"
    ex = await upload(h, ex.id, PHOTO)

    await assert_booked(h, ex, booking, SLOTS[1], PHOTO)
    made = booking.state.bookings[0]
    assert (made["name"], made["phone"], made["language"]) == ("Maria Silva", PHONE, "pt-BR")
    assert ex.variables["menu"] == "agendar"
    assert ex.variables["card"] == PHOTO
    tail = said(h, ex.id)[-4:]
    assert tail[0] == (
        "Para agilizar seu atendimento, envie uma foto da sua carteirinha do convênio"
        " (imagem ou PDF).",
        None,
    )
    assert tail[1] == (
        "Pronto, Maria Silva! Sua consulta está marcada para ter 10/06 14:30 com"
        " Dr. Bruno Reis. Protocolo CLN-1001.",
        None,
    )
    assert tail[2][1] == {"type": "location", "text": "Estamos aqui:", "location": PLACE_PT}
    assert tail[3] == ("Se precisar de algo mais, é só mandar uma mensagem. Até breve!", None)
    transcript = await h.store.transcript(ex.id)
    assert [(t.sender, t.content) for t in transcript if t.sender == "contact"] == [
        ("contact", {"type": "button", "replyId": "agendar", "text": "Agendar"}),
        ("contact", {"type": "list", "replyId": SLOTS[1]["id"], "text": SLOTS[1]["label"]}),
        ("contact", {"type": "media", "media": PHOTO}),
    ]


async def test_booking_by_typed_titles(clinic: Harness, booking: Standin) -> None:
    """Typing a button's title (any case) and a row's title picks them as a tap would;
    the contact's name is asked when the start did not give it."""
    h = clinic
    ex = await begin(h)
    ex = await send(h, ex.id, "agendar")
    assert ex.current_node_id == "ask_name"
    ex = await send(h, ex.id, "João Pereira")
    assert ex.current_node_id == "ask_slot"
    ex = await send(h, ex.id, "QUA 11/06 08:00")
    assert ex.current_node_id == "ask_card"
    ex = await upload(h, ex.id, PDF)

    await assert_booked(h, ex, booking, SLOTS[2], PDF)
    assert ex.variables["contact"]["name"] == "João Pereira"
    assert booking.state.bookings[0]["name"] == "João Pereira"
    assert any(
        text.startswith("Pronto, João Pereira! Sua consulta está marcada para qua 11/06 08:00")
        for text, _ in said(h, ex.id)
    )


async def test_booking_by_number(clinic: Harness, booking: Standin) -> None:
    """Answering with an option's number picks the button and the row in that place."""
    h = clinic
    ex = await begin(h, name="Ana")
    ex = await send(h, ex.id, "1")
    assert ex.current_node_id == "ask_slot"
    ex = await send(h, ex.id, "4")
    ex = await upload(h, ex.id, PHOTO)

    await assert_booked(h, ex, booking, SLOTS[3], PHOTO)


async def test_a_booked_slot_is_no_longer_offered(clinic: Harness, booking: Standin) -> None:
    """A second contact sees the list the stand-in answers now: without the slot the first
    contact booked (the rows are built from each call's answer, not from the flow)."""
    h = clinic
    first = await begin(h, name="Ana")
    await send(h, first.id, "1")
    await send(h, first.id, "1")
    first = await upload(h, first.id, PHOTO)
    assert first.status is S.COMPLETED

    second = await h.start("clinic", "conv-2", variables={"contact": {"name": "Bia"}})
    second = await drive(h, second.id)
    second = await send(h, second.id, "1")
    listed = said(h, second.id)[-1][1]
    assert listed is not None
    assert listed["list"]["sections"][0]["rows"] == slot_rows(SLOTS[1:])
    second = await send(h, second.id, "1")
    second = await upload(h, second.id, PHOTO)
    assert second.status is S.COMPLETED
    assert [b["slot"]["id"] for b in booking.state.bookings] == [SLOTS[0]["id"], SLOTS[1]["id"]]


# ----------------------------------------------------------------------------- languages


async def test_english_contact_reads_english(clinic: Harness, booking: Standin) -> None:
    """A contact whose language is English (contact.language) gets every text, button,
    list and place in English, and the booking carries the language."""
    h = clinic
    ex = await begin(h, name="John Smith", language="en")
    [(_, menu)] = said(h, ex.id)
    assert menu is not None
    assert menu["header"] == "Sorriso Dental Clinic"
    assert (
        menu["text"] == "Hi! I am the virtual assistant of Sorriso Dental Clinic. How can I help?"
    )
    assert menu["footer"] == "Open Monday to Friday, 8 am to 6 pm"
    assert menu["buttons"] == MENU_EN

    ex = await send(h, ex.id, "Book")
    listed = said(h, ex.id)[-1][1]
    assert listed == {
        "type": "list",
        "text": "John Smith, these are the next free times. Which one suits you?",
        "list": {
            "button": "See times",
            "sections": [{"title": "Next free times", "rows": slot_rows(SLOTS, "en")}],
        },
    }
    ex = await tap(h, ex.id, "list", SLOTS[0]["id"], SLOTS[0]["label"])
    assert said(h, ex.id)[-1][0] == (
        "To speed things up, please send a photo of your insurance card (an image or a PDF)."
    )
    ex = await upload(h, ex.id, PHOTO)

    await assert_booked(h, ex, booking, SLOTS[0], PHOTO)
    assert booking.state.bookings[0]["language"] == "en"
    texts = [text for text, _ in said(h, ex.id)]
    assert texts[-3] == (
        "All set, John Smith! Your appointment is booked for Tuesday, June 10, 9:00 AM"
        " with Dra. Ana Lima. Reference CLN-1001."
    )
    place = said(h, ex.id)[-2][1]
    assert place is not None
    assert place["location"]["name"] == "Sorriso Dental Clinic"
    assert place["location"]["address"].endswith("São Paulo, Brazil")
    assert texts[-1] == "If you need anything else, just send us a message. See you soon!"


async def test_a_reply_in_english_switches_the_language(clinic: Harness, booking: Standin) -> None:
    """A reply whose inbound language is English (the platform knows the contact's) sets
    contact.language, so the texts after it are English; an English word matches a
    Portuguese menu through the button's synonyms."""
    h = clinic
    ex = await begin(h, name="John")
    assert said(h, ex.id)[0][1]["buttons"] == MENU_PT  # type: ignore[index]

    ex = await send(h, ex.id, "book", language="en")
    assert ex.variables["contact"]["language"] == "en"
    assert ex.variables["menu"] == "agendar"
    listed = said(h, ex.id)[-1][1]
    assert listed is not None and listed["list"]["button"] == "See times"
    assert listed["text"].startswith("John, these are the next free times.")


async def test_unknown_language_falls_back_to_portuguese(clinic: Harness) -> None:
    """A language the flow has no texts in reads the flow's defaultLanguage (pt-BR)."""
    h = clinic
    ex = await begin(h, language="fr")
    assert said(h, ex.id)[0][1]["buttons"] == MENU_PT  # type: ignore[index]


# ----------------------------------------------------------------------------- the insurance card


async def test_card_refuses_text_and_wrong_type_then_takes_a_photo(
    clinic: Harness, booking: Standin
) -> None:
    """The card question refuses a typed text and a file whose MIME type it does not
    accept, asks again each time, and takes the photo that follows."""
    h = clinic
    ex = await begin(h, name="Ana")
    await send(h, ex.id, "1")
    ex = await send(h, ex.id, "1")
    assert ex.current_node_id == "ask_card"

    ex = await send(h, ex.id, "esqueci a carteirinha em casa")
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask_card"
    assert "card" not in ex.variables
    video = {"kind": "video", "url": "https://media.example.com/v.mp4", "mimeType": "video/mp4"}
    ex = await upload(h, ex.id, video)
    assert ex.status is S.WAITING_INPUT and ex.current_node_id == "ask_card"
    assert booking.state.bookings == []
    photo = PHOTO | {"mimeType": "image/png", "caption": "frente"}
    ex = await upload(h, ex.id, photo)

    await assert_booked(h, ex, booking, SLOTS[0], photo)
    texts = [text for text, _ in said(h, ex.id)]
    assert texts.count(CARD_AGAIN_PT) == 2
    refusals = [
        cp.output["invalid"]
        for cp in await h.store.checkpoints(ex.id)
        if cp.node_id == "ask_card" and "invalid" in (cp.output or {})
    ]
    assert refusals == [
        "expected media, got text",
        "video/mp4 is not accepted (accept: image/*, application/pdf)",
    ]


async def test_no_card_books_anyway(clinic: Harness, booking: Standin) -> None:
    """A contact who cannot send the card (three texts) is told to bring it, and the
    slot is still booked, without a card."""
    h = clinic
    ex = await begin(h, name="Ana")
    await send(h, ex.id, "1")
    await send(h, ex.id, "2")
    for text in ("não tenho", "não", "depois"):
        ex = await send(h, ex.id, text)

    await assert_booked(h, ex, booking, SLOTS[1], None)
    texts = [text for text, _ in said(h, ex.id)]
    assert "Sem problemas: traga a carteirinha no dia da consulta." in texts


# ----------------------------------------------------------------------------- other paths


async def test_where_we_are_shows_the_location(clinic: Harness, booking: Standin) -> None:
    """'Onde fica' sends the clinic's location and says goodbye, calling nothing."""
    h = clinic
    ex = await begin(h)
    ex = await tap(h, ex.id, "button", "onde_fica", "Onde fica")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    place = said(h, ex.id)[-2]
    assert place[1] == {"type": "location", "text": "Estamos aqui:", "location": PLACE_PT}
    assert "https://www.google.com/maps/search/?api=1&query=-23.555800%2C-46.662200" in place[0]
    assert booking.state.bookings == []


@pytest.mark.parametrize(
    "reply",
    [
        {"type": "button", "replyId": "atendente", "text": "Falar com atendente"},
        {"type": "text", "text": "quero falar com uma pessoa"},
    ],
    ids=["tap", "three-unclear-answers"],
)
async def test_front_desk(clinic: Harness, reply: dict[str, Any]) -> None:
    """'Falar com atendente', or a menu answered three times with something else, hands
    the conversation to the front desk."""
    h = clinic
    ex = await begin(h)
    for _ in range(1 if reply["type"] == "button" else 3):
        ex = await send(h, ex.id, **reply)

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert [hd.queue for hd in await h.store.handoffs(ex.id)] == ["recepcao"]
    assert said(h, ex.id)[-1][0] == (
        "Vou te passar para a nossa recepção. Um atendente já vai falar com você."
    )


# ----------------------------------------------------------------------------- booking down


DOWN_PT = (
    "Desculpe, nosso sistema de agendamento não está respondendo agora. Vou te passar para"
    " a nossa recepção, que conclui o agendamento com você."
)
NOT_BOOKED_PT = (
    "Desculpe, não consegui confirmar esse horário no sistema agora. Vou te passar para a"
    " nossa recepção, que conclui o agendamento com você."
)


async def assert_desk_after_failure(
    h: Harness, ex: Execution, node: str, reason: str, text: str
) -> None:
    """``node`` failed, its fallback told the contact ``text`` and handed them to the
    front desk with ``reason``."""
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert [(hd.queue, hd.reason) for hd in await h.store.handoffs(ex.id)] == [("recepcao", reason)]
    assert said(h, ex.id)[-1][0] == text
    history = [(t.target, t.node_id) for t in await h.store.transitions(ex.id)]
    assert (S.FALLBACK, node) in history
    failures = [r for r in await h.store.logs(ex.id) if r.message == "node.failed"]
    assert failures and all(r.node_id == node for r in failures)


async def test_booking_service_down_before_the_list(clinic: Harness, booking: Standin) -> None:
    """With the booking service's port closed, the slots call is retried, then the
    fallback apologises and hands the contact to the front desk."""
    h = clinic
    ex = await begin(h, name="Ana")
    booking.stop()
    ex = await tap(h, ex.id, "button", "agendar", "Agendar")

    await assert_desk_after_failure(
        h, ex, "fetch_slots", "sistema de agendamento indisponível", DOWN_PT
    )
    assert "slots" not in ex.variables


async def test_booking_service_down_at_the_booking(clinic: Harness, booking: Standin) -> None:
    """A booking service answering 503 when the slot is booked: the call is retried, then
    its fallback says the time could not be confirmed and hands the contact to the front
    desk, naming the slot; nothing is booked."""
    h = clinic
    ex = await begin(h, name="Ana")
    await send(h, ex.id, "1")
    await send(h, ex.id, "1")
    booking.state.down = True
    ex = await upload(h, ex.id, PHOTO)

    reason = f"o sistema de agendamento não confirmou o horário {SLOTS[0]['id']}"
    await assert_desk_after_failure(h, ex, "book", reason, NOT_BOOKED_PT)
    assert booking.state.bookings == []
    assert "booking" not in ex.variables


async def test_a_slot_taken_meanwhile_goes_to_the_desk(clinic: Harness, booking: Standin) -> None:
    """Two contacts shown the same list pick the same slot: the first books it, the
    second's booking is refused (409) and they go to the front desk, not told that the
    system is down."""
    h = clinic
    first = await begin(h, name="Ana")
    second = await h.start("clinic", "conv-2", variables={"contact": {"name": "Bia"}})
    await drive(h, second.id)
    for ex in (first, second):
        await send(h, ex.id, "Agendar")
        await send(h, ex.id, SLOTS[2]["label"])
    first = await upload(h, first.id, PHOTO)
    second = await upload(h, second.id, PHOTO)

    await assert_booked(h, first, booking, SLOTS[2], PHOTO)
    reason = f"o sistema de agendamento não confirmou o horário {SLOTS[2]['id']}"
    await assert_desk_after_failure(h, second, "book", reason, NOT_BOOKED_PT)
    failure = next(r for r in await h.store.logs(second.id) if r.message == "node.failed")
    assert "409" in str(failure.context)


async def test_no_free_slots_goes_to_the_desk(clinic: Harness, booking: Standin) -> None:
    """An empty agenda shows no empty list: the contact goes to the front desk."""
    booking.state.free.clear()
    h = clinic
    ex = await begin(h, name="Ana")
    ex = await send(h, ex.id, "Agendar")

    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert [(hd.queue, hd.reason) for hd in await h.store.handoffs(ex.id)] == [
        ("recepcao", "sem horários livres no sistema de agendamento")
    ]
    assert all(content is None or content["type"] != "list" for _, content in said(h, ex.id))


def test_example_config_declares_booking() -> None:
    """examples/trilha.toml declares the booking service every http node of the clinic
    calls, idempotent (the stand-in applies an Idempotency-Key once)."""
    config = load_config(CONFIG)
    http_nodes = [n for n in clinic_flow()["nodes"] if n["type"] == "http"]
    assert {n["dependency"] for n in http_nodes} == {"booking"}
    declared: DependencyConfig = config.dependencies["booking"]
    assert declared.base_url == EXAMPLE_BOOKING_URL
    assert declared.idempotent is True
