"""Reminders and session expiry through a real ``trilha serve`` over HTTP, in seconds:
reminders said once each across a SIGKILL of the process between them (the new process
on the same SQLite file says the next one, never the last again), the input timeout
after them, and sessions that expire from a question and from a delay, also across a
restart, listed under ``?outcome=expired`` for their own institution only."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, Cli, serve, start_api

REMIND = {
    "id": "remind",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "question",
            "text": "Your CPF?",
            "variable": "cpf",
            "reminders": [
                {"afterSeconds": 1, "text": "Ainda está aí?"},
                {"afterSeconds": 4, "text": {"en": "Last call!", "pt-BR": "Última chamada!"}},
            ],
            # long enough that a slow restart still finds the wait open
            "inputTimeoutSeconds": 120,
            "onTimeout": "later",
            "next": "thanks",
        },
        {"id": "thanks", "type": "end", "text": "Thanks, {{cpf}}."},
        {"id": "later", "type": "end", "text": "We will write later."},
    ],
}
TIMES_OUT = {
    "id": "quick",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "question",
            "text": "Still with us?",
            "variable": "x",
            "reminders": [{"afterSeconds": 0.5, "text": "Hello?"}],
            "inputTimeoutSeconds": 1.5,
            "onTimeout": "later",
            "next": "later",
        },
        {"id": "later", "type": "end", "text": "We will write later."},
    ],
}
EXPIRING = {
    "id": "expiring",
    "start": "route",
    "settings": {
        "sessionTimeoutSeconds": 2,
        "expiryMessage": {"en": "Closed for inactivity.", "pt-BR": "Encerrado por inatividade."},
    },
    "nodes": [
        {
            "id": "route",
            "type": "condition",
            "branches": [{"when": "route == 'nap'", "next": "nap"}],
            "default": "first",
        },
        {"id": "nap", "type": "delay", "seconds": 3600, "next": "done"},
        {"id": "first", "type": "question", "text": "Name?", "variable": "name", "next": "second"},
        {"id": "second", "type": "question", "text": "City?", "variable": "city", "next": "done"},
        {"id": "done", "type": "end", "text": "Done."},
    ],
}


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start(client: httpx.Client, flow: str, conversation: str, **variables: Any) -> str:
    answer = client.post(
        "/v1/executions",
        json={
            "flowId": flow,
            "conversationId": conversation,
            "contactId": f"contact-{conversation}",
            "variables": variables,
        },
    )
    assert answer.status_code == 201, answer.text
    execution_id: str = answer.json()["executionId"]
    return execution_id


def bot_said(client: httpx.Client, execution_id: str) -> list[str]:
    answer = client.get(f"/v1/executions/{execution_id}/transcript")
    assert answer.status_code == 200, answer.text
    return [t["text"] for t in answer.json()["transcript"] if t["from"] == "bot"]


def execution(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def outbox(db: Path, execution_id: str) -> list[str]:
    """What the store holds for the contact, straight from the file: every message once."""
    with sqlite3.connect(db, timeout=10) as conn:
        rows = conn.execute(
            "SELECT text FROM outbox WHERE execution_id = ? ORDER BY step_seq, id", (execution_id,)
        ).fetchall()
    return [r[0] for r in rows]


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def kill(api: Api) -> None:
    api.process.send_signal(signal.SIGKILL)
    api.process.communicate(timeout=10)
    assert api.process.returncode == -signal.SIGKILL


def restart(cli: Cli, tmp_path: Path, api: Api) -> Api:
    """A new ``trilha serve`` on the same SQLite file and keys."""
    process, url = serve(cli, tmp_path, api.store)
    return Api(url, process, api.store, api.keys)


@pytest.mark.slow
def test_reminders_across_a_kill_then_a_reply(cli: Cli, tmp_path: Path) -> None:
    """The first reminder is said, the process is killed, and the second falls due while
    it is down: the new process says it once (late), the first never again; a reply
    then completes the conversation. Beside it, a question times out after its
    reminder, taking onTimeout."""
    api = start_api(cli, tmp_path)
    db = tmp_path / "api.db"
    with api.client() as acme:
        for flow in (REMIND, TIMES_OUT):
            assert acme.put(f"/v1/flows/{flow['id']}", json=flow).status_code == 201
        ask = start(acme, "remind", "conv-remind", contact={"language": "pt-BR"})
        quick = start(acme, "quick", "conv-quick")
        until(lambda: len(bot_said(acme, ask)) == 2, "the first reminder")
        assert bot_said(acme, ask) == ["Your CPF?", "Ainda está aí?"]
        created = seconds(execution(acme, ask)["createdAt"])
    kill(api)
    # down while the second reminder falls due (4 s after the question)
    until(lambda: time.time() > created + 4.5, "the second reminder's time")
    assert outbox(db, ask) == ["Your CPF?", "Ainda está aí?"]
    api = restart(cli, tmp_path, api)
    with api.client() as acme:
        until(lambda: len(bot_said(acme, ask)) == 3, "the second reminder, after the restart")
        reply = acme.post(
            "/v1/conversations/conv-remind/messages",
            json={"messageId": "m-1", "contactId": "contact-conv-remind", "text": "12345678901"},
        )
        assert reply.status_code == 202, reply.text
        until(lambda: execution(acme, ask)["status"] == "completed", "the reply to complete it")
        assert bot_said(acme, ask) == [
            "Your CPF?",
            "Ainda está aí?",
            "Última chamada!",
            "Thanks, 12345678901.",
        ]
        steps = acme.get(f"/v1/executions/{ask}/steps").json()["steps"]
        reminders = [
            s["output"]
            for s in steps
            if isinstance(s.get("output"), dict) and "reminder" in s["output"]
        ]
        assert [r["reminder"] for r in reminders] == [1, 2]

        until(lambda: execution(acme, quick)["status"] == "completed", "the quick one to time out")
        assert bot_said(acme, quick) == ["Still with us?", "Hello?", "We will write later."]
    assert outbox(db, ask) == [
        "Your CPF?",
        "Ainda está aí?",
        "Última chamada!",
        "Thanks, 12345678901.",
    ]
    api.stop()


@pytest.mark.slow
def test_sessions_expire_over_http_and_across_a_restart(cli: Cli, tmp_path: Path) -> None:
    """A session of 2 s: a delay of an hour expires after the process is killed and
    started again; a question answered once expires 2 s after that answer (the answer
    pushed it back), in the contact's language. Both are listed as expired to their own
    institution only, and counted."""
    api = start_api(cli, tmp_path)
    with api.client() as acme:
        assert acme.put("/v1/flows/expiring", json=EXPIRING).status_code == 201
        nap = start(acme, "expiring", "conv-nap", route="nap")
        until(lambda: execution(acme, nap)["status"] == "waiting_delay", "the delay")
    kill(api)
    api = restart(cli, tmp_path, api)
    with api.client() as acme, api.client("beta_operator") as beta:
        until(lambda: execution(acme, nap)["status"] == "timeout", "the delay to expire")
        napped = execution(acme, nap)
        assert napped["outcome"] == "expired"
        assert seconds(napped["endedAt"]) >= seconds(napped["createdAt"]) + 2
        assert bot_said(acme, nap) == ["Closed for inactivity."]

        asked = start(acme, "expiring", "conv-ask", contact={"language": "pt-BR"})
        until(lambda: execution(acme, asked)["status"] == "waiting_input", "the question")
        reply = acme.post(
            "/v1/conversations/conv-ask/messages",
            json={"messageId": "m-1", "contactId": "contact-conv-ask", "text": "Ana"},
        )
        assert reply.status_code == 202, reply.text
        replied_at = seconds(reply.json()["receivedAt"])
        until(lambda: execution(acme, asked)["status"] == "timeout", "the question to expire")
        ended = execution(acme, asked)
        assert ended["outcome"] == "expired" and ended["variables"]["name"] == "Ana"
        assert seconds(ended["endedAt"]) >= replied_at + 2
        assert bot_said(acme, asked) == ["Name?", "City?", "Encerrado por inatividade."]

        listed = acme.get("/v1/executions", params={"outcome": "expired"}).json()["executions"]
        assert sorted(e["executionId"] for e in listed) == sorted([nap, asked])
        assert acme.get("/v1/executions", params={"outcome": "timeout"}).json()["executions"] == []
        counts = acme.get("/v1/executions/counts").json()
        assert counts["outcomes"]["expired"] == 2 and counts["outcomes"]["timeout"] == 0
        assert beta.get("/v1/executions", params={"outcome": "expired"}).json()["executions"] == []
        assert beta.get(f"/v1/executions/{nap}").status_code == 404
        assert beta.get("/v1/executions/counts").json()["outcomes"]["expired"] == 0
    api.stop()
