"""Answers name the message they answer, through a real ``trilha serve`` whose webhook
channel POSTs to a real receiver on 127.0.0.1: the bot's messages after a contact's
reply carry its ``messageId`` as ``replyTo`` (``null`` before any), also when the server
was killed while the execution waited for that reply and started again on the same
SQLite file."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api_conversation import until

from conftest import Api, Cli, Drain, serve, start_api
from webhook_receiver import WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.slow

FLOW = {
    "id": "asks",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Seu nome?", "variable": "name", "next": "ok"},
        {"id": "ok", "type": "message", "text": "Obrigado, {{name}}!", "next": "age"},
        {"id": "age", "type": "question", "text": "Sua idade?", "variable": "age", "next": "bye"},
        {"id": "bye", "type": "end", "text": "Até logo."},
    ],
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as made:
        yield made


def said(receiver: WebhookReceiver) -> list[tuple[str, str | None]]:
    return [(b["text"], b["replyTo"]) for b in receiver.accepted()]


def reply(client: httpx.Client, message_id: str, text: str) -> None:
    sent = client.post(
        "/v1/conversations/wa:100:5511/messages",
        json={"messageId": message_id, "contactId": "5511", "text": text},
    )
    assert sent.status_code == 202, sent.text


def test_reply_to_across_a_crash_while_waiting(
    cli: Cli, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "asks.json").write_text(json.dumps(FLOW), encoding="utf-8")
    config = f'[channel]\nkind = "webhook"\nurl = "{receiver.url}"\n'
    api = start_api(cli, tmp_path, "--flows", str(flows), config=config)
    with api.client() as acme:
        started = acme.post(
            "/v1/executions",
            json={"flowId": "asks", "conversationId": "wa:100:5511", "contactId": "5511"},
        )
        assert started.status_code == 201, started.text
        until(lambda: said(receiver) == [("Seu nome?", None)], what="the first question")
    # the server dies while the execution waits for the reply
    api.process.send_signal(signal.SIGKILL)
    api.process.wait(timeout=30)

    process, url = serve(cli, tmp_path, api.store, "--flows", str(flows))
    again = Api(url, process, api.store, api.keys, Drain(process))
    with again.client() as acme:
        reply(acme, "wamid.HBgNNTUxMTk=", "Ana")
        until(lambda: len(said(receiver)) == 3, what="the answer and the next question")
        reply(acme, "wamid.2", "31")
        until(lambda: len(said(receiver)) == 4, what="the goodbye")
    assert said(receiver) == [
        ("Seu nome?", None),
        ("Obrigado, Ana!", "wamid.HBgNNTUxMTk="),
        ("Sua idade?", "wamid.HBgNNTUxMTk="),
        ("Até logo.", "wamid.2"),
    ]
    code, _ = again.stop()
    assert code == 0
