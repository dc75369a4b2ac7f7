"""examples/clinic.json over the API: a real ``trilha serve`` (the clinic among its
``--flows``, examples/trilha.toml's booking dependency pointed at the real booking
stand-in on 127.0.0.1), the webhook channel posting to a real receiver, and the
contact's replies posted as the platform would: a tapped button, a list row, a photo.

What the platform receives is checked as it receives it: each webhook body carries
``content`` with the menu's buttons, the list rows the stand-in's slots make, the
clinic's location; ``text`` its plain rendering.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clinic_support import CLINIC, SLOTS, Standin, example_config, slot_rows, standin
from conftest import Api, Cli, start_api
from webhook_receiver import WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.slow

PHONE = "+5511987654321"
MENU_PT = [
    {"id": "agendar", "title": "Agendar"},
    {"id": "onde_fica", "title": "Onde fica"},
    {"id": "atendente", "title": "Falar com atendente"},
]
PLACE = {"latitude": -23.5558, "longitude": -46.6622}
PHOTO = {
    "kind": "image",
    "url": "https://media.example.com/cards/123.jpg",
    "mimeType": "image/jpeg",
}


@pytest.fixture
def booking() -> Iterator[Standin]:
    with standin() as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as made:
        yield made


@pytest.fixture
def served(cli: Cli, tmp_path: Path, booking: Standin, receiver: WebhookReceiver) -> Api:
    """``trilha serve --flows`` with the clinic, configured by examples/trilha.toml with
    the booking stand-in's port and the webhook channel instead of the terminal."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "clinic.json").write_text(CLINIC.read_text(encoding="utf-8"), encoding="utf-8")
    config = example_config(booking.url)
    terminal = '[channel]\nkind = "terminal"'
    assert config.count(terminal) == 1
    config = config.replace(terminal, f'[channel]\nkind = "webhook"\nurl = "{receiver.url}"')
    return start_api(cli, tmp_path, "--flows", str(flows), config=config)


