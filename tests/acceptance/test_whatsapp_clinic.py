"""The clinic on WhatsApp, end to end: a real ``trilha serve`` configured by
examples/whatsapp.toml (its Graph API pointed at the stand-in of tests/graph_standin.py,
the booking dependency at the real booking stand-in), fed Meta's webhook bodies as
Meta's reference shows them and signs them.

A contact writes "oi": the trigger starts the clinic, whose menu reaches the Graph API
as an interactive reply-buttons message; the contact taps "Agendar" (a
``button_reply``), and the slots follow as an interactive list, addressed to the
contact by their WhatsApp profile name. Both of the contact's messages are marked read,
and Meta's ``delivered`` status for the menu becomes its delivery receipt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_conversation import until

import whatsapp_webhooks as wa
from clinic_support import CLINIC, EXAMPLE_BOOKING_URL, EXAMPLES, SLOTS, Standin, standin
from conftest import Api, Cli, start_api
from graph_standin import GraphStandIn, graph_standin

pytestmark = pytest.mark.slow

ENV = {
    "WHATSAPP_TOKEN": "graph-token",
    "WHATSAPP_APP_SECRET": "meta-app-secret",
    "WHATSAPP_VERIFY_TOKEN": "verify-me",
}
NUMBER = "106540352242922"  # the one examples/whatsapp.toml names
CONTACT = "5511987654321"


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    with graph_standin() as made:
        yield made


@pytest.fixture
def booking() -> Iterator[Standin]:
    with standin() as running:
        yield running


@pytest.fixture
def served(cli: Cli, tmp_path: Path, graph: GraphStandIn, booking: Standin) -> Api:
    config = (EXAMPLES / "whatsapp.toml").read_text(encoding="utf-8")
    assert config.count(EXAMPLE_BOOKING_URL) == 1
    config = config.replace(EXAMPLE_BOOKING_URL, booking.url)
    default_url = '# api_base_url = "https://graph.facebook.com/v21.0"'
    assert config.count(default_url) == 1
    config = config.replace(default_url, f'api_base_url = "{graph.url}"')
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "clinic.json").write_text(CLINIC.read_text(encoding="utf-8"), encoding="utf-8")
    return start_api(cli, tmp_path, "--flows", str(flows), config=config, env=ENV)


def post(api: Api, *messages: dict[str, Any]) -> None:
    """Meta's notification of ``messages`` from the contact, signed with the app secret."""
    body = wa.notification(
        wa.value(messages=list(messages), phone_number_id=NUMBER, wa_id=CONTACT, name="Maria")
    )
    raw = wa.encode(body)
    answer = httpx.post(
        f"{api.url}/v1/channels/whatsapp/webhook",
        content=raw,
        headers={
            "content-type": "application/json",
            "X-Hub-Signature-256": wa.signature(ENV["WHATSAPP_APP_SECRET"], raw),
        },
    )
    assert answer.status_code == 200, answer.text


def test_oi_menu_button_list(served: Api, graph: GraphStandIn) -> None:
    post(served, wa.text("wamid.oi", "oi", wa_id=CONTACT))
    [menu] = graph.wait_sends(1)
    assert menu.path == f"/v21.0/{NUMBER}/messages"
    assert menu.headers["authorization"] == "Bearer graph-token"
    assert menu.body is not None
    callback = menu.body.pop("biz_opaque_callback_data")
    assert menu.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CONTACT,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "header": {"type": "text", "text": "Clínica Sorriso"},
            "body": {
                "text": "Olá! Sou a assistente virtual da Clínica Sorriso. Como posso ajudar?"
            },
            "footer": {"text": "Atendimento de segunda a sexta, das 8h às 18h"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "agendar", "title": "Agendar"}},
                    {"type": "reply", "reply": {"id": "onde_fica", "title": "Onde fica"}},
                    {
                        "type": "reply",
                        "reply": {"id": "atendente", "title": "Falar com atendente"},
                    },
                ]
            },
        },
    }

    post(served, wa.button_reply("wamid.tap", "agendar", "Agendar", wa_id=CONTACT))
    sends = graph.wait_sends(2)
    assert len(sends) == 2, [s.body for s in sends]
    listed = sends[1].body
    assert listed is not None
    assert (listed["to"], listed["type"]) == (CONTACT, "interactive")
    interactive = listed["interactive"]
    assert interactive["type"] == "list"
    # the contact's WhatsApp profile name is the flow's contact.name
    assert interactive["body"] == {
        "text": "Maria, estes são os próximos horários livres. Qual você prefere?"
    }
    assert interactive["action"] == {
        "button": "Ver horários",
        "sections": [
            {
                "title": "Próximos horários",
                "rows": [
                    {"id": s["id"], "title": s["label"], "description": f"com {s['doctor']}"}
                    for s in SLOTS
                ],
            }
        ],
    }
    # mark_read = true: each message the bot answered is marked read
    assert until(lambda: graph.reads() == ["wamid.oi", "wamid.tap"], what="both marked read")

    # Meta's status for the menu comes back as its delivery receipt
    status = wa.notification(
        wa.value(
            statuses=[
                {
                    "id": "wamid.standin000001",
                    "status": "delivered",
                    "timestamp": "1739321100",
                    "recipient_id": CONTACT,
                    "biz_opaque_callback_data": callback,
                }
            ],
            phone_number_id=NUMBER,
        )
    )
    raw = wa.encode(status)
    answer = httpx.post(
        f"{served.url}/v1/channels/whatsapp/webhook",
        content=raw,
        headers={"X-Hub-Signature-256": wa.signature(ENV["WHATSAPP_APP_SECRET"], raw)},
    )
    assert answer.status_code == 200
    with served.client() as client:
        conversation = f"wa:{NUMBER}:{CONTACT}"
        [execution] = client.get("/v1/executions", params={"conversationId": conversation}).json()[
            "executions"
        ]
        assert execution["flowId"] == "clinic"

        def delivered() -> bool:
            transcript = client.get(f"/v1/executions/{execution['executionId']}/transcript").json()
            menu = next(e for e in transcript["transcript"] if e["from"] == "bot")
            return (menu.get("delivery") or {}).get("status") == "delivered"

        assert until(delivered, what="the menu's delivery receipt")
