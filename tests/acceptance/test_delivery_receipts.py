"""Delivery receipts through ``trilha serve``: the webhook channel POSTs each message with
its ``idempotencyKey`` to a real receiver on 127.0.0.1, the platform reports what became
of it (``POST /v1/conversations/{id}/statuses``), and the transcript, the trail and the
listing tell it: ticks that only move forward, duplicates ignored, bad input refused by
field, another institution told nothing, a message the channel could not take counted
as undelivered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_conversation import problem, until

from conftest import Api, Cli, start_api
from trilha.api.routes.executions import ExecutionPage, TranscriptOut
from trilha.api.routes.statuses import StatusRecorded
from webhook_receiver import WebhookReceiver, webhook_receiver

FLOW = {
    "id": "asks",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "name?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "end", "text": "bye {{name}}"},
    ],
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """The platform's webhook: 500 to the conversations in ``refuse``, 200 to others."""
    with webhook_receiver(refuse_status=500) as made:
        yield made


@pytest.fixture
def served(cli: Cli, tmp_path: Path, receiver: WebhookReceiver) -> Api:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "asks.json").write_text(json.dumps(FLOW), encoding="utf-8")
    config = (
        f'[channel]\nkind = "webhook"\nurl = "{receiver.url}"\nmax_attempts = 1\n\n'
        "[api]\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n"
    )
    return start_api(cli, tmp_path, "--flows", str(flows), config=config)


def start(client: httpx.Client, conversation: str) -> str:
    started = client.post(
        "/v1/executions",
        json={"flowId": "asks", "conversationId": conversation, "contactId": "c-1"},
    )
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["executionId"]
    return execution_id


def report(
    client: httpx.Client, conversation: str, key: str, status: str, at: Any, **extra: Any
) -> httpx.Response:
    return client.post(
        f"/v1/conversations/{conversation}/statuses",
        json={"idempotencyKey": key, "status": status, "at": at, **extra},
    )


