"""The debugger's transcript shows rich messages as what they are, on both sides.

A clinic's flow offers reply buttons, a list of slots, its location, a picture of its
front door, and asks for a photo of an insurance card; the contact answers through the
API with a button, a list row and a photo. The page is read as a person reads it: the
buttons and rows by their role and text, the thumbnails loaded, the map link, the
contact's replies with the ids they carried. A channel that shows only text gets the
same flow as numbered options, and the page says so. Images come from an https host
that the browser's requests for are answered by the test (Playwright's routing), so
the thumbnails load without a network and the CSP is the real one.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect
from test_debugger import login, screenshot

from webhook_receiver import WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.slow

MEDIA_HOST = "https://media.trilha.test"
FACADE = f"{MEDIA_HOST}/fachada.png"
CARD = f"{MEDIA_HOST}/carteirinha.png"
MAP = "https://www.google.com/maps/search/?api=1&query=-23.561400%2C-46.655900"

CLINIC = {
    "id": "clinic_rich",
    "start": "menu",
    "nodes": [
        {
            "id": "menu",
            "type": "question",
            "header": "Clínica Sorriso",
            "text": "Olá! Como posso ajudar?",
            "footer": "Atendimento 8h–18h",
            "buttons": [
                {"id": "agendar", "title": "Agendar"},
                {"id": "cancelar", "title": "Cancelar"},
                {"id": "humano", "title": "Falar com alguém"},
            ],
            "variable": "action",
            "validate": {"kind": "choice"},
            "next": "slot",
        },
        {
            "id": "slot",
            "type": "question",
            "text": "Escolha um horário:",
            "list": {
                "button": "Ver horários",
                "sections": [
                    {
                        "title": "Manhã",
                        "rows": [
                            {"id": "s1", "title": "09:00", "description": "Dra. Ana"},
                            {"id": "s2", "title": "10:30", "description": "Dr. Bruno"},
                        ],
                    },
                    {
                        "title": "Tarde",
                        "rows": [{"id": "s3", "title": "14:00", "description": "Dra. Ana"}],
                    },
                ],
            },
            "variable": "slot",
            "validate": {"kind": "choice"},
            "next": "where",
        },
        {
            "id": "where",
            "type": "message",
            "text": "Estamos aqui:",
            "location": {
                "latitude": -23.5614,
                "longitude": -46.6559,
                "name": "Clínica Sorriso",
                "address": "Av. Paulista, 1000 - São Paulo",
            },
            "next": "facade",
        },
        {
            "id": "facade",
            "type": "message",
            "media": {"kind": "image", "url": FACADE, "caption": "Nossa fachada"},
            "next": "guide",
        },
        {
            "id": "guide",
            "type": "message",
            "media": {"kind": "document", "url": "{{guideUrl}}", "filename": "guia.pdf"},
            "next": "card",
        },
        {
            "id": "card",
            "type": "question",
            "text": "Envie uma foto da carteirinha do convênio.",
            "variable": "card",
            "validate": {"kind": "media", "accept": ["image/*"]},
            "next": "bye",
        },
        {"id": "bye", "type": "end", "text": "Tudo certo! Até logo."},
    ],
}


def png(width: int = 160, height: int = 100) -> bytes:
    """A small gradient PNG, written by hand (no imaging library in the test's way)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((40 + x, 120 + y, 200)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def serve_images(page: Page) -> list[str]:
    """Answer the page's requests to MEDIA_HOST with a PNG; returns the URLs asked for."""
    asked: list[str] = []
    image = png()

    def answer(route: Route) -> None:
        asked.append(route.request.url)
        route.fulfill(status=200, content_type="image/png", body=image)

    page.route(f"{MEDIA_HOST}/**", answer)
    return asked


def reply(served: Any, conversation: str, message_id: str, **body: Any) -> None:
    with served.client("acme_operator") as client:
        answer = client.post(
            f"/v1/conversations/{conversation}/messages",
            json={"messageId": message_id, "contactId": "5511987650000", **body},
        )
    assert answer.status_code == 202, answer.text


def start(served: Any, flow: str, conversation: str, **variables: Any) -> str:
    with served.client("acme_operator") as client:
        answer = client.post(
            "/v1/executions",
            json={
                "flowId": flow,
                "conversationId": conversation,
                "contactId": "5511987650000",
                "variables": variables,
            },
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["executionId"])


def execution(served: Any, execution_id: str) -> dict[str, Any]:
    with served.client("acme_operator") as client:
        answer = client.get(f"/v1/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def bubble(page: Page, who: str, text: str) -> Any:
    return page.locator(f"li.bubble.{who}", has_text=text)


def test_the_transcript_shows_buttons_lists_places_media_and_replies(
    serve_flow: Callable[..., Any], open_page: Callable[..., Page], tmp_path: Path
) -> None:
    """Buttons as chips, a list's sections and rows, a place with its map link, images as
    thumbnails, a link that is not http(s) as text; the contact's button, row and photo
    with the ids they carried."""
    served = serve_flow(CLINIC)
    conversation = "conv-rich"
    # a templated link a service got wrong: it must never become a link in the page
    execution_id = start(
        served, "clinic_rich", conversation, guideUrl="javascript:alert(document.domain)"
    )
    reply(served, conversation, "m1", type="button", replyId="agendar", text="Agendar")
    reply(served, conversation, "m2", type="list", replyId="s3", text="14:00")
    reply(
        served,
        conversation,
        "m3",
        type="media",
        media={"kind": "image", "url": CARD, "mimeType": "image/png", "caption": "Frente"},
    )

    page = open_page(height=2400)  # the whole conversation fits its panel (60vh)
    asked = serve_images(page)
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("completed"))
    chat = page.get_by_role("list", name="Conversation")

    # the menu: header, text, footer and its three reply buttons, shown (not offered)
    menu = bubble(page, "bot", "Olá! Como posso ajudar?")
    expect(menu.locator(".msg-header")).to_have_text("Clínica Sorriso")
    expect(menu.locator(".msg-footer")).to_have_text("Atendimento 8h–18h")
    buttons = menu.get_by_role("list", name="Reply buttons").get_by_role("listitem")
    expect(buttons).to_have_text(["Agendar", "Cancelar", "Falar com alguém"])
    expect(buttons.first).to_have_attribute("data-id", "agendar")
    expect(chat.get_by_role("button")).to_have_count(0)
    expect(menu).not_to_contain_text("1. Agendar")  # the structured form, not its text

    # the slots: the list's button, its sections and rows with descriptions and ids
    slots = bubble(page, "bot", "Escolha um horário:")
    expect(slots.locator(".list-button")).to_have_text("☰Ver horários")
    expect(slots.locator(".section-title")).to_have_text(["Manhã", "Tarde"])
    morning = slots.get_by_role("list", name="List: Manhã").get_by_role("listitem")
    expect(morning).to_have_count(2)
    expect(morning.nth(0).locator(".row-title")).to_have_text("09:00")
    expect(morning.nth(0).locator(".row-description")).to_have_text("Dra. Ana")
    expect(morning.nth(0).locator(".opt-id")).to_have_text("s1")
    expect(morning.nth(1)).to_contain_text("10:30")
    afternoon = slots.get_by_role("list", name="List: Tarde").get_by_role("listitem")
    expect(afternoon).to_have_text([re.compile("14:00.*Dra. Ana.*s3")])

    # the contact's taps: the title tapped, marked as a button or a row, with its id
    tapped = bubble(page, "contact", "Agendar")
    expect(tapped.locator(".reply-kind")).to_have_text("↩ button")
    expect(tapped.locator(".opt-id")).to_have_text("agendar")
    row = page.locator('li.bubble.contact .reply[data-reply="list"]')
    expect(row.locator(".reply-title")).to_have_text("14:00")
    expect(row.locator(".reply-kind")).to_have_text("↩ list row")
    expect(row.locator(".opt-id")).to_have_text("s3")

    # the place: name, address, coordinates and a map link opening elsewhere
    place = bubble(page, "bot", "Estamos aqui:").locator(".place")
    expect(place.locator(".place-name")).to_have_text("Clínica Sorriso")
    expect(place.locator(".place-address")).to_have_text("Av. Paulista, 1000 - São Paulo")
    map_link = place.get_by_role("link", name="Open in a map")
    expect(map_link).to_have_attribute("href", MAP)
    expect(map_link).to_have_attribute("rel", "noopener noreferrer")

    # the bot's picture and the contact's photo: thumbnails loaded over https, and links
    facade = bubble(page, "bot", "Nossa fachada")
    expect(facade.locator("img.thumb")).to_have_attribute("src", FACADE)
    expect(facade.locator("img.thumb")).to_have_attribute("alt", "Nossa fachada")
    expect(facade.get_by_role("link", name=FACADE)).to_have_attribute("href", FACADE)
    photo = page.locator('li.bubble.contact figure.media[data-kind="image"]')
    expect(photo.locator("img.thumb")).to_have_attribute("src", CARD)
    expect(photo.locator(".mime")).to_have_text("image/png")
    expect(photo.locator(".caption")).to_have_text("Frente")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chat img.thumb')]"
        ".every((img) => img.complete && img.naturalWidth === 160)"
    )
    assert sorted(set(asked)) == [CARD, FACADE]

    # a link that is not http(s) is shown as text: no href, no image, nothing to run
    guide = page.locator('li.bubble.bot figure.media[data-kind="document"]')
    expect(guide.locator(".media-link")).to_have_text("guia.pdf")
    expect(guide.locator("a")).to_have_count(0)
    expect(page.locator('a[href^="javascript"], [src^="javascript"]')).to_have_count(0)

    done = execution(served, execution_id)
    assert done["variables"]["action"] == "agendar"
    assert done["variables"]["slot"] == "s3"
    assert done["variables"]["card"]["url"] == CARD
    expect(page.locator('.flow-graph [data-node="bye"]')).to_have_class(re.compile("current"))
    screenshot(page, tmp_path, "img/debugger-rich.png")

    # on a phone, every bubble, row and thumbnail stays inside the screen
    page.set_viewport_size({"width": 375, "height": 812})
    expect(menu).to_be_visible()
    widest = page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth,"
        " ...[...document.querySelectorAll('.chat li.bubble, .chat li.bubble *')]"
        ".map((el) => el.getBoundingClientRect().right))"
    )
    assert widest <= 375, widest


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running


