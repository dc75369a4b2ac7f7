"""Outbound delivery never fails silently (issue 17 §3), through a real ``trilha serve``
whose webhook channel POSTs to a real receiver on 127.0.0.1 that answers 503 for a
while: every failed attempt is a WARN ``message.delivery_failed`` in the trail (status,
attempt, next try) and on stdout, and counts in ``trilha_outbox_delivery_failures_total``;
the last one is an ERROR ``message.dead``, the TrilhaDeadMessages alert fires with the
outbox as its evidence, ``GET /v1/outbox?status=dead`` lists the message to its own
institution only, and a redrive (API or ``trilha outbox``) sends it:
``message.redriven`` then ``message.delivered``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_conversation import problem, until

from conftest import Api, Cli, start_api
from trilha.api.routes.outbox import OutboxItemOut, OutboxPage
from webhook_receiver import WebhookReceiver, webhook_receiver

FLOW = {
    "id": "asks",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "name?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "end", "text": "bye {{name}}"},
    ],
}
MAX_ATTEMPTS = 3


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """The platform's webhook: 503 while ``refuse_all`` is set, else 200."""
    with webhook_receiver(refuse_all=True) as made:
        yield made


def texts(receiver: WebhookReceiver) -> list[str]:
    """What the webhook accepted, in order."""
    return [b["text"] for b in receiver.accepted()]


@pytest.fixture
def served(cli: Cli, tmp_path: Path, receiver: WebhookReceiver) -> Api:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "asks.json").write_text(json.dumps(FLOW), encoding="utf-8")
    config = (
        f'[channel]\nkind = "webhook"\nurl = "{receiver.url}"\nmax_attempts = {MAX_ATTEMPTS}\n'
        "backoff_seconds = 0.05\nmax_backoff_seconds = 0.2\n\n"
        "[alerts]\nevaluation_interval_seconds = 0.2\n\n"
        "[alerts.rules.memory]\nenabled = false\n\n"
        "[api]\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n"
    )
    return start_api(cli, tmp_path, "--flows", str(flows), config=config)


def start(client: httpx.Client, conversation: str) -> str:
    started = client.post(
        "/v1/executions",
        json={"flowId": "asks", "conversationId": conversation, "contactId": "5511987654321"},
    )
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["executionId"]
    return execution_id


def dead(client: httpx.Client, query: str = "") -> list[dict[str, Any]]:
    answer = client.get(f"/v1/outbox?status=dead{query}")
    assert answer.status_code == 200, answer.text
    OutboxPage.model_validate(answer.json())  # the documented shape
    messages: list[dict[str, Any]] = answer.json()["messages"]
    return messages


def trail(client: httpx.Client, execution_id: str) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = client.get(f"/v1/executions/{execution_id}/logs").json()["logs"]
    return logs


def dead_alert(client: httpx.Client) -> dict[str, Any] | None:
    alerts = client.get("/v1/alerts").json()["alerts"]
    return next((a for a in alerts if a["rule"] == "TrilhaDeadMessages"), None)