def bot_items(client: httpx.Client, execution_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/executions/{execution_id}/transcript")
    assert answer.status_code == 200, answer.text
    TranscriptOut.model_validate(answer.json())  # the documented shape
    return [t for t in answer.json()["transcript"] if t["from"] == "bot"]


def test_receipts_move_the_ticks_forward_and_reach_the_trail(
    served: Api, receiver: WebhookReceiver
) -> None:
    with served.client() as acme:
        eid = start(acme, "wa:1")
        key = until(lambda: receiver.key_of("wa:1"), what="the message at the webhook")
        until(lambda: bot_items(acme, eid)[0].get("outbox") == "sent", what="sent")

        delivered = report(acme, "wa:1", key, "delivered", "2026-01-01T10:00:01Z")
        assert delivered.status_code == 200, delivered.text
        shown = StatusRecorded.model_validate(delivered.json())
        assert (shown.duplicate, shown.advanced, shown.execution_id) == (False, True, eid)
        read = report(acme, "wa:1", key, "read", 1767261602)  # unix seconds, 10:00:02Z
        assert read.json()["delivery"] == {"status": "read", "at": "2026-01-01T10:00:02.000Z"}
        late = report(acme, "wa:1", key, "sent", "2026-01-01T10:00:00+00:00")
        assert (late.json()["advanced"], late.json()["delivery"]["status"]) == (False, "read")
        again = report(acme, "wa:1", key, "read", 1767261609)
        assert again.status_code == 200 and again.json()["duplicate"] is True

        (item,) = bot_items(acme, eid)
        assert item["text"] == "name?" and item["outbox"] == "sent"
        assert item["delivery"] == {"status": "read", "at": "2026-01-01T10:00:02.000Z"}
        assert item["undelivered"] is False and item["attempts"] == 1

        logs = acme.get(f"/v1/executions/{eid}/logs").json()["logs"]
        statuses = [
            line["context"]["metadata"] for line in logs if line["message"] == "message.status"
        ]
        assert [(c["status"], c["delivery"], c["advanced"]) for c in statuses] == [
            ("delivered", "delivered", True),
            ("read", "read", True),
            ("sent", "read", False),
        ]


def test_a_receipt_is_refused_by_field_and_told_nothing_of_others(
    served: Api, receiver: WebhookReceiver
) -> None:
    with served.client() as acme, served.client("beta_operator") as beta:
        start(acme, "wa:2")
        key = until(lambda: receiver.key_of("wa:2"), what="the message at the webhook")

        unknown = problem(report(acme, "wa:2", "no-such-key", "read", 1767261602), 404)
        assert "no-such-key" in unknown["detail"]
        other_conversation = problem(report(acme, "wa:3", key, "read", 1767261602), 404)
        assert key in other_conversation["detail"]
        theirs = problem(report(beta, "wa:2", key, "read", 1767261602), 404)
        assert theirs["type"] == "urn:trilha:problem:not_found"
        with served.client("acme_viewer") as viewer:
            problem(report(viewer, "wa:2", key, "read", 1767261602), 403)
        with served.client("admin") as admin:
            unnamed = problem(report(admin, "wa:2", key, "read", 1767261602), 422)
            assert unnamed["errors"][0]["field"] == "body.institutionId"
            named = report(admin, "wa:2", key, "delivered", 1767261602, institutionId="acme")
            assert named.status_code == 200 and named.json()["delivery"]["status"] == "delivered"

        for body, field in (
            ({"at": "yesterday"}, "body.at"),
            ({"at": "2026-01-01T10:00:00"}, "body.at"),  # no zone
            ({"at": 4102444800}, "body.at"),  # 2100: more than a day ahead
            ({"at": -1}, "body.at"),
            ({"at": True}, "body.at"),
            ({"at": None}, "body.at"),
            ({"status": "seen"}, "body.status"),
            ({"error": "x" * 1001}, "body.error"),
            ({"idempotencyKey": ""}, "body.idempotencyKey"),
        ):
            sent = {"idempotencyKey": key, "status": "read", "at": 1767261602, **body}
            refused = problem(acme.post("/v1/conversations/wa:2/statuses", json=sent), 422)
            assert field in {e["field"] for e in refused["errors"]}, refused
        # only the admin's receipt was recorded: nothing refused left a line
        logs = acme.get(f"/v1/executions/{receiver.bodies()[-1]['executionId']}/logs").json()
        assert [
            line["context"]["metadata"]["status"]
            for line in logs["logs"]
            if line["message"] == "message.status"
        ] == ["delivered"]


def test_a_failure_is_masked_and_undelivered_messages_are_counted(
    served: Api, receiver: WebhookReceiver
) -> None:
    receiver.refuse.add("wa:dead")
    with served.client() as acme, served.client("beta_operator") as beta:
        fine = start(acme, "wa:fine")
        dead = start(acme, "wa:dead")
        failed = start(acme, "wa:failed")
        key = until(lambda: receiver.key_of("wa:failed"), what="the message at the webhook")
        until(lambda: bot_items(acme, dead)[0].get("outbox") == "dead", what="given up")

        reported = report(
            acme, "wa:failed", key, "failed", 1767261602, error="+55 11 98765-4321 blocked us"
        )
        assert reported.status_code == 200, reported.text
        assert "98765-4321" not in reported.text

        (gone,) = bot_items(acme, dead)
        assert (gone["outbox"], gone["undelivered"], gone["delivery"]) == ("dead", True, None)
        assert "500" in gone["lastError"]
        (refused,) = bot_items(acme, failed)
        assert refused["delivery"]["status"] == "failed" and refused["undelivered"] is True
        assert "98765-4321" not in json.dumps(refused)
        logs = acme.get(f"/v1/executions/{failed}/logs").json()["logs"]
        (line,) = [line for line in logs if line["message"] == "message.status"]
        assert line["level"] == "WARN" and "98765-4321" not in json.dumps(line)

        page = ExecutionPage.model_validate(acme.get("/v1/executions?flowId=asks").json())
        counts = {ex.execution_id: ex.undelivered for ex in page.executions}
        assert counts == {fine: 0, dead: 1, failed: 1}
        shown = acme.get(f"/v1/executions/{dead}").json()
        assert shown["undelivered"] == 1 and shown["transcript"][0]["outbox"] == "dead"
        assert beta.get("/v1/executions?flowId=asks").json()["executions"] == []
    # the process log tells the receipt too, masked as the trail is
    code, output = served.stop()
    assert code == 0, output
    assert "message.status" in output and key in output
    assert "98765-4321" not in output
