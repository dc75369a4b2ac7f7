"""Meta's ``131047`` (re-engagement: the contact's 24-hour window had closed) as the real
Cloud API reports it: the send is answered 200 with a wamid, and the failure arrives
later as a ``failed`` status through the webhook. Through a real ``trilha serve`` with
the Graph API stand-in: the question's interactive message (its template riding along)
reported failed 131047 is sent again as its template, with the same
``biz_opaque_callback_data``, once however often Meta repeats the status; the
template's receipts move the delivery past the failure; a message without a template is
only recorded failed, with a ``message.outside_window`` line; and a template send cut
by a crash is made by the next process on the same SQLite file."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_conversation import until

import whatsapp_webhooks as wa
from conftest import Api, Cli, serve, start_api
from graph_standin import GraphRequest, GraphStandIn, graph_standin

pytestmark = pytest.mark.slow

SECRET = "meta-app-secret"
ENV = {"WA_SECRET": SECRET, "WA_TOKEN": "graph-token"}
NUMBER = wa.PHONE_NUMBER_ID
CONTACT = "5511987654321"
OTHER = "5511912345678"
TEMPLATE = {"name": "menu_inicial", "language": "pt_BR"}
MENU = {
    "id": "wa_menu",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Como posso ajudar?", "variable": "choice",
         "buttons": [{"id": "agendar", "title": "Agendar"}, {"id": "precos", "title": "Preços"}],
         "template": TEMPLATE, "next": "bye"},
        {"id": "bye", "type": "end", "text": "Até logo"},
    ],
}  # fmt: skip
PLAIN = {
    "id": "wa_plain",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Seu nome?", "variable": "name",
         "next": "bye"},
        {"id": "bye", "type": "end", "text": "Tchau {{name}}"},
    ],
}  # fmt: skip
#: Meta's ``errors`` of a ``failed`` status for a message sent outside the window
REENGAGEMENT = [
    {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {
            "details": "Message failed to send because more than 24 hours have passed since"
            " the customer last replied to this number."
        },
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
]


def config(standin_url: str) -> str:
    return f"""[channel]
kind = "whatsapp"
backoff_seconds = 0.05
max_backoff_seconds = 0.2

[channel.whatsapp]
access_token = "${{WA_TOKEN}}"
app_secret = "${{WA_SECRET}}"
verify_token = "v"
api_base_url = "{standin_url}"
timeout_seconds = 2
numbers = [{{ phone_number_id = "{NUMBER}", institution = "acme" }}]

[engine]
heartbeat_seconds = 0.2

[api]
rate_limit_per_second = 10000
rate_limit_burst = 10000

[[triggers]]
institution = "acme"
keywords = ["oi"]
flow_id = "wa_menu"

[[triggers]]
institution = "acme"
keywords = ["nome"]
flow_id = "wa_plain"
"""


@pytest.fixture
def standin() -> Iterator[GraphStandIn]:
    with graph_standin() as made:
        yield made


@pytest.fixture
def served(cli: Cli, tmp_path: Path, standin: GraphStandIn) -> Api:
    flows = tmp_path / "flows"
    flows.mkdir()
    for flow in (MENU, PLAIN):
        (flows / f"{flow['id']}.json").write_text(json.dumps(flow), encoding="utf-8")
    return start_api(cli, tmp_path, "--flows", str(flows), config=config(standin.url), env=ENV)


def post(api: Api, body: dict[str, Any]) -> None:
    """POST a notification as Meta does: no API key, signed with the app secret."""
    raw = wa.encode(body)
    headers = {"content-type": "application/json", "X-Hub-Signature-256": wa.signature(SECRET, raw)}
    answer = httpx.post(f"{api.url}/v1/channels/whatsapp/webhook", content=raw, headers=headers)
    assert answer.status_code == 200, answer.text


def says(wamid: str, text: str, contact: str = CONTACT) -> dict[str, Any]:
    return wa.notification(
        wa.value(
            messages=[wa.text(wamid, text, wa_id=contact)], phone_number_id=NUMBER, wa_id=contact
        )
    )


def failed(key: str, contact: str = CONTACT, wamid: str = "wamid.menu") -> dict[str, Any]:
    """Meta's report that the message of ``key`` failed with 131047."""
    status = wa.status(wamid, "failed", key=key, recipient=contact, errors=REENGAGEMENT)
    return wa.notification(wa.value(statuses=[status], phone_number_id=NUMBER))


