"""A person takes a conversation over and hands it back, through a real ``trilha serve``:
the desk is a real receiver on 127.0.0.1 (the ``handoff`` dependency) and so is the
platform's webhook (the channel). The handoff notice, the contact's held messages, the
person's messages (exactly once per messageId), the handback with a node and variables,
tenancy and roles; then the process is SIGKILLed while a person holds one conversation
and another's ``returnAfterSeconds`` runs, and a new one on the same SQLite file goes on."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_conversation import problem, until

from conftest import Api, Cli, Drain, serve, start_api
from trilha.api.routes.executions import ExecutionOut, TranscriptOut
from trilha.api.routes.handback import AgentMessageOut
from webhook_receiver import WebhookReceiver, webhook_receiver

CARE = {
    "id": "care",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "What is wrong?", "variable": "issue",
         "next": "to_desk"},
        {"id": "to_desk", "type": "handoff", "mode": "wait", "queue": "support",
         "reason": "about {{issue}}", "text": "Connecting you to a person.", "next": "survey"},
        {"id": "survey", "type": "question", "text": "How did we do, 1 to 5?",
         "variable": "score", "validate": {"kind": "number", "min": 1, "max": 5},
         "next": "bye"},
        {"id": "bye", "type": "end", "text": "Thanks! Score {{score}}."},
    ],
}  # fmt: skip
#: the same, but the bot takes the conversation back after a few seconds of silence
QUICK = {
    "id": "quick",
    "start": "to_desk",
    "nodes": [
        {"id": "to_desk", "type": "handoff", "mode": "wait", "queue": "night",
         "returnAfterSeconds": 10, "onReturnTimeout": "sorry", "next": "bye"},
        {"id": "sorry", "type": "message", "text": "Nobody could answer now, sorry.",
         "next": "bye"},
        {"id": "bye", "type": "end", "text": "Bye."},
    ],
}  # fmt: skip


@pytest.fixture
def desk() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as made:
        yield made


@pytest.fixture
def platform() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as made:
        yield made


def config(platform: WebhookReceiver, desk: WebhookReceiver) -> str:
    return (
        f'[channel]\nkind = "webhook"\nurl = "{platform.url}"\n\n'
        f'[dependencies.handoff]\nbase_url = "{desk.url}"\n\n'
        "[api]\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\n"
    )


def flows_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    for flow in (CARE, QUICK):
        (folder / f"{flow['id']}.json").write_text(json.dumps(flow), encoding="utf-8")
    return folder


def start(client: httpx.Client, flow: str, conversation: str, **variables: Any) -> str:
    started = client.post(
        "/v1/executions",
        json={
            "flowId": flow,
            "conversationId": conversation,
            "contactId": f"contact-{conversation}",
            "variables": variables,
        },
    )
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["executionId"]
    return execution_id


def say(client: httpx.Client, conversation: str, message_id: str, text: str) -> None:
    sent = client.post(
        f"/v1/conversations/{conversation}/messages",
        json={"messageId": message_id, "contactId": f"contact-{conversation}", "text": text},
    )
    assert sent.status_code == 202, sent.text


def execution(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def held(client: httpx.Client, execution_id: str) -> bool:
    return execution(client, execution_id)["waitingFor"] == "human"


def platform_texts(platform: WebhookReceiver, conversation: str) -> list[str]:
    return [b["text"] for b in platform.accepted() if b["conversationId"] == conversation]


def desk_bodies(desk: WebhookReceiver, conversation: str) -> list[dict[str, Any]]:
    return [b for b in desk.accepted() if b["conversationId"] == conversation]


def test_a_person_holds_speaks_and_hands_back(
    cli: Cli, tmp_path: Path, desk: WebhookReceiver, platform: WebhookReceiver
) -> None:
    """The whole hold over HTTP, with its refusals, tenancy and roles."""
    api = start_api(
        cli, tmp_path, "--flows", str(flows_dir(tmp_path)), config=config(platform, desk)
    )
    with (
        api.client() as acme,
        api.client("beta_operator") as beta,
        api.client("acme_viewer") as viewer,
    ):
        eid = start(acme, "care", "wa-1", cpf="123.456.789-09", crmToken="tok-1")
        until(lambda: "What is wrong?" in platform_texts(platform, "wa-1"), what="the question")
        say(acme, "wa-1", "c-1", "blocked card")
        until(lambda: held(acme, eid), what="the hold")
        now = ExecutionOut.model_validate(execution(acme, eid))
        assert now.status == "paused" and now.paused_from is None
        assert now.held_by is not None and now.held_by.queue == "support"
        assert now.held_by.reason == "about blocked card" and now.held_by.return_at is None
        controls = execution(acme, eid)["controls"]
        assert controls["handback"] == {"allowed": True, "reason": None}
        assert controls["resume"]["allowed"] is False

        notice = until(lambda: desk_bodies(desk, "wa-1"), what="the desk's notice")[0]
        assert notice["type"] == "handoff" and notice["queue"] == "support"
        assert notice["reason"] == "about blocked card" and notice["mode"] == "wait"
        assert notice["variables"] == {
            "cpf": "123.456.789-09",
            "crmToken": "[masked]",
            "issue": "blocked card",
        }
        assert [t["text"] for t in notice["transcript"]] == [
            "What is wrong?",
            "blocked card",
            "Connecting you to a person.",
        ]
        assert notice["handbackUrl"] == "/v1/conversations/wa-1/handback"

        say(acme, "wa-1", "c-2", "hello? anyone?")
        forwarded = until(
            lambda: [b for b in desk_bodies(desk, "wa-1") if b["type"] == "message"],
            what="the forwarded message",
        )
        assert [(b["messageId"], b["text"]) for b in forwarded] == [("c-2", "hello? anyone?")]

        # the person answers: once per messageId
        body = {"messageId": "agent-1", "agentId": "ana", "text": "Hi, Ana here."}
        first = acme.post("/v1/conversations/wa-1/agent-messages", json=body)
        assert first.status_code == 202, first.text
        sent = AgentMessageOut.model_validate(first.json())
        assert not sent.duplicate and sent.execution_id == eid and sent.agent_id == "ana"
        again = acme.post("/v1/conversations/wa-1/agent-messages", json=body | {"text": "x"})
        assert again.status_code == 202 and again.json() == first.json() | {"duplicate": True}
        buttons = {
            "messageId": "agent-2",
            "agentId": "ana",
            "content": {
                "type": "buttons",
                "text": "Is it unblocked now?",
                "buttons": [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}],
            },
        }
        assert acme.post("/v1/conversations/wa-1/agent-messages", json=buttons).status_code == 202
        until(
            lambda: any(t.startswith("Is it unblocked") for t in platform_texts(platform, "wa-1")),
            what="the buttons",
        )
        from_agent = [b for b in platform.accepted() if b.get("agentId") == "ana"]
        assert from_agent[0]["text"] == "Hi, Ana here."
        assert len(from_agent) == 2 and from_agent[1]["content"]["type"] == "buttons"
        assert "How did we do, 1 to 5?" not in platform_texts(platform, "wa-1")

        # refused: bad bodies, another institution, a viewer
        for bad, field in (
            ({"messageId": "b", "agentId": "ana"}, "exactly one"),
            ({"messageId": "b", "agentId": "ana", "text": "x" * 4097}, "text"),
            (
                {"messageId": "b", "agentId": "ana", "content": {"type": "buttons", "text": "t"}},
                "buttons: required",
            ),
        ):
            refused = problem(acme.post("/v1/conversations/wa-1/agent-messages", json=bad), 422)
            assert field in json.dumps(refused)
        problem(beta.post("/v1/conversations/wa-1/agent-messages", json=body), 404)
        problem(beta.post("/v1/conversations/wa-1/handback", json={}), 404)
        problem(viewer.post("/v1/conversations/wa-1/agent-messages", json=body), 403)
        problem(viewer.post("/v1/conversations/wa-1/handback", json={}), 403)
        problem(acme.post("/v1/conversations/nobody/handback", json={}), 404)
        with api.client("admin") as admin:  # an admin key names the institution it acts for
            needs = problem(admin.post("/v1/conversations/wa-1/handback", json={}), 422)
            assert "institutionId" in json.dumps(needs)
            elsewhere = {"institutionId": "beta"}
            problem(admin.post("/v1/conversations/wa-1/handback", json=elsewhere), 404)
        wrong = problem(acme.post("/v1/conversations/wa-1/handback", json={"nodeId": "nope"}), 422)
        assert "no node 'nope'" in wrong["detail"]
        problem(acme.post("/v1/executions/" + eid + "/resume"), 409)

        # the handback: at the handoff's next, with a variable; audited
        back = acme.post(
            "/v1/conversations/wa-1/handback",
            json={"variables": {"ticket.id": "T-9"}, "reason": "solved"},
        )
        assert back.status_code == 200, back.text
        assert back.json()["variables"]["ticket"] == {"id": "T-9"}
        until(lambda: "How did we do, 1 to 5?" in platform_texts(platform, "wa-1"), what="survey")
        waiting = execution(acme, eid)
        assert waiting["status"] == "waiting_input" and waiting["currentNodeId"] == "survey"
        assert waiting["heldBy"] is None
        history = acme.get(f"/v1/executions/{eid}/history").json()["history"]
        hand = [h for h in history if h["from"] == "paused" and h["to"] == "running"]
        assert hand and hand[0]["actor"].startswith("key:") and "solved" in hand[0]["reason"]
        logs = acme.get(f"/v1/executions/{eid}/logs").json()["logs"]
        assert any(line["message"] == "operator.handback" for line in logs)

        late = problem(acme.post("/v1/conversations/wa-1/agent-messages", json=buttons | {
            "messageId": "agent-3"}), 409)  # fmt: skip
        assert late["type"].endswith("not_held") and late["currentStatus"] == "waiting_input"
        problem(acme.post("/v1/conversations/wa-1/handback", json={}), 409)

        say(acme, "wa-1", "c-3", "5")
        until(lambda: execution(acme, eid)["status"] == "completed", what="the end")
        transcript = TranscriptOut.model_validate(
            acme.get(f"/v1/executions/{eid}/transcript").json()
        ).transcript
        assert [(t.sender, t.text, t.agent_id) for t in transcript] == [
            ("bot", "What is wrong?", None),
            ("contact", "blocked card", None),
            ("bot", "Connecting you to a person.", None),
            ("contact", "hello? anyone?", None),
            ("agent", "Hi, Ana here.", "ana"),
            ("agent", "Is it unblocked now?\n\n1. Yes\n2. No", "ana"),
            ("bot", "How did we do, 1 to 5?", None),
            ("contact", "5", None),
            ("bot", "Thanks! Score 5.", None),
        ]
        assert transcript[4].outbox == "sent"  # delivered through the channel
        assert platform_texts(platform, "wa-1").count("Hi, Ana here.") == 1
    code, _ = api.stop()
    assert code == 0


def test_a_restart_while_a_person_holds_it_and_while_the_return_runs(
    cli: Cli, tmp_path: Path, desk: WebhookReceiver, platform: WebhookReceiver
) -> None:
    """SIGKILL with one conversation held and another's return deadline running: a new
    process on the same file forwards, delivers and hands back the first, and takes the
    second back by itself once (not before its deadline); `trilha handback` works on a
    third from the terminal."""
    api = start_api(
        cli, tmp_path, "--flows", str(flows_dir(tmp_path)), config=config(platform, desk)
    )
    with api.client() as acme:
        held_id = start(acme, "care", "wa-a")
        until(lambda: "What is wrong?" in platform_texts(platform, "wa-a"), what="question")
        say(acme, "wa-a", "a-1", "help")
        cli_id = start(acme, "care", "wa-c")
        until(lambda: "What is wrong?" in platform_texts(platform, "wa-c"), what="question")
        say(acme, "wa-c", "c-1", "help too")
        quick_id = start(acme, "quick", "wa-b")
        until(lambda: all(held(acme, e) for e in (held_id, cli_id, quick_id)), what="three holds")
        quick = execution(acme, quick_id)
        assert quick["heldBy"]["returnAt"] is not None
    api.process.send_signal(signal.SIGKILL)
    api.process.communicate(timeout=30)
    assert "Nobody could answer now, sorry." not in platform_texts(platform, "wa-b")

    handed = cli(
        "handback", "wa-c", "--institution", "acme", "--node", "survey", "--no-run",
        "--store", api.store, "--config", str(tmp_path / "trilha.toml"),
    )  # fmt: skip
    assert handed.returncode == 0, handed.stderr
    assert "running" in handed.stdout

    process, url = serve(cli, tmp_path, api.store, "--flows", str(flows_dir(tmp_path)))
    again = Api(url, process, api.store, api.keys, Drain(process))
    with again.client() as acme:
        assert held(acme, held_id)
        say(acme, "wa-a", "a-2", "still there?")
        until(
            lambda: any(b.get("text") == "still there?" for b in desk_bodies(desk, "wa-a")),
            what="the forward after the restart",
        )
        sent = acme.post(
            "/v1/conversations/wa-a/agent-messages",
            json={"messageId": "m-1", "agentId": "bia", "text": "Back online, Bia here."},
        )
        assert sent.status_code == 202, sent.text
        until(lambda: "Back online, Bia here." in platform_texts(platform, "wa-a"), what="agent")
        assert acme.post("/v1/conversations/wa-a/handback", json={}).status_code == 200
        until(lambda: "How did we do, 1 to 5?" in platform_texts(platform, "wa-a"), what="survey")

        until(lambda: "How did we do, 1 to 5?" in platform_texts(platform, "wa-c"), what="cli")
        until(lambda: execution(acme, quick_id)["status"] == "completed", timeout=30)
        # completed once its last step committed; its last message reaches the platform
        # through the outbox a moment later
        bye = ["Nobody could answer now, sorry.", "Bye."]
        until(lambda: platform_texts(platform, "wa-b") == bye, what="the goodbye delivered")
        logs = acme.get(f"/v1/executions/{quick_id}/logs").json()["logs"]
        returned = [line for line in logs if line["message"] == "handoff.returned"]
        assert len(returned) == 1 and returned[0]["context"]["metadata"]["toNode"] == "sorry"
        ended = datetime.fromisoformat(execution(acme, quick_id)["endedAt"])
        assert ended >= datetime.fromisoformat(quick["heldBy"]["returnAt"])  # not before
    # each held message reached the desk once (a repeat would carry the same key)
    keys = [b.get("messageId") for b in desk_bodies(desk, "wa-a") if b["type"] == "message"]
    assert sorted(set(keys)) == ["a-2"]
    check = cli("check", "--store", api.store)
    assert check.returncode == 0, check.stdout + check.stderr
