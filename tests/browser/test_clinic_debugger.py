"""examples/clinic.json in the debugger, in a real browser: a real ``trilha serve`` with
the clinic, configured by examples/trilha.toml with its booking dependency pointed at the
real booking stand-in on 127.0.0.1, and the contact's replies posted through the API.

The page is read as a person reads it: the menu's reply buttons, the list rows the
stand-in's slots made (title, doctor, id), the contact's tapped button and row with the
ids they carried, and, once the photo of the card arrives, the confirmation and the
clinic's place with its map link, live. An English contact's execution shows the same
menu in English.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_debugger import login, screenshot

from clinic_support import SLOTS, Standin, clinic_flow, example_config, slot_rows, standin

pytestmark = pytest.mark.slow

CONTACT = "5511987650000"
MAP = "https://www.google.com/maps/search/?api=1&query=-23.555800%2C-46.662200"


@pytest.fixture
def booking() -> Iterator[Standin]:
    with standin() as running:
        yield running


@pytest.fixture
def served(serve_flow: Callable[..., Any], booking: Standin) -> Any:
    """``trilha serve`` with the clinic; examples/trilha.toml's booking dependency at the
    stand-in, the memory channel instead of the terminal."""
    config = example_config(booking.url)
    terminal = '[channel]\nkind = "terminal"'
    assert config.count(terminal) == 1
    return serve_flow(clinic_flow(), config=config.replace(terminal, '[channel]\nkind = "memory"'))


def start(served: Any, conversation: str, **body: Any) -> str:
    with served.client("acme_operator") as client:
        answer = client.post(
            "/v1/executions",
            json={"flowId": "clinic", "conversationId": conversation, "contactId": CONTACT} | body,
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["executionId"])


def reply(served: Any, conversation: str, message_id: str, **body: Any) -> None:
    with served.client("acme_operator") as client:
        answer = client.post(
            f"/v1/conversations/{conversation}/messages",
            json={"messageId": message_id, "contactId": CONTACT, **body},
        )
    assert answer.status_code == 202, answer.text


def bubble(page: Page, who: str, text: str) -> Any:
    return page.locator(f"li.bubble.{who}", has_text=text)


def test_the_clinic_in_the_debugger(
    served: Any, booking: Standin, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    """The menu's buttons and the stand-in's slots as list rows, the contact's tapped
    button and row with their ids; the booking's confirmation and the clinic's place
    appear live once the card's photo is posted."""
    conversation = "wa:clinic-debugger"
    execution_id = start(
        served, conversation, variables={"contact": {"name": "Maria Silva", "phone": CONTACT}}
    )
    reply(served, conversation, "m1", type="button", replyId="agendar", text="Agendar")
    reply(served, conversation, "m2", type="list", replyId=SLOTS[1]["id"], text=SLOTS[1]["label"])

    page = open_page(height=2400)
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(page.locator(".title-row .badge")).to_have_attribute("data-status", "waiting_input")
    chat = page.get_by_role("list", name="Conversation")

    menu = bubble(page, "bot", "Como posso ajudar?")
    expect(menu.locator(".msg-header")).to_have_text("Clínica Sorriso")
    expect(menu.locator(".msg-footer")).to_have_text(
        "Atendimento de segunda a sexta, das 8h às 18h"
    )
    buttons = menu.get_by_role("list", name="Reply buttons").get_by_role("listitem")
    expect(buttons).to_have_text(["Agendar", "Onde fica", "Falar com atendente"])
    expect(buttons.nth(0)).to_have_attribute("data-id", "agendar")
    expect(buttons.nth(1)).to_have_attribute("data-id", "onde_fica")
    expect(buttons.nth(2)).to_have_attribute("data-id", "atendente")
    expect(chat.get_by_role("button")).to_have_count(0)  # shown, not offered

    slots = bubble(page, "bot", "estes são os próximos horários livres")
    expect(slots.locator(".list-button")).to_have_text("☰Ver horários")
    expect(slots.locator(".section-title")).to_have_text("Próximos horários")
    rows = slots.get_by_role("list", name="List: Próximos horários").get_by_role("listitem")
    expect(rows).to_have_count(len(SLOTS))
    expect(rows.locator(".row-title")).to_have_text([s["label"] for s in SLOTS])
    expect(rows.locator(".row-description")).to_have_text([f"com {s['doctor']}" for s in SLOTS])
    expect(rows.locator(".opt-id")).to_have_text([s["id"] for s in SLOTS])

    tapped = page.locator('li.bubble.contact .reply[data-reply="button"]')
    expect(tapped.locator(".reply-title")).to_have_text("Agendar")
    expect(tapped.locator(".opt-id")).to_have_text("agendar")
    row = page.locator('li.bubble.contact .reply[data-reply="list"]')
    expect(row.locator(".reply-kind")).to_have_text("↩ list row")
    expect(row.locator(".reply-title")).to_have_text(SLOTS[1]["label"])
    expect(row.locator(".opt-id")).to_have_text(SLOTS[1]["id"])
    expect(bubble(page, "bot", "carteirinha do convênio")).to_be_visible()

    # the card's photo: the booking is made, and the page shows what follows, live
    card = {
        "kind": "document",
        "url": "http://media.example.com/c.pdf",
        "mimeType": "application/pdf",
        "filename": "carteirinha.pdf",
    }
    reply(served, conversation, "m3", type="media", media=card)
    expect(page.locator(".title-row .badge")).to_have_attribute("data-status", "completed")
    expect(bubble(page, "bot", "Pronto, Maria Silva!")).to_contain_text(
        f"{SLOTS[1]['label']} com {SLOTS[1]['doctor']}. Protocolo CLN-1001."
    )
    document = page.locator('li.bubble.contact figure.media[data-kind="document"]')
    expect(document.locator(".mime")).to_have_text("application/pdf")
    place = bubble(page, "bot", "Estamos aqui:").locator(".place")
    expect(place.locator(".place-name")).to_have_text("Clínica Sorriso")
    expect(place.locator(".place-address")).to_have_text(
        "Rua Augusta, 1500, sala 42 - Consolação, São Paulo - SP"
    )
    expect(place.get_by_role("link", name="Open in a map")).to_have_attribute("href", MAP)
    assert [b["slot"]["id"] for b in booking.state.bookings] == [SLOTS[1]["id"]]
    expect(page.locator('.flow-graph [data-node="bye"]')).to_have_class(re.compile("current"))
    screenshot(page, tmp_path, "img/debugger-clinic.png")

    # an English contact's execution: the same menu and list, in English
    english = start(served, "wa:clinic-en", language="en", variables={"contact": {"name": "John"}})
    reply(served, "wa:clinic-en", "e1", type="button", replyId="agendar", text="Book")
    page.goto(f"{served.url}/debugger/executions/{english}")
    menu_en = bubble(page, "bot", "How can I help?")
    expect(menu_en.locator(".msg-header")).to_have_text("Sorriso Dental Clinic")
    expect(menu_en.get_by_role("list", name="Reply buttons").get_by_role("listitem")).to_have_text(
        ["Book", "Where we are", "Talk to a person"]
    )
    list_en = bubble(page, "bot", "these are the next free times")
    expect(list_en.locator(".list-button")).to_have_text("☰See times")
    remaining = [s for s in SLOTS if s["id"] != SLOTS[1]["id"]]
    expect(list_en.locator(".row-title")).to_have_text(
        [r["title"] for r in slot_rows(remaining, "en")]
    )
    expect(list_en.locator(".row-description")).to_have_text(
        [f"with {s['doctor']}" for s in remaining]
    )