def until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Conversation:
    """One contact's conversation with the clinic: what the webhook got, what to reply."""

    def __init__(self, client: httpx.Client, receiver: WebhookReceiver, name: str) -> None:
        self.client = client
        self.receiver = receiver
        self.id = f"wa:{name}:{uuid.uuid4().hex[:8]}"
        self.contact = f"contact-{name}"
        self.execution = ""
        self.seen = 0

    def start(self, **extra: Any) -> None:
        started = self.client.post(
            "/v1/executions",
            json={
                "flowId": "clinic",
                "conversationId": self.id,
                "contactId": self.contact,
                **extra,
            },
        )
        assert started.status_code == 201, started.text
        self.execution = started.json()["executionId"]

    def bodies(self) -> list[dict[str, Any]]:
        return [b for b in self.receiver.accepted() if b["conversationId"] == self.id]

    def next_body(self, kind: str | None = None) -> dict[str, Any]:
        """The next message the webhook received for this conversation (of ``content``
        type ``kind``, skipping the others)."""

        def found() -> dict[str, Any] | None:
            for i, body in enumerate(self.bodies()[self.seen :], self.seen):
                if kind is None or body["content"]["type"] == kind:
                    self.seen = i + 1
                    return body
            return None

        body: dict[str, Any] = until(found, f"a {kind or 'message'} for {self.id}")
        return body

    def reply(self, **message: Any) -> None:
        answer = self.client.post(
            f"/v1/conversations/{self.id}/messages",
            json={"messageId": uuid.uuid4().hex, "contactId": self.contact, **message},
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["executionId"] == self.execution

    def ended(self) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            ex: dict[str, Any] = self.client.get(f"/v1/executions/{self.execution}").json()
            return ex if ex["status"] in ("completed", "failed", "cancelled", "timeout") else None

        ex: dict[str, Any] = until(finished, f"execution {self.execution} to end")
        return ex

    def transcript(self) -> list[dict[str, Any]]:
        answer = self.client.get(f"/v1/executions/{self.execution}/transcript")
        assert answer.status_code == 200, answer.text
        entries: list[dict[str, Any]] = answer.json()["transcript"]
        return entries


def test_booking_over_the_api(served: Api, receiver: WebhookReceiver, booking: Standin) -> None:
    """The menu reaches the webhook as buttons, the slots as a list of the stand-in's
    rows, the clinic as a location; a tapped button, a tapped row and a photo posted as
    typed messages book the slot, and the transcript keeps both sides structured."""
    with served.client() as client:
        chat = Conversation(client, receiver, "maria")
        chat.start(variables={"contact": {"name": "Maria Silva", "phone": PHONE}})

        menu = chat.next_body()
        assert menu["content"] == {
            "type": "buttons",
            "header": "Clínica Sorriso",
            "text": "Olá! Sou a assistente virtual da Clínica Sorriso. Como posso ajudar?",
            "footer": "Atendimento de segunda a sexta, das 8h às 18h",
            "buttons": MENU_PT,
        }
        assert "1. Agendar\n2. Onde fica\n3. Falar com atendente" in menu["text"]

        chat.reply(type="button", replyId="agendar", text="Agendar")
        listed = chat.next_body()
        assert listed["content"] == {
            "type": "list",
            "text": "Maria Silva, estes são os próximos horários livres. Qual você prefere?",
            "list": {
                "button": "Ver horários",
                "sections": [{"title": "Próximos horários", "rows": slot_rows(SLOTS)}],
            },
        }
        assert f"2. {SLOTS[1]['label']} — com {SLOTS[1]['doctor']}" in listed["text"]

        chat.reply(type="list", replyId=SLOTS[1]["id"], text=SLOTS[1]["label"])
        card = chat.next_body()
        assert card["content"]["type"] == "text"
        assert "envie uma foto da sua carteirinha" in card["text"]

        chat.reply(type="media", media=PHOTO)
        confirmation = chat.next_body()
        assert confirmation["text"] == (
            "Pronto, Maria Silva! Sua consulta está marcada para ter 10/06 14:30 com"
            " Dr. Bruno Reis. Protocolo CLN-1001."
        )
        place = chat.next_body()
        assert place["content"]["type"] == "location"
        assert place["content"]["location"] == PLACE | {
            "name": "Clínica Sorriso",
            "address": "Rua Augusta, 1500, sala 42 - Consolação, São Paulo - SP",
        }
        assert (
            "https://www.google.com/maps/search/?api=1&query=-23.555800%2C-46.662200"
            in (place["text"])
        )
        ex = chat.ended()
        assert (ex["status"], ex["outcome"]) == ("completed", "completed")
        assert ex["variables"]["card"] == PHOTO
        assert ex["variables"]["slot"] == SLOTS[1]

        transcript = chat.transcript()

    [made] = booking.state.bookings
    assert (made["slot"], made["name"], made["phone"]) == (SLOTS[1], "Maria Silva", PHONE)
    assert made["insuranceCard"] == PHOTO
    contact_side = [t.get("content") for t in transcript if t["from"] == "contact"]
    assert contact_side == [
        {"type": "button", "replyId": "agendar", "text": "Agendar"},
        {"type": "list", "replyId": SLOTS[1]["id"], "text": SLOTS[1]["label"]},
        {"type": "media", "media": PHOTO},
    ]
    bot_kinds = [
        (t.get("content") or {"type": "text"})["type"] for t in transcript if t["from"] == "bot"
    ]
    assert bot_kinds == ["buttons", "list", "text", "text", "location", "text"]
    assert all(b["idempotencyKey"] for b in chat.bodies())


def test_english_start_and_a_refused_file(
    served: Api, receiver: WebhookReceiver, booking: Standin
) -> None:
    """Started with language "en", the clinic speaks English; a reply by number picks a
    row; a file of a type the card question does not accept is refused (asked again),
    a PDF is taken and the booking carries the language."""
    with served.client() as client:
        chat = Conversation(client, receiver, "john")
        chat.start(language="en", variables={"contact": {"name": "John Smith"}})
        menu = chat.next_body("buttons")
        assert [b["title"] for b in menu["content"]["buttons"]] == [
            "Book",
            "Where we are",
            "Talk to a person",
        ]
        assert menu["content"]["header"] == "Sorriso Dental Clinic"

        chat.reply(type="button", replyId="agendar", text="Book")
        listed = chat.next_body("list")
        assert listed["content"]["list"]["button"] == "See times"
        assert listed["content"]["list"]["sections"][0]["rows"] == slot_rows(SLOTS, "en")

        chat.reply(text="3")
        asked = chat.next_body()
        assert asked["text"].startswith("To speed things up, please send a photo")

        chat.reply(
            type="media",
            media={
                "kind": "document",
                "url": "https://media.example.com/c.zip",
                "mimeType": "application/zip",
                "filename": "card.zip",
            },
        )
        again = chat.next_body()
        assert again["text"] == "I need a photo or a PDF of the card. Could you send it, please?"
        assert booking.state.bookings == []

        pdf = {
            "kind": "document",
            "url": "https://media.example.com/card.pdf",
            "mimeType": "application/pdf",
            "filename": "card.pdf",
        }
        chat.reply(type="media", media=pdf)
        confirmation = chat.next_body()
        assert confirmation["text"] == (
            "All set, John Smith! Your appointment is booked for Wednesday, June 11, 8:00 AM"
            " with Dra. Ana Lima. Reference CLN-1001."
        )
        place = chat.next_body("location")
        assert place["content"]["location"]["name"] == "Sorriso Dental Clinic"
        ex = chat.ended()

    assert (ex["status"], ex["outcome"]) == ("completed", "completed")
    assert ex["variables"]["contact"]["language"] == "en"
    [made] = booking.state.bookings
    assert (made["slot"], made["insuranceCard"], made["language"]) == (SLOTS[2], pdf, "en")


def test_booking_down_over_the_api(
    served: Api, receiver: WebhookReceiver, booking: Standin
) -> None:
    """With the booking service gone, tapping 'Agendar' reaches the webhook as the
    apology and the execution ends handed to the front desk."""
    with served.client() as client:
        chat = Conversation(client, receiver, "ana")
        chat.start(variables={"contact": {"name": "Ana"}})
        chat.next_body("buttons")
        booking.stop()
        chat.reply(type="button", replyId="agendar", text="Agendar")
        apology = chat.next_body()
        ex = chat.ended()
        logs = client.get(f"/v1/executions/{chat.execution}/logs").json()["logs"]

    assert apology["text"].startswith(
        "Desculpe, nosso sistema de agendamento não está respondendo agora."
    )
    assert (ex["status"], ex["outcome"]) == ("completed", "escalated")
    assert "slots" not in ex["variables"]
    failed = [line for line in logs if line["message"] == "node.failed"]
    assert failed and {line["nodeId"] for line in failed} == {"fetch_slots"}