def receipt(key: str, state: str, timestamp: str) -> dict[str, Any]:
    status = wa.status("wamid.tpl", state, key=key, recipient=CONTACT, timestamp=timestamp)
    return wa.notification(wa.value(statuses=[status], phone_number_id=NUMBER))


def sends_to(standin: GraphStandIn, contact: str) -> list[GraphRequest]:
    return [s for s in standin.sends() if s.body is not None and s.body.get("to") == contact]


def started(api: Api, client: httpx.Client, word: str, contact: str = CONTACT) -> str:
    """The contact writes ``word`` (inside the window from now on); the execution the
    trigger started, once it waits for the answer."""
    post(api, says(f"wamid.{word}-{contact}", word, contact))

    def waiting() -> str | None:
        found = client.get(
            "/v1/executions", params={"conversationId": f"wa:{NUMBER}:{contact}"}
        ).json()["executions"]
        if found and found[0]["status"] == "waiting_input":
            return str(found[0]["executionId"])
        return None

    eid: str = until(waiting, what="the question")
    return eid


def processed(api: Api) -> bool:
    """Every webhook body the server stored has been processed."""
    with sqlite3.connect(api.store.removeprefix("sqlite:///"), timeout=10) as conn:
        rows = conn.execute("SELECT status FROM channel_webhooks").fetchall()
    return all(r[0] == "done" for r in rows)


def lines(client: httpx.Client, execution_id: str, event: str) -> list[dict[str, Any]]:
    logs = client.get(f"/v1/executions/{execution_id}/logs").json()["logs"]
    return [r for r in logs if r["message"] == event]


def checked(cli: Cli, api: Api) -> None:
    """``trilha check`` finds the outbox and the trail in agreement (the message queued
    again is pending or sent, as its last delivery line says)."""
    result = cli("check", "--store", api.store)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_failed_131047_status_sends_the_template_once(
    cli: Cli, served: Api, standin: GraphStandIn
) -> None:
    with served.client() as acme:
        eid = started(served, acme, "oi")
        (menu,) = until(lambda: sends_to(standin, CONTACT), what="the menu")
        assert menu.body is not None
        # inside the window: the interactive message itself, the template left out
        assert (menu.body["type"], menu.body["interactive"]["type"]) == ("interactive", "button")
        key = menu.body["biz_opaque_callback_data"]

        # Meta accepted it, then reports through the webhook that the window had closed;
        # the same status comes twice (Meta retries), once more in a body of its own
        post(served, failed(key))
        post(served, failed(key))
        resent = until(lambda: sends_to(standin, CONTACT)[1:], what="the template")
        (template,) = resent
        assert template.body == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CONTACT,
            "type": "template",
            "template": {"name": "menu_inicial", "language": {"code": "pt_BR"}},
            "biz_opaque_callback_data": key,
        }
        until(lambda: processed(served), what="the statuses processed")
        # the contact's answer comes after both statuses (same conversation: in order);
        # once the goodbye is sent, no third copy of the menu can still be on its way
        post(served, says("wamid.answer", "Agendar"))
        until(lambda: len(sends_to(standin, CONTACT)) >= 3, what="the goodbye")
        sent = sends_to(standin, CONTACT)
        assert [s.body["type"] for s in sent if s.body] == ["interactive", "template", "text"]

        (line,) = lines(acme, eid, "message.resent_as_template")
        assert line["level"] == "WARN"
        said = line["context"]["metadata"]
        assert (said["code"], said["idempotencyKey"], said["template"]) == (
            131047,
            key,
            "menu_inicial",
        )
        # Meta's repeat was a duplicate (one receipt per status per wamid); a failure of
        # the template itself (another wamid, same key) is a receipt of its own
        unknown = [{"code": 132001, "title": "Template name does not exist in the translation"}]
        post(
            served,
            wa.notification(
                wa.value(
                    statuses=[
                        wa.status("wamid.tpl", "failed", key=key, recipient=CONTACT, errors=unknown)
                    ],
                    phone_number_id=NUMBER,
                )
            ),
        )

        def failures() -> list[bool]:
            """``advanced`` of each failed receipt recorded (the logs API leaves errors out)."""
            return [
                bool(r["context"]["metadata"]["advanced"])
                for r in lines(acme, eid, "message.status")
                if r["context"]["metadata"]["status"] == "failed"
            ]

        # the 131047 (once, though posted twice), then the template's own failure
        assert until(lambda: failures() if len(failures()) == 2 else None) == [True, False]
        # the template's receipts (same key) move the delivery past the failure
        post(served, receipt(key, "delivered", "1767261601"))
        post(served, receipt(key, "read", "1767261602"))

        def menu_delivery() -> dict[str, Any] | None:
            items = acme.get(f"/v1/executions/{eid}/transcript").json()["transcript"]
            shown: dict[str, Any] | None = items[1].get("delivery")
            return shown if shown and shown["status"] == "read" else None

        assert until(menu_delivery, what="the read receipt")["at"] == "2026-01-01T10:00:02.000Z"
    checked(cli, served)