def test_a_failing_webhook_is_told_counted_alerted_and_redriven(
    served: Api, receiver: WebhookReceiver
) -> None:
    with (
        served.client() as acme,
        served.client("beta_operator") as beta,
        served.client("acme_viewer") as viewer,
        served.client("admin") as admin,
    ):
        eid = start(acme, "wa:1")
        (item,) = until(lambda: dead(acme), what="the message given up")
        OutboxItemOut.model_validate(item)
        assert (item["executionId"], item["conversationId"], item["text"]) == (eid, "wa:1", "name?")
        assert (item["status"], item["attempts"], item["nextAttemptAt"]) == ("dead", 3, None)
        assert "503" in item["lastError"] and item["institutionId"] == "acme"
        assert item["contactId"] == "5511987654321"
        assert "98765" not in item["contactMasked"]
        assert receiver.refused() == MAX_ATTEMPTS

        # the trail: queued, a WARN per failed attempt (status, attempt, next try), dead
        lines = trail(acme, eid)
        told = [(line["message"], line["level"]) for line in lines]
        assert ("message.queued", "INFO") in told
        failed = [line for line in lines if line["message"] == "message.delivery_failed"]
        assert [line["level"] for line in failed] == ["WARN"] * MAX_ATTEMPTS
        facts = [line["context"]["metadata"] for line in failed]
        assert [f["attempt"] for f in facts] == [1, 2, 3]
        assert {f["status"] for f in facts} == {503} and {f["reason"] for f in facts} == {
            "http_5xx"
        }
        assert all(f["nextAttemptAt"] for f in facts[:-1]) and facts[-1]["nextAttemptAt"] is None
        assert all(f["idempotencyKey"] == item["idempotencyKey"] for f in facts)
        errors = [line["context"]["error"] for line in failed]
        assert {e["type"] for e in errors} == {"ChannelError"}  # the receiver refused it
        assert all("503" in e["message"] for e in errors)
        (gave_up,) = [line for line in lines if line["message"] == "message.dead"]
        assert gave_up["level"] == "ERROR" and gave_up["context"]["metadata"]["attempts"] == 3

        # the counter and the gauge (an admin's /metrics)
        def scraped() -> str | None:
            text = admin.get("/metrics").text
            return text if re.search(r"^trilha_outbox_dead 1\.0$", text, re.M) else None

        metrics = until(scraped, what="the dead-messages gauge")
        assert re.search(
            r'^trilha_outbox_delivery_failures_total\{institution="acme",reason="http_5xx"\} 3\.0$',
            metrics,
            re.M,
        ), metrics

        # the alert fires, and leads to the messages
        firing = until(
            lambda: (a := dead_alert(acme)) and a["status"] == "firing" and a,
            what="TrilhaDeadMessages firing",
        )
        assert firing["evidence"]["outbox"] == "/v1/outbox?status=dead"
        assert firing["value"] == 1

        # tenants: beta sees nothing and cannot touch it; a viewer may look, not redrive
        assert dead(beta) == []
        problem(beta.get("/v1/outbox?status=dead&institutionId=acme"), 404)
        problem(beta.post(f"/v1/outbox/{item['id']}/redrive"), 404)
        problem(viewer.post(f"/v1/outbox/{item['id']}/redrive"), 403)
        assert [m["id"] for m in dead(viewer)] == [item["id"]]
        assert [m["id"] for m in dead(admin)] == [item["id"]]
        assert dead(admin, "&institutionId=beta") == []
        assert acme.get("/v1/outbox?status=pending").json()["messages"] == []

        # the channel is back: a redrive sends it, and the trail says who and what
        receiver.refuse_all = False
        redriven = acme.post(f"/v1/outbox/{item['id']}/redrive")
        assert redriven.status_code == 200, redriven.text
        assert (redriven.json()["status"], redriven.json()["attempts"]) == ("pending", 0)
        until(lambda: texts(receiver) == ["name?"], what="the message delivered")
        lines = until(
            lambda: (t := trail(acme, eid)) and t[-1]["message"] == "message.delivered" and t,
            what="message.delivered in the trail",
        )
        (again,) = [line for line in lines if line["message"] == "message.redriven"]
        assert again["context"]["metadata"]["actor"].startswith("key:")
        assert again["context"]["metadata"]["from"] == "dead"
        assert lines[-1]["context"]["metadata"]["idempotencyKey"] == item["idempotencyKey"]
        assert dead(acme) == []
        sent = problem(acme.post(f"/v1/outbox/{item['id']}/redrive"), 409)
        assert sent["currentStatus"] == "sent"
        until(
            lambda: (a := dead_alert(acme)) and a["status"] == "resolved",
            what="TrilhaDeadMessages resolved",
        )

    code, output = served.stop()
    assert code == 0, output
    assert "message.delivery_failed" in output and "message.dead" in output
    assert "5511987654321" not in output