TEXT_ONLY = {
    "id": "text_only",
    "start": "confirm",
    "nodes": [
        {
            "id": "confirm",
            "type": "question",
            "text": "Confirma a consulta?",
            "buttons": [
                {"id": "sim", "title": "<b>Sim</b>"},
                {"id": "nao", "title": "Não"},
            ],
            "variable": "answer",
            "validate": {"kind": "choice"},
            "next": "where",
        },
        {
            "id": "where",
            "type": "message",
            "text": "Estamos aqui:",
            "location": {"latitude": -23.5614, "longitude": -46.6559, "name": "Clínica"},
            "next": "bye",
        },
        {"id": "bye", "type": "end"},
    ],
}


def test_a_text_only_channel_shows_numbered_options(
    serve_flow: Callable[..., Any],
    receiver: WebhookReceiver,
    open_page: Callable[..., Page],
) -> None:
    """A channel that renders nothing but text: the transcript shows the numbered text it
    was sent, says so, and the contact's '2' picked the second button's id."""
    served = serve_flow(
        TEXT_ONLY,
        config=f'[channel]\nkind = "webhook"\nurl = "{receiver.url}"\nrenders = []\n',
    )
    execution_id = start(served, "text_only", "conv-text")
    reply(served, "conv-text", "m1", text="2")

    page = open_page()
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("completed"))
    asked = bubble(page, "bot", "Confirma a consulta?")
    expect(asked).to_have_attribute("data-type", "text")
    expect(asked.locator("p.text")).to_have_text(
        "Confirma a consulta?\n\n1. <b>Sim</b>\n2. Não", use_inner_text=True
    )
    expect(asked.locator(".degraded")).to_have_text(
        "sent as numbered options: the channel shows text only"
    )
    expect(asked.locator(".reply-buttons")).to_have_count(0)
    expect(page.locator(".chat b")).to_have_count(0)  # a title's markup stays text
    place = bubble(page, "bot", "Estamos aqui:")
    expect(place.locator("p.text")).to_contain_text(MAP)
    expect(place.locator(".degraded")).to_have_text("sent as text: the channel could not show it")
    expect(bubble(page, "contact", "2")).to_be_visible()

    assert execution(served, execution_id)["variables"]["answer"] == "nao"
    sent = [b for b in receiver.bodies() if b["conversationId"] == "conv-text"]
    assert sent[0]["content"]["options"] == [
        {"id": "sim", "title": "<b>Sim</b>"},
        {"id": "nao", "title": "Não"},
    ]