def test_without_a_template_nothing_is_sent_again(served: Api, standin: GraphStandIn) -> None:
    with served.client() as acme:
        eid = started(served, acme, "nome", contact=OTHER)
        (question,) = until(lambda: sends_to(standin, OTHER), what="the question")
        assert question.body is not None
        key = question.body["biz_opaque_callback_data"]
        post(served, failed(key, contact=OTHER, wamid="wamid.name"))
        post(served, failed(key, contact=OTHER, wamid="wamid.name"))
        until(lambda: processed(served), what="the statuses processed")
        (why,) = until(lambda: lines(acme, eid, "message.outside_window"), what="the line")
        assert why["level"] == "WARN"
        assert "outside_window" in why["context"]["metadata"]["reason"]
        items = acme.get(f"/v1/executions/{eid}/transcript").json()["transcript"]
        assert items[1]["delivery"]["status"] == "failed"
        assert items[1]["delivery"]["error"].startswith("131047: Re-engagement message")
        # the answer's goodbye comes after the statuses: the question was never sent again
        post(served, says("wamid.ana", "Ana", contact=OTHER))
        until(lambda: len(sends_to(standin, OTHER)) >= 2, what="the goodbye")
        assert [s.body["text"]["body"] for s in sends_to(standin, OTHER) if s.body] == [
            "Seu nome?",
            "Tchau Ana",
        ]
        assert not lines(acme, eid, "message.resent_as_template")


def test_a_template_send_cut_by_a_crash_is_made_by_the_next_process(
    cli: Cli, tmp_path: Path, served: Api, standin: GraphStandIn
) -> None:
    with served.client() as acme:
        eid = started(served, acme, "oi")
        (menu,) = until(lambda: sends_to(standin, CONTACT), what="the menu")
        assert menu.body is not None
        key = menu.body["biz_opaque_callback_data"]
    standin.delay = 5.0  # the template's send hangs: the kill comes in the middle of it
    post(served, failed(key))
    until(lambda: len(sends_to(standin, CONTACT)) == 2, what="the template's first try")
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(timeout=10)
    checked(cli, served)  # pending again, as its last delivery line says
    standin.delay = 0.0
    process, url = serve(cli, tmp_path, served.store, "--flows", str(tmp_path / "flows"), env=ENV)
    again = Api(url, process, served.store, served.keys)
    sent = until(lambda: sends_to(standin, CONTACT)[2:], what="the template after the restart")
    assert sent[0].body is not None
    assert (sent[0].body["type"], sent[0].body["biz_opaque_callback_data"]) == ("template", key)
    with again.client() as acme:
        # switched once: the status was not asked again, the outbox kept the template
        assert len(lines(acme, eid, "message.resent_as_template")) == 1
        post(again, says("wamid.answer", "Agendar"))
        until(
            lambda: acme.get(f"/v1/executions/{eid}").json()["status"] == "completed",
            what="the end after the restart",
        )
    assert [s.body["type"] for s in sends_to(standin, CONTACT) if s.body] == [
        "interactive",
        "template",
        "template",
        "text",
    ]
    checked(cli, again)