def test_the_listing_pages_by_cursor_and_refuses_bad_input_by_field(served: Api) -> None:
    with served.client() as acme:
        for n in range(3):
            start(acme, f"wa:p{n}")
        until(lambda: len(dead(acme)) == 3, what="three messages given up")
        first = acme.get("/v1/outbox?status=dead&limit=2").json()
        assert len(first["messages"]) == 2 and first["nextCursor"]
        rest = acme.get(f"/v1/outbox?status=dead&limit=2&cursor={first['nextCursor']}").json()
        assert len(rest["messages"]) == 1 and rest["nextCursor"] is None
        ids = [m["id"] for m in first["messages"] + rest["messages"]]
        assert ids == sorted(ids) and len(set(ids)) == 3

        for query, field in (
            ("status=sent", "query.status"),
            ("limit=0", "query.limit"),
            ("limit=501", "query.limit"),
            ("cursor=not-a-cursor", "query.cursor"),
            ("institutionId=a%20b", "query.institutionId"),
        ):
            refused = problem(acme.get(f"/v1/outbox?{query}"), 422)
            assert field in {e["field"] for e in refused["errors"]}, (query, refused)
        problem(acme.post("/v1/outbox/0/redrive"), 422)
        problem(acme.post("/v1/outbox/99999999999999999999/redrive"), 422)
        problem(acme.post("/v1/outbox/12345/redrive"), 404)


def test_trilha_outbox_lists_escaped_and_redrives(
    served: Api, receiver: WebhookReceiver, cli: Cli
) -> None:
    """The CLI over the same store: a table with the stored text escaped, ``--json``,
    ``--institution``, ``--redrive ID`` (refused for an unknown one) and ``--redrive-all``."""
    with served.client() as acme, served.client("beta_operator") as beta:
        receiver.refuse_all = False
        eid = start(acme, "wa:cli")
        until(lambda: texts(receiver) == ["name?"], what="the question delivered")
        receiver.refuse_all = True
        hostile = "Ana\x1b]0;pwned\x07\x1b[31m"
        reply = acme.post(
            "/v1/conversations/wa:cli/messages",
            json={"messageId": "m1", "contactId": "5511987654321", "text": hostile},
        )
        assert reply.status_code in (200, 202), reply.text
        start(beta, "wa:beta")
        until(lambda: len(dead(acme)) == 1 and len(dead(beta)) == 1, what="both given up")

    store = ("--store", served.store)
    table = cli("outbox", *store)
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
    assert "pwned" in table.stdout and "5511987654321" not in table.stdout
    listed = cli("outbox", *store, "--institution", "acme", "--json")
    assert listed.returncode == 0, listed.stderr
    (mine,) = json.loads(listed.stdout)["messages"]
    assert mine["executionId"] == eid and mine["text"] == f"bye {hostile}"
    assert "\x1b" not in listed.stdout  # JSON-escaped, the same text once decoded
    queued = [
        m["createdAt"] for m in json.loads(cli("outbox", *store, "--json").stdout)["messages"]
    ]
    for columns in ("80", "60"):  # on a narrow terminal, the other columns give way
        narrow = cli("outbox", *store, env={"COLUMNS": columns})
        assert narrow.returncode == 0, narrow.stderr
        assert len(queued) == 2 and all(at in narrow.stdout for at in queued), narrow.stdout
        assert "…" not in "".join(re.findall(r"\d{4}-\d\d-\d\dT\S*", narrow.stdout))

    unknown = cli("outbox", *store, "--redrive", "999999")
    assert unknown.returncode == 2 and "not in the outbox" in unknown.stderr
    refused = cli("outbox", *store, "--status", "sent")
    assert refused.returncode != 0 and "--status" in refused.stderr

    receiver.refuse_all = False
    one = cli("outbox", *store, "--redrive", str(mine["id"]), "--actor", "cli:ana", "--json")
    assert one.returncode == 0, one.stderr
    assert [m["id"] for m in json.loads(one.stdout)["redriven"]] == [mine["id"]]
    until(lambda: f"bye {hostile}" in texts(receiver), what="the redriven message delivered")
    rest = cli("outbox", *store, "--redrive-all")
    assert rest.returncode == 0, rest.stderr
    assert "1 message(s) redriven" in rest.stdout
    until(lambda: len(texts(receiver)) == 3, what="beta's message delivered")
    assert json.loads(cli("outbox", *store, "--json").stdout)["messages"] == []
    with served.client() as acme:
        redriven = [line for line in trail(acme, eid) if line["message"] == "message.redriven"]
        assert [line["context"]["metadata"]["actor"] for line in redriven] == ["cli:ana"]
