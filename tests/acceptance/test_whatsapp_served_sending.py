"""The WhatsApp channel's sending side through a real ``trilha serve`` configured with
``[channel] kind = "whatsapp"`` (its token from the environment) and the Graph API
stand-in on 127.0.0.1: an execution started over the API reaches Meta's ``/messages``
from its conversation's number, as its question's template (the contact has not written:
outside the 24-hour window only a template may be sent); a conversation on another
institution's number, or one the contact's replies would not reach, is refused (422);
and a message Meta throttled, waiting for its retry when the process is killed, is sent by the next
process on the same SQLite file with its attempt count intact."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_conversation import until

from conftest import Api, Cli, start_api
from graph_standin import GraphStandIn, Refusal, graph_standin

WA_ID = "5511987654321"
FLOW = {
    "id": "menu",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "question",
            "text": "Como posso ajudar?",
            "variable": "choice",
            "buttons": [{"id": "agendar", "title": "Agendar"}, {"id": "precos", "title": "Preços"}],
            "template": {"name": "menu_inicial", "language": "pt_BR"},
            "next": "bye",
        },
        {"id": "bye", "type": "end", "text": "Até logo"},
    ],
}
ENV = {"WA_TOKEN": "token-from-env", "WA_SECRET": "secret-from-env"}


@pytest.fixture
def standin() -> Iterator[GraphStandIn]:
    with graph_standin() as server:
        yield server


def config(standin: GraphStandIn, backoff: float = 0.05) -> str:
    return (
        '[channel]\nkind = "whatsapp"\nmax_attempts = 5\n'
        f"backoff_seconds = {backoff}\nmax_backoff_seconds = {backoff * 4}\n\n"
        '[channel.whatsapp]\naccess_token = "${WA_TOKEN}"\napp_secret = "${WA_SECRET}"\n'
        f'verify_token = "v"\napi_base_url = "{standin.url}"\nmessages_per_second = 20\n\n'
        '[[channel.whatsapp.numbers]]\nphone_number_id = "1001"\ninstitution = "acme"\n\n'
        '[[channel.whatsapp.numbers]]\nphone_number_id = "2001"\ninstitution = "beta"\n\n'
        "[api]\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n"
    )


def served(cli: Cli, tmp_path: Path, text: str) -> Api:
    flows = tmp_path / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "menu.json").write_text(json.dumps(FLOW), encoding="utf-8")
    return start_api(cli, tmp_path, "--flows", str(flows), config=text, env=ENV)


def start(client: httpx.Client, conversation: str) -> str:
    started = client.post(
        "/v1/executions",
        json={"flowId": "menu", "conversationId": conversation, "contactId": WA_ID},
    )
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["executionId"]
    return execution_id


def metadata(client: httpx.Client, execution_id: str, event: str) -> list[dict[str, Any]]:
    logs = client.get(f"/v1/executions/{execution_id}/logs").json()["logs"]
    return [line["context"]["metadata"] for line in logs if line["message"] == event]


def test_a_served_flow_reaches_meta_from_its_number_and_never_from_anothers(
    cli: Cli, tmp_path: Path, standin: GraphStandIn
) -> None:
    api = served(cli, tmp_path, config(standin))
    with api.client() as acme:
        eid = start(acme, f"wa:1001:{WA_ID}")
        (sent,) = standin.wait_sends(1)
        assert sent.path == "/v21.0/1001/messages"
        assert sent.headers["authorization"] == "Bearer token-from-env"
        assert sent.body is not None
        assert (sent.body["to"], sent.body["type"]) == (WA_ID, "template")
        assert sent.body["template"] == {"name": "menu_inicial", "language": {"code": "pt_BR"}}
        assert sent.body["biz_opaque_callback_data"].startswith(f"{eid}:")
        until(lambda: metadata(acme, eid, "message.delivered"), what="the delivery")

        # acme naming beta's number, or a conversation its replies would not reach:
        # refused at the door, nothing stored, nothing sent
        for conversation, contact, why in (
            ("wa:2001:5511000000001", "5511000000001", "not one of the institution's"),
            ("c-42", WA_ID, "a conversation is 'wa:{phone_number_id}:{wa_id}'"),
            (f"wa:1001:{WA_ID}", "5511000000001", "must be the conversation's wa_id"),
        ):
            refused = acme.post(
                "/v1/executions",
                json={"flowId": "menu", "conversationId": conversation, "contactId": contact},
            )
            assert refused.status_code == 422, refused.text
            assert refused.json()["errors"][0]["field"] == "body.conversationId"
            assert why in refused.json()["detail"]
        listed = acme.get("/v1/executions").json()["executions"]
        assert [e["executionId"] for e in listed] == [eid]
    assert len(standin.sends()) == 1
    code, output = api.stop()
    assert code == 0
    assert "token-from-env" not in output


@pytest.mark.slow
def test_a_throttled_message_survives_a_kill_while_it_waits(
    cli: Cli, tmp_path: Path, standin: GraphStandIn
) -> None:
    standin.refuse_next = [Refusal(130429)]
    text = config(standin, backoff=3.0)
    first = served(cli, tmp_path, text)
    with first.client() as acme:
        eid = start(acme, f"wa:1001:{WA_ID}")
        (failed,) = until(
            lambda: metadata(acme, eid, "message.delivery_failed"), what="Meta's 130429"
        )
    assert (failed["reason"], failed["code"], failed["attempt"]) == ("throttled", 130429, 1)
    assert failed["retryInSeconds"] >= 1.5  # backoff 3 s with jitter: half to all of it
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    assert len(standin.sends()) == 1

    second = start_api(
        cli, tmp_path, "--flows", str(tmp_path / "flows"), config=text, env=ENV, store=first.store
    )
    with second.client() as acme:
        until(lambda: metadata(acme, eid, "message.delivered"), what="the retry", timeout=30)
        (delivered,) = metadata(acme, eid, "message.delivered")
        assert delivered["attempt"] == 2
        assert len(metadata(acme, eid, "message.delivery_failed")) == 1
    sends = standin.sends()
    assert len(sends) == 2
    assert sends[0].body == sends[1].body  # the same message, the same callback data
    second.stop()
